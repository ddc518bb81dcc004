"""Writing one run file of the format, streamed step by step and published atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from dataset.atomic import commit_file, temp_path
from dataset.format import COMPRESSIONS, STEP_FIELDS


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
