"""Closed-loop evaluation hook for the trainer (``bc.train --eval-every N``).

``bc.train`` calls :func:`evaluate_checkpoint` on a freshly written checkpoint every N epochs,
logs the returned metrics to TensorBoard and ``metrics.jsonl`` (under ``eval``), and keeps
``checkpoints/best_success.pt`` by ``success_rate``.

Selection worlds and report worlds never coincide: episode ``i`` here flies
``eval_seed(seed, TRAINING_WORLDS_START + i)``, while ``python -m eval.rollout`` flies
``eval_seed(seed, i)`` for ``i < MAX_EPISODES``. A checkpoint picked for its success on these
worlds is reported on others, whatever seed the trainer passes, so the reported success of
``best_success.pt`` is not inflated by the selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eval.episodes import (
    ExpertLabellerFactory,
    PolicyAgentFactory,
    WorkerSpec,
    env_spec_from_kwargs,
    make_tasks,
    run_episodes,
)
from eval.rollout import MAX_EPISODES, check_compatible, labeller_config, load_policy_checked
from eval.stats import summarize

TRAINING_WORLDS_START = MAX_EPISODES
# what the trainer logs: keys of the returned dict
LOGGED_KEYS = (
    "success_rate",
    "success_ci_low",
    "success_ci_high",
    "progress_frac",
    "progress_m",
    "collision_rate",
    "timeout_rate",
    "mean_steps",
    "agreement",
    "expert_nll",
    "yaw_mse",
    "latency_ms",
)


def evaluate_checkpoint(
    checkpoint_path: str | Path,
    episodes: int,
    seed: int = 0,
    workers: int = 1,
    env_overrides: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Fly ``episodes`` held-out episodes with the checkpoint's policy; return the metrics.

    The env is rebuilt from the checkpoint's env kwargs (plus ``env_overrides``; one that
    changes the net's input or output is refused), the policy from the checkpoint file
    alone, in ``workers`` processes (1 = in this process, with torch limited to one thread
    and its random state restored afterwards, so a training run is not perturbed). Returns
    floats for the :data:`LOGGED_KEYS` the policy has (``expert_nll`` needs class
    probabilities, so a regressor has none) and ``episodes``.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    import torch

    # building the net draws its initial weights from torch's generator before the checkpoint
    # overwrites them, and episodes re-seed it: the trainer's stream must not notice either
    with torch.random.fork_rng(devices=[]):
        return _evaluate(Path(checkpoint_path), episodes, seed, workers, env_overrides or {})


def _evaluate(
    checkpoint: Path, episodes: int, seed: int, workers: int, env_overrides: dict[str, Any]
) -> dict[str, float]:
    policy = load_policy_checked(checkpoint)
    trained = dict(policy.env_kwargs)
    kwargs = {**trained, **env_overrides}
    check_compatible(trained, kwargs, checkpoint, policy)
    spec = WorkerSpec(
        env=env_spec_from_kwargs(kwargs),
        agent=PolicyAgentFactory(str(checkpoint), preloaded=policy),
        labeller=ExpertLabellerFactory(labeller_config(policy)),
    )
    tasks = make_tasks(seed, episodes, first_world=TRAINING_WORLDS_START)
    records = run_episodes(spec, tasks, workers)
    summary = summarize([record.to_dict() for record in records])
    metrics = {key: float(summary[key]) for key in LOGGED_KEYS if summary[key] is not None}
    metrics["episodes"] = float(episodes)
    return metrics
