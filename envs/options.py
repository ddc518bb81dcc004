"""The env's keyword arguments as data: their defaults, read from ``CorridorEnv`` itself.

``CorridorEnv.__init__``'s signature is the one home of the env's tunables and their defaults;
everything that records, rebuilds or overrides an env (``expert.collect``, ``eval.rollout``,
datasets' manifests) reads them from here. ``EnvOptions`` is the same signature as a frozen
config dataclass with one command-line flag per argument: this module adds only what a
signature cannot hold, a help line per flag (and a flag type where the annotation is wider).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from typing import Any

from configflags import flag_name, option
from envs.controls import CONTROLS
from envs.corridor_env import CorridorEnv
from envs.mixtures import MIXTURES
from envs.scene import LIGHTS
from envs.spaces import OBS_MODES

# keyword arguments that choose how an env is shown, not what world it simulates
PRESENTATION_KWARGS = ("render_mode", "render_size")
# chosen by the program, not by a flag: the expert decides the action type
NOT_OPTIONS = ("self", *PRESENTATION_KWARGS, "action_type")

# One help line per env argument, in the order the flags are listed.
OPTION_HELP = {
    "image_size": "camera image side in pixels (>= 32)",
    "obs_mode": "camera channels: rgb, depth or rgbd",
    "n_bins": "discrete yaw bins (odd, >= 3)",
    "fov": "camera field of view in degrees",
    "depth_range": "metres mapped to depth 255",
    "speed": "forward speed in m/s",
    "turn_speed": "forward speed at full yaw in m/s (unset: speed)",
    "controls": "yaw: steer only, at --speed; yaw_speed: steer and command the forward speed "
    "too (the two-control world, docs/env.md)",
    "speed_bins": "discrete speed bins with --controls yaw_speed (bin 0 slowest)",
    "speed_range": "slowest and fastest speed (m/s) of --controls yaw_speed",
    "acceleration": "m/s^2 the speed changes by at most, with --controls yaw_speed",
    "max_yaw_rate": "yaw rate of command 1 in rad/s",
    "control_hz": "control steps (frames) per second",
    "physics_substeps": "collision checks per control step",
    "camera_height": "flight and camera height in metres",
    "agent_radius": "radius of the agent's collision sphere in metres",
    "n_segments": "straight corridor segments per world",
    "segment_length": "min and max segment length (m)",
    "bend_angles": "bend angles to draw from, degrees",
    "corridor_width": "corridor width in metres",
    "wall_height": "wall height in metres",
    "wall_thickness": "wall thickness in metres",
    "obstacle_density": "obstacles per candidate slot, 0..1 (1 densest)",
    "obstacle_min_gap": "free gap an obstacle leaves on one side (m)",
    "clutter_density": "wall-side clutter per slot, 0..1",
    "randomize": "random tints and light per world",
    "randomize_textures": "random wall, floor and ceiling textures per world too (needs far more "
    "than 10 runs to learn; docs/env.md)",
    "held_out_textures": "draw the random textures from the family no training world uses "
    "(with --randomize-textures; the generalisation suite's unseen textures)",
    "light": "training: the light every world has drawn; outside: dimmer and harsher than "
    "any of them (docs/env.md)",
    "mixture": "draw every world from a mixture of kinds of world: none, generalist "
    "(textures, obstacles, long, narrow: each in half the worlds) or generalist_obstacles "
    "(obstacles in three worlds of four; docs/env.md)",
    "start_offset": "metres into the corridor the agent starts",
    "start_lateral_jitter": "max start offset from the centreline (m)",
    "start_yaw_jitter": "max start heading error in degrees",
    "collision_penalty": "reward subtracted on a collision",
}
# flag types for arguments whose annotation accepts more than one command-line form
OPTION_TYPES: dict[str, Any] = {
    "image_size": int,
    "segment_length": tuple[float, float],
    "speed_range": tuple[float, float],
    "bend_angles": tuple[float, ...],
}
OPTION_CHOICES = {
    "controls": CONTROLS, "obs_mode": OBS_MODES, "light": LIGHTS, "mixture": tuple(MIXTURES)
}  # fmt: skip
# arguments added after datasets were first fingerprinted: recorded only when not at their
# default, so that datasets (and their fingerprints) made before them stay the same
LATE_ARGUMENTS = (
    "held_out_textures", "light", "mixture", "controls", "speed_bins", "speed_range",
    "acceleration",
)  # fmt: skip


def _keyword_defaults() -> dict[str, Any]:
    parameters = inspect.signature(CorridorEnv.__init__).parameters
    return {name: p.default for name, p in parameters.items() if name != "self"}


def env_defaults() -> dict[str, Any]:
    """CorridorEnv's keyword defaults (what an absent key in recorded env kwargs means)."""
    return {
        name: default
        for name, default in _keyword_defaults().items()
        if name not in PRESENTATION_KWARGS
    }


def full_env_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every world-defining CorridorEnv argument, defaults filled in, as JSON holds them."""
    kwargs = {k: v for k, v in kwargs.items() if k not in PRESENTATION_KWARGS}
    return json.loads(json.dumps({**env_defaults(), **kwargs}))  # tuples -> lists


def recorded_env_kwargs(options: EnvOptions, action_type: str) -> dict[str, Any]:
    """What a dataset's manifest records: every argument but render_mode, JSON-ready.

    ``render_size`` is recorded too: manifests have always held it, and their ``config_hash``
    (which decides whether a collection resumes) covers it. The :data:`LATE_ARGUMENTS` are
    left out at their defaults (an absent argument means its default).
    """
    defaults = _keyword_defaults()
    kwargs = {**defaults, **dataclasses.asdict(options), "action_type": action_type}
    del kwargs["render_mode"]
    for name in LATE_ARGUMENTS:
        if kwargs[name] == defaults[name]:
            del kwargs[name]
    return json.loads(json.dumps(kwargs))  # tuples -> lists, like the manifest will hold


def _check_with_the_env(self: Any) -> None:
    # the env is the one authority on its arguments: build one (cheap, nothing is loaded
    # before reset) and report its complaint under the flag's name
    try:
        CorridorEnv(**dataclasses.asdict(self)).close()
    except ValueError as error:
        message = str(error)
        name = message.split(" ", 1)[0]
        if name in {f.name for f in dataclasses.fields(self)}:
            message = flag_name(name) + message[len(name) :]
        raise ValueError(message) from None


def _options_fields() -> list[tuple[str, Any, dataclasses.Field]]:
    hints = typing.get_type_hints(CorridorEnv.__init__)
    defaults = _keyword_defaults()
    names = [name for name in defaults if name not in NOT_OPTIONS]
    if set(names) != set(OPTION_HELP):
        raise TypeError(
            "envs.options.OPTION_HELP must hold exactly CorridorEnv's arguments; it differs in "
            f"{sorted(set(names) ^ set(OPTION_HELP))}"
        )
    return [
        (
            name,
            OPTION_TYPES.get(name, hints[name]),
            option(defaults[name], help=OPTION_HELP[name], choices=OPTION_CHOICES.get(name)),
        )
        for name in OPTION_HELP
    ]


EnvOptions = dataclasses.make_dataclass(
    "EnvOptions",
    _options_fields(),
    frozen=True,
    namespace={
        "__doc__": "Env keyword arguments passed through to ``envs.CorridorEnv`` "
        "(see docs/env.md).",
        "__module__": __name__,
        "__post_init__": _check_with_the_env,
    },
)
