"""Synthetic corridor datasets in the real on-disk format (docs/dataset.md).

Used by the tests and by ``python -m bc.bench`` so that neither has to fly the env. Runs are
written by the format's own ``RunWriter``, so they hold every dataset and attribute a recorded
run holds. Two kinds of pictures:

* ``pattern="corridor"``: a rendered corridor seen from a robot whose heading error and
  lateral offset drift (bends, noise, exploration actions); the expert steers back to the
  centreline and its label is therefore visible in the picture (vanishing point and wall
  asymmetry), with per-run wall colours, moving wall stripes and pixel noise. A net that
  learns beats the majority class; one that does not, does not.
* ``pattern="index"``: every pixel of frame ``t`` of run ``r`` holds ``(t % 256, t // 256,
  r)``, so tests can check exactly which frames a batch gathered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from artifacts.atomic import write_json_atomic
from dataset.format import FORMAT_VERSION, MANIFEST, RUNS_DIR, SPLITS, run_name, run_path
from dataset.writer import RunWriter
from envs.spaces import bin_yaw_commands, image_shape, obs_channels, yaw_command_to_bin

BASE_PALETTE = np.array([[150, 130, 110], [90, 95, 105], [205, 200, 190]], np.float32)
# who chose the executed action (the ``source`` dataset): the expert, or exploration
SOURCE_EXPERT, SOURCE_RANDOM = 0, 1


def _split_counts(runs: int) -> tuple[int, int, int]:
    if runs < 2:
        raise ValueError("a dataset needs at least 2 runs (train and val)")
    val = max(1, round(runs * 0.1))
    test = max(1, round(runs * 0.1)) if runs >= 3 else 0
    return runs - val - test, val, test


def _simulate(length: int, n_bins: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Heading error, lateral offset and the expert's labels along one run."""
    heading = np.zeros(length, np.float32)
    offset = np.zeros(length, np.float32)
    expert = np.zeros(length, np.float32)
    executed = np.zeros(length, np.float32)
    theta, lateral = rng.uniform(-0.3, 0.3), rng.uniform(-0.5, 0.5)
    bend = 0.0
    source = np.full(length, SOURCE_EXPERT, np.uint8)
    yaws = bin_yaw_commands(n_bins)
    for t in range(length):
        heading[t], offset[t] = theta, lateral
        command = float(np.clip(-4.0 * theta - 2.0 * lateral, -1.0, 1.0))
        expert[t] = command
        # The recorded expert executes its own bin most of the time and explores otherwise,
        # so the data also covers states away from the centreline.
        action = yaws[yaw_command_to_bin(command, n_bins)]
        if rng.random() < 0.2:
            action = yaws[rng.integers(n_bins)]
            source[t] = SOURCE_RANDOM
        executed[t] = action
        if rng.random() < 0.05:
            bend = rng.uniform(-0.1, 0.1)
        theta = float(np.clip(theta + 0.12 * action + bend + rng.normal(0, 0.04), -0.6, 0.6))
        lateral = float(np.clip(lateral + 0.08 * math.sin(theta), -0.9, 0.9))
    return {
        "heading": heading,
        "offset": offset,
        "expert": expert,
        "executed": executed,
        "source": source,
        # the state the last step led to
        "final_heading": np.float32(theta),
        "final_offset": np.float32(lateral),
    }


def _render_corridor(
    heading: float,
    offset: float,
    progress: float,
    size: tuple[int, int],
    obs_mode: str,
    palette: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    height, width = size
    rows = np.arange(height, dtype=np.float32)[:, None] / height  # (H, 1) in [0, 1)
    cols = np.arange(width, dtype=np.float32)[None, :] / width  # (1, W)
    horizon = 0.45
    vanish = 0.5 - 0.9 * heading  # turning left moves the corridor's end to the right
    depth_rows = np.abs(rows - horizon) + 1e-3
    # The corridor's floor and ceiling are trapezoids meeting at the vanishing point; a
    # lateral offset shifts them, so the wall on the near side takes more of the picture.
    left = vanish + depth_rows * (-1.4 - 1.2 * offset)
    right = vanish + depth_rows * (1.4 - 1.2 * offset)
    inside = (cols >= left) & (cols <= right)
    floor = inside & (rows > horizon)
    ceiling = inside & (rows <= horizon)
    walls = ~inside
    distance = np.where(walls, 0.15 / (np.abs(cols - vanish) + 0.05), 0.3 / depth_rows)
    stripes = np.sin(40.0 * (cols - vanish) / (depth_rows + 0.05) + 6.0 * progress) > 0.2
    rgb = np.empty((height, width, 3), np.float32)
    rgb[...] = palette[0]
    rgb[floor] = palette[1]
    rgb[ceiling] = palette[2]
    rgb[walls & stripes] *= 0.6
    rgb *= (1.0 / (1.0 + 0.15 * distance))[..., None]
    rgb += rng.normal(0.0, 8.0, rgb.shape)
    depth = np.clip(255.0 * (1.0 - np.tanh(0.3 * distance)), 0, 255)[..., None]
    depth = depth + rng.normal(0.0, 4.0, depth.shape)
    image = {"rgb": rgb, "depth": depth, "rgbd": np.concatenate([rgb, depth], axis=-1)}[obs_mode]
    return np.clip(image, 0, 255).astype(np.uint8)


def make_synthetic_dataset(
    path: str | Path,
    *,
    runs: int = 10,
    frames: int | Sequence[int] = 450,
    size: int | tuple[int, int] = 64,
    obs_mode: str = "rgb",
    n_bins: int = 3,
    action_type: str = "discrete",
    pattern: str = "corridor",
    splits: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write a dataset directory in the current format version and return its path.

    ``frames`` is the length of every run, or one length per run. ``splits`` gives the
    number of (train, val, test) runs; by default about 80/10/10 with at least one val run.
    Every run ends truncated (outcome ``timeout``), its final frame drawn like the others
    (from a generator of its own, so the runs' frames do not depend on it).
    """
    channels = obs_channels(obs_mode)
    if pattern not in ("corridor", "index"):
        raise ValueError(f"pattern must be corridor or index, got {pattern!r}")
    root = Path(path)
    (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    height, width = image_shape(size)
    lengths = [frames] * runs if isinstance(frames, int) else list(frames)
    if len(lengths) != runs:
        raise ValueError(f"got {len(lengths)} run lengths for {runs} runs")
    n_train, n_val, n_test = splits or _split_counts(runs)
    if n_train + n_val + n_test != runs:
        raise ValueError(f"splits {splits} do not add up to {runs} runs")
    yaws = bin_yaw_commands(n_bins)
    rng = np.random.default_rng(seed)
    entries = []
    for index, length in enumerate(lengths):
        sim = _simulate(length, n_bins, rng)
        progress = np.cumsum(np.full(length + 1, 0.1, np.float32))
        if pattern == "index":
            steps = np.arange(length + 1)
            images = np.zeros((length + 1, height, width, channels), np.uint8)
            values = np.stack([steps % 256, steps // 256, np.full(length + 1, index)], axis=-1)
            for channel in range(images.shape[-1]):
                images[..., channel] = values[:, min(channel, 2), None, None]
            images, final_frame = images[:length], images[length]
            expert_bins = (steps[:length] % n_bins).astype(np.int64)
            expert = yaws[expert_bins].astype(np.float32)
        else:
            # Walls, floor and ceiling keep their roles across runs, in shades that vary
            # per run as the env's textures do.
            palette = (BASE_PALETTE + rng.uniform(-40, 40, (3, 3))).astype(np.float32)
            images = np.stack(
                [
                    _render_corridor(
                        float(sim["heading"][t]),
                        float(sim["offset"][t]),
                        float(progress[t]),
                        (height, width),
                        obs_mode,
                        palette,
                        rng,
                    )
                    for t in range(length)
                ]
            )
            final_frame = _render_corridor(
                float(sim["final_heading"]),
                float(sim["final_offset"]),
                float(progress[length]),
                (height, width),
                obs_mode,
                palette,
                np.random.default_rng([seed, index]),
            )
            expert = sim["expert"]
            expert_bins = yaw_command_to_bin(expert, n_bins)
        executed_bins = yaw_command_to_bin(sim["executed"], n_bins)
        executed = yaws[executed_bins] if action_type == "discrete" else sim["executed"]
        steps_of_run = {
            "frames": images,
            "action": executed_bins,
            "action_continuous": executed,
            "expert_action": expert_bins,
            "expert_continuous": expert,
            "pose": np.stack([progress[:length], sim["offset"], sim["heading"]], axis=-1),
            "progress": progress[:length],
            "reward": np.full(length, 0.1, np.float32),
            "source": sim["source"],
            "lateral_offset": sim["offset"],
            "heading_error": sim["heading"],
            "terminated": np.zeros(length, bool),
            "truncated": np.arange(length) == length - 1,
        }
        final = {
            "final_frame": final_frame,
            "final_pose": [progress[length], sim["final_offset"], sim["final_heading"]],
            "final_progress": progress[length],
            "final_lateral_offset": sim["final_offset"],
            "final_heading_error": sim["final_heading"],
        }
        with RunWriter(run_path(root, index), images.shape[1:]) as writer:
            for t in range(length):
                writer.append(**{name: values[t] for name, values in steps_of_run.items()})
            writer.commit(
                {
                    "seed": seed + index,
                    "run_index": index,
                    "outcome": "timeout",
                    "n_bins": n_bins,
                },
                final,
            )
        split = "train" if index < n_train else "val" if index < n_train + n_val else "test"
        entries.append(
            {
                "name": run_name(index),
                "file": f"{RUNS_DIR}/{run_name(index)}.h5",
                "seed": seed + index,
                "split": split,
                "frames": length,
                "outcome": "timeout",
            }
        )
    manifest = {
        "format_version": FORMAT_VERSION,
        "env_id": "Corridor-v0",
        "env_kwargs": {
            "image_size": [height, width] if height != width else height,
            "obs_mode": obs_mode,
            "n_bins": n_bins,
            "action_type": action_type,
            "max_yaw_rate": 1.0,
        },
        "expert": {"kind": "synthetic", "pattern": pattern},
        "seed": seed,
        "runs": entries,
        "splits": {split: [e["name"] for e in entries if e["split"] == split] for split in SPLITS},
        "versions": {"corridor-bc": "synthetic"},
    }
    write_json_atomic(root / MANIFEST, manifest)
    return root
