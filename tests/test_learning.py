"""Learning works: policies trained on a small recorded dataset fly clearly better than a
constant action in the same held-out worlds.

The dataset is real (the expert recorded in 32x32 corridors of two segments), the baseline
flies the env directly with the straight action, and the policies fly through ``eval.fly``
on the same worlds (``envs.seeds.eval_seed(0, i)``). A trainer that learns nothing (a broken
loss, a frozen optimiser, a one-class collapse) flies no better than the baseline.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import envs  # noqa: F401  (registers the env ids)
from bc.train import main as train
from envs.options import EnvOptions
from envs.seeds import eval_seed
from eval.fly import HeldOutWorlds, fly, load_pilot
from expert.collect import main as collect
from expert.collect_config import CollectConfig
from tests.bc.helpers import tiny_config

EPISODES = 40
WORLD = EnvOptions(image_size=32, n_segments=2)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("learning") / "data"
    collect(CollectConfig(out=out, runs=30, env=WORLD, workers=2, quiet=True))
    return out


@pytest.fixture(scope="module")
def constant_action(recorded) -> dict[str, float]:
    """Success and mean progress of flying straight on, in the held-out worlds."""
    manifest = json.loads((recorded / "manifest.json").read_text())
    env = gymnasium.make(manifest["env_id"], **manifest["env_kwargs"])
    straight = (env.unwrapped.n_bins - 1) // 2
    goals, progress = 0, []
    for episode in range(EPISODES):
        env.reset(seed=eval_seed(0, episode))
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(straight)
            done = terminated or truncated
        goals += info["outcome"] == "goal"
        progress.append(info["progress_frac"])
    env.close()
    return {"success_rate": goals / EPISODES, "progress_frac": float(np.mean(progress))}


def _flown(checkpoint: str) -> dict[str, float]:
    flight = fly(load_pilot(Path(checkpoint)), HeldOutWorlds(0, EPISODES), workers=2)
    assert [task.seed for task in flight.tasks] == [eval_seed(0, i) for i in range(EPISODES)]
    return flight.summary


def _trained(data: Path, runs_dir: Path, **flags) -> str:
    config = tiny_config(data, runs_dir, **{"batch_size": 32, **flags})
    return train(config)["checkpoints"]["last"]


def test_the_constant_action_does_not_reach_the_goal(constant_action):
    assert constant_action["success_rate"] == 0.0
    assert 0.2 < constant_action["progress_frac"] < 0.9


def test_the_default_net_learns_to_fly(recorded, constant_action, tmp_path):
    flown = _flown(_trained(recorded, tmp_path, epochs=10, balance=True))
    assert flown["success_rate"] >= 0.7, flown
    assert flown["progress_frac"] >= constant_action["progress_frac"] + 0.25, flown


def test_a_recurrent_net_learns_to_fly(recorded, constant_action, tmp_path):
    flown = _flown(_trained(recorded, tmp_path, net="tiny_lstm", frames=1, epochs=120,
                            batch_size=16))  # fmt: skip
    assert flown["success_rate"] >= 0.3, flown
    assert flown["progress_frac"] >= constant_action["progress_frac"] + 0.15, flown
