"""Registers a siamese frame-stack net over a per-frame encoder class, the way every family does.

The tiny and Nature families differ only in the encoder and the head's width: each registers
``FrameStackPolicy(Encoder(channels, height, width), ...)`` through ``register_siamese``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from bc.nets.registry import NetSpec, register_net
from bc.nets.temporal import FrameStackPolicy


def register_siamese(
    name: str,
    encoder: Callable[[int, int, int], nn.Module],
    *,
    frames: tuple[int, ...],
    hidden: int,
    description: str,
) -> Callable[[NetSpec], nn.Module]:
    """Register net ``name``: one ``encoder(channels, height, width)`` shared by every frame.

    Returns the builder, as ``register_net`` does.
    """

    def build(spec: NetSpec) -> nn.Module:
        frame_encoder = encoder(spec.channels, spec.height, spec.width)
        return FrameStackPolicy(
            frame_encoder, frames=spec.frames, n_outputs=spec.n_outputs, hidden=hidden
        )

    # a net's family is the module of its encoder: the tests pick their fast cases by it
    build.__module__ = encoder.__module__
    return register_net(name, frames=frames, description=description)(build)
