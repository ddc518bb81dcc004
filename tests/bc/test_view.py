"""The encoders' centred view: both image edges read alike; older checkpoints keep theirs."""

from __future__ import annotations

import pytest
import torch

from bc.nets import NetSpec, build_net

SPEC = NetSpec(frames=3, channels=1, height=64, width=64)


def _read_columns_and_rows(model: torch.nn.Module, spec: NetSpec) -> tuple[list[int], list[int]]:
    """Which image columns and rows the net's output depends on (its input gradient)."""
    x = torch.rand(1, spec.frames, spec.channels, spec.height, spec.width, requires_grad=True)
    output = model(x)
    output = output[0] if isinstance(output, tuple) else output
    output.abs().sum().backward()
    grad = x.grad.abs().sum((0, 1, 2))  # (H, W)
    columns = grad.sum(0).nonzero().flatten().tolist()
    rows = grad.sum(1).nonzero().flatten().tolist()
    return columns, rows


@pytest.mark.parametrize("net", ["tiny_nfc", "tiny_3d", "tiny_early", "nature_nfc", "tiny_lstm"])
def test_a_new_net_reads_the_centred_60_of_64_pixels(net):
    spec = NetSpec(frames=1 if net == "tiny_lstm" else 3, channels=1)
    columns, rows = _read_columns_and_rows(build_net(net, spec), spec)
    # 60 pixels read, 2 left out at each edge (hand-computed: tests/bc/test_shapes.py)
    assert columns == list(range(2, 62))
    assert rows == list(range(2, 62))


def _legacy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict as nets wrote it before the view was centred: no ``origin``."""
    return {key: value for key, value in state.items() if not key.endswith("view.origin")}


def test_a_state_dict_without_origin_loads_the_top_left_view():
    new = build_net("tiny_nfc", SPEC)
    legacy = build_net("tiny_nfc", SPEC)
    legacy.load_state_dict(_legacy(new.state_dict()))
    assert legacy.encoder.view.crop == (0, 0, 60, 60)
    assert new.encoder.view.crop == (2, 2, 60, 60)
    assert _read_columns_and_rows(legacy, SPEC)[0] == list(range(60))
    # the values of the convolutions on the whole image, as those nets computed them
    frames = torch.rand(4, 1, 64, 64)
    encoder = legacy.encoder
    before = torch.relu(encoder.conv2(torch.relu(encoder.conv1(frames)))).flatten(1)
    assert torch.equal(encoder(frames), before)
    assert not torch.equal(new.encoder(frames), before)


def test_the_origin_travels_with_the_state_dict():
    model = build_net("tiny_nfc", SPEC)
    model.encoder.view.load_state_dict({"origin": torch.tensor([1, 3])})
    copy = build_net("tiny_nfc", SPEC)
    copy.load_state_dict(model.state_dict())
    assert copy.encoder.view.crop == (1, 3, 60, 60)
    frames = torch.rand(2, 1, 64, 64)
    assert torch.equal(copy.encoder(frames), model.encoder(frames))


def test_an_origin_that_does_not_fit_is_refused():
    model = build_net("tiny_nfc", SPEC)
    with pytest.raises(RuntimeError, match=r"origin \[5, 0\] does not fit a 60x60 crop"):
        model.encoder.view.load_state_dict({"origin": torch.tensor([5, 0])})
