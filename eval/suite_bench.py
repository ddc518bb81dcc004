"""Closed-loop steps per second of the suite beside the env's own, on the same cores.

``python -m eval.suite_bench`` starts ``--workers`` processes (one per usable core by
default). Each flies its share of the tracks' episodes closed loop as ``eval.suite`` flies
them: ``--batch`` episodes side by side, the policy deciding for all of them in one forward
pass, a slot that ends taking the next episode, from track to track (policy included). It
then replays the same episodes in the same envs with the actions they took, without the
policy: the env-only steps/s of exactly those worlds, steps and resets (the ceiling). Both
are timed inside the workers, in the same run, so start-up is left out of both and their
ratio is what the policy's decisions cost. Every ``--batches`` value is measured; batch 1 is
one episode at a time, as ``eval.rollout`` flies by default.

Figures from a machine shared with other jobs drop and swing: run it on an idle one.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console
from rich.table import Table

from configflags import option, run_main
from eval.episode_group import EpisodeGroupWorker
from eval.episodes import EnvSpec, EpisodeTask, make_tasks
from eval.errors import EvalError
from eval.fly import load_pilot, worker_setup
from eval.run_files import newest_run, resolve_checkpoint
from eval.tracks import tracks_from_flag
from eval.worker_pool import MP_CONTEXT, limit_torch_threads, usable_cores, work_units

# (env spec index, world seed) -> the env actions of the episode flown there, in this worker
_flown: dict[tuple[int, int], list[Any]] = {}


class _Recorder(gym.Wrapper):
    """Keeps the actions of each episode (by its reset seed) for the env-only replay."""

    def __init__(self, env: gym.Env, key: int):
        super().__init__(env)
        self.key = key
        self.actions: list[Any] = []

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        self.actions = _flown.setdefault((self.key, int(seed or 0)), [])
        self.actions.clear()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        self.actions.append(action)
        return self.env.step(action)


@dataclass(frozen=True)
class RecordingEnvSpec(EnvSpec):
    """An EnvSpec whose envs keep the actions they are stepped with (``key``: which env)."""

    key: int = 0

    def make(self) -> gym.Env:
        return _Recorder(super().make(), self.key)


@dataclass(frozen=True)
class SuiteBenchConfig:
    """What to fly and how."""

    checkpoint: Path | None = option(
        None, "a .pt, exported file or run folder (default: the newest run's last checkpoint)"
    )
    tracks: str = option("", "comma-separated tracks (default: all, as the suite flies them)")
    episodes: int = option(25, "closed-loop episodes per track, per batch size")
    workers: int = option(0, "worker processes (0: one per usable core)")
    batches: tuple[int, ...] = option((1, 16), "batch sizes to measure")

    def __post_init__(self) -> None:
        if self.episodes < 1 or self.workers < 0:
            raise EvalError("needs --episodes >= 1 and --workers >= 0")
        if any(batch < 1 for batch in self.batches):
            raise EvalError(f"--batches must all be >= 1, got {self.batches}")
        try:
            tracks_from_flag(self.tracks)
        except ValueError as error:
            raise EvalError(f"--tracks: {error}") from None


def _replay(specs: list[EnvSpec]) -> tuple[int, float]:
    """Step every episode flown in this worker again with its actions, without the policy."""
    envs = {spec.key: EnvSpec(spec.env_id, spec.kwargs).make() for spec in specs}
    steps, seconds = 0, 0.0
    for (key, seed), actions in sorted(_flown.items()):
        env = envs[key]
        started = time.perf_counter()
        env.reset(seed=seed)
        for action in actions:
            env.step(action)
        seconds += time.perf_counter() - started
        steps += len(actions)
    for env in envs.values():
        env.close()
    return steps, seconds


def _closed_loop(setup: Any, tasks: list[EpisodeTask]) -> tuple[int, float]:
    worker = EpisodeGroupWorker(setup)
    # the policy's first calls allocate: one episode before the clock starts
    worker.run(tasks[:1])
    started = time.perf_counter()
    steps = sum(record.steps for record in worker.run(tasks))
    seconds = time.perf_counter() - started
    worker.close()
    return steps, seconds


def _measure(job: tuple[Any, list[EnvSpec], list[EpisodeTask]]) -> dict[str, float]:
    setup, specs, tasks = job
    limit_torch_threads(setup.torch_threads)
    _flown.clear()
    loop_count, loop_seconds = _closed_loop(setup, tasks)
    env_count, env_seconds = _replay(specs)
    return {"env_steps": env_count, "env_seconds": env_seconds,
            "loop_steps": loop_count, "loop_seconds": loop_seconds}  # fmt: skip


@dataclass(frozen=True)
class SuiteBenchRow:
    """One batch size: env-only and closed-loop steps/s over all workers, and their ratio."""

    batch: int
    workers: int
    env_steps_per_s: float
    loop_steps_per_s: float
    env_steps: int = 0
    loop_steps: int = 0

    @property
    def ratio(self) -> float:
        return self.loop_steps_per_s / self.env_steps_per_s


def main(config: SuiteBenchConfig) -> list[SuiteBenchRow]:
    """Measure every batch size; print and return the rows."""
    checkpoint = config.checkpoint
    if checkpoint is None or checkpoint.is_dir():
        checkpoint = resolve_checkpoint(checkpoint or newest_run(), None, "last")[0]
    tracks = tracks_from_flag(config.tracks)
    pilots = [load_pilot(checkpoint, env_overrides=track.overrides) for track in tracks]
    specs = [
        RecordingEnvSpec(spec.env_id, spec.kwargs, key=key)
        for key, spec in enumerate(worker_setup(pilot).env for pilot in pilots)
    ]
    tasks = [
        replace(task, env=spec)
        for track, spec in zip(tracks, specs, strict=True)
        for task in make_tasks(track.seed, config.episodes)
    ]
    workers = config.workers or usable_cores()
    rows = []
    context = multiprocessing.get_context(MP_CONTEXT)
    for batch in config.batches:
        setup = replace(worker_setup(pilots[0], agreement=False), batch=batch, env=specs[0])
        # the shares the suite's pool would hand its workers (one episode each at batch 1)
        shares = work_units(replace(setup, batch=max(batch, 2)), tasks, workers)
        jobs = [(setup, specs, [tasks[p] for p in share]) for share in shares]
        with ProcessPoolExecutor(len(jobs), mp_context=context) as pool:
            results = list(pool.map(_measure, jobs))
        env_rate = sum(r["env_steps"] / r["env_seconds"] for r in results)
        loop_rate = sum(r["loop_steps"] / r["loop_seconds"] for r in results)
        rows.append(SuiteBenchRow(batch, len(jobs), env_rate, loop_rate,
                                  sum(r["env_steps"] for r in results),
                                  sum(r["loop_steps"] for r in results)))  # fmt: skip
    table = Table(title=f"suite throughput, {checkpoint}, {usable_cores()} usable cores")
    for column in ("batch", "workers", "env-only steps/s", "closed-loop steps/s", "ratio"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row.batch), str(row.workers), f"{row.env_steps_per_s:,.0f}",
                      f"{row.loop_steps_per_s:,.0f}", f"{row.ratio:.2f}")  # fmt: skip
    Console().print(table)
    return rows


if __name__ == "__main__":
    run_main(main, SuiteBenchConfig, "python -m eval.suite_bench", __doc__)
