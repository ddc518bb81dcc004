"""Writing one run file of the format, streamed step by step and published atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from artifacts.atomic import commit_file, temp_path
from dataset.format import COMPRESSIONS, FINAL_FIELDS, FORMAT_VERSION, STEP_FIELDS, step_fields
from dataset.reader import load_run
from envs.controls import TWO_CONTROLS


class RunWriter:
    """Streams one run into a temporary HDF5 file; ``commit`` publishes it atomically.

    Frames are chunked one per chunk (random access for training) and compressed losslessly:
    gzip level 1 (readable by any HDF5 library) or lzf (h5py's faster filter). Use as a context
    manager: leaving the block without ``commit`` (an exception, a dropped run) removes the
    temporary file. Always writes the current ``FORMAT_VERSION``. ``two_controls``: a run of the
    two-control world, which holds the ``SPEED_FIELDS`` too (and says so in its ``controls``
    attribute).
    """

    def __init__(
        self,
        final: Path,
        frame_shape: tuple[int, ...],
        compression: str = "gzip",
        block: int = 64,
        two_controls: bool = False,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        self.final = Path(final)
        self.temporary = temp_path(self.final)
        self.frame_shape = tuple(int(v) for v in frame_shape)
        self.block = block
        self.n_steps = 0
        self.two_controls = two_controls
        self.fields = step_fields(FORMAT_VERSION, two_controls)
        self._buffers: dict[str, list] = {name: [] for name in self.fields}
        self._file = h5py.File(self.temporary, "w")
        self._frame_options: dict[str, Any] = {"compression": compression}
        if compression == "gzip":
            self._frame_options["compression_opts"] = 1
        self._datasets: dict[str, h5py.Dataset] = {}
        for name, (dtype, shape) in self.fields.items():
            tail = self.frame_shape if shape is None else shape
            chunks = (1, *tail) if shape is None else (1024, *tail)
            self._datasets[name] = self._file.create_dataset(
                name,
                shape=(0, *tail),
                maxshape=(None, *tail),
                dtype=dtype,
                chunks=chunks,
                **(self._frame_options if shape is None else {"compression": compression}),
            )

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.discard()

    def append(self, **step: Any) -> None:
        """Add one step: one value for every per-step dataset (others are ignored)."""
        for name in self.fields:
            self._buffers[name].append(step[name])
        self.n_steps += 1
        if len(self._buffers["frames"]) >= self.block:
            self._flush()

    def _flush(self) -> None:
        count = len(self._buffers["frames"])
        if count == 0:
            return
        for name, (dtype, _) in self.fields.items():
            dataset = self._datasets[name]
            start = dataset.shape[0]
            dataset.resize(start + count, axis=0)
            dataset[start:] = np.asarray(self._buffers[name], dtype=dtype)
            self._buffers[name].clear()

    def commit(self, attrs: dict[str, Any], final: Mapping[str, Any]) -> Path:
        """Write the state after the last step and ``attrs``, close, fsync, rename into place.

        ``final`` holds one value for every name in ``FINAL_FIELDS`` (the observation, pose,
        progress, offset and heading error the last step led to); ``n_steps`` and
        ``format_version`` are added to ``attrs``.
        """
        missing = [name for name in FINAL_FIELDS if name not in final]
        if missing:
            raise ValueError(f"commit needs the state after the last step: {', '.join(missing)}")
        self._flush()
        for name, step_name in FINAL_FIELDS.items():
            dtype, shape = STEP_FIELDS[step_name]
            value = np.asarray(final[name], dtype=dtype)
            tail = self.frame_shape if shape is None else shape
            if value.shape != tail:
                raise ValueError(f"{name} has shape {value.shape}, expected {tail}")
            options = self._frame_options if shape is None else {}
            self._file.create_dataset(name, data=value, **options)
        values = {**attrs, "n_steps": self.n_steps, "format_version": FORMAT_VERSION}
        if self.two_controls:
            values["controls"] = TWO_CONTROLS
        for key, value in values.items():
            self._file.attrs[key] = value
        self._file.close()
        commit_file(self.temporary, self.final)
        return self.final

    def discard(self) -> None:
        """Close and remove the temporary file (a no-op after ``commit``)."""
        if self._file.id.valid:
            self._file.close()
        self.temporary.unlink(missing_ok=True)


def cut_run(path: Path, n_steps: int, compression: str = "gzip", **attrs: Any) -> Path:
    """Keep the first ``n_steps`` steps of a run file, rewritten in place (atomically).

    The sequence then stops before its episode ended: its last step is truncated (not
    terminated), its outcome ``timeout``, and the state after it is the one step ``n_steps``
    of the whole run saw. ``attrs`` are set on top of the run's own (``cut_by_budget=True``).
    A format-1 run comes out in the current format.
    """
    data = load_run(path)
    old = data.pop("attrs")
    if not 1 <= n_steps < int(old["n_steps"]):
        raise ValueError(f"cannot cut a run of {old['n_steps']} steps to {n_steps}")
    final = {name: data[step_name][n_steps] for name, step_name in FINAL_FIELDS.items()}
    two_controls = old.get("controls") == TWO_CONTROLS
    fields = step_fields(FORMAT_VERSION, two_controls)
    steps = {name: data[name][:n_steps] for name in fields if name in data}
    steps["terminated"] = np.zeros(n_steps, bool)
    steps["truncated"] = np.arange(n_steps) == n_steps - 1
    values = {key: value for key, value in old.items() if key != "n_steps"}
    shape = data["frames"].shape[1:]
    with RunWriter(path, shape, compression, two_controls=two_controls) as writer:
        for t in range(n_steps):
            writer.append(**{name: array[t] for name, array in steps.items()})
        return writer.commit({**values, "outcome": "timeout", **attrs}, final)
