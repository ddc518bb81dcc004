"""Augmentation of training frames: ``--augment color``, ``randconv`` or ``color+randconv``.

Worlds differ in their tints and light, and a default dataset holds only a handful of
worlds, so a net can learn "this colour of wall means this run" instead of the corridor's
geometry. Colour jitter draws, per sample, a brightness factor, a gain per colour channel and
an offset, and applies them to every frame of the sample alike (the frames of one sample were
taken in one world). Depth channels are left alone: jitter would change the metres they
encode. The map ``x * gain + offset`` is folded into the input normalisation
(``InputNorm``), so it adds no pass over the batch; values are not clipped to 0-255, so a
bright sample may exceed the range a camera gives.

Random convolution (``randconv``; Lee et al. 2020, "Network Randomization: A Simple Technique
for Generalization in Deep Reinforcement Learning") passes the colour channels of half the
samples, after normalisation, through a 3x3 convolution with random weights (Xavier normal,
a fresh kernel per sample, the same on every frame of it; zero padding keeps the size). Colour
jitter changes a world's tint; a random convolution also scrambles its textures' local
patterns, so a net can only rely on what every look shares: the corridor's geometry. The other
half of the samples stay as they are, so the net also learns the looks it will fly in.

The draws depend on ``(seed, epoch, unit)`` only, never on a generator's history, so a run
resumed mid-epoch sees exactly the augmentation an uninterrupted one did. Recurrent nets get
one draw per run and epoch (keyed by the run, not the sample), so that a sequence keeps its
look across the windows its hidden state is carried over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional

AUGMENTS = ("none", "color", "randconv", "color+randconv")
_SALT = 0xC0107  # keeps these draws apart from the sampling generator of the same seed
_MIRROR_SALT = 0x3122_0B  # and the mirror coin flips apart from the colour draws
_RANDCONV_SALT = 0x2A9D_C0  # and the random kernels apart from both


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


@dataclass(frozen=True)
class RandomConvolution:
    """Random convolution of the colour channels, a kernel per sample (``--augment randconv``)."""

    kernel_size: int = 3
    clean: float = 0.5  # the share of samples left as they are (an identity kernel)
    colour_channels: int = 3

    def draw(self, n: int, channels: int, generator: torch.Generator) -> torch.Tensor | None:
        """``(n, 3, 3, k, k)`` kernels, Xavier normal or the identity; None without colour."""
        if channels < self.colour_channels:
            return None  # depth only: nothing to convolve
        c, k = self.colour_channels, self.kernel_size
        std = math.sqrt(2.0 / (2 * c * k * k))  # Xavier normal: fan in = fan out = c * k * k
        kernels = torch.randn((n, c, c, k, k), generator=generator) * std
        keep = torch.rand(n, generator=generator) < self.clean
        identity = torch.zeros(c, c, k, k)
        identity[range(c), range(c), k // 2, k // 2] = 1.0
        kernels[keep] = identity
        return kernels


def random_convolution(inputs: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Each sample's colour channels of ``inputs (B, T, C, H, W)`` through its kernel.

    ``kernels`` is ``(B, 3, 3, k, k)``; every frame of a sample gets the same kernel, zero
    padded to keep the size; channels past the colour ones (depth) are left as they are.
    """
    batch, time, channels, height, width = inputs.shape
    colour, size = kernels.shape[1], kernels.shape[-1]
    frames = inputs[:, :, :colour].transpose(0, 1).reshape(time, batch * colour, height, width)
    weight = kernels.to(inputs).reshape(batch * colour, colour, size, size)
    out = functional.conv2d(frames, weight, padding=size // 2, groups=batch)
    out = out.view(time, batch, colour, height, width).transpose(0, 1)
    if channels > colour:
        return torch.cat([out, inputs[:, :, colour:]], dim=2)
    return out.contiguous()


@dataclass(frozen=True)
class Look:
    """A batch's augmentation draws, per sample: colour jitter and random-convolution kernels."""

    gain: torch.Tensor | None = None
    offset: torch.Tensor | None = None
    kernels: torch.Tensor | None = None

    def take(self, index: torch.Tensor) -> Look:
        """The draws of the samples (or runs) at ``index``."""
        return Look(
            *(None if t is None else t[index] for t in (self.gain, self.offset, self.kernels))
        )


class Augmenter:
    """What ``--augment`` draws for a training unit, from ``(seed, epoch, unit)`` alone."""

    def __init__(self, jitter: ColorJitter | None, randconv: RandomConvolution | None, seed: int):
        self.jitter, self.randconv, self.seed = jitter, randconv, seed

    def draw(self, n: int, channels: int, epoch: int, unit: int | None) -> Look:
        """The draws of ``n`` samples of one unit (``unit=None``: of ``n`` runs, for an epoch)."""
        gain = offset = kernels = None
        if self.jitter is not None:
            gain, offset = self.jitter.draw(n, channels, unit_generator(self.seed, epoch, unit))
        if self.randconv is not None:
            generator = unit_generator(self.seed, epoch, unit, salt=_RANDCONV_SALT)
            kernels = self.randconv.draw(n, channels, generator)
        return Look(gain, offset, kernels)


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


def make_augment(name: str, seed: int = 0) -> Augmenter | None:
    """The augmentation for ``--augment`` (None for none), drawing from ``seed``."""
    if name not in AUGMENTS:
        raise ValueError(f"unknown augmentation {name!r}; choose one of: {', '.join(AUGMENTS)}")
    if name == "none":
        return None
    parts = name.split("+")
    jitter = ColorJitter() if "color" in parts else None
    return Augmenter(jitter, RandomConvolution() if "randconv" in parts else None, seed)


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
