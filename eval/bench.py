"""Closed-loop evaluation throughput: episodes per minute with 1 and 2 workers.

``python -m eval.bench`` flies the same held-out episodes once per worker count and prints
episodes/minute and env steps/second, wall clock from the first episode's start to the last
one's end, worker start-up included (that is what a user waits for). One worker runs in this
process; more run in a 'spawn' pool, each with its own env and one torch thread. It checks
on the way that every worker count produced the same episodes.

By default the expert flies (no run needed; the env dominates the cost); ``--run`` or
``--checkpoint`` (a ``.pt``, or a ``.onnx`` / ``.torchscript`` from ``python -m bc.export``)
benchmarks a trained policy instead, whose per-step latency then adds in. The table's
"ms/decision" is the agent's mean time per step inside the episodes (what ``eval.rollout``
reports as latency); ``python -m bc.bench --runtimes`` gives the net's own time beside it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bc.checkpoint_names import DEFAULT_CHECKPOINT
from configflags import CommandFailed, option, run_main
from envs.spaces import MIN_IMAGE_SIZE
from eval.episodes import TIMING_FIELDS, EpisodeRecord
from eval.errors import EvalError
from eval.fly import HeldOutWorlds, fly, load_pilot
from eval.run_files import CHECKPOINTS, DEFAULT_RUNS_DIR, resolve_checkpoint


@dataclass(frozen=True)
class BenchConfig:
    """What to fly and with how many workers."""

    workers: tuple[int, ...] = option((1, 2), "worker counts to measure")
    episodes: int = option(8, "episodes per measurement (the same worlds for every count)")
    seed: int = option(0, "base seed of the held-out worlds")
    run: Path | None = option(None, "benchmark this run's policy instead of the expert")
    checkpoint: Path | None = option(None, "benchmark this checkpoint instead of the expert")
    which: str = option(DEFAULT_CHECKPOINT, "checkpoint of --run", choices=CHECKPOINTS)
    runs_dir: Path = option(DEFAULT_RUNS_DIR, "where training runs live")
    n_segments: int | None = option(None, "override the corridor's number of segments")
    image_size: int | None = option(None, "override the image size (expert only)")

    def __post_init__(self) -> None:
        if not self.workers or any(w < 1 for w in self.workers):
            raise EvalError(f"--workers must be integers >= 1, got {self.workers}")
        if self.episodes < 1:
            raise EvalError(f"--episodes must be >= 1, got {self.episodes}")
        if self.n_segments is not None and self.n_segments < 1:
            raise EvalError(f"--n-segments must be >= 1, got {self.n_segments}")
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise EvalError(f"--image-size must be >= {MIN_IMAGE_SIZE}, got {self.image_size}")
        if self.image_size is not None and (self.run or self.checkpoint):
            raise EvalError("--image-size must match a policy's checkpoint; use it with the expert")

    @property
    def uses_policy(self) -> bool:
        """Whether a trained policy flies instead of the expert."""
        return self.run is not None or self.checkpoint is not None


@dataclass(frozen=True)
class BenchRow:
    """One worker count's throughput."""

    workers: int
    episodes: int
    steps: int
    seconds: float
    decision_ms: float  # the agent's mean time per step, over every step of every episode

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.episodes / self.seconds

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds


def _without_timing(records: Sequence[EpisodeRecord]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.to_dict().items() if k not in TIMING_FIELDS} for r in records]


def main(config: BenchConfig) -> list[BenchRow]:
    """Measure every worker count and print a table; returns the rows."""
    overrides = {
        k: v
        for k, v in (("n_segments", config.n_segments), ("image_size", config.image_size))
        if v is not None
    }
    checkpoint = None
    if config.uses_policy:
        checkpoint, _ = resolve_checkpoint(
            config.run, config.checkpoint, config.which, config.runs_dir
        )
    # a policy that does not fit the env is refused here, as eval.rollout refuses it
    pilot = load_pilot(checkpoint, expert=not config.uses_policy, env_overrides=overrides)
    what = f"policy {checkpoint}" if config.uses_policy else "expert"
    worlds = HeldOutWorlds(config.seed, config.episodes)

    rows = []
    reference = None
    for workers in config.workers:
        flight = fly(pilot, worlds, workers=workers)
        records, seconds = flight.records, flight.seconds
        if reference is None:
            reference = _without_timing(records)
        elif _without_timing(records) != reference:
            raise CommandFailed(
                f"{workers} workers flew different episodes than {config.workers[0]}"
            )
        steps = sum(r.steps for r in records)
        decision_ms = sum(r.latency_ms * r.steps for r in records) / max(steps, 1)
        rows.append(BenchRow(workers, len(records), steps, seconds, decision_ms))

    table = Table(
        title=f"Closed-loop evaluation throughput ({what}, {config.episodes} episodes)",
        caption=f"{os.cpu_count()} CPU cores; wall clock including worker start-up",
    )
    columns = ("workers", "episodes/min", "env steps/s", "ms/decision", "seconds", "speed-up")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row.workers),
            f"{row.episodes_per_minute:.1f}",
            f"{row.steps_per_second:.0f}",
            f"{row.decision_ms:.2f}",
            f"{row.seconds:.1f}",
            f"{rows[0].seconds / row.seconds:.2f}x",
        )
    Console().print(table)
    return rows


if __name__ == "__main__":
    run_main(main, BenchConfig, "python -m eval.bench", __doc__, interrupted="interrupted")
