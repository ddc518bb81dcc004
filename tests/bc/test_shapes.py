"""Encoder shape helpers against what the convolutions really output."""

import pytest
import torch
from torch import nn

from bc.nets.shapes import conv_stack_output_shape


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
