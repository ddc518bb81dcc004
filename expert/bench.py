"""Measure the experts and the recorder: ``python -m expert.bench [--success] [--throughput]``.

``--success``: each expert flies ``--episodes`` fresh held-out worlds (``eval_seed``) at each
obstacle density and the table gives how often it reaches the goal without a collision, and
the mean progress (fraction of the corridor) of the runs that fail. Image size does not change
the dynamics, so these episodes render at ``--success-image-size`` (32) to save time.

``--throughput``: the env's own steps/s with a fixed action (straight; resets not timed), the
same in N processes at once for every worker count N > 1 (the machine's own scaling, the
ceiling for N workers), then ``expert.collect`` frames/s (wall clock of a whole collection:
start-up, resets, expert, writing) for each ``--workers`` count, on the same default worlds
at ``--image-size``;
``--repeat`` rounds, the best of each kept (other jobs on a shared machine only slow a round).
The CPU share column (CPU seconds per wall second per worker) tells whether the recorders had
their cores: well below 100%, other jobs held them.

With neither flag, both run.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from rich.console import Console
from rich.table import Table

import envs
from configflags import option, run_main
from envs.options import EnvOptions
from envs.seeds import collect_seed, eval_seed
from expert import collect
from expert.collect_config import CollectConfig
from expert.experts import EXPERT_KINDS, ExpertConfig, expert_rng, make_expert


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    success: bool = option(False, help="measure expert success rates")
    throughput: bool = option(False, help="measure env steps/s and collection frames/s")
    episodes: int = option(200, help="worlds per expert and density for --success")
    densities: tuple[float, ...] = option((0.0, 1.0), help="obstacle densities for --success")
    experts: tuple[str, ...] = option(
        ("discrete",), choices=EXPERT_KINDS, help="experts for --success"
    )
    success_image_size: int = option(32, help="image size for --success episodes")
    seed: int = option(0, help="base seed of the worlds")
    runs: int = option(32, help="runs per collection for --throughput")
    image_size: int = option(64, help="image size for --throughput")
    env_steps: int = option(2000, help="timed env steps for the env's own rate")
    workers: tuple[int, ...] = option((1, 2), help="worker counts to time for --throughput")
    repeat: int = option(
        3, help="throughput rounds (env and every worker count each); the best of each is kept"
    )

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if any(not 0.0 <= d <= 1.0 for d in self.densities):
            raise ValueError(f"--densities must lie in [0, 1], got {self.densities}")
        if self.runs < 3:
            raise ValueError(f"--runs must be >= 3 (one train, val and test run), got {self.runs}")
        if self.env_steps < 10:
            raise ValueError(f"--env-steps must be >= 10, got {self.env_steps}")
        if self.repeat < 1:
            raise ValueError(f"--repeat must be >= 1, got {self.repeat}")
        if any(w < 1 for w in self.workers):
            raise ValueError(f"--workers must all be >= 1, got {self.workers}")
        if min(self.image_size, self.success_image_size) < 32:
            raise ValueError("image sizes must be >= 32")


@dataclass(frozen=True)
class SuccessResult:
    """One expert at one density."""

    expert: str
    density: float
    episodes: int
    goals: int
    collisions: int
    timeouts: int
    failure_progress: float  # mean progress fraction of failed episodes (nan if none)
    mean_steps: float

    @property
    def success_rate(self) -> float:
        return self.goals / self.episodes


@dataclass(frozen=True)
class ThroughputResult:
    """The env's own rate and the recorder's, per worker count."""

    env_steps_per_s: float
    collect_frames_per_s: dict[int, float]
    frames: dict[int, int]
    # CPU seconds used per wall second per worker in the best round: well below 1, other
    # jobs held the cores and the rate says more about them than about the recorder
    cpu_share: dict[int, float]
    # bare env loops in that many processes at once: the machine's own scaling
    env_steps_per_s_parallel: dict[int, float]


@dataclass(frozen=True)
class BenchResult:
    """Everything measured."""

    success: list[SuccessResult]
    throughput: ThroughputResult | None


def measure_success(
    kind: str, density: float, episodes: int, seed: int, image_size: int
) -> SuccessResult:
    """Fly ``episodes`` held-out worlds with the expert alone (no mixing)."""
    config = ExpertConfig(kind=kind)
    env = gym.make(
        envs.ENV_IDS[config.action_type], image_size=image_size, obstacle_density=density
    )
    expert = make_expert(config, env)
    outcomes, failure_progress, steps = [], [], []
    try:
        for episode in range(episodes):
            world = eval_seed(seed, episode)
            observation, info = env.reset(seed=world)
            expert.reset(env)
            rng = expert_rng(world)
            count = 0
            while True:
                action = expert.act(env, rng, observation)
                observation, _, terminated, truncated, info = env.step(action)
                count += 1
                if terminated or truncated:
                    break
            outcome = info["outcome"] if info["outcome"] != "running" else "timeout"
            outcomes.append(outcome)
            steps.append(count)
            if outcome != "goal":
                failure_progress.append(info["progress_frac"])
    finally:
        env.close()
    return SuccessResult(
        kind,
        density,
        episodes,
        outcomes.count("goal"),
        outcomes.count("collision"),
        outcomes.count("timeout"),
        float(np.mean(failure_progress)) if failure_progress else float("nan"),
        float(np.mean(steps)),
    )


def measure_env_rate(image_size: int, steps: int, seed: int) -> float:
    """The env's own steps/s at default settings with a fixed action, resets not timed."""
    env = gym.make("Corridor-v0", image_size=image_size)
    straight = (env.unwrapped.n_bins - 1) // 2
    elapsed, world = 0.0, 0
    try:
        env.reset(seed=collect_seed(seed, world))
        for _ in range(steps):
            start = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(straight)
            elapsed += time.perf_counter() - start
            if terminated or truncated:
                world += 1
                env.reset(seed=collect_seed(seed, world))
    finally:
        env.close()
    return steps / elapsed


def _env_rate_worker(image_size: int, steps: int, seed: int, barrier: Any, results: Any) -> None:
    env = gym.make("Corridor-v0", image_size=image_size)
    env.close()
    barrier.wait()  # time the processes together, not one after the other
    results.put(measure_env_rate(image_size, steps, seed))


def measure_env_scaling(processes: int, image_size: int, steps: int, seed: int) -> float:
    """Total env steps/s of ``processes`` env loops running at once, one process each.

    The ceiling for a collection with that many workers on this machine: what the cores give
    to the renderer alone when they all work (shared caches, memory, clock).
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [
        context.Process(
            target=_env_rate_worker, args=(image_size, steps, seed + i, barrier, results)
        )
        for i in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=600) for _ in workers)
    for worker in workers:
        worker.join()
    return total


def measure_throughput(config: BenchConfig) -> ThroughputResult:
    """Env steps/s and one timed collection per worker count, ``repeat`` rounds interleaved.

    On a machine shared with other jobs a round can be slowed by them; the best round of each
    measurement is the one closest to what the code itself costs.
    """
    env_rate = 0.0
    env_rates: dict[int, float] = {}
    rates: dict[int, float] = {}
    frames: dict[int, int] = {}
    shares: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="expert-bench-") as scratch:
        for round_index in range(config.repeat):
            env_rate = max(
                env_rate, measure_env_rate(config.image_size, config.env_steps, config.seed)
            )
            for workers in config.workers:
                if workers > 1:
                    rate = measure_env_scaling(
                        workers, config.image_size, config.env_steps, config.seed
                    )
                    env_rates[workers] = max(env_rates.get(workers, 0.0), rate)
                cpu_before = _cpu_seconds()
                result = collect.main(
                    CollectConfig(
                        out=Path(scratch) / f"round_{round_index}_workers_{workers}",
                        runs=config.runs,
                        seed=config.seed,
                        workers=workers,
                        quiet=True,
                        env=EnvOptions(image_size=config.image_size),
                    )
                )
                share = (_cpu_seconds() - cpu_before) / (result.elapsed_s * workers)
                if result.frames_per_s > rates.get(workers, 0.0):
                    rates[workers], shares[workers] = result.frames_per_s, share
                frames[workers] = result.recorded_frames
    return ThroughputResult(env_rate, rates, frames, shares, env_rates)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the recorder processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(config: BenchConfig) -> BenchResult:
    """Run the chosen measurements and print their tables."""
    do_success = config.success or not config.throughput
    do_throughput = config.throughput or not config.success
    console = Console()
    success: list[SuccessResult] = []
    if do_success:
        table = Table(title=f"Expert success on {config.episodes} held-out worlds each")
        for column in ("expert", "obstacle density", "success", "collisions", "timeouts",
                       "mean progress of failures", "mean steps"):  # fmt: skip
            table.add_column(column, justify="right")
        for kind in config.experts:
            for density in config.densities:
                r = measure_success(
                    kind, density, config.episodes, config.seed, config.success_image_size
                )
                success.append(r)
                table.add_row(
                    kind,
                    f"{density:.2f}",
                    f"{r.success_rate:.1%}",
                    str(r.collisions),
                    str(r.timeouts),
                    "-" if np.isnan(r.failure_progress) else f"{r.failure_progress:.0%}",
                    f"{r.mean_steps:.0f}",
                )
        console.print(table)
    throughput = None
    if do_throughput:
        throughput = measure_throughput(config)
        size = f"{config.image_size}x{config.image_size}"
        load = os.getloadavg()[0]
        table = Table(
            title=f"Recording throughput at {size}, {config.runs} runs per collection, best of "
            f"{config.repeat} (load average {load:.1f} at the end)"
        )
        for column in ("what", "rate", "ratio", "target", "CPU share"):
            table.add_column(column, justify="right")
        table.add_row(
            "env steps/s (fixed action)", f"{throughput.env_steps_per_s:,.0f}", "", "", ""
        )
        env_rate = throughput.env_steps_per_s
        for workers, rate in throughput.env_steps_per_s_parallel.items():
            table.add_row(
                f"env steps/s, {workers} processes at once", f"{rate:,.0f}",
                f"{rate / env_rate:.2f}x of 1 process", "(the machine's ceiling)", "",
            )  # fmt: skip
        base = throughput.collect_frames_per_s.get(1)
        for workers, rate in throughput.collect_frames_per_s.items():
            if workers == 1:
                ratio, target = f"{rate / env_rate:.0%} of env", ">= 70%"
            elif base:
                ratio, target = f"{rate / base:.2f}x of 1 worker", f">= {0.85 * workers:.2f}x"
            else:
                ratio, target = "", ""
            share = f"{throughput.cpu_share[workers]:.0%}"
            table.add_row(
                f"collect frames/s, {workers} worker(s)", f"{rate:,.0f}", ratio, target, share
            )
        console.print(table)
    return BenchResult(success, throughput)


if __name__ == "__main__":
    run_main(main, BenchConfig, "python -m expert.bench", __doc__)
