"""Runs with their ends: what format 1 did not store, recovered by flying the run again.

A format-1 run file lacks ``terminated``, ``truncated`` and the state after its last step
(``FINAL_FIELDS``). The env is seeded and deterministic, so resetting it with the run's seed
and stepping its executed actions reproduces the run frame for frame and then shows the
state the last step led to. Every replayed frame is compared with the recorded one: a run
that does not replay exactly (a synthetic dataset, another PyBullet or env version) is
refused rather than given a made-up end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs  # noqa: F401 - registers the env ids a manifest names
from dataset.format import FINAL_FIELDS, DatasetError, file_label, final_state
from dataset.reader import check_run, load_run


def run_with_ends(path: Path, env: gym.Env) -> dict[str, Any]:
    """``load_run(path)``, with the ends of a format-1 run replayed in ``env``.

    ``env`` is ``gymnasium.make(manifest["env_id"], **manifest["env_kwargs"])`` (time limit
    included); a format-2 run does not use it. ``attrs["replayed"]`` says whether the ends
    came from a replay.
    """
    run = load_run(path)
    attrs = run["attrs"]
    attrs["replayed"] = attrs["format_version"] == 1
    if attrs["replayed"]:
        run.update(replay_ends(path, run, env))
        arrays = {name: value for name, value in run.items() if name != "attrs"}
        check_run(path, arrays, {**attrs, "format_version": 2})
    return run


def replay_ends(path: Path, run: dict[str, Any], env: gym.Env) -> dict[str, np.ndarray]:
    """``terminated``, ``truncated`` and the ``FINAL_FIELDS`` of a loaded run, by replaying it.

    A sequence that stops before its episode ended (cut to a frame budget) ends truncated.
    """
    where = file_label(path)
    unwrapped = env.unwrapped
    continuous = unwrapped.action_type == "continuous"
    actions = run["action_continuous"] if continuous else run["action"]
    n_steps = len(actions)
    observation, info = env.reset(seed=int(run["attrs"]["seed"]))
    terminated = truncated = False
    for t in range(n_steps):
        if not np.array_equal(observation, run["frames"][t]):
            raise DatasetError(
                f"{where}: replaying it from its seed gives another frame at step {t} than the"
                " recorded one (not recorded by this env: a synthetic dataset, or another"
                " PyBullet or env version), so its final observation cannot be recovered"
            )
        if terminated or truncated:
            raise DatasetError(f"{where}: the replayed episode ended at step {t}, before the run")
        action = actions[t] if continuous else int(actions[t])
        observation, _, terminated, truncated, info = env.step(action)
    ends = np.arange(n_steps) == n_steps - 1
    final = final_state(observation, unwrapped.pose, info)
    return {
        "terminated": ends & bool(terminated),
        # a run cut before its episode ended stops truncated too
        "truncated": ends & bool(truncated or not terminated),
        **{
            name: np.asarray(final[name], dtype=run[step_name].dtype)
            for name, step_name in FINAL_FIELDS.items()
        },
    }
