"""Closed-loop evaluation of a trained policy (or the expert) on held-out worlds.

``python -m eval.rollout`` with no arguments flies the newest run's ``last`` checkpoint
(``bc.checkpoint_names.DEFAULT_CHECKPOINT``) through 100 held-out corridors
(``envs.seeds.eval_seed(0, i)``, disjoint from every recording seed by construction), prints
a table of success (with a 95% Wilson interval), progress, collisions, episode length, online
expert agreement and policy latency, and writes the same, with one record per episode, to
``<run>/eval/<checkpoint>_seed<S>_n<N>.json``.

The policy is rebuilt from its checkpoint alone (``bc.policy.load_policy``), or from a model
file that ``python -m bc.export`` wrote (``--checkpoint X.onnx`` or ``X.torchscript``): it sees
exactly what it was trained on (frame stacking, normalisation, recurrent state carried step by
step), and the env is rebuilt from the dataset's env kwargs stored in the file; only what is
overridden on the command line changes. An override that changes what the net sees or
outputs (image size, observation mode, action bins) is refused.

``--expert`` flies the scripted expert instead: the reference row (no run needed).
"""

from __future__ import annotations

import datetime
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import envs
from bc.checkpoint_names import DEFAULT_CHECKPOINT
from configflags import flag_name, option, run_main
from envs.controls import CONTROLS
from envs.mixtures import MIXTURES
from envs.options import full_env_kwargs
from envs.scene import LIGHTS
from envs.spaces import MIN_IMAGE_SIZE
from eval.episodes import EpisodeRecord
from eval.errors import EvalError
from eval.fly import (
    MAX_EPISODES,
    STRUCTURAL_OVERRIDES,
    WORLD_OVERRIDES,
    HeldOutWorlds,
    Videos,
    fly,
    load_pilot,
)
from eval.rollout_summary import failure_line, summary_table
from eval.run_files import (
    CHECKPOINTS,
    DEFAULT_RUNS_DIR,
    EXPERT_DIR_NAME,
    RESULTS_FORMAT_VERSION,
    resolve_checkpoint,
    results_stem,
    write_json,
)
from eval.video import MIN_RENDER_SIZE, VIDEO_FORMATS

# 100 episodes tell 90% from 98% apart (95% Wilson intervals [82.6, 94.5] and [93.0, 99.4])
DEFAULT_EPISODES = 100
DEFAULT_SEED = 0


@dataclass(frozen=True)
class RolloutConfig:
    """What to evaluate, on which worlds, and what to write."""

    run: Path | None = option(None, "run directory (default: the newest run in --runs-dir)")
    checkpoint: Path | None = option(
        None,
        "checkpoint file to evaluate: a .pt, or a .onnx or .torchscript file written by"
        " python -m bc.export (overrides --run and --which)",
    )
    which: str = option(
        DEFAULT_CHECKPOINT, "which checkpoint of the run to evaluate", choices=CHECKPOINTS
    )
    expert: bool = option(
        False, "evaluate the scripted expert instead of a policy (the reference row; no run needed)"
    )
    episodes: int = option(DEFAULT_EPISODES, "held-out episodes to fly")
    only_episodes: tuple[int, ...] | None = option(
        None,
        "fly only these episode indices, each in the world it has in the whole evaluation (e.g."
        " the failed episodes an earlier evaluation lists, with --video); replaces --episodes",
        metavar="I",
    )
    seed: int = option(
        DEFAULT_SEED, "base seed of the held-out worlds: episode i flies eval_seed(seed, i)"
    )
    workers: int = option(
        0, "episodes run in parallel, each worker with its own env (0 = the usable cores)"
    )
    batch: int = option(
        1, "episodes each worker flies side by side, the policy deciding for all in one"
        " forward pass (faster; no videos; docs/evaluation.md)",
    )  # fmt: skip
    video: bool = option(False, "write one annotated video per episode")
    video_format: str = option("mp4", "video file format", choices=VIDEO_FORMATS)
    video_episodes: int | None = option(
        None, "write videos of the first K episodes only (implies --video; default: all)"
    )
    video_size: int = option(
        256, f"camera view size of the videos in pixels (>= {MIN_RENDER_SIZE})"
    )
    obstacle_density: float | None = option(
        None, "override the env's obstacle density, 0..1 (default: the checkpoint's env)"
    )
    clutter_density: float | None = option(
        None, "override the env's wall clutter density, 0..1 (default: the checkpoint's env)"
    )
    randomize: bool | None = option(
        None, "override random tints and light (default: the checkpoint's env)"
    )
    randomize_textures: bool | None = option(
        None, "override random textures (default: the checkpoint's env)"
    )
    held_out_textures: bool | None = option(
        None, "draw random textures from the held-out family (with --randomize-textures)"
    )
    light: str | None = option(
        None,
        "override the light: training or outside (default: the checkpoint's env)",
        choices=LIGHTS,
    )
    mixture: str | None = option(
        None,
        "override the world mixture (default: the checkpoint's env)",
        choices=tuple(MIXTURES),
    )
    corridor_width: float | None = option(
        None, "override the corridor width in metres (default: the checkpoint's env)"
    )
    n_segments: int | None = option(
        None, "override the corridor's number of straight segments (default: the checkpoint's)"
    )
    segment_length: tuple[float, float] | None = option(
        None,
        "override the segment length range MIN MAX in metres (default: the checkpoint's)",
        metavar=("MIN", "MAX"),
    )
    image_size: int | None = option(
        None, "camera image size; must match the checkpoint (only free with --expert)"
    )
    obs_mode: str | None = option(
        None,
        "observation mode; must match the checkpoint (only free with --expert)",
        choices=envs.OBS_MODES,
    )
    n_bins: int | None = option(
        None, "discrete action bins; must match the checkpoint (only free with --expert)"
    )
    controls: str | None = option(
        None,
        "yaw, or yaw_speed (the two-control world); must match the checkpoint (only free"
        " with --expert)",
        choices=CONTROLS,
    )
    runs_dir: Path = option(DEFAULT_RUNS_DIR, "where training runs live")
    out: Path | None = option(
        None,
        "results JSON file, or an existing folder for the default file name in it (default:"
        " <run>/eval/<checkpoint>_seed<S>_n<N>.json)",
    )
    quiet: bool = option(False, "print no table and no progress bar")

    def __post_init__(self) -> None:
        def require(ok: bool, message: str) -> None:
            if not ok:
                raise EvalError(message)

        require(self.which in CHECKPOINTS, f"unknown --which {self.which!r}; choose one of "
                f"{', '.join(CHECKPOINTS)}")  # fmt: skip
        require(self.batch >= 1, f"--batch must be >= 1, got {self.batch}")
        require(self.batch == 1 or not self.videos,
                "--video records one episode at a time: drop --batch or the videos")  # fmt: skip
        require(1 <= self.episodes <= MAX_EPISODES,
                f"--episodes must be in [1, {MAX_EPISODES}], got {self.episodes}")  # fmt: skip
        if self.only_episodes is not None:
            require(all(0 <= i < MAX_EPISODES for i in self.only_episodes),
                    f"--only-episodes indices must be in [0, {MAX_EPISODES}), "
                    f"got {' '.join(map(str, self.only_episodes))}")  # fmt: skip
            require(len(set(self.only_episodes)) == len(self.only_episodes),
                    "--only-episodes lists an index twice")  # fmt: skip
        require(self.seed >= 0, f"--seed must be >= 0, got {self.seed}")
        require(
            self.workers >= 0, f"--workers must be >= 0 (0 = the usable cores), got {self.workers}"
        )
        require(self.video_format in VIDEO_FORMATS,
                f"--video-format must be one of {', '.join(VIDEO_FORMATS)}")  # fmt: skip
        require(self.video_episodes is None or self.video_episodes >= 1,
                f"--video-episodes must be >= 1, got {self.video_episodes}")  # fmt: skip
        require(self.video_size >= MIN_RENDER_SIZE,
                f"--video-size must be >= {MIN_RENDER_SIZE}, got {self.video_size}")  # fmt: skip
        for name in ("obstacle_density", "clutter_density"):
            value = getattr(self, name)
            require(value is None or 0.0 <= value <= 1.0,
                    f"{flag_name(name)} must be in [0, 1], got {value}")  # fmt: skip
        require(self.n_segments is None or self.n_segments >= 1,
                f"--n-segments must be >= 1, got {self.n_segments}")  # fmt: skip
        require(self.segment_length is None
                or 0 < self.segment_length[0] <= self.segment_length[1],
                f"--segment-length needs 0 < MIN <= MAX, got {self.segment_length}")  # fmt: skip
        require(self.image_size is None or self.image_size >= MIN_IMAGE_SIZE,
                f"--image-size must be >= {MIN_IMAGE_SIZE}, got {self.image_size}")  # fmt: skip
        require(self.obs_mode is None or self.obs_mode in envs.OBS_MODES,
                f"--obs-mode must be one of {', '.join(envs.OBS_MODES)}")  # fmt: skip
        require(self.n_bins is None or (self.n_bins >= 3 and self.n_bins % 2 == 1),
                f"--n-bins must be an odd integer >= 3, got {self.n_bins}")  # fmt: skip
        require(not (self.expert and self.checkpoint is None and self.run is None
                     and self.which != DEFAULT_CHECKPOINT),
                "--which picks a policy checkpoint; with --expert give --run too, or drop it",
                )  # fmt: skip

    @property
    def overrides(self) -> dict[str, Any]:
        """Env keyword arguments given on the command line."""
        names = WORLD_OVERRIDES + STRUCTURAL_OVERRIDES
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    @property
    def chosen_episodes(self) -> list[int] | None:
        """The ``--only-episodes`` indices in ascending order (the order records come in)."""
        return None if self.only_episodes is None else sorted(self.only_episodes)

    @property
    def episode_count(self) -> int:
        """How many episodes are flown: ``--episodes``, or the ``--only-episodes`` listed."""
        return self.episodes if self.only_episodes is None else len(self.only_episodes)

    @property
    def videos(self) -> int:
        """How many episodes get a video."""
        if self.video_episodes is not None:
            return min(self.video_episodes, self.episode_count)
        return self.episode_count if self.video else 0


@dataclass
class RolloutResult:
    """What one evaluation produced: the summary, the per-episode records, the JSON path."""

    summary: dict[str, Any]
    records: list[EpisodeRecord]
    path: Path
    data: dict[str, Any] = field(repr=False)


def _default_out(run_dir: Path, stem: str) -> Path:
    return run_dir / "eval" / f"{stem}.json"


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
    }


def main(config: RolloutConfig) -> RolloutResult:
    """Fly the episodes, write the results JSON, print the table; returns the results."""
    started = time.perf_counter()
    console = Console(stderr=True, quiet=config.quiet)
    checkpoint: Path | None = None
    if config.expert and config.run is None and config.checkpoint is None:
        run_dir = config.runs_dir / EXPERT_DIR_NAME
    else:
        checkpoint, run_dir = resolve_checkpoint(
            config.run, config.checkpoint, config.which, config.runs_dir
        )
    pilot = load_pilot(checkpoint, expert=config.expert, env_overrides=config.overrides)
    changed = pilot.changed_overrides
    stem = results_stem(pilot.name, config.seed, config.episodes, changed, config.chosen_episodes)
    out = config.out if config.out is not None else _default_out(run_dir, stem)
    if out.is_dir():  # a folder given as --out: the default file name inside it
        out = out / f"{stem}.json"
    video_dir = out.with_suffix("") if config.videos else None
    videos = None
    if video_dir is not None:
        videos = Videos(video_dir, config.videos, config.video_format, config.video_size)
    chosen = config.chosen_episodes
    worlds = HeldOutWorlds(config.seed, config.episodes, None if chosen is None else tuple(chosen))

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[goals]} goals"), TimeElapsedColumn(),
        console=console, transient=True, disable=config.quiet,
    ) as progress:  # fmt: skip
        bar = progress.add_task(f"{pilot.name} episodes", total=config.episode_count, goals=0)
        goals = 0

        def advance(record: EpisodeRecord) -> None:
            nonlocal goals
            goals += record.outcome == "goal"
            progress.update(bar, advance=1, goals=goals)

        flight = fly(pilot, worlds, workers=config.workers, videos=videos, on_result=advance,
                     batch=config.batch)  # fmt: skip

    records = flight.records
    data = {
        "format_version": RESULTS_FORMAT_VERSION,
        "kind": "expert" if config.expert else "policy",
        "which": pilot.name,
        "run": str(run_dir),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "policy": pilot.metadata,
        "expert": flight.agent.config if config.expert else None,
        "labeller": flight.labeller.config,
        "seed": config.seed,
        "seeds": flight.seeds,
        # a chosen subset of the episodes (--only-episodes), or None for episodes 0..N-1
        "episode_indices": chosen,
        "workers": flight.workers,
        "batch": config.batch,
        "env_id": flight.env_spec.env_id,
        "env_kwargs": full_env_kwargs(pilot.env_kwargs),
        "overrides": changed,
        "summary": flight.summary,
        "records": [r.to_dict() for r in records],
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - started,
        "versions": _versions(),
    }
    write_json(out, data)
    if not config.quiet:
        Console().print(summary_table(data))
        # plain prints: paths and lists must not be wrapped or read as rich markup
        failures = failure_line(data["records"])
        if failures:
            print(failures)
        print(f"results: {out}" + (f", videos: {video_dir}/" if video_dir else ""))
    return RolloutResult(flight.summary, records, out, data)


if __name__ == "__main__":
    # rerunning evaluates again from the first episode: nothing to resume
    run_main(main, RolloutConfig, "python -m eval.rollout", __doc__, interrupted="interrupted")
