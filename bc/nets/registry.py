"""The net registry: every policy net is built by name from one `NetSpec`.

Contract shared by every net (tiny family, classic deep nets, recurrent nets):

* input ``(B, T, C, H, W)`` float tensors, already normalised;
* feed-forward nets return ``(B, n_outputs)`` for the last frame of the stack;
* recurrent nets (``spec.recurrent``) return ``(B, T, n_outputs)`` and take and
  return a hidden state: ``forward(x, state=None) -> (out, state)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class NetSpec:
    """What a net needs to know to build itself."""

    frames: int = 1
    channels: int = 3
    height: int = 64
    width: int = 64
    n_outputs: int = 3
    # classic nets: the square size frames are resized to (None: the architecture's own,
    # 224 or 299); nets that take frames at their size refuse any other value
    input_size: int | None = None

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if min(self.height, self.width) < 32:
            raise ValueError(f"image size must be >= 32x32, got {self.height}x{self.width}")
        if self.n_outputs < 1:
            raise ValueError(f"n_outputs must be >= 1, got {self.n_outputs}")


@dataclass(frozen=True)
class NetEntry:
    """A registered net: how to build it and which frame counts it accepts."""

    name: str
    builder: Callable[[NetSpec], nn.Module]
    frames: tuple[int, ...]
    recurrent: bool = False
    slow: bool = False
    description: str = ""
    # resizes its frames to an input size of its own (NetSpec.input_size may change it)
    resizes: bool = False


NETS: dict[str, NetEntry] = {}


def register_net(
    name: str,
    *,
    frames: tuple[int, ...] = (1,),
    recurrent: bool = False,
    slow: bool = False,
    description: str = "",
    resizes: bool = False,
) -> Callable[[Callable[[NetSpec], nn.Module]], Callable[[NetSpec], nn.Module]]:
    """Register ``builder(spec) -> nn.Module`` under ``name``."""

    def decorate(builder: Callable[[NetSpec], nn.Module]) -> Callable[[NetSpec], nn.Module]:
        if name in NETS:
            raise ValueError(f"net {name!r} is registered twice")
        NETS[name] = NetEntry(name, builder, tuple(frames), recurrent, slow, description, resizes)
        return builder

    return decorate


def get_net_entry(name: str) -> NetEntry:
    """Look up a net, with an error that lists the known names."""
    if name not in NETS:
        known = ", ".join(sorted(NETS))
        raise ValueError(f"unknown net {name!r}; choose one of: {known}")
    return NETS[name]


def build_net(name: str, spec: NetSpec) -> nn.Module:
    """Build net ``name`` for ``spec``, checking that it accepts ``spec.frames``."""
    entry = get_net_entry(name)
    if spec.frames not in entry.frames:
        allowed = ", ".join(map(str, entry.frames))
        raise ValueError(f"net {name!r} takes --frames in {{{allowed}}}, got {spec.frames}")
    if spec.input_size is not None and not entry.resizes:
        raise ValueError(
            f"net {name!r} takes frames at their recorded size: --input-size is for the"
            " classic nets"
        )
    return entry.builder(spec)
