"""The part of the image a convolutional encoder reads: centred, so both edges count alike.

Strided convolutions without padding read only the leading part of an image whose size their
strides do not divide: the tiny encoder (k6 s3, then k3 s2) reads 60 of a 64-pixel row,
columns 0-59, and never sees the right-hand 4 (5.6 of a 90-degree field of view), nor the
bottom 4 rows. The depth generalist's failures, nearly all at bends of 90 degrees, came at
right-hand bends (65 of 70 in its fourth DAgger iteration); mirrored training samples
(``--mirror``) cannot mend a blind side, as what the net reads of a mirrored frame is its
mirror shifted by those 4 columns. With the centred crop they come at left-hand bends, and no
fewer (docs/nets.md, "The centred view").

:class:`CentredView` crops the image to the part the convolutions read, centred: 2 pixels off
each edge at 64, 1 at 128. The values are those of the same convolutions on the cropped image,
so no weight count or feature size changes.

Where the crop starts is kept in the state dict (``origin``, ``(top, left)``), so a checkpoint
flies with the view it was trained with. A state dict written before the view was centred has
no ``origin``: it loads as ``(0, 0)``, the image's top-left corner, which is what those nets
read (as ``BatchNorm`` adds the ``num_batches_tracked`` of older state dicts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bc.nets.shapes import conv_stack_read_extent

# where the crop sits: centred, or at the top-left corner (the nets before 2026-12-07)
VIEWS = ("centred", "top_left")


class CentredView(nn.Module):
    """Crops ``(..., H, W)`` images to the ``extent`` that ``convs`` read, centred in them.

    :meth:`place` moves the crop to the top-left corner instead (``--view top_left``: what the
    nets before the centred view read, to train them again as they were).
    """

    def __init__(self, convs: Sequence[nn.Conv2d | nn.Conv3d], height: int, width: int):
        super().__init__()
        self.extent = conv_stack_read_extent(convs, (height, width))
        self.size = (height, width)
        self.register_buffer("origin", torch.zeros(2, dtype=torch.long))
        self._origin = (0, 0)  # python ints: a traced or exported graph slices by them
        self.place("centred")

    def origin_of(self, view: str) -> tuple[int, int]:
        """The crop's ``(top, left)`` corner in view ``view`` (one of :data:`VIEWS`)."""
        if view not in VIEWS:
            raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
        if view == "top_left":
            return (0, 0)
        top, left = ((size - read) // 2 for size, read in zip(self.size, self.extent, strict=True))
        return (top, left)

    def place(self, view: str) -> None:
        """Move the crop to view ``view``."""
        origin = self.origin_of(view)
        with torch.no_grad():
            self.origin.copy_(torch.tensor(origin))
        self._origin = origin

    @property
    def crop(self) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of the part read."""
        return (*self._origin, *self.extent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, left = self._origin
        height, width = self.extent
        if (height, width) == tuple(x.shape[-2:]):
            return x
        return x[..., top : top + height, left : left + width]

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "origin"
        if key not in state_dict:
            # written before the view was centred: those nets read from the top-left corner
            state_dict[key] = torch.zeros(2, dtype=torch.long)
        origin = tuple(int(v) for v in state_dict[key])
        if len(origin) != 2 or any(
            not 0 <= start <= size - read
            for start, size, read in zip(origin, self.size, self.extent, strict=True)
        ):
            error_msgs.append(
                f"{key} {list(origin)} does not fit a {self.extent[0]}x{self.extent[1]} crop"
                f" of {self.size[0]}x{self.size[1]} images"
            )
            return
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._origin = origin


def with_legacy_origins(
    source: dict[str, torch.Tensor], target_keys: Sequence[str]
) -> dict[str, torch.Tensor]:
    """``source`` with the ``origin`` (0, 0) of every view it predates, for copying parts.

    A view of the target (``P.view.origin``) is missing from a state dict written before the
    view was centred while the encoder's layers (``P.conv1...``) are there: those weights were
    trained on the top-left crop, and carry it with them.
    """
    upgraded = dict(source)
    for key in target_keys:
        if not key.endswith("view.origin") or key in upgraded:
            continue
        encoder = key[: -len("view.origin")]
        if any(name.startswith(encoder + "conv") for name in source):
            upgraded[key] = torch.zeros(2, dtype=torch.long)
    return upgraded


def set_view(model: nn.Module, view: str) -> None:
    """Put every encoder view of ``model`` in view ``view`` (a new net's choice of crop)."""
    for module in model.modules():
        if isinstance(module, CentredView):
            module.place(view)


def views_not_in(model: nn.Module, view: str) -> list[str]:
    """The names of ``model``'s encoder views whose crop is not where view ``view`` puts it."""
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, CentredView) and module._origin != module.origin_of(view)
    ]
