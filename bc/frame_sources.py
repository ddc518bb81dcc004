"""Where a split's frames live: all in memory, or read from the run files per batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import h5py
import numpy as np
import torch

from dataset import DatasetError, error_text, file_label, open_run_file


class FrameSource(Protocol):
    """Where a split's frames live; ``gather`` returns uint8 ``(*idx.shape, C, H, W)``."""

    def gather(self, idx: torch.Tensor) -> torch.Tensor:  # noqa: D102
        ...


class InRamFrames:
    """All frames of a split in one uint8 tensor ``(N, C, H, W)``."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """Frames at global indices ``idx`` (any shape), as one ``index_select``."""
        flat = self.frames.index_select(0, idx.reshape(-1).to(self.frames.device))
        return flat.view(*idx.shape, *self.frames.shape[1:])


class LazyFrames:
    """Frames read from the HDF5 files per batch; files stay open between batches."""

    def __init__(self, runs: Sequence[Any], begins: torch.Tensor, shape: tuple[int, ...]):
        self.runs = list(runs)
        self.begins = begins.cpu()
        self.shape = shape  # (C, H, W)
        self._files: dict[int, h5py.File] = {}

    def _dataset(self, run: int) -> h5py.Dataset:
        if run not in self._files:
            self._files[run] = open_run_file(self.runs[run].path)
        return self._files[run]["frames"]

    def read(self, run: int, local: np.ndarray) -> np.ndarray:
        """Frames ``local`` (sorted, unique) of one run as uint8 ``(n, H, W, C)``."""
        dataset = self._dataset(run)
        try:
            low, high = int(local[0]), int(local[-1]) + 1
            # One contiguous read beats h5py's per-index selection when the indices are dense
            # (sequence windows, frame stacks).
            if high - low <= 4 * len(local):
                return dataset[low:high][local - low]
            return dataset[local]
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"{file_label(self.runs[run].path)}: cannot read frames ({error_text(error)})"
            ) from None

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """Frames at global indices ``idx``, grouped by run into as few reads as possible."""
        flat = idx.reshape(-1).cpu()
        out = torch.empty((flat.numel(), *self.shape), dtype=torch.uint8)
        runs = torch.searchsorted(self.begins, flat, right=True) - 1
        for run in torch.unique(runs).tolist():
            where = (runs == run).nonzero().squeeze(1)
            unique, inverse = torch.unique(flat[where] - self.begins[run], return_inverse=True)
            frames = torch.from_numpy(self.read(run, unique.numpy()))  # (n, H, W, C)
            out[where] = frames.permute(0, 3, 1, 2)[inverse]
        return out.view(*idx.shape, *self.shape)

    def close(self) -> None:
        """Close the open HDF5 files."""
        for file in self._files.values():
            file.close()
        self._files.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Open h5py handles cannot cross process boundaries; reopen on first use.
        return {**self.__dict__, "_files": {}}
