"""The names, keys and types of the dataset format (docs/dataset.md, format_version 2).

Format 2 added the episode's ends to every run: per-step ``terminated`` and ``truncated``
flags and the state after the last step (``FINAL_FIELDS``). Format 1 files lack them and are
still read (``READABLE_VERSIONS``); every run file says its own version.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from configflags import UserError

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
RUNS_DIR = "runs"
VIDEOS_DIR = "videos"
OUTCOMES = ("goal", "collision", "timeout")
SPLITS = ("train", "val", "test")
COMPRESSIONS = ("gzip", "lzf")

# per-step datasets of a run: dtype and shape after the time axis (None: the frame shape)
STEP_FIELDS: dict[str, tuple[type, tuple[int, ...] | None]] = {
    "frames": (np.uint8, None),
    "action": (np.int64, ()),
    "action_continuous": (np.float32, ()),
    "expert_action": (np.int64, ()),
    "expert_continuous": (np.float32, ()),
    "pose": (np.float32, (3,)),
    "progress": (np.float32, ()),
    "reward": (np.float32, ()),
    "source": (np.uint8, ()),
    "lateral_offset": (np.float32, ()),
    "heading_error": (np.float32, ()),
    "terminated": (np.bool_, ()),
    "truncated": (np.bool_, ()),
}
# per-step datasets that format 1 files lack
ADDED_IN_2 = ("terminated", "truncated")
# per-step datasets of a run in the two-control world (run attribute ``controls`` is
# ``yaw_speed``; envs.controls): the forward speed the step began at (an observation a policy
# may be given), the executed speed bin and command, and the expert's speed labels
SPEED_FIELDS: dict[str, tuple[type, tuple[int, ...] | None]] = {
    "speed": (np.float32, ()),
    "speed_action": (np.int64, ()),
    "speed_continuous": (np.float32, ()),
    "expert_speed_action": (np.int64, ()),
    "expert_speed_continuous": (np.float32, ()),
}
# the state after the last step (format 2): dataset -> the per-step dataset it continues
FINAL_FIELDS = {
    "final_frame": "frames",
    "final_pose": "pose",
    "final_progress": "progress",
    "final_lateral_offset": "lateral_offset",
    "final_heading_error": "heading_error",
}


def final_state(observation: np.ndarray, pose: np.ndarray, info: dict) -> dict[str, object]:
    """The ``FINAL_FIELDS`` of a run from the env's last ``step``: observation, pose and info."""
    return {
        "final_frame": observation,
        "final_pose": pose,
        "final_progress": info["progress_m"],
        "final_lateral_offset": info["lateral_offset"],
        "final_heading_error": info["heading_error"],
    }


LABEL_FIELDS = ("expert_action", "expert_continuous")
REQUIRED_ATTRS = ("format_version", "seed", "run_index", "outcome", "n_steps", "n_bins")
MANIFEST_KEYS = (
    "format_version",
    "env_id",
    "env_kwargs",
    "expert",
    "seed",
    "runs",
    "splits",
    "versions",
)
RUN_ENTRY_KEYS = ("name", "file", "seed", "split", "frames", "outcome")
# what reading frames and labels needs: a trainer accepts a manifest that holds only these
TRAINING_KEYS = ("env_kwargs", "runs", "splits")
TRAINING_ENTRY_KEYS = ("name",)


def step_fields(
    format_version: int, two_controls: bool = False
) -> dict[str, tuple[type, tuple[int, ...] | None]]:
    """The per-step datasets a run file of ``format_version`` holds.

    ``two_controls``: a run of the two-control world, which holds the ``SPEED_FIELDS`` too.
    """
    if format_version == 1:
        return {k: v for k, v in STEP_FIELDS.items() if k not in ADDED_IN_2}
    return {**STEP_FIELDS, **(SPEED_FIELDS if two_controls else {})}


def field_type(name: str) -> tuple[type, tuple[int, ...] | None]:
    """(dtype, shape after the time axis) of any per-step dataset."""
    return STEP_FIELDS[name] if name in STEP_FIELDS else SPEED_FIELDS[name]


class DatasetError(UserError):
    """A dataset file that cannot be read or does not follow the format; one-line message."""


def run_name(run_index: int) -> str:
    """Name of run ``run_index``: ``run_000007``."""
    return f"run_{run_index:06d}"


def run_path(directory: Path, run_index: int) -> Path:
    """Where run ``run_index`` of the dataset in ``directory`` lives."""
    return Path(directory) / RUNS_DIR / f"{run_name(run_index)}.h5"


def file_label(path: Path) -> str:
    """How messages name a run file: ``runs/run_000001.h5`` relative to its dataset."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name == RUNS_DIR else str(path)
