"""Env throughput beside the raw renderer ceiling, measured in the same run.

``python -m envs.bench`` steps the env with a fixed action sequence and times each step; before
each step it also times a bare ``getCameraImage`` at the same pose, size and light in the same
scene (the renderer ceiling). It prints both rates and their ratio; resets are timed apart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pybullet as pb
from rich.console import Console
from rich.table import Table

from configflags import option, run_main
from envs.controls import CONTROLS
from envs.corridor_env import CorridorEnv
from envs.spaces import MIN_IMAGE_SIZE, OBS_MODES


@dataclass(frozen=True)
class BenchConfig:
    """What to measure."""

    image_sizes: tuple[int, ...] = option(
        (64, 128), help=f"square image sizes to measure (>= {MIN_IMAGE_SIZE})"
    )
    obs_mode: str = option("rgb", choices=OBS_MODES, help="camera channels: rgb, depth or rgbd")
    controls: str = option(
        "yaw", choices=CONTROLS, help="yaw, or yaw_speed: the two-control world (docs/env.md)"
    )
    steps: int = option(1000, help="env steps (and renders) to time")
    seed: int = option(0, help="world seed of the first corridor")

    def __post_init__(self) -> None:
        if self.steps < 10:
            raise ValueError(f"--steps must be >= 10, got {self.steps}")
        if any(size < MIN_IMAGE_SIZE for size in self.image_sizes):
            raise ValueError(
                f"--image-sizes must all be >= {MIN_IMAGE_SIZE}, got {self.image_sizes}"
            )
        if self.obs_mode not in OBS_MODES:
            raise ValueError(f"--obs-mode must be one of {OBS_MODES}, got {self.obs_mode!r}")


@dataclass(frozen=True)
class BenchResult:
    """Rates for one image size."""

    image_size: int
    env_steps_per_s: float
    render_per_s: float
    resets_per_s: float

    @property
    def ratio(self) -> float:
        return self.env_steps_per_s / self.render_per_s


def _steer(step: int, two_controls: bool) -> Any:
    # a slow weave keeps the agent flying for a while in most corridors
    yaw = (0, 1, 1, 2, 2, 1, 1, 0)[(step // 3) % 8]
    # with two controls, the speed bin cycles slow, medium, fast every 10 steps
    return np.array([yaw, (step // 10) % 3]) if two_controls else yaw


def _raw_render(env: CorridorEnv) -> float:
    """Seconds for one bare getCameraImage at the env's current pose, size and light."""
    eye = [env.x, env.y, env.camera_height]
    target = [env.x + math.cos(env.yaw), env.y + math.sin(env.yaw), env.camera_height]
    start = time.perf_counter()
    view = pb.computeViewMatrix(eye, target, [0, 0, 1], physicsClientId=env._client)
    pb.getCameraImage(
        env.width, env.height, view, env._projection,
        renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK, shadow=0,
        physicsClientId=env._client, **env._light,
    )  # fmt: skip
    return time.perf_counter() - start


def measure(image_size: int, config: BenchConfig) -> BenchResult:
    """Time env steps and, interleaved, raw renders at the very same poses and scenes."""
    env = CorridorEnv(image_size=image_size, obs_mode=config.obs_mode, controls=config.controls)
    two = env.controls.two
    try:
        seed = config.seed
        env.reset(seed=seed)
        step_time = render_time = reset_time = 0.0
        resets = 0
        for i in range(config.steps):
            render_time += _raw_render(env)
            start = time.perf_counter()
            _, _, terminated, _, _ = env.step(_steer(i, two))
            step_time += time.perf_counter() - start
            if terminated:
                seed += 1
                start = time.perf_counter()
                env.reset(seed=seed)
                reset_time += time.perf_counter() - start
                resets += 1
        if resets == 0:
            start = time.perf_counter()
            env.reset(seed=seed + 1)
            reset_time, resets = time.perf_counter() - start, 1
    finally:
        env.close()
    return BenchResult(
        image_size, config.steps / step_time, config.steps / render_time, resets / reset_time
    )


def main(config: BenchConfig) -> list[BenchResult]:
    """Measure every configured size and print a table."""
    results = [measure(size, config) for size in config.image_sizes]
    world = "" if config.controls == "yaw" else f", {config.controls}"
    table = Table(title=f"CorridorEnv throughput ({config.obs_mode}{world}, one process, one core)")
    for column in ("image", "env steps/s", "render ceiling/s", "ratio", "resets/s"):
        table.add_column(column, justify="right")
    for r in results:
        table.add_row(
            f"{r.image_size}x{r.image_size}",
            f"{r.env_steps_per_s:,.0f}",
            f"{r.render_per_s:,.0f}",
            f"{r.ratio:.0%}",
            f"{r.resets_per_s:,.1f}",
        )
    Console().print(table)
    return results


if __name__ == "__main__":
    run_main(main, BenchConfig, "python -m envs.bench", __doc__)
