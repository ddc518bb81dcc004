"""Epoch plans: which samples go into which optimiser step, decided up front per epoch.

A plan is a list of units, one optimiser step each. Every plan is drawn from a generator
seeded by ``(seed, epoch)`` alone, so an epoch is the same whether the run got there in one
go or was resumed, and a resumed run can skip the units it already did.

* feed-forward nets: ``FrameUnit`` (target frames; the trainer builds the stacks);
* ``--bptt window``: every run is cut into windows of ``--time-length`` at a random phase,
  so each frame is labelled once per epoch and window borders move between epochs; the
  windows of all runs are shuffled together;
* ``--bptt full``: ``--batch-size`` whole runs per step, shorter ones masked at the end;
* ``--bptt sliding``: ``--batch-size`` runs side by side, windows ``[kS, kS + L)`` in order;
  the hidden state after the first ``S`` steps of a window starts the next one. With
  ``--accumulate`` all windows of those runs form one unit (one optimiser step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from bc.data import SplitData


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A generator that depends on ``(seed, epoch)`` only."""
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


@dataclass
class FrameUnit:
    """A batch of target frames (global indices of the split)."""

    targets: torch.Tensor  # (B,)

    @property
    def samples(self) -> int:
        """Labelled frames in the unit (upper bound for masked units)."""
        return int(self.targets.numel())


@dataclass
class WindowUnit:
    """A batch of windows, one per row: ``valid`` steps of run ``runs`` from ``offsets``."""

    runs: torch.Tensor  # (B,)
    offsets: torch.Tensor  # (B,)
    valid: torch.Tensor  # (B,)
    length: int
    reset: bool = True  # start from a zero hidden state
    carry: int | None = None  # keep the state after this many steps for the next unit

    @property
    def samples(self) -> int:
        """Valid steps in the unit."""
        return int(self.valid.sum())


@dataclass
class SequenceUnit:
    """Consecutive sliding windows of the same runs, trained with one optimiser step."""

    windows: list[WindowUnit] = field(default_factory=list)

    @property
    def samples(self) -> int:
        """Valid steps over all windows (steps in several windows count each time)."""
        return sum(window.samples for window in self.windows)


Unit = FrameUnit | WindowUnit | SequenceUnit


def frame_targets(split: SplitData, subsample: int) -> torch.Tensor:
    """Global indices of the labelled frames: every ``subsample``-th step of each run."""
    every = torch.arange(split.n_frames)
    return every if subsample == 1 else every[split.positions(every) % subsample == 0]


def frame_plan(
    split: SplitData,
    generator: torch.Generator,
    batch_size: int,
    subsample: int = 1,
    balance_bins: int = 0,
) -> list[FrameUnit]:
    """Shuffled batches of target frames.

    ``balance_bins > 0`` draws class-balanced batches instead (with replacement, as many
    draws as there are targets).
    """
    targets = frame_targets(split, subsample)
    if balance_bins:
        labels = split.bins[targets]
        counts = torch.bincount(labels, minlength=balance_bins).to(torch.float64)
        weights = 1.0 / counts[labels]
        order = torch.multinomial(weights, targets.numel(), replacement=True, generator=generator)
    else:
        order = torch.randperm(targets.numel(), generator=generator)
    return [FrameUnit(targets[chunk]) for chunk in order.split(batch_size)]


def window_plan(
    split: SplitData, generator: torch.Generator, batch_size: int, time_length: int
) -> list[WindowUnit]:
    """Windows of ``time_length`` tiling every run from a random phase, shuffled."""
    runs, offsets, valid = [], [], []
    phases = torch.randint(0, time_length, (split.n_runs,), generator=generator).tolist()
    for run, (length, phase) in enumerate(zip(split.lengths.tolist(), phases, strict=True)):
        # A partial first window of `phase` steps, then full windows, then the remainder.
        starts = ([0] if phase else []) + list(range(phase, length, time_length))
        for start in starts:
            end = min(phase if (phase and start == 0) else start + time_length, length)
            if end > start:
                runs.append(run)
                offsets.append(start)
                valid.append(end - start)
    order = torch.randperm(len(runs), generator=generator)
    runs_t, offsets_t, valid_t = (
        torch.tensor(v, dtype=torch.int64)[order] for v in (runs, offsets, valid)
    )
    return [
        WindowUnit(runs_t[chunk], offsets_t[chunk], valid_t[chunk], time_length)
        for chunk in torch.arange(len(runs)).split(batch_size)
    ]


def full_plan(split: SplitData, generator: torch.Generator, batch_size: int) -> list[WindowUnit]:
    """Whole runs, ``batch_size`` per step, each batch as long as its longest run."""
    order = torch.randperm(split.n_runs, generator=generator)
    units = []
    for group in order.split(batch_size):
        lengths = split.lengths[group]
        units.append(WindowUnit(group, torch.zeros_like(group), lengths, int(lengths.max())))
    return units


def sliding_windows(length: int, time_length: int, step: int) -> int:
    """How many windows ``[kS, kS + L)`` a run of ``length`` steps needs."""
    return max(1, math.ceil(max(length - time_length, 0) / step) + 1)


def sliding_plan(
    split: SplitData,
    generator: torch.Generator,
    batch_size: int,
    time_length: int,
    step: int,
    accumulate: bool,
) -> list[WindowUnit | SequenceUnit]:
    """Groups of runs in random order, each walked through by windows sliding by ``step``."""
    order = torch.randperm(split.n_runs, generator=generator)
    units: list[WindowUnit | SequenceUnit] = []
    for group in order.split(batch_size):
        lengths = split.lengths[group]
        count = max(sliding_windows(int(n), time_length, step) for n in lengths.tolist())
        windows = []
        for k in range(count):
            offset = k * step
            valid = (lengths - offset).clamp(0, time_length)
            windows.append(
                WindowUnit(
                    group,
                    torch.full_like(group, offset),
                    valid,
                    time_length,
                    reset=k == 0,
                    carry=step if k < count - 1 else None,
                )
            )
        if accumulate:
            units.append(SequenceUnit(windows))
        else:
            units.extend(windows)
    return units
