"""Env arguments that the env and expert tests share."""

from typing import Any


def straight_corridor(length: float) -> dict[str, Any]:
    """Kwargs for a world of one straight segment ``length`` metres long, in 32x32 frames.

    The agent starts on the centreline facing down the corridor (no start jitter), so where it
    flies depends only on the actions.
    """
    return {
        "image_size": 32,
        "n_segments": 1,
        "segment_length": (length, length),
        "start_lateral_jitter": 0.0,
        "start_yaw_jitter": 0.0,
    }
