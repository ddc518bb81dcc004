"""Closed-loop steps per second of the suite beside the env's own, on the same cores.

``python -m eval.suite_bench`` starts ``--workers`` processes (one per usable core by
default). Each flies its share of the tracks' episodes closed loop as ``eval.suite`` flies
them: ``--batch`` episodes side by side, the policy deciding for all of them in one forward
pass, a slot that ends taking the next episode, from track to track (policy included). It
then steps the same episodes again with the actions they took, without the policy, twice:

- one at a time, in one env per track built beforehand: the env-only steps/s of exactly
  those worlds, steps and resets (the ceiling);
- side by side as the closed loop flew them (same worker, same slots, envs built as a slot
  moves to the next track), each episode's recorded action standing in for the policy's
  decision: the cost of the batch without the policy. Stepping many PyBullet clients in turn
  is slower than stepping one: each comes back to a cache the others have used.

All three are timed inside the workers, in the same run, so start-up is left out; the ratio
(closed loop over env-only) is what the policy's decisions and the batch cost together. Every
``--batches`` value is measured; batch 1 is one episode at a time, as ``eval.rollout`` flies
by default.

Figures from a machine shared with other jobs drop and swing: run it on an idle one.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console
from rich.table import Table

from configflags import option, run_main
from eval.agents import Decision
from eval.episode_group import EpisodeGroupWorker
from eval.episodes import EnvSpec, EpisodeTask, WorkerSetup, make_tasks
from eval.errors import EvalError
from eval.fly import load_pilot, worker_setup
from eval.run_files import newest_run, resolve_checkpoint
from eval.tracks import tracks_from_flag
from eval.worker_pool import MP_CONTEXT, limit_torch_threads, usable_cores, work_units

# (env spec index, world seed) -> the env actions of the episode flown there, in this worker
_flown: dict[tuple[int, int], list[Any]] = {}


class _Recorder(gym.Wrapper):
    """Keeps the actions of each episode (by its reset seed) for the replays.

    ``key``: which env spec; ``record`` False: an env of a replay, which only reads them.
    """

    def __init__(self, env: gym.Env, key: int, record: bool):
        super().__init__(env)
        self.key = key
        self.record = record
        self.actions: list[Any] = []

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        if self.record:
            self.actions = _flown.setdefault((self.key, int(seed or 0)), [])
            self.actions.clear()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if self.record:
            self.actions.append(action)
        return self.env.step(action)


@dataclass(frozen=True)
class RecordingEnvSpec(EnvSpec):
    """An EnvSpec whose envs keep the actions they are stepped with (``key``: which env).

    With ``record`` False its envs are a replay's: they keep nothing.
    """

    key: int = 0
    record: bool = True

    def make(self) -> gym.Env:
        return _Recorder(super().make(), self.key, self.record)


class _ReplayAgent:
    """Decides each step with the action its episode took in the closed loop (no policy)."""

    name = "replay"

    def __init__(self) -> None:
        self._actions: Iterator[Any] = iter(())

    def reset(self, env: gym.Env, seed: int) -> None:
        self._actions = iter(_flown[(env.key, seed)])

    def act(self, env: gym.Env, obs: Any) -> Decision:
        # bin 0 only satisfies the episode's tally: nothing is compared with a label
        return Decision(next(self._actions), 0, 0.0)


@dataclass(frozen=True)
class _ReplayAgentFactory:
    def build(self, env: gym.Env) -> _ReplayAgent:
        return _ReplayAgent()


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


def _closed_loop(setup: WorkerSetup, tasks: list[EpisodeTask]) -> tuple[int, float]:
    worker = EpisodeGroupWorker(setup)
    # the agent's first calls allocate: one episode before the clock starts
    worker.run(tasks[:1])
    started = time.perf_counter()
    steps = sum(record.steps for record in worker.run(tasks))
    seconds = time.perf_counter() - started
    worker.close()
    return steps, seconds


def _side_by_side(setup: WorkerSetup, tasks: list[EpisodeTask]) -> tuple[int, float]:
    """The closed loop's episodes flown side by side again, each with the actions it took."""
    replays = [replace(task, env=replace(task.env, record=False)) for task in tasks]
    agent = _ReplayAgentFactory()
    return _closed_loop(replace(setup, agent=agent, env=replace(setup.env, record=False)), replays)


def _measure(job: tuple[WorkerSetup, list[EnvSpec], list[EpisodeTask]]) -> dict[str, float]:
    setup, specs, tasks = job
    limit_torch_threads(setup.torch_threads)
    _flown.clear()
    loop_count, loop_seconds = _closed_loop(setup, tasks)
    env_count, env_seconds = _replay(specs)
    side_count, side_seconds = _side_by_side(setup, tasks)
    return {"env_steps": env_count, "env_seconds": env_seconds,
            "side_steps": side_count, "side_seconds": side_seconds,
            "loop_steps": loop_count, "loop_seconds": loop_seconds}  # fmt: skip


@dataclass(frozen=True)
class SuiteBenchRow:
    """One batch size: steps/s over all workers, and their ratios.

    The env alone, one episode at a time (``env``) and side by side as the closed loop flew
    them (``side``), and the closed loop (``loop``).
    """

    batch: int
    workers: int
    env_steps_per_s: float
    side_steps_per_s: float
    loop_steps_per_s: float
    env_steps: int = 0
    side_steps: int = 0
    loop_steps: int = 0

    @property
    def ratio(self) -> float:
        """Closed loop over env-only: what the policy and the batch cost together."""
        return self.loop_steps_per_s / self.env_steps_per_s

    @property
    def side_ratio(self) -> float:
        """Side by side over one at a time, without the policy: what the batch alone costs."""
        return self.side_steps_per_s / self.env_steps_per_s


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
        rate = {
            part: sum(r[f"{part}_steps"] / r[f"{part}_seconds"] for r in results)
            for part in ("env", "side", "loop")
        }
        steps = {part: sum(r[f"{part}_steps"] for r in results) for part in ("env", "side", "loop")}
        rows.append(SuiteBenchRow(batch, len(jobs), rate["env"], rate["side"], rate["loop"],
                                  steps["env"], steps["side"], steps["loop"]))  # fmt: skip
    table = Table(title=f"suite throughput, {checkpoint}, {usable_cores()} usable cores")
    columns = ("batch", "workers", "env-only steps/s", "side by side, no policy",
               "closed-loop steps/s", "ratio")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row.batch), str(row.workers), f"{row.env_steps_per_s:,.0f}",
                      f"{row.side_steps_per_s:,.0f} ({row.side_ratio:.2f})",
                      f"{row.loop_steps_per_s:,.0f}", f"{row.ratio:.2f}")  # fmt: skip
    Console().print(table)
    return rows


if __name__ == "__main__":
    run_main(main, SuiteBenchConfig, "python -m eval.suite_bench", __doc__)
