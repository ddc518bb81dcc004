"""Reading and writing datasets in the format of docs/dataset.md (format_version 1).

Writers are crash-safe: a run file and the manifest are written to a temporary file in the
same directory, flushed to disk (fsync) and renamed over the final name (``os.replace``), so a
reader sees either the old file or the complete new one, never half of one. Leftover
temporary files (from a process killed mid-write) are named ``.<stem>.<pid>.tmp<suffix>``
(the suffix kept for libraries that pick a format by it) and are removed by the next
collection.

Readers check what they read and raise ``DatasetError`` with a one-line message that names
the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
RUNS_DIR = "runs"
VIDEOS_DIR = "videos"
TEMP_MARK = ".tmp"
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
}
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


class DatasetError(Exception):
    """A dataset file that cannot be read or does not follow the format; one-line message."""


def run_name(run_index: int) -> str:
    """Name of run ``run_index``: ``run_000007``."""
    return f"run_{run_index:06d}"


def run_path(directory: Path, run_index: int) -> Path:
    """Where run ``run_index`` of the dataset in ``directory`` lives."""
    return Path(directory) / RUNS_DIR / f"{run_name(run_index)}.h5"


def temp_path(final: Path) -> Path:
    """A temporary name next to ``final``, unique to this process, with the same suffix."""
    final = Path(final)
    return final.with_name(f".{final.stem}.{os.getpid()}{TEMP_MARK}{final.suffix}")


def temp_files(directory: Path) -> list[Path]:
    """Leftover temporary files of a dataset (in the dataset and its runs/ and videos/)."""
    directory = Path(directory)
    found: list[Path] = []
    for folder in (directory, directory / RUNS_DIR, directory / VIDEOS_DIR):
        if folder.is_dir():
            found += sorted(p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file())
    return found


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not every platform can open a directory
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temporary: Path, final: Path) -> None:
    """Flush ``temporary`` to disk and rename it to ``final`` atomically."""
    _fsync_file(temporary)
    os.replace(temporary, final)
    _fsync_directory(final.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers never see half a file."""
    path = Path(path)
    temporary = temp_path(path)
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=False)
            handle.write("\n")
        commit_file(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


class RunWriter:
    """Streams one run into a temporary HDF5 file; ``commit`` publishes it atomically.

    Frames are chunked one per chunk (random access for training) and compressed losslessly:
    gzip level 1 (readable by any HDF5 library) or lzf (h5py's faster filter). Use as a context
    manager: leaving the block without ``commit`` (an exception, a dropped run) removes the
    temporary file.
    """

    def __init__(
        self,
        final: Path,
        frame_shape: tuple[int, ...],
        compression: str = "gzip",
        block: int = 64,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.final = Path(final)
        self.temporary = temp_path(self.final)
        self.frame_shape = tuple(int(v) for v in frame_shape)
        self.block = block
        self.n_steps = 0
        self._buffers: dict[str, list] = {name: [] for name in STEP_FIELDS}
        self._file = h5py.File(self.temporary, "w")
        options: dict[str, Any] = {"compression": compression}
        if compression == "gzip":
            options["compression_opts"] = 1
        self._datasets: dict[str, h5py.Dataset] = {}
        for name, (dtype, shape) in STEP_FIELDS.items():
            tail = self.frame_shape if shape is None else shape
            chunks = (1, *tail) if shape is None else (1024, *tail)
            self._datasets[name] = self._file.create_dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                dtype=dtype,
                chunks=chunks,
                **(options if shape is None else {"compression": compression}),
            )

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.discard()

    def append(self, **step: Any) -> None:
        """Add one step: one value for every name in ``STEP_FIELDS``."""
        for name in STEP_FIELDS:
            self._buffers[name].append(step[name])
        self.n_steps += 1
        if len(self._buffers["frames"]) >= self.block:
            self._flush()

    def _flush(self) -> None:
        count = len(self._buffers["frames"])
        if count == 0:
            return
        for name, (dtype, _) in STEP_FIELDS.items():
            dataset = self._datasets[name]
            start = dataset.shape[0]
            dataset.resize(start + count, axis=0)
            dataset[start:] = np.asarray(self._buffers[name], dtype=dtype)
            self._buffers[name].clear()

    def truncate(self, n_steps: int) -> None:
        """Keep only the first ``n_steps`` steps."""
        self._flush()
        for dataset in self._datasets.values():
            dataset.resize(n_steps, axis=0)
        self.n_steps = n_steps

    def commit(self, attrs: dict[str, Any]) -> Path:
        """Write ``attrs`` (n_steps is added), close, fsync and rename into place."""
        self._flush()
        for key, value in {**attrs, "n_steps": self.n_steps}.items():
            self._file.attrs[key] = value
        self._file.close()
        commit_file(self.temporary, self.final)
        return self.final

    def discard(self) -> None:
        """Close and remove the temporary file (a no-op after ``commit``)."""
        if self._file.id.valid:
            self._file.close()
        self.temporary.unlink(missing_ok=True)


def _name(path: Path) -> str:
    """How messages name a run file: ``runs/run_000001.h5`` relative to its dataset."""
    path = Path(path)
    return f"{path.parent.name}/{path.name}" if path.parent.name == RUNS_DIR else str(path)


def read_run_attrs(path: Path) -> dict[str, Any]:
    """The attributes of a run file (cheap: no frames are read)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _python(value) for key, value in handle.attrs.items()}
    except FileNotFoundError:
        raise DatasetError(f"{_name(path)}: file is missing") from None
    except OSError as error:
        raise DatasetError(f"{_name(path)}: not a readable HDF5 file ({_short(error)})") from None
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise DatasetError(f"{_name(path)}: attributes missing: {', '.join(missing)}")
    return attrs


def load_run(path: Path, frames: bool = True) -> dict[str, Any]:
    """Read and check one run file: a dict of arrays, one per dataset, plus ``attrs``.

    ``frames=False`` skips decoding the frames (the key is then absent). Raises
    ``DatasetError`` (one line, naming the file) for a missing, truncated or corrupt file, a
    missing dataset, lengths that disagree, or labels out of range.
    """
    path = Path(path)
    attrs = read_run_attrs(path)
    data: dict[str, Any] = {}
    try:
        with h5py.File(path, "r") as handle:
            for name in STEP_FIELDS:
                if name == "frames" and not frames:
                    continue
                if name not in handle:
                    raise DatasetError(f"{_name(path)}: dataset {name!r} is missing")
                data[name] = handle[name][()]
    except DatasetError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise DatasetError(f"{_name(path)}: unreadable data ({_short(error)})") from None
    check_run(path, data, attrs)
    data["attrs"] = attrs
    return data


def check_run(path: Path, data: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Consistency of one run's arrays with each other and with its attributes."""
    where = _name(path)
    if attrs["format_version"] != FORMAT_VERSION:
        raise DatasetError(
            f"{where}: format_version {attrs['format_version']} is not {FORMAT_VERSION}"
        )
    n_steps, n_bins = int(attrs["n_steps"]), int(attrs["n_bins"])
    if attrs["outcome"] not in OUTCOMES:
        raise DatasetError(f"{where}: outcome {attrs['outcome']!r} is not one of {OUTCOMES}")
    for name, array in data.items():
        dtype, shape = STEP_FIELDS[name]
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
    for name in ("action", "expert_action"):
        if name in data and (data[name].min() < 0 or data[name].max() >= n_bins):
            raise DatasetError(f"{where}: {name} has values outside [0, {n_bins})")
    for name in ("action_continuous", "expert_continuous"):
        if name in data and not np.all(np.abs(data[name]) <= 1.0):
            raise DatasetError(f"{where}: {name} has values outside [-1, 1] (or NaN)")
    for name in ("pose", "progress", "reward", "lateral_offset", "heading_error"):
        if name in data and not np.all(np.isfinite(data[name])):
            raise DatasetError(f"{where}: {name} has NaN or infinite values")


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``directory/manifest.json``; ``DatasetError`` (one line) if unusable."""
    path = Path(directory) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: no manifest (is this a dataset directory?)") from None
    except OSError as error:
        raise DatasetError(f"{path}: cannot be read ({_short(error)})") from None
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as error:
        raise DatasetError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(manifest, dict):
        raise DatasetError(f"{path}: not a JSON object")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise DatasetError(f"{path}: keys missing: {', '.join(missing)}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise DatasetError(
            f"{path}: format_version {manifest['format_version']} is not {FORMAT_VERSION}"
        )
    if not isinstance(manifest["runs"], list):
        raise DatasetError(f"{path}: runs is not a list")
    for entry in manifest["runs"]:
        if not isinstance(entry, dict) or any(key not in entry for key in RUN_ENTRY_KEYS):
            raise DatasetError(f"{path}: a run entry lacks one of {', '.join(RUN_ENTRY_KEYS)}")
    return manifest


def iter_runs(directory: Path, split: str | None = None) -> Iterator[tuple[dict, Path]]:
    """The manifest's run entries (of one split, or all) with their file paths."""
    directory = Path(directory)
    for entry in read_manifest(directory)["runs"]:
        if split is None or entry["split"] == split:
            yield entry, directory / entry["file"]


def _python(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 120 else text[:117] + "..."
