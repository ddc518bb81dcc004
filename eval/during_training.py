"""Closed-loop evaluation hook for the trainer (``bc.train --eval-every N``).

:func:`closed_loop_callback` makes the trainer's epoch callback: it calls
:func:`evaluate_checkpoint` on the freshly written checkpoint every N epochs; ``bc.train``
logs the returned metrics to TensorBoard and ``metrics.jsonl`` (under ``eval``) and keeps
``checkpoints/best_success.pt`` by ``success_rate``. bc sits below eval and never imports
it: ``python -m bc.train`` hands this factory in from its ``__main__`` block, and Python
callers pass ``epoch_callback=closed_loop_callback(config)`` to ``bc.train.main``.

Selection worlds and report worlds never coincide: episode ``i`` here flies
``eval_seed(seed, TRAINING_WORLDS_START + i)``, while ``python -m eval.rollout`` flies
``eval_seed(seed, i)`` for ``i < MAX_EPISODES``. A checkpoint picked for its success on these
worlds is reported on others, whatever seed the trainer passes, so the reported success of
``best_success.pt`` is not inflated by the selection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bc.config import TrainConfig
from bc.errors import TrainError
from bc.train import EpochCallback
from eval.errors import EvalError
from eval.fly import MAX_EPISODES, HeldOutWorlds, fly, load_pilot

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


def closed_loop_callback(config: TrainConfig) -> EpochCallback | None:
    """The epoch callback of ``config``'s closed-loop evaluation (None with ``eval_every`` 0).

    Every ``eval_every``-th epoch it flies ``eval_episodes`` episodes with ``eval_workers``
    workers from the run's seed; an evaluation error stops the run as a one-line TrainError.
    """
    if config.eval_every == 0:
        return None

    def callback(epoch: int, checkpoint_path: Path) -> dict[str, float]:
        if epoch % config.eval_every:
            return {}
        try:
            return evaluate_checkpoint(
                checkpoint_path, config.eval_episodes, config.seed, config.eval_workers
            )
        except EvalError as error:
            raise TrainError(f"closed-loop evaluation after epoch {epoch}: {error}") from None

    return callback


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
    pilot = load_pilot(checkpoint, env_overrides=env_overrides)
    worlds = HeldOutWorlds(seed, episodes, first_world=TRAINING_WORLDS_START)
    summary = fly(pilot, worlds, workers=workers).summary
    metrics = {key: float(summary[key]) for key in LOGGED_KEYS if summary[key] is not None}
    metrics["episodes"] = float(episodes)
    return metrics
