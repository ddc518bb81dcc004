"""Test doubles and tiny worlds for the eval tests (imported by tests/eval/test_*.py).

The doubles live in an importable module, not in a test function, so that 'spawn' worker
processes can unpickle the factories that name them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs import bin_yaw_commands, yaw_command_to_bin
from eval.agents import ExpertAgent, ExpertLabeller
from eval.policy_agent import PolicyAgent

# one short straight corridor at 32x32: an episode is a few dozen steps
SMALL_ENV: dict[str, Any] = {"image_size": 32, "n_segments": 1, "segment_length": (4.0, 5.0)}


@dataclass(frozen=True)
class Label:
    """Same fields as expert.ExpertLabel."""

    action: int
    command: float


def follow_centreline(env: Any, lookahead: float = 1.5) -> float:
    """Yaw command towards a point ``lookahead`` metres ahead on the centreline."""
    centreline = env.layout.centreline
    s, _, _ = centreline.project(env.x, env.y)
    target = centreline.point_at(s + lookahead)
    bearing = math.atan2(target[1] - env.y, target[0] - env.x)
    error = (bearing - env.yaw + math.pi) % (2 * math.pi) - math.pi
    return float(np.clip(2.0 * error, -1.0, 1.0))


class CentrelineExpert:
    """A stand-in for ``expert.make_expert(...)``: pure pursuit of the centreline."""

    def __init__(self, env: Any, noise: float = 0.0):
        self.noise = noise
        self.resets = 0

    def reset(self, env: Any) -> None:
        self.resets += 1

    def label(self, env: Any) -> Label:
        unwrapped = env.unwrapped
        command = follow_centreline(unwrapped)
        return Label(yaw_command_to_bin(command, unwrapped.n_bins), command)

    def act(self, env: Any, rng: np.random.Generator) -> Any:
        command = self.label(env).command + self.noise * rng.normal()
        return env.unwrapped.yaw_command_to_action(float(np.clip(command, -1.0, 1.0)))


def make_centreline_expert(config: Any, env: Any) -> CentrelineExpert:
    """Drop-in for ``eval.agents.make_expert_for`` (monkeypatched in-process)."""
    noise = config.get("noise", 0.0) if isinstance(config, dict) else 0.0
    return CentrelineExpert(env, noise)


@dataclass
class Output:
    """Same fields as bc.policy.PolicyOutput."""

    action: int
    yaw: float
    probs: np.ndarray | None


@dataclass
class RandomPolicy:
    """A stand-in for ``bc.policy.Policy``: samples bins from fixed probabilities with
    torch's global generator, so it is only reproducible if the evaluator seeds it."""

    env_kwargs: dict[str, Any] = field(default_factory=lambda: dict(SMALL_ENV))
    n_bins: int = 3
    head: str = "classifier"
    probs: tuple[float, ...] = (0.2, 0.6, 0.2)
    config: dict[str, Any] = field(
        default_factory=lambda: {"net": "double", "frames": 1, "head": "classifier", "seed": 0}
    )
    resets: int = 0
    seen_shapes: set = field(default_factory=set)

    def reset(self) -> None:
        self.resets += 1

    def act(self, observation: np.ndarray) -> Output:
        assert observation.dtype == np.uint8
        self.seen_shapes.add(observation.shape)
        probs = torch.tensor(self.probs, dtype=torch.float64)
        action = int(torch.multinomial(probs, 1).item())
        # a bin past the last one (a broken net) keeps the last bin's yaw
        yaw = float(bin_yaw_commands(self.n_bins)[min(action, self.n_bins - 1)])
        if self.head == "regressor":
            return Output(action, yaw, None)
        return Output(action, yaw, np.asarray(self.probs))


@dataclass(frozen=True)
class RandomPolicyFactory:
    """Builds a :class:`RandomPolicy` agent inside a worker."""

    probs: tuple[float, ...] = (0.2, 0.6, 0.2)
    head: str = "classifier"

    def build(self, env: Any) -> PolicyAgent:
        return PolicyAgent(RandomPolicy(probs=self.probs, head=self.head))


@dataclass(frozen=True)
class CentrelineExpertFactory:
    """Builds the centreline expert as the acting agent inside a worker."""

    noise: float = 0.0

    def build(self, env: Any) -> Any:
        return ExpertAgent(CentrelineExpert(env, self.noise))


@dataclass(frozen=True)
class CentrelineLabellerFactory:
    """Builds the centreline expert as labeller inside a worker."""

    def build(self, env: Any) -> ExpertLabeller:
        return ExpertLabeller(CentrelineExpert(env))


def fake_run(
    runs_dir: Path, name: str, config: dict[str, Any] | None = None, metrics: list | None = None
) -> Path:
    """A run directory with config.json, metrics.jsonl and empty checkpoint files."""
    run = runs_dir / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(config or {"net": "double", "frames": 1}))
    for which in ("best_val_loss", "last"):
        (run / "checkpoints" / f"{which}.pt").write_bytes(b"not a real checkpoint")
    if metrics is not None:
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in metrics))
    return run


def train_tiny_run(root: Path, **train_overrides: Any) -> Path:
    """A real run (bc.train on a synthetic 32x32 dataset, one epoch) whose env is SMALL_ENV.

    The synthetic dataset's env kwargs are narrowed to one short segment, so the checkpoint
    rebuilds a world whose episodes last a few dozen steps.
    """
    from bc.train import main as train
    from dataset.synthetic import make_synthetic_dataset
    from eval.during_training import closed_loop_callback
    from tests.bc.helpers import tiny_config

    data = make_synthetic_dataset(root / "data", runs=4, frames=[22, 19, 18, 21], size=32, seed=3)
    manifest_path = data / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["env_kwargs"].update(n_segments=1, segment_length=[4.0, 5.0])
    manifest_path.write_text(json.dumps(manifest))
    config = tiny_config(data, root / "runs", **train_overrides)
    return Path(train(config, closed_loop_callback(config))["run_dir"])


def shared_tiny_run(tmp_path_factory: Any) -> Path:
    """One trained tiny run per test session (training takes seconds; do it once)."""
    root = tmp_path_factory.getbasetemp() / "eval_tiny_run"
    done = root / "run_dir.txt"
    if not done.exists():
        run = train_tiny_run(root)
        done.write_text(str(run))
    return Path(done.read_text())


def spy_on_flights(monkeypatch: Any) -> list[Any]:
    """The WorkerSetups that ``eval.fly`` hands to ``run_episodes`` from now on, one per call.

    The episodes still fly: the spy only records what each call was given.
    """
    import eval.fly as fly

    setups = []
    real = fly.run_episodes

    def spy(setup, tasks, workers, on_result=None):
        setups.append(setup)
        return real(setup, tasks, workers, on_result)

    monkeypatch.setattr(fly, "run_episodes", spy)
    return setups


def policies_claim_bins(monkeypatch: Any, n_bins: int) -> None:
    """Every policy that ``eval.fly`` loads from now on says it predicts ``n_bins`` bins."""
    import eval.fly as fly
    from bc.policy import load_policy

    def lying_policy(path):
        policy = load_policy(path)
        policy.n_bins = n_bins
        return policy

    monkeypatch.setattr(fly, "load_policy_on_cpu", lying_policy)


@dataclass(frozen=True)
class DyingAgentFactory:
    """Kills its worker process while building, as a segfaulting extension would."""

    def build(self, env: Any) -> Any:
        import os

        os._exit(3)
