"""Encoder shape helpers against what the convolutions really output."""

import pytest
import torch
from torch import nn

from bc.nets.shapes import conv_stack_output_shape, conv_stack_read_extent


@pytest.mark.parametrize(
    ("convs", "size"),
    [
        ((nn.Conv2d(3, 8, 6, stride=3), nn.Conv2d(8, 5, 3, stride=2)), (33, 97)),
        ((nn.Conv2d(1, 4, 3, stride=2, padding=2, dilation=2), nn.Conv2d(4, 6, (1, 5))), (40, 31)),
        (
            (nn.Conv3d(2, 3, (2, 6, 6), stride=(1, 3, 3)), nn.Conv3d(3, 7, (2, 3, 3), stride=2)),
            (3, 35, 64),
        ),
    ],
)
def test_the_computed_shape_is_the_convolutions_output_shape(convs, size):
    x = torch.zeros(1, convs[0].in_channels, *size)
    for conv in convs:
        x = conv(x)
    assert conv_stack_output_shape(convs, size) == tuple(x.shape[1:])


def test_padding_by_name_is_refused():
    with pytest.raises(ValueError, match="padding='same' is not supported"):
        conv_stack_output_shape((nn.Conv2d(3, 4, 3, padding="same"),), (32, 32))


@pytest.mark.parametrize(
    ("convs", "size"),
    [
        ((nn.Conv2d(3, 8, 6, stride=3), nn.Conv2d(8, 5, 3, stride=2)), (64, 64)),
        ((nn.Conv2d(3, 8, 6, stride=3), nn.Conv2d(8, 5, 3, stride=2)), (33, 97)),
        ((nn.Conv2d(1, 4, 3, stride=2, padding=2, dilation=2), nn.Conv2d(4, 6, (1, 5))), (40, 31)),
        (
            (
                nn.Conv2d(3, 8, 8, stride=4),
                nn.Conv2d(8, 8, 4, stride=2),
                nn.Conv2d(8, 8, 3, padding=1),
            ),
            (32, 64),
        ),
    ],
)
def test_the_read_extent_is_where_the_input_gradient_ends(convs, size):
    # independent truth: an input element is read where the output depends on it
    x = torch.rand(1, convs[0].in_channels, *size, requires_grad=True)
    y = x
    for conv in convs:
        nn.init.constant_(conv.weight, 1.0)  # no weight of zero hides a read
        y = conv(y)
    y.sum().backward()
    touched = x.grad[0].abs().sum(0)
    read = (int(touched.sum(1).nonzero().max()) + 1, int(touched.sum(0).nonzero().max()) + 1)
    assert conv_stack_read_extent(convs, size) == read
    assert int(touched.sum(1).nonzero().min()) == 0  # from the first element


def test_the_tiny_encoder_reads_60_of_64_pixels():
    # hand-computed: 64 -> (64 - 6) // 3 + 1 = 20 -> (20 - 3) // 2 + 1 = 9 outputs, which read
    # 8 * 2 + 3 = 19 of the 20, which read 18 * 3 + 6 = 60 pixels
    tiny = (nn.Conv2d(3, 10, 6, stride=3), nn.Conv2d(10, 20, 3, stride=2))
    assert conv_stack_read_extent(tiny, (64, 64)) == (60, 60)
    assert conv_stack_read_extent(tiny, (128, 96)) == (126, 96)
    spatial_3d = (nn.Conv3d(3, 10, (2, 6, 6), (1, 3, 3)), nn.Conv3d(10, 20, (2, 3, 3), (1, 2, 2)))
    assert conv_stack_read_extent(spatial_3d, (64, 64)) == (60, 60)
