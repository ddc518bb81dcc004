"""The tiny family: a two-conv encoder and the ways of spreading it over time.

==============  ========  ==========================================================
name            frames    what it is
==============  ========  ==========================================================
``tiny``        1         conv(C->10, k6, s3), conv(10->20, k3, s2), FC 1024, FC out
``tiny_nfc``    1, 3, 5   the same encoder shared by every frame ("siamese"),
                          features concatenated, FC 1024, FC out
``tiny_3d``     1, 3, 5   a 3D CNN over (T, H, W): the same two layers as Conv3d whose
                          temporal kernels together span exactly the T frames
``tiny_early``  1, 3, 5   early fusion: frames stacked on the channel axis, one encoder
``tiny_lstm``   1         tiny encoder per frame, LSTM(64, 2 layers), linear per step
==============  ========  ==========================================================

Every net computes its feature sizes from the image size (any size >= 32): at 128x128 the
tiny encoder flattens to exactly 20 x 20 x 20 = 8,000 features.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from bc.nets.registry import NetSpec, register_net
from bc.nets.shapes import conv_stack_output_shape
from bc.nets.siamese import register_siamese
from bc.nets.temporal import RecurrentPolicy
from bc.nets.view import CentredView

HIDDEN = 1024


def _mlp_head(in_features: int, n_outputs: int, hidden: int = HIDDEN) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_outputs)
    )


class TinyEncoder(nn.Module):
    """Two strided convolutions with ReLUs, flattened: ``(N, C, H, W) -> (N, output_dim)``."""

    def __init__(self, channels: int, height: int, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 10, kernel_size=6, stride=3)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=3, stride=2)
        self.view = CentredView((self.conv1, self.conv2), height, width)
        self.output_shape = conv_stack_output_shape((self.conv1, self.conv2), (height, width))
        self.output_dim = math.prod(self.output_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(self.view(x)))  # (N, 10, H1, W1)
        x = torch.relu(self.conv2(x))  # (N, 20, H2, W2)
        return x.flatten(1)  # (N, output_dim)


class EarlyFusionPolicy(nn.Module):
    """Frames stacked on the channel axis (oldest first) and read by one encoder.

    The ``encoder`` is built for ``frames * channels`` input channels.
    """

    def __init__(self, encoder: nn.Module, frames: int, n_outputs: int, hidden: int = HIDDEN):
        super().__init__()
        self.frames = frames
        self.encoder = encoder
        self.head = _mlp_head(encoder.output_dim, n_outputs, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time, channels, height, width = x.shape
        if time != self.frames:
            raise ValueError(f"expected {self.frames} frames, got input of shape {tuple(x.shape)}")
        x = x.reshape(batch, time * channels, height, width)  # (B, T*C, H, W)
        return self.head(self.encoder(x))  # (B, n_outputs)


def temporal_kernels(frames: int) -> tuple[int, int]:
    """Temporal kernel sizes of the two Conv3d layers.

    Together they span exactly ``frames`` steps, so the time axis collapses to 1:
    1 -> (1, 1), 3 -> (2, 2), 5 -> (3, 3). A single frame therefore needs no padding.
    """
    first = (frames + 2) // 2
    return first, frames - first + 1


class Tiny3dEncoder(nn.Module):
    """The tiny encoder as a 3D CNN: ``(N, C, T, H, W) -> (N, output_dim)``."""

    def __init__(self, channels: int, frames: int, height: int, width: int):
        super().__init__()
        kt1, kt2 = temporal_kernels(frames)
        self.conv1 = nn.Conv3d(channels, 10, kernel_size=(kt1, 6, 6), stride=(1, 3, 3))
        self.conv2 = nn.Conv3d(10, 20, kernel_size=(kt2, 3, 3), stride=(1, 2, 2))
        self.output_shape = conv_stack_output_shape(
            (self.conv1, self.conv2), (frames, height, width)
        )  # (20, 1, H2, W2): the temporal kernels leave one step
        self.output_dim = math.prod(self.output_shape)
        self.view = CentredView((self.conv1, self.conv2), height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(self.view(x)))  # (N, 10, T1, H1, W1)
        x = torch.relu(self.conv2(x))  # (N, 20, 1, H2, W2)
        return x.flatten(1)


class Conv3dPolicy(nn.Module):
    """A 3D-CNN encoder over the whole frame stack, then the MLP head."""

    def __init__(self, encoder: Tiny3dEncoder, frames: int, n_outputs: int, hidden: int = HIDDEN):
        super().__init__()
        self.frames = frames
        self.encoder = encoder
        self.head = _mlp_head(encoder.output_dim, n_outputs, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.frames:
            raise ValueError(f"expected {self.frames} frames, got input of shape {tuple(x.shape)}")
        x = x.transpose(1, 2)  # (B, T, C, H, W) -> (B, C, T, H, W)
        return self.head(self.encoder(x))  # (B, n_outputs)


# The single-frame tiny net: the siamese net below with its one frame.
build_tiny = register_siamese(
    "tiny", TinyEncoder, frames=(1,), hidden=HIDDEN, description="two convs + FC 1024 on one frame"
)
# The siamese frame-stack net ("n frames concatenated").
build_tiny_nfc = register_siamese(
    "tiny_nfc",
    TinyEncoder,
    frames=(1, 3, 5),
    hidden=HIDDEN,
    description="tiny encoder shared by every frame, features concatenated, FC 1024",
)


@register_net("tiny_3d", frames=(1, 3, 5), description="3D CNN over (T, H, W), FC 1024")
def build_tiny_3d(spec: NetSpec) -> nn.Module:
    """The 3D-CNN net: convolutions mix neighbouring frames."""
    encoder = Tiny3dEncoder(spec.channels, spec.frames, spec.height, spec.width)
    return Conv3dPolicy(encoder, frames=spec.frames, n_outputs=spec.n_outputs)


@register_net(
    "tiny_early", frames=(1, 3, 5), description="frames stacked on channels, tiny encoder, FC 1024"
)
def build_tiny_early(spec: NetSpec) -> nn.Module:
    """Early fusion (the original "3d" net): one encoder reads all frames as channels."""
    encoder = TinyEncoder(spec.channels * spec.frames, spec.height, spec.width)
    return EarlyFusionPolicy(encoder, frames=spec.frames, n_outputs=spec.n_outputs)


@register_net(
    "tiny_lstm",
    frames=(1,),
    recurrent=True,
    description="tiny encoder per frame, LSTM (hidden 64, 2 layers), linear at every step",
)
def build_tiny_lstm(spec: NetSpec) -> nn.Module:
    """The recurrent tiny net; the time axis of its input is the sequence."""
    encoder = TinyEncoder(spec.channels, spec.height, spec.width)
    return RecurrentPolicy(encoder, n_outputs=spec.n_outputs, hidden_size=64, num_layers=2)
