"""The corridor world as Gymnasium environments.

``import envs`` registers the ids below; ``gymnasium.make("envs:Corridor-v0")`` imports this
package by itself, so no explicit import is needed.

* ``Corridor-v0``: discrete yaw actions (3 bins by default: left, straight, right).
* ``CorridorContinuous-v0``: continuous yaw command in [-1, 1].
"""

from envs._quiet_pybullet import import_pybullet_quietly

import_pybullet_quietly()

from gymnasium.envs.registration import register, registry  # noqa: E402

from envs.corridor_env import CorridorEnv  # noqa: E402
from envs.spaces import (  # noqa: E402
    ACTION_TYPES,
    OBS_MODES,
    bin_yaw_commands,
    yaw_command_to_bin,
)

MAX_EPISODE_STEPS = 1000
ENV_IDS = {"discrete": "Corridor-v0", "continuous": "CorridorContinuous-v0"}

for _action_type, _env_id in ENV_IDS.items():
    if _env_id not in registry:
        register(
            id=_env_id,
            entry_point="envs.corridor_env:CorridorEnv",
            max_episode_steps=MAX_EPISODE_STEPS,
            kwargs={"action_type": _action_type},
        )

__all__ = [
    "ACTION_TYPES",
    "ENV_IDS",
    "MAX_EPISODE_STEPS",
    "OBS_MODES",
    "CorridorEnv",
    "bin_yaw_commands",
    "yaw_command_to_bin",
]
