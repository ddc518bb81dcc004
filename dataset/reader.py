"""Reading and checking datasets: every problem is a one-line ``DatasetError`` naming the file.

Two kinds of readers share these checks: ``load_run`` reads a whole run file (``dataset.verify``,
the collection's resume), while a trainer opens run files once (``open_run_file``) and reads
frames per batch, checking their layout (``step_datasets``, ``check_steps``) up front and
their labels (``check_values``) as it reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from artifacts.formats import check_format
from artifacts.formats import check_version as check_format_version
from dataset.format import (
    FINAL_FIELDS,
    MANIFEST,
    MANIFEST_KEYS,
    OUTCOMES,
    READABLE_VERSIONS,
    REQUIRED_ATTRS,
    RUN_ENTRY_KEYS,
    RUNS_DIR,
    STEP_FIELDS,
    DatasetError,
    field_type,
    file_label,
    step_fields,
)
from envs.controls import TWO_CONTROLS
from envs.spaces import ACTION_TYPES, image_shape, obs_channels


def error_text(error: BaseException) -> str:
    """An exception's message on one line, cut to 120 characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def open_run_file(path: Path) -> h5py.File:
    """Open a run file for reading; ``DatasetError`` if it is missing or not HDF5."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise DatasetError(f"{file_label(path)}: file is missing") from None
    except OSError as error:
        raise DatasetError(
            f"{file_label(path)}: truncated or not an HDF5 file ({error_text(error)})"
        ) from None


def read_run_attrs(path: Path) -> dict[str, Any]:
    """The attributes of a run file (cheap: no frames are read)."""
    with open_run_file(path) as handle:
        try:
            attrs = {key: _python(value) for key, value in handle.attrs.items()}
        except (OSError, RuntimeError, ValueError) as error:
            raise DatasetError(
                f"{file_label(path)}: unreadable attributes ({error_text(error)})"
            ) from None
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise DatasetError(f"{file_label(path)}: attributes missing: {', '.join(missing)}")
    return attrs


def step_datasets(path: Path, handle: h5py.File, names: Any) -> dict[str, h5py.Dataset]:
    """The per-step datasets ``names`` of an open run file, unread."""
    for name in names:
        if name not in handle:
            raise DatasetError(f"{file_label(path)}: dataset {name!r} is missing")
    return {name: handle[name] for name in names}


def load_run(path: Path, frames: bool = True) -> dict[str, Any]:
    """Read and check one run file: a dict of arrays, one per dataset, plus ``attrs``.

    A format-2 file also holds ``terminated``, ``truncated`` and the ``FINAL_FIELDS``; a
    format-1 file lacks them (``attrs["format_version"]`` says which). ``frames=False`` skips
    decoding the frames (``frames`` and ``final_frame`` are then absent). Raises
    ``DatasetError`` (one line, naming the file) for a missing, truncated or corrupt file, a
    missing dataset, lengths that disagree, or labels out of range.
    """
    path = Path(path)
    attrs = read_run_attrs(path)
    version = check_version(path, attrs["format_version"])
    two_controls = attrs.get("controls") == TWO_CONTROLS
    names = [name for name in step_fields(version, two_controls) if frames or name != "frames"]
    if version >= 2:
        names += [name for name in FINAL_FIELDS if frames or name != "final_frame"]
    try:
        with open_run_file(path) as handle:
            data = {name: array[()] for name, array in step_datasets(path, handle, names).items()}
    except DatasetError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise DatasetError(f"{file_label(path)}: unreadable data ({error_text(error)})") from None
    check_run(path, data, attrs)
    data["attrs"] = attrs
    return data


def check_version(path: Path, version: Any) -> int:
    """``version`` if this corridor-bc reads it, else ``DatasetError``."""
    return check_format_version(file_label(path), version, READABLE_VERSIONS, DatasetError,
                                "; a newer corridor-bc may read it")  # fmt: skip


def check_run(path: Path, data: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Consistency of one run's arrays with each other and with its attributes."""
    where = file_label(path)
    version = check_version(path, attrs["format_version"])
    if attrs["outcome"] not in OUTCOMES:
        raise DatasetError(f"{where}: outcome {attrs['outcome']!r} is not one of {OUTCOMES}")
    two_controls = attrs.get("controls") == TWO_CONTROLS
    steps = {name: data[name] for name in step_fields(version, two_controls) if name in data}
    check_steps(path, steps, int(attrs["n_steps"]))
    check_values(path, data, int(attrs["n_bins"]), int(attrs.get("speed_bins", 0)))
    if version >= 2:
        check_final(path, data)
        check_ends(path, data, attrs["outcome"])


def check_final(path: Path, data: Mapping[str, np.ndarray]) -> None:
    """The state after the last step: dtypes and shapes of its step fields, finite values."""
    where = file_label(path)
    for name, step_name in FINAL_FIELDS.items():
        if name not in data:
            continue
        dtype, shape = STEP_FIELDS[step_name]
        value = data[name]
        expected = data["frames"].shape[1:] if shape is None and "frames" in data else shape
        if value.dtype != dtype:
            raise DatasetError(
                f"{where}: {name} has dtype {value.dtype}, expected {np.dtype(dtype)}"
            )
        if expected is not None and value.shape != expected:
            raise DatasetError(f"{where}: {name} has shape {value.shape}, expected {expected}")
        if shape is not None and not np.all(np.isfinite(value)):
            raise DatasetError(f"{where}: {name} has NaN or infinite values")


def check_ends(path: Path, data: Mapping[str, np.ndarray], outcome: str) -> None:
    """Only the last step ends the run, it does, and ``terminated`` agrees with the outcome."""
    where = file_label(path)
    terminated, truncated = data["terminated"], data["truncated"]
    if terminated[:-1].any() or truncated[:-1].any():
        raise DatasetError(f"{where}: a step before the last is terminated or truncated")
    if not (terminated[-1] or truncated[-1]):
        raise DatasetError(f"{where}: the last step is neither terminated nor truncated")
    if bool(terminated[-1]) != (outcome in ("goal", "collision")):
        raise DatasetError(
            f"{where}: the last step is{'' if terminated[-1] else ' not'} terminated but the"
            f" outcome is {outcome}"
        )


def check_steps(path: Path, arrays: Mapping[str, Any], n_steps: int) -> None:
    """Dtype, length and shape of per-step arrays (numpy arrays or unread h5py datasets)."""
    where = file_label(path)
    for name, array in arrays.items():
        dtype, shape = field_type(name)
        if array.dtype != dtype:
            expected = np.dtype(dtype)
            raise DatasetError(f"{where}: {name} has dtype {array.dtype}, expected {expected}")
        if len(array) != n_steps:
            raise DatasetError(f"{where}: {name} has {len(array)} steps, n_steps says {n_steps}")
        if shape is not None and array.shape[1:] != shape:
            raise DatasetError(f"{where}: {name} has shape {array.shape}, expected (T, *{shape})")
        if shape is None and array.ndim != 4:
            raise DatasetError(f"{where}: frames have shape {array.shape}, expected (T, H, W, C)")
    if n_steps == 0:
        raise DatasetError(f"{where}: the run has no steps")


def check_frame_shape(path: Path, frames: Any, frame_shape: tuple[int, int, int]) -> None:
    """Frames ``(T, H, W, C)`` of the shape the manifest's env_kwargs give."""
    if tuple(frames.shape[1:]) != tuple(frame_shape):
        raise DatasetError(
            f"{file_label(path)}: frames are {tuple(frames.shape[1:])} (H, W, C) but env_kwargs"
            f" say {tuple(frame_shape)}"
        )


def check_values(
    path: Path, data: Mapping[str, np.ndarray], n_bins: int, speed_bins: int = 0
) -> None:
    """Labels and actions in range, per-step measurements finite."""
    where = file_label(path)
    bins = {"action": n_bins, "expert_action": n_bins}
    bins.update({"speed_action": speed_bins, "expert_speed_action": speed_bins})
    for name, count in bins.items():
        if name in data and (data[name].min() < 0 or data[name].max() >= count):
            raise DatasetError(f"{where}: {name} has values outside [0, {count})")
    for name in ("action_continuous", "expert_continuous", "speed_continuous",
                 "expert_speed_continuous"):  # fmt: skip
        if name in data and not np.all(np.abs(data[name]) <= 1.0):
            raise DatasetError(f"{where}: {name} has values outside [-1, 1] (or NaN)")
    for name in ("pose", "progress", "reward", "lateral_offset", "heading_error", "speed"):
        if name in data and not np.all(np.isfinite(data[name])):
            raise DatasetError(f"{where}: {name} has NaN or infinite values")


def read_manifest(
    directory: Path,
    keys: tuple[str, ...] = MANIFEST_KEYS,
    entry_keys: tuple[str, ...] = RUN_ENTRY_KEYS,
) -> dict[str, Any]:
    """Read and check ``directory/manifest.json``; ``DatasetError`` (one line) if unusable.

    ``keys`` and ``entry_keys`` are what the manifest and each run entry must hold (a
    trainer needs fewer than a complete dataset has: ``TRAINING_KEYS``).
    """
    directory = Path(directory)
    if not directory.exists():
        raise DatasetError(
            f"dataset {directory} does not exist (collect one with python -m expert.collect)"
        )
    if not directory.is_dir():
        raise DatasetError(f"dataset {directory} is not a directory")
    path = directory / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no manifest (is this a dataset directory?)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot be read ({error_text(error)})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: not a JSON object")
    check_format(str(path), manifest, READABLE_VERSIONS, DatasetError)
    missing = [key for key in keys if key not in manifest]
    if missing:
        raise DatasetError(f"{path}: keys missing: {', '.join(missing)}")
    if not isinstance(manifest["runs"], list):
        raise DatasetError(f"{path}: runs is not a list")
    for entry in manifest["runs"]:
        if not isinstance(entry, dict) or any(key not in entry for key in entry_keys):
            raise DatasetError(f"{path}: a run entry lacks one of {', '.join(entry_keys)}")
    if not isinstance(manifest["splits"], dict):
        raise DatasetError(f"{path}: splits must map split names to run names")
    return manifest


def run_file(directory: Path, entry: dict[str, Any]) -> Path:
    """The file of a manifest's run entry (``runs/<name>.h5`` where the entry names none)."""
    name = entry.get("file") or f"{RUNS_DIR}/{entry['name']}.h5"
    path = Path(directory) / name
    if not path.exists() and (Path(directory) / RUNS_DIR / name).exists():
        path = Path(directory) / RUNS_DIR / name
    return path


@dataclass(frozen=True)
class RecordedEnv:
    """What a manifest's env_kwargs say about its runs' frames and actions."""

    n_bins: int
    action_type: str
    channels: int
    height: int
    width: int

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of every frame."""
        return self.height, self.width, self.channels


def recorded_env(manifest: dict[str, Any], path: Path) -> RecordedEnv:
    """The frame shape, bins and action type of a manifest (read from ``path``)."""
    env_kwargs = manifest.get("env_kwargs")
    if not isinstance(env_kwargs, dict):
        raise DatasetError(f"{path}: env_kwargs must be an object")
    for key in ("n_bins", "obs_mode", "image_size", "action_type"):
        if key not in env_kwargs:
            raise DatasetError(f"{path}: env_kwargs lacks {key!r}")
    n_bins = env_kwargs["n_bins"]
    if not isinstance(n_bins, int) or n_bins < 2:
        raise DatasetError(f"{path}: env_kwargs.n_bins must be an int >= 2, got {n_bins!r}")
    action_type = env_kwargs["action_type"]
    if action_type not in ACTION_TYPES:
        raise DatasetError(
            f"{path}: env_kwargs.action_type {action_type!r} is not one of {ACTION_TYPES}"
        )
    try:
        channels = obs_channels(env_kwargs["obs_mode"])
        height, width = image_shape(env_kwargs["image_size"])
    except ValueError as error:
        raise DatasetError(f"{path}: env_kwargs.{error}") from None
    return RecordedEnv(n_bins, action_type, channels, height, width)


def _python(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value
