"""Drive the corridor env with the scripted discrete expert and write a video.

``python -m expert.demo`` flies one corridor and writes ``videos/demo.mp4`` (or ``.gif``): the
agent's camera view at the render size, one frame per control step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import imageio.v2 as imageio

import envs  # noqa: F401  (registers the ids)
from configflags import option, run_main
from expert.experts import ExpertConfig, expert_rng, make_expert


@dataclass(frozen=True)
class DemoConfig:
    """What to fly and where to write it."""

    out: Path = option(Path("videos/demo.mp4"), help="video file, .mp4 or .gif")
    seed: int = option(0, help="world seed")
    obstacle_density: float = option(0.0, help="obstacles per slot, 0..1")
    max_steps: int = option(600, help="episode step limit")
    render_size: int = option(256, help="video frame size")

    def __post_init__(self) -> None:
        if self.out.suffix not in (".mp4", ".gif"):
            raise ValueError(f"--out must end in .mp4 or .gif, got {self.out}")
        if self.max_steps < 1:
            raise ValueError(f"--max-steps must be >= 1, got {self.max_steps}")


def main(config: DemoConfig) -> dict:
    """Fly one episode and write the video; returns the final info."""
    env = gym.make(
        "Corridor-v0",
        render_mode="rgb_array",
        render_size=config.render_size,
        obstacle_density=config.obstacle_density,
        max_episode_steps=config.max_steps,
    )
    _, info = env.reset(seed=config.seed)
    pilot = make_expert(ExpertConfig(kind="discrete"), env)
    pilot.reset(env)
    rng = expert_rng(config.seed)
    frames = [env.render()]
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(pilot.act(env, rng))
        frames.append(env.render())
        done = terminated or truncated
    env.close()
    config.out.parent.mkdir(parents=True, exist_ok=True)
    fps = env.metadata["render_fps"]
    if config.out.suffix == ".gif":
        imageio.mimsave(config.out, frames, duration=1000 / fps, loop=0)
    else:
        imageio.mimsave(config.out, frames, fps=fps, macro_block_size=1)
    print(
        f"{config.out}: {len(frames)} frames, outcome {info['outcome']}, "
        f"progress {info['progress_m']:.1f} m ({info['progress_frac']:.0%})"
    )
    return info


if __name__ == "__main__":
    run_main(main, DemoConfig, "python -m expert.demo", __doc__)
