"""Episode videos: the camera view with the policy's and the expert's actions drawn below it.

Frames are composed with NumPy; text is rasterised with the FreeType build that matplotlib
ships (``matplotlib.ft2font``), so no extra dependency and no per-frame figure is needed
(a matplotlib figure per frame would cost ~15 ms, i.e. 15 s of a 1000-step episode).
Videos are written by imageio, streamed frame by frame: MP4 through imageio-ffmpeg, GIF through
Pillow.

Panel layout under the camera view (bin 0, the leftmost turn, is drawn on the left)::

    ep 3  step 125  12.4 m (41%)
    [ bars: class probabilities, the policy's action orange, the expert's label outlined green ]
      L        S        R
    policy S +0.00   expert S +0.03          (the last frame: end: GOAL | COLLISION | TIMEOUT)

A regressor (no probabilities) gets a yaw gauge instead of bars: its output as an orange tick
and the expert's command as a green one, +1 (left) on the left.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import imageio.v2 as imageio
import numpy as np
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font, LoadFlags

from artifacts.atomic import commit_file, temp_path
from envs.spaces import bin_yaw_commands

VIDEO_FORMATS = ("mp4", "gif")
MIN_RENDER_SIZE = 96

POLICY_COLOUR = np.array([255, 140, 0], dtype=np.uint8)
EXPERT_COLOUR = np.array([40, 210, 90], dtype=np.uint8)
BAR_COLOUR = np.array([90, 120, 170], dtype=np.uint8)
TEXT_COLOUR = np.array([235, 235, 235], dtype=np.uint8)
BACKGROUND = np.array([24, 24, 28], dtype=np.uint8)
OUTCOME_COLOURS = {
    "goal": EXPERT_COLOUR,
    "collision": np.array([235, 60, 60], dtype=np.uint8),
    "timeout": np.array([230, 200, 60], dtype=np.uint8),
}


@dataclass(frozen=True)
class FrameOverlay:
    """What to draw under one camera frame.

    ``action``/``yaw``/``probs`` are the acting agent's (the policy, or the expert when the
    expert itself is evaluated); ``expert_action``/``expert_command`` are the expert's clean
    label for the same state. ``outcome`` is set on the last frame only.
    """

    episode: int
    step: int
    progress_m: float
    progress_frac: float
    action: int | None = None
    yaw: float | None = None
    probs: np.ndarray | None = None
    expert_action: int | None = None
    expert_command: float | None = None
    outcome: str | None = None
    agent_name: str = "policy"


@functools.lru_cache(maxsize=4)
def _font(size: int) -> FT2Font:
    path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans Mono"))
    font = FT2Font(path)
    font.set_size(size, 72)
    return font


@functools.lru_cache(maxsize=4096)
def _text_mask(text: str, size: int) -> tuple[np.ndarray, int]:
    """Alpha mask (0..1) of ``text`` and its height above the baseline, in pixels."""
    font = _font(size)
    font.set_text(text, 0.0, flags=LoadFlags.DEFAULT)
    font.draw_glyphs_to_bitmap(antialiased=True)
    mask = np.asarray(font.get_image(), dtype=np.float32) / 255.0
    descent = int(math.ceil(font.get_descent() / 64.0))
    mask.setflags(write=False)
    return mask, mask.shape[0] - descent


def draw_text(
    image: np.ndarray, x: int, baseline: int, text: str, colour: np.ndarray, size: int = 11
) -> int:
    """Blend ``text`` into ``image`` (H, W, 3 uint8) in place; returns the x after the text."""
    if not text:
        return x
    mask, ascent = _text_mask(text, size)
    top = baseline - ascent
    height, width = mask.shape
    # clip to the image, so a long label is cut rather than raising
    y0, y1 = max(top, 0), min(top + height, image.shape[0])
    x0, x1 = max(x, 0), min(x + width, image.shape[1])
    if y0 >= y1 or x0 >= x1:
        return x + width
    alpha = mask[y0 - top : y1 - top, x0 - x : x1 - x, None]
    region = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (region * (1.0 - alpha) + colour.astype(np.float32) * alpha).astype(
        np.uint8
    )
    return x + width


def text_width(text: str, size: int = 11) -> int:
    """Width in pixels of ``text`` as :func:`draw_text` draws it."""
    return _text_mask(text, size)[0].shape[1] if text else 0


def bin_names(n_bins: int) -> list[str]:
    """Short names of the action bins: L, S, R for three; else their yaw commands."""
    if n_bins == 3:
        return ["L", "S", "R"]
    commands = bin_yaw_commands(n_bins)
    return [f"{c:+.1f}".replace("0.", ".") for c in commands]


def _rectangle(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: np.ndarray) -> None:
    image[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = colour


def _outline(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour: np.ndarray) -> None:
    _rectangle(image, x0, y0, x1, y0 + 2, colour)
    _rectangle(image, x0, y1 - 2, x1, y1, colour)
    _rectangle(image, x0, y0, x0 + 2, y1, colour)
    _rectangle(image, x1 - 2, y0, x1, y1, colour)


class FrameAnnotator:
    """Draws :class:`FrameOverlay` panels under camera frames of one size."""

    def __init__(self, n_bins: int, font_size: int = 11):
        if n_bins < 3:
            raise ValueError(f"n_bins must be >= 3, got {n_bins}")
        self.n_bins = n_bins
        self.font_size = font_size
        self.names = bin_names(n_bins)
        self.line = font_size + 5
        # rows: header text, bars, bin names, footer text; even so that H.264 accepts it
        self.bar_height = 3 * self.line
        panel = 3 * self.line + self.bar_height + 8
        self.panel_height = panel + panel % 2

    def __call__(self, frame: np.ndarray, overlay: FrameOverlay) -> np.ndarray:
        """The frame (H, W, 3 uint8) with the panel appended below it."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got {frame.shape} {frame.dtype}")
        height, width = frame.shape[:2]
        # H.264 with yuv420p needs even sides; a 1-pixel crop is invisible
        width -= width % 2
        height -= height % 2
        out = np.empty((height + self.panel_height, width, 3), dtype=np.uint8)
        out[:height] = frame[:height, :width]
        out[height:] = BACKGROUND
        self._draw_panel(out, height, width, overlay)
        return out

    def _draw_panel(self, out: np.ndarray, top: int, width: int, o: FrameOverlay) -> None:
        size, line = self.font_size, self.line
        pad = 4
        header = f"ep {o.episode}  step {o.step}  {o.progress_m:.1f} m ({o.progress_frac:.0%})"
        draw_text(out, pad, top + line - 3, header, TEXT_COLOUR, size)

        bars_top = top + line + 2
        bars_bottom = bars_top + self.bar_height
        if o.probs is not None:
            self._draw_bars(out, bars_top, bars_bottom, width, o)
        elif o.yaw is not None or o.expert_command is not None:
            self._draw_gauge(out, bars_top, bars_bottom, width, o)
        # the last frame (after the last action) has nothing to compare: no bars, no gauge

        footer = top + 3 * line + self.bar_height + 2
        x = pad
        if o.outcome is not None:
            colour = OUTCOME_COLOURS.get(o.outcome, TEXT_COLOUR)
            draw_text(out, x, footer, f"end: {o.outcome.upper()}", colour, size)
        if o.action is not None:
            yaw = "" if o.yaw is None else f" {o.yaw:+.2f}"
            text = f"{o.agent_name} {self.names[o.action]}{yaw}"
            x = draw_text(out, x, footer, text, POLICY_COLOUR, size) + 3 * pad
        if o.expert_action is not None:
            command = "" if o.expert_command is None else f" {o.expert_command:+.2f}"
            draw_text(out, x, footer, f"expert {self.names[o.expert_action]}{command}",
                      EXPERT_COLOUR, size)  # fmt: skip

    def _columns(self, width: int) -> list[tuple[int, int]]:
        column = width / self.n_bins
        return [(int(i * column), int((i + 1) * column)) for i in range(self.n_bins)]

    def _draw_bars(self, out: np.ndarray, y0: int, y1: int, width: int, o: FrameOverlay) -> None:
        probs = np.clip(np.asarray(o.probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
        if len(probs) != self.n_bins:
            raise ValueError(f"expected {self.n_bins} probabilities, got {len(probs)}")
        for i, (c0, c1) in enumerate(self._columns(width)):
            margin = max(3, (c1 - c0) // 6)
            bar_top = y1 - int(round(probs[i] * (y1 - y0 - 4)))
            colour = POLICY_COLOUR if i == o.action else BAR_COLOUR
            _rectangle(out, c0 + margin, bar_top, c1 - margin, y1, colour)
            if i == o.expert_action:
                _outline(out, c0 + margin - 3, y0, c1 - margin + 3, y1 + 2, EXPERT_COLOUR)
            name = self.names[i]
            label_x = (c0 + c1) // 2 - text_width(name, self.font_size) // 2
            label_colour = EXPERT_COLOUR if i == o.expert_action else TEXT_COLOUR
            draw_text(out, label_x, y1 + self.line, name, label_colour, self.font_size)

    def _draw_gauge(self, out: np.ndarray, y0: int, y1: int, width: int, o: FrameOverlay) -> None:
        pad = 8
        middle = (y0 + y1) // 2
        _rectangle(out, pad, middle - 1, width - pad, middle + 1, BAR_COLOUR)

        def x_of(command: float) -> int:
            # +1 (left turn) on the left, as the bins are
            return int(round(pad + (1.0 - np.clip(command, -1.0, 1.0)) / 2.0 * (width - 2 * pad)))

        for command in (1.0, 0.0, -1.0):
            _rectangle(out, x_of(command) - 1, middle - 6, x_of(command) + 1, middle + 6,
                       BAR_COLOUR)  # fmt: skip
        if o.expert_command is not None:
            x = x_of(o.expert_command)
            _rectangle(out, x - 2, y0, x + 2, y1, EXPERT_COLOUR)
        if o.yaw is not None:
            x = x_of(o.yaw)
            _rectangle(out, x - 3, y0 + 6, x + 3, y1 - 6, POLICY_COLOUR)
        for name, command in zip(("left", "straight", "right"), (1.0, 0.0, -1.0), strict=True):
            label_x = x_of(command) - text_width(name, self.font_size) // 2
            label_x = min(max(label_x, 2), width - text_width(name, self.font_size) - 2)
            draw_text(out, label_x, y1 + self.line, name, TEXT_COLOUR, self.font_size)


class EpisodeVideo:
    """Streams annotated frames of one episode into an MP4 or GIF file.

    Frames are written as they come, so memory does not grow with the episode length. The
    file is written under a temporary name and renamed when closed, so a crashed episode
    leaves no truncated video behind.
    """

    def __init__(self, path: Path, fps: float, n_bins: int):
        self.path = Path(path)
        video_format = self.path.suffix.lstrip(".").lower()
        if video_format not in VIDEO_FORMATS:
            raise ValueError(f"video file must end in .mp4 or .gif, got {self.path}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = temp_path(self.path)
        if video_format == "gif":
            # Pillow's GIF writer takes the frame duration in milliseconds
            self._writer = imageio.get_writer(self._partial, duration=1000.0 / fps, loop=0)
        else:
            self._writer = imageio.get_writer(
                self._partial, fps=fps, codec="libx264", macro_block_size=1,
                pixelformat="yuv420p", ffmpeg_log_level="error",
            )  # fmt: skip
        self.annotate = FrameAnnotator(n_bins)
        self.frames = 0

    def add(self, frame: np.ndarray, overlay: FrameOverlay) -> None:
        """Annotate one camera frame and append it."""
        self._writer.append_data(self.annotate(frame, overlay))
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Finish the file; ``keep=False`` deletes it instead (the episode failed)."""
        self._writer.close()
        if keep and self.frames > 0:
            commit_file(self._partial, self.path)
        else:
            self._partial.unlink(missing_ok=True)

    def __enter__(self) -> EpisodeVideo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close(keep=exc_type is None)
