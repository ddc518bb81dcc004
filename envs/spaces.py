"""What the env's observations and actions mean, for every package that reads or writes them.

The one home of the camera channels per observation mode, of the ``int or (height, width)``
image size, and of the mapping between discrete action bins and yaw commands. The env, the
dataset format, the trainers and the evaluator all import these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

OBS_MODES = ("rgb", "depth", "rgbd")
OBS_CHANNELS = {"rgb": 3, "depth": 1, "rgbd": 4}
ACTION_TYPES = ("discrete", "continuous")
MIN_IMAGE_SIZE = 32


def obs_channels(obs_mode: str) -> int:
    """Camera channels of an observation mode: rgb 3, depth 1, rgbd 4."""
    if obs_mode not in OBS_CHANNELS:
        raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
    return OBS_CHANNELS[obs_mode]


def image_shape(image_size: Any) -> tuple[int, int]:
    """``(height, width)`` of an image size given as an int (square) or a (height, width) pair."""
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        height = width = int(image_size)
    elif isinstance(image_size, Sequence) and not isinstance(image_size, str):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        height, width = (int(v) for v in image_size)
    else:
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    if height < MIN_IMAGE_SIZE or width < MIN_IMAGE_SIZE:
        raise ValueError(
            f"image_size must be >= {MIN_IMAGE_SIZE} (pixels per side), got {image_size!r}"
        )
    return height, width


def bin_yaw_commands(n_bins: int) -> np.ndarray:
    """Yaw command of each discrete action: bin i is ``1 - 2 i / (n_bins - 1)``, + is left."""
    return 1.0 - 2.0 * np.arange(n_bins) / (n_bins - 1)


def yaw_command_to_bin(command: Any, n_bins: int) -> Any:
    """The discrete action(s) whose yaw command is nearest to ``command`` (clipped to [-1, 1]).

    A scalar gives an ``int``, an array gives an int64 array of the same shape.
    """
    if isinstance(command, (int, float, np.floating)) and command == command:  # not NaN
        # A number, once per step in closed loop: python floats are IEEE doubles and round()
        # rounds half to even as np.rint does, so this is the array path's value at a tenth
        # of its cost.
        value = min(max(float(command), -1.0), 1.0)
        return min(max(round((1.0 - value) * (n_bins - 1) / 2.0), 0), n_bins - 1)
    commands = np.clip(np.asarray(command, dtype=np.float64), -1.0, 1.0)
    bins = np.clip(np.rint((1.0 - commands) * (n_bins - 1) / 2.0), 0, n_bins - 1).astype(np.int64)
    return int(bins) if bins.ndim == 0 else bins
