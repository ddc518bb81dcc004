"""bc.sparse_inputs: a first layer over the inputs some row uses gives the layer's values."""

from __future__ import annotations

import torch
from torch import nn

from bc.sparse_inputs import DENSE_ABOVE, head_over_used_inputs, linear_over_used_inputs


def _relu_features(rows: int, columns: int, used: float, seed: int = 0) -> torch.Tensor:
    """ReLU features (half of them zero in each row) in a fraction ``used`` of the columns."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.relu(torch.randn(rows, columns, generator=generator))
    features[:, torch.rand(columns, generator=generator) >= used] = 0.0
    return features


def test_the_used_columns_give_the_whole_layers_values() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(300, 64).requires_grad_(False)
    for rows in (1, 7, 32):
        inputs = _relu_features(rows, 300, used=0.3, seed=rows)
        assert (inputs == 0).all(0).float().mean() > 0.6  # columns no row uses
        assert rows == 1 or ((inputs == 0).any(0) & (inputs != 0).any(0)).any()  # and some uses
        torch.testing.assert_close(linear_over_used_inputs(layer, inputs), layer(inputs))
    # inputs below zero (a net without a ReLU before its head), and a NaN, pass on too
    negative = -inputs
    torch.testing.assert_close(linear_over_used_inputs(layer, negative), layer(negative))
    negative[0, 0] = float("nan")
    assert linear_over_used_inputs(layer, negative)[0].isnan().all()
    # no input used: the bias alone
    zeros = torch.zeros(3, 300)
    torch.testing.assert_close(linear_over_used_inputs(layer, zeros), layer.bias.expand(3, 64))
    no_bias = nn.Linear(300, 64, bias=False)
    inputs = _relu_features(5, 300, used=0.3)
    torch.testing.assert_close(linear_over_used_inputs(no_bias, inputs), no_bias(inputs))


def test_a_changed_weight_is_read_again() -> None:
    torch.manual_seed(1)
    layer = nn.Linear(200, 32)
    inputs = _relu_features(8, 200, used=0.2)
    with torch.inference_mode():  # as act_batch decides
        before = linear_over_used_inputs(layer, inputs)
    with torch.no_grad():
        layer.weight.mul_(-2.0)  # in place, as an optimiser step changes it
    with torch.inference_mode():
        after = linear_over_used_inputs(layer, inputs)
    torch.testing.assert_close(after, layer(inputs).detach())
    assert not torch.allclose(after, before)


def test_mostly_used_inputs_take_the_whole_layer() -> None:
    torch.manual_seed(2)
    layer = nn.Linear(200, 32).requires_grad_(False)
    inputs = _relu_features(8, 200, used=min(1.0, DENSE_ABOVE + 0.3))
    assert torch.equal(linear_over_used_inputs(layer, inputs), layer(inputs))


def test_a_head_runs_its_first_linear_over_the_used_inputs() -> None:
    torch.manual_seed(3)
    head = nn.Sequential(nn.Linear(120, 16), nn.ReLU(), nn.Linear(16, 3)).requires_grad_(False)
    inputs = _relu_features(4, 120, used=0.25)
    torch.testing.assert_close(head_over_used_inputs(head, inputs), head(inputs))
    other = nn.Sequential(nn.Identity(), nn.Linear(120, 3))  # no Linear first: as it is
    assert torch.equal(head_over_used_inputs(other, inputs), other(inputs))
