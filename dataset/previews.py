"""Preview videos of recorded runs: the frames enlarged, with the steering underneath."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from artifacts.atomic import atomic_path
from dataset import VIDEOS_DIR, load_run, run_name, run_path

VIDEO_FORMATS = ("mp4", "gif")
PREVIEW_SIZE = 256


def write_preview(run_file: Path, video_file: Path, video_format: str, fps: float) -> None:
    """A preview video of one run file: its frames enlarged, with a steering bar underneath.

    The bar shows the executed yaw command (red) and the expert's label (green), left is left.
    """
    data = load_run(run_file)
    frames = data["frames"]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    frames = frames[..., :3]
    height, width = frames.shape[1:3]
    scale = max(1, math.ceil(PREVIEW_SIZE / min(height, width)))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    bar = np.full((len(frames), 12, frames.shape[2], 3), 30, dtype=np.uint8)
    for t in range(len(frames)):
        for value, colour, rows in (
            (data["expert_continuous"][t], (40, 220, 60), slice(0, 6)),
            (data["action_continuous"][t], (230, 50, 40), slice(6, 12)),
        ):
            centre = int(round((1.0 - float(value)) / 2.0 * (bar.shape[2] - 1)))
            bar[t, rows, max(0, centre - 3) : centre + 4] = colour
    frames = np.concatenate([frames, bar], axis=1)
    # H.264 wants even sides
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    video_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(video_file) as temporary:
        if video_format == "gif":
            imageio.mimsave(temporary, list(frames), format="GIF", duration=1000 / fps, loop=0)
        else:
            writer = imageio.get_writer(
                temporary, format="FFMPEG", mode="I", fps=fps, macro_block_size=1,
                output_params=["-f", "mp4"],
            )  # fmt: skip
            with writer:
                for frame in frames:
                    writer.append_data(frame)


def preview_path(out: Path, run_index: int, video_format: str) -> Path:
    """Where the preview of run ``run_index`` goes."""
    return Path(out) / VIDEOS_DIR / f"{run_name(run_index)}.{video_format}"


def write_run_preview(out: Path, run_index: int, video_format: str, fps: float) -> None:
    """The preview of run ``run_index`` of the dataset in ``out``, written to its place."""
    write_preview(
        run_path(out, run_index), preview_path(out, run_index, video_format), video_format, fps
    )
