"""What a convolutional encoder's layers make of its input's size, read from the layers.

Encoders compute their ``output_shape`` with these instead of hard-coding flatten sizes, and
read kernel, stride and padding from the convolutions themselves, so a layer's numbers are
written once.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_output_size(
    size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1
) -> int:
    """Output length of a convolution along one axis (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_stack_output_shape(
    convs: Sequence[nn.Conv2d | nn.Conv3d], size: tuple[int, ...]
) -> tuple[int, ...]:
    """``(channels, *size)`` after the convolutions ``convs`` applied in order.

    ``size`` is the input's ``(H, W)`` for 2D convolutions, ``(T, H, W)`` for 3D ones.
    """
    for conv in convs:
        if len(conv.kernel_size) != len(size):
            raise ValueError(f"a {len(conv.kernel_size)}D convolution on a {len(size)}D size")
    return (convs[-1].out_channels, *_sizes_through(convs, size)[-1])


def _sizes_through(
    convs: Sequence[nn.Conv2d | nn.Conv3d], size: tuple[int, ...]
) -> list[tuple[int, ...]]:
    """The input's trailing ``size`` and each convolution's output size over those axes."""
    sizes = [tuple(size)]
    for conv in convs:
        sizes.append(
            tuple(
                conv_output_size(length, *numbers)
                for length, *numbers in zip(sizes[-1], *_trailing(conv, len(size)), strict=True)
            )
        )
    return sizes


def conv_stack_read_extent(
    convs: Sequence[nn.Conv2d | nn.Conv3d], size: tuple[int, ...]
) -> tuple[int, ...]:
    """How much of an input of ``size`` the convolutions ``convs`` read, axis by axis.

    ``size`` gives the trailing axes of the input (``(H, W)``, also for 3D convolutions,
    whose leading time axis it leaves out). A convolution's windows start at the first
    element (or in its padding) and step by the stride; where the stride does not divide
    what is left, the last elements are never read. The extent counts from the first element
    to the last one read.
    """
    axes = len(size)
    sizes = _sizes_through(convs, size)
    read = sizes[-1]
    for conv, before in zip(reversed(convs), reversed(sizes[:-1]), strict=True):
        read = tuple(
            _last_read(outputs, length, *numbers) + 1
            for outputs, length, *numbers in zip(read, before, *_trailing(conv, axes), strict=True)
        )
    return read


def _last_read(
    outputs: int, length: int, kernel: int, stride: int, padding: int, dilation: int
) -> int:
    """The last input element that the first ``outputs`` windows of a convolution read."""
    start = (outputs - 1) * stride - padding  # the last window's first tap
    return start + dilation * min(kernel - 1, (length - 1 - start) // dilation)


def _trailing(conv: nn.Conv2d | nn.Conv3d, axes: int) -> tuple[tuple[int, ...], ...]:
    """Kernel, stride, padding and dilation of ``conv`` over its last ``axes`` axes."""
    if isinstance(conv.padding, str):
        raise ValueError(f"padding={conv.padding!r} is not supported; give numbers")
    return tuple(
        tuple(values[-axes:])
        for values in (conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    )
