"""The run planner: which attempts the dataset keeps, in which split, with how many frames.

Pure: it reads the results of the attempts so far and nothing else, so a dataset does not
depend on the number of workers or on the order runs finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dataset import RUNS_DIR, run_name
from expert.collect_config import CollectError

# give up when more than half of at least this many attempts were dropped
DROP_GUARD_ATTEMPTS = 20


@dataclass(frozen=True)
class RunResult:
    """One attempt, as the planner sees it."""

    run_index: int
    seed: int
    kept: bool
    outcome: str
    frames: int
    reason: str = ""
    progress_frac: float = 0.0

    def manifest_entry(self, split: str | None, frames: int | None = None) -> dict[str, Any]:
        """The run's entry in a manifest's ``runs``; ``frames`` < ``self.frames`` for a cut run."""
        frames = self.frames if frames is None else frames
        return {
            "name": run_name(self.run_index),
            "file": f"{RUNS_DIR}/{run_name(self.run_index)}.h5",
            "seed": self.seed,
            "split": split,
            "frames": frames,
            "outcome": self.outcome if frames == self.frames else "timeout",
            "run_index": self.run_index,
            "episode_steps": self.frames,
            "episode_outcome": self.outcome,
            "progress_frac": round(self.progress_frac, 6),
        }


@dataclass
class Plan:
    """The final dataset as far as the resolved attempts decide it."""

    entries: list[tuple[RunResult, str, int]]  # (result, split, frames kept)
    next_index: int  # first attempt not resolved yet
    done: bool
    train_frames: int
    attempts: int


def make_plan(
    results: dict[int, RunResult],
    target_runs: int | None,
    val_runs: int,
    test_runs: int,
    max_frames: int | None,
) -> Plan:
    """Walk the attempts in index order while they are resolved and assign splits.

    Depends on the set of results alone, not on the order they arrived in, which is what makes
    a dataset independent of the number of workers.
    """
    entries: list[tuple[RunResult, str, int]] = []
    train_frames = dropped = 0
    index = 0
    while index in results:
        result = results[index]
        index += 1
        if not result.kept:
            dropped += 1
            if index >= DROP_GUARD_ATTEMPTS and dropped * 2 > index:
                raise CollectError(
                    f"{dropped} of the first {index} runs were dropped (last: "
                    f"{result.reason}); widen --min-steps/--max-steps, use --keep all or "
                    "lower the expert noise"
                )
            continue
        if len(entries) < val_runs:
            split = "val"
        elif len(entries) < val_runs + test_runs:
            split = "test"
        else:
            split = "train"
        frames = result.frames
        if split == "train" and max_frames is not None:
            frames = min(frames, max_frames - train_frames)
            train_frames += frames
        elif split == "train":
            train_frames += frames
        entries.append((result, split, frames))
        if (target_runs is not None and len(entries) >= target_runs) or (
            max_frames is not None and train_frames >= max_frames
        ):
            return Plan(entries, index, True, train_frames, index)
    return Plan(entries, index, False, train_frames, index)
