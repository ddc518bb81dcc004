"""Reading datasets (docs/dataset.md) into one sequence store shared by every net family.

A split's runs are laid end to end on one global frame axis; per frame we keep the index of
its run's first frame, so every window is built by index arithmetic on whole batches:

* a frame stack for target frame ``t`` is ``[t - F + 1, ..., t]`` clamped from below at the
  run's first frame, i.e. **the first frames of a run are padded by repeating its first
  frame** (the policy does the same at the start of an episode);
* a sequence window is ``[start, start + L)`` inside one run, cut short at the run's end,
  with a mask for the steps that are padding.

So no window crosses a run boundary. Frames stay uint8 ``(N, C, H, W)`` (channels first, once,
at load time) either in memory (``--in-ram yes``) or in the HDF5 files (``--in-ram no``, read
per batch); normalisation happens on the gathered batch (``InputNorm``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import psutil
import torch

from bc.frame_sources import FrameSource, InRamFrames, LazyFrames
from dataset import (
    LABEL_FIELDS,
    MANIFEST,
    SPLITS,
    TRAINING_ENTRY_KEYS,
    TRAINING_KEYS,
    DatasetError,
    check_frame_shape,
    check_steps,
    check_values,
    error_text,
    file_label,
    open_run_file,
    read_manifest,
    recorded_env,
    run_file,
    step_datasets,
)
from envs.controls import TWO_CONTROLS
from envs.spaces import yaw_command_to_bin

# per-step datasets read besides the labels: the executed yaw (for extra inputs), and the
# speed fields of the two-control world (keyed by whether the dataset has two controls)
MORE_FIELDS = {
    False: ("action_continuous",),
    True: ("action_continuous", "expert_speed_action", "expert_speed_continuous", "speed",
           "speed_continuous"),
}  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class RunInfo:
    """One run of a split: its file, how many frames it has and how many we use."""

    name: str
    path: Path
    split: str
    total: int
    length: int


@dataclass
class SplitData:
    """The runs of one split on a single global frame axis, with their labels."""

    name: str
    runs: list[RunInfo]
    begins: torch.Tensor  # (R,) global index of each run's first frame
    lengths: torch.Tensor  # (R,) frames used per run
    run_of: torch.Tensor  # (N,) run of every frame
    bins: torch.Tensor  # (N,) int64 label bin (expert_action, or nearest bin of continuous)
    yaw: torch.Tensor  # (N,) float32 expert_continuous in [-1, 1]
    source: FrameSource
    in_ram: bool
    executed_yaw: torch.Tensor | None = None  # (N,) yaw command executed (extra inputs)
    # the two-control world: expert speed bin and command, the speed each step began at
    # (m/s) and the speed command executed
    speed_bins: torch.Tensor | None = None
    speed: torch.Tensor | None = None
    speed_now: torch.Tensor | None = None
    executed_speed: torch.Tensor | None = None
    # set for a training run (bc.extras.prepare_split): (N, E) extras, (N, 2) loss weights
    extras: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    prepared: bool = False

    @property
    def n_frames(self) -> int:
        """Frames in the split."""
        return int(self.run_of.numel())

    @property
    def n_runs(self) -> int:
        """Runs in the split."""
        return len(self.runs)

    def stack_indices(self, targets: torch.Tensor, frames: int) -> torch.Tensor:
        """``(M,) -> (M, frames)`` indices of the stacks ending at ``targets``, oldest first.

        The first frames of a run are repeated instead of reaching into the previous run.
        """
        offsets = torch.arange(1 - frames, 1, device=targets.device)  # (F,)
        first = self.begins.to(targets.device)[self.run_of.to(targets.device)[targets]]
        return torch.maximum(targets[:, None] + offsets[None, :], first[:, None])

    def window_indices(
        self, runs: torch.Tensor, offsets: torch.Tensor, valid: torch.Tensor, length: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows of ``length`` steps from ``offsets`` in ``runs``, ``valid`` steps each.

        Returns ``(idx, mask)``, both ``(B, length)``; steps past ``valid`` repeat the last
        valid frame (never the next run's) and are ``False`` in the mask.
        """
        steps = torch.arange(length)
        mask = steps[None, :] < valid[:, None]
        local = offsets[:, None] + torch.minimum(steps[None, :], (valid - 1).clamp_min(0)[:, None])
        local = torch.minimum(local, (self.lengths[runs] - 1)[:, None]).clamp_min(0)
        return self.begins[runs][:, None] + local, mask

    def positions(self, idx: torch.Tensor) -> torch.Tensor:
        """Step of each global frame index within its run."""
        return idx - self.begins[self.run_of[idx]]

    def gather(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 frames ``(*idx.shape, C, H, W)``."""
        return self.source.gather(idx)

    def iter_frames(self, chunk: int = 512) -> Iterator[torch.Tensor]:
        """Every frame in order, in uint8 chunks ``(n, C, H, W)``."""
        for start in range(0, self.n_frames, chunk):
            yield self.gather(torch.arange(start, min(start + chunk, self.n_frames)))

    def class_counts(self, n_bins: int) -> torch.Tensor:
        """Frames per label bin."""
        return torch.bincount(self.bins.cpu(), minlength=n_bins)


@dataclass
class Dataset:
    """A dataset directory, read: its manifest, env_kwargs and splits."""

    root: Path
    manifest: dict[str, Any]
    env_kwargs: dict[str, Any]
    n_bins: int
    action_type: str
    channels: int
    height: int
    width: int
    splits: dict[str, SplitData] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, list[list[Any]]]:
        """Run names and used lengths per split.

        Enough to tell that a resume reads the same data as the run it continues.
        """
        return {
            name: [[run.name, run.length] for run in split.runs]
            for name, split in self.splits.items()
        }


def _open_run(path: Path, frame_shape: tuple[int, int, int]) -> h5py.File:
    """Open a run file and check the layout of what training reads: frames and labels."""
    file = open_run_file(path)
    try:
        arrays = step_datasets(path, file, ("frames", *LABEL_FIELDS))
        check_steps(path, arrays, len(arrays["frames"]))
        check_frame_shape(path, arrays["frames"], frame_shape)
    except DatasetError:
        file.close()
        raise
    return file


def _plan_lengths(totals: list[int], max_frames: int, subsample: int) -> list[int]:
    """Frames used per training run so that at most ``max_frames`` are labelled."""
    if max_frames <= 0:
        return list(totals)
    lengths, remaining = [], max_frames
    for total in totals:
        labelled = math.ceil(total / subsample)
        take = min(labelled, remaining)
        # The last labelled frame of a truncated run is step (take - 1) * subsample.
        lengths.append(total if take == labelled else (take - 1) * subsample + 1 if take else 0)
        remaining -= take
    return lengths


def _memory_fits(n_bytes: int) -> bool:
    return n_bytes < psutil.virtual_memory().available // 2


def load_dataset(
    path: str | Path,
    *,
    in_ram: str = "auto",
    max_frames: int = 0,
    subsample: int = 1,
    splits: Sequence[str] = SPLITS,
    device: str | torch.device = "cpu",
) -> Dataset:
    """Read a dataset directory; every problem is a one-line ``DatasetError`` naming the file.

    ``max_frames`` and ``subsample`` shape the training split only (at most ``max_frames``
    labelled frames, whole runs first); ``in_ram`` is ``yes``, ``no`` or ``auto`` (load when
    the frames take less than half the free memory). In-memory frames live on ``device``.
    """
    root = Path(path)
    manifest = read_manifest(root, TRAINING_KEYS, TRAINING_ENTRY_KEYS)
    manifest_path = root / MANIFEST
    env = recorded_env(manifest, manifest_path)
    entries = {entry["name"]: entry for entry in manifest["runs"]}
    if not manifest["runs"]:
        raise DatasetError(f"{manifest_path}: the dataset holds no runs")
    split_names = manifest["splits"]
    dataset = Dataset(
        root,
        manifest,
        manifest["env_kwargs"],
        env.n_bins,
        env.action_type,
        env.channels,
        env.height,
        env.width,
    )
    opened: list[tuple[str, list[RunInfo], list[h5py.File]]] = []
    try:
        for split in splits:
            names = split_names.get(split) or []
            if not names:
                if split in ("train", "val"):
                    raise DatasetError(
                        f"{manifest_path}: the {split} split holds no runs (collect at least"
                        " 2 runs so that train and val both get one)"
                    )
                continue
            runs, files = [], []
            for name in names:
                if name not in entries:
                    raise DatasetError(f"{manifest_path}: split {split} names unknown run {name!r}")
                run_path = run_file(root, entries[name])
                file = _open_run(run_path, env.frame_shape)
                files.append(file)
                total = len(file["frames"])
                expected = entries[name].get("frames")
                if isinstance(expected, int) and expected != total:
                    raise DatasetError(
                        f"{file_label(run_path)}: holds {total} frames but the manifest says"
                        f" {expected} (incomplete write?)"
                    )
                runs.append(RunInfo(name, run_path, split, total, total))
            if split == "train":
                lengths = _plan_lengths([run.total for run in runs], max_frames, subsample)
                runs = [
                    RunInfo(r.name, r.path, r.split, r.total, n)
                    for r, n in zip(runs, lengths, strict=True)
                ]
            opened.append((split, runs, files))
        frame_bytes = math.prod(env.frame_shape)
        total_bytes = sum(run.length * frame_bytes for _, runs, _ in opened for run in runs)
        if in_ram not in ("auto", "yes", "no"):
            raise ValueError(f"in_ram must be auto, yes or no, got {in_ram!r}")
        keep_in_ram = in_ram == "yes" or (in_ram == "auto" and _memory_fits(total_bytes))
        for split, runs, files in opened:
            dataset.splits[split] = _build_split(
                split, runs, files, dataset, keep_in_ram, torch.device(device)
            )
    finally:
        for _, _, files in opened:
            for file in files:
                file.close()
    return dataset


def _build_split(
    name: str,
    runs: list[RunInfo],
    files: list[h5py.File],
    dataset: Dataset,
    in_ram: bool,
    device: torch.device,
) -> SplitData:
    kept = [(run, file) for run, file in zip(runs, files, strict=True) if run.length > 0]
    lengths = torch.tensor([run.length for run, _ in kept], dtype=torch.int64)
    begins = torch.cumsum(lengths, 0) - lengths
    n_frames = int(lengths.sum())
    bins = torch.empty(n_frames, dtype=torch.int64)
    yaw = torch.empty(n_frames, dtype=torch.float32)
    two_controls = dataset.env_kwargs.get("controls") == TWO_CONTROLS
    more = {name: torch.empty(n_frames, dtype=torch.float32) for name in MORE_FIELDS[two_controls]}
    shape = (dataset.channels, dataset.height, dataset.width)
    frames = torch.empty((n_frames, *shape), dtype=torch.uint8) if in_ram else None
    for (run, file), begin in zip(kept, begins.tolist(), strict=True):
        end = begin + run.length
        try:
            names = (*LABEL_FIELDS, *MORE_FIELDS[two_controls])
            read = {name: file[name][: run.length] for name in names}
            if frames is not None:
                # (T, H, W, C) -> (T, C, H, W) once here, so batches need no permute.
                frames[begin:end] = torch.from_numpy(file["frames"][: run.length]).permute(
                    0, 3, 1, 2
                )
        except (OSError, ValueError, KeyError) as error:
            raise DatasetError(
                f"{file_label(run.path)}: cannot read ({error_text(error)})"
            ) from None
        check_values(run.path, read, dataset.n_bins, int(dataset.env_kwargs.get("speed_bins", 3)))
        for name, values in more.items():
            values[begin:end] = torch.from_numpy(read[name].astype(np.float32))
        continuous = read["expert_continuous"]
        if dataset.action_type == "discrete":
            labels = read["expert_action"]
        else:
            labels = yaw_command_to_bin(continuous, dataset.n_bins)
        bins[begin:end] = torch.from_numpy(labels)
        yaw[begin:end] = torch.from_numpy(continuous)
    run_of = torch.repeat_interleave(torch.arange(len(kept)), lengths)
    kept_runs = [run for run, _ in kept]
    source: FrameSource = (
        InRamFrames(frames.to(device))
        if frames is not None
        else LazyFrames(kept_runs, begins, shape)
    )
    split = SplitData(
        name, kept_runs, begins, lengths, run_of, bins, yaw, source, in_ram=frames is not None
    )
    split.executed_yaw = more["action_continuous"]
    if two_controls:
        split.speed_bins = more["expert_speed_action"].to(torch.int64)
        split.speed, split.speed_now = more["expert_speed_continuous"], more["speed"]
        split.executed_speed = more["speed_continuous"]
    return split


@dataclass
class InputNorm:
    """Per-channel ``(x / 255 - mean) / std``, applied to uint8 batches.

    Every mode is this one affine map: none (mean 0, std 1: [0, 1]), shift (mean 0.5,
    std 1: [-0.5, 0.5]), scale (training-set statistics) and imagenet (ImageNet's).
    """

    mode: str
    mean: list[float]
    std: list[float]

    def __post_init__(self) -> None:
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def fit(cls, mode: str, split: SplitData, channels: int) -> InputNorm:
        """The normalisation ``mode`` for data like ``split`` (statistics from it for scale)."""
        if mode == "none":
            return cls(mode, [0.0] * channels, [1.0] * channels)
        if mode == "shift":
            return cls(mode, [0.5] * channels, [1.0] * channels)
        if mode == "imagenet":
            if channels != 3:
                raise DatasetError(
                    f"--input-norm imagenet needs RGB frames, this dataset has {channels}"
                    " channels; use shift or scale"
                )
            return cls(mode, list(IMAGENET_MEAN), list(IMAGENET_STD))
        if mode == "scale":
            total = torch.zeros(channels, dtype=torch.float64)
            squares = torch.zeros(channels, dtype=torch.float64)
            count = 0
            for chunk in split.iter_frames():
                values = chunk.to(torch.float64).div_(255.0)
                total += values.sum(dim=(0, 2, 3)).cpu()
                squares += values.square().sum(dim=(0, 2, 3)).cpu()
                count += values[:, 0].numel()
            mean = total / count
            std = (squares / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
            return cls(mode, mean.tolist(), std.tolist())
        raise ValueError(f"unknown input normalisation {mode!r}")

    def _affine(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            mean = torch.tensor(self.mean, dtype=torch.float32, device=device)
            std = torch.tensor(self.std, dtype=torch.float32, device=device)
            self._cache[device] = (
                (1.0 / (255.0 * std))[:, None, None],
                (-mean / std)[:, None, None],
            )
        return self._cache[device]

    def __call__(
        self,
        frames: torch.Tensor,
        out: torch.Tensor | None = None,
        gain: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """uint8 ``(B, ..., C, H, W)`` -> normalised float32 of the same shape (into ``out``).

        ``gain`` and ``offset`` (``(B, C)``, optional) first map each sample's channels by
        ``x * gain + offset`` on the 0-255 scale (colour jitter, ``bc.augment``). The map is
        folded into the normalisation's own multiply and add, so it costs no extra pass.
        """
        scale, shift = self._affine(frames.device)
        if gain is not None and offset is not None:
            shape = (frames.shape[0],) + (1,) * (frames.dim() - 4) + (frames.shape[-3], 1, 1)
            offset = offset.to(frames.device).view(shape)
            shift = offset * scale + shift
            scale = gain.to(frames.device).view(shape) * scale
        # In place on the float copy: 4x faster than a broadcasting addcmul on CPU.
        values = frames.to(torch.float32) if out is None else out.copy_(frames)
        return values.mul_(scale).add_(shift)

    def to_dict(self) -> dict[str, Any]:
        """Plain-python form for checkpoints."""
        return {"mode": self.mode, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> InputNorm:
        """Inverse of ``to_dict``."""
        return cls(
            str(values["mode"]),
            [float(v) for v in values["mean"]],
            [float(v) for v in values["std"]],
        )
