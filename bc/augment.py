"""Photometric augmentation of training frames: ``--augment color``.

Worlds differ in their tints and light, and a default dataset holds only a handful of
worlds, so a net can learn "this colour of wall means this run" instead of the corridor's
geometry. Colour jitter draws, per sample, a brightness factor, a gain per colour channel and
an offset, and applies them to every frame of the sample alike (the frames of one sample were
taken in one world). Depth channels are left alone: jitter would change the metres they
encode. The map ``x * gain + offset`` is folded into the input normalisation
(``InputNorm``), so it adds no pass over the batch; values are not clipped to 0-255, so a
bright sample may exceed the range a camera gives.

The draws depend on ``(seed, epoch, unit)`` only, never on a generator's history, so a run
resumed mid-epoch sees exactly the augmentation an uninterrupted one did. Recurrent nets get
one draw per run and epoch (keyed by the run, not the sample), so that a sequence keeps its
look across the windows its hidden state is carried over.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

AUGMENTS = ("none", "color")
_SALT = 0xC0107  # keeps these draws apart from the sampling generator of the same seed
_MIRROR_SALT = 0x3122_0B  # and the mirror coin flips apart from the colour draws


@dataclass(frozen=True)
class ColorJitter:
    """Ranges of the per-sample colour jitter (grey levels on the 0-255 scale)."""

    brightness: tuple[float, float] = (0.6, 1.4)
    channel_gain: tuple[float, float] = (0.75, 1.25)
    offset: tuple[float, float] = (-25.0, 25.0)
    colour_channels: int = 3

    def draw(
        self, n: int, channels: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gain, offset)``, each ``(n, channels)``: identity on non-colour channels.

        RGB frames have 3 channels, RGB-D 4 (depth last) and depth 1 (nothing to jitter).
        """
        colour = self.colour_channels if channels >= self.colour_channels else 0
        u = torch.rand((n, 2 + colour), generator=generator, dtype=torch.float64)
        brightness = _lerp(self.brightness, u[:, 0])
        gain = torch.ones((n, channels), dtype=torch.float64)
        offset = torch.zeros((n, channels), dtype=torch.float64)
        gain[:, :colour] = brightness[:, None] * _lerp(self.channel_gain, u[:, 2:])
        offset[:, :colour] = _lerp(self.offset, u[:, 1])[:, None]
        return gain.float(), offset.float()


def _lerp(bounds: tuple[float, float], u: torch.Tensor) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * u


def unit_generator(seed: int, epoch: int, unit: int | None, salt: int = _SALT) -> torch.Generator:
    """The generator for one training unit (``unit=None``: one per epoch, for run-keyed draws).

    ``salt`` keeps the streams of different augmentations apart, so turning one on does not
    change the draws of another.
    """
    key = [seed, salt, epoch] + ([] if unit is None else [unit])
    state = np.random.SeedSequence(key).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def make_augment(name: str) -> ColorJitter | None:
    """The augmentation for ``--augment`` (None for none)."""
    if name == "none":
        return None
    if name == "color":
        return ColorJitter()
    raise ValueError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTS)}")


def mirror_draw(n: int, seed: int, epoch: int, unit: int | None) -> torch.Tensor:
    """Which of ``n`` samples (or runs) to mirror: a fair coin each, ``(n,)`` bool."""
    generator = unit_generator(seed, epoch, unit, salt=_MIRROR_SALT)
    return torch.rand(n, generator=generator) < 0.5


def mirror_batch(
    frames: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor, flip: torch.Tensor, n_bins: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mirror the samples marked in ``flip`` left to right, with their labels (``--mirror``).

    A corridor seen in a mirror is another corridor the expert would fly, turning the other
    way: frames ``(B, T, C, H, W)`` flip along the width, the label's bin ``b`` becomes
    ``n_bins - 1 - b`` (the bins' yaw commands are symmetric about straight) and the yaw
    command changes sign. ``bins`` and ``yaw`` are ``(B,)`` or ``(B, T)``; ``flip`` is ``(B,)``.
    """
    if not bool(flip.any()):
        return frames, bins, yaw
    frames = frames.clone()
    frames[flip] = frames[flip].flip(-1)
    mask = flip.view(-1, *([1] * (bins.dim() - 1))).to(bins.device)
    bins = torch.where(mask, n_bins - 1 - bins, bins)
    yaw = torch.where(mask.to(yaw.device), -yaw, yaw)
    return frames, bins, yaw
