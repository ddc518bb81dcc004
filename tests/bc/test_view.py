"""The encoders' centred view: both image edges read alike; older checkpoints keep theirs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bc.config import TrainConfig, config_from_dict, config_to_dict
from bc.errors import CheckpointError
from bc.nets import NetSpec, build_net
from bc.nets.view import set_view, views_not_in
from bc.train import main
from tests.bc.helpers import small_dataset, tiny_config

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


def test_set_view_moves_every_crop_and_views_not_in_names_the_others():
    model = build_net("tiny_lstm", NetSpec(frames=1, channels=1))
    assert views_not_in(model, "centred") == []
    set_view(model, "top_left")
    assert model.encoder.view.crop == (0, 0, 60, 60)
    assert views_not_in(model, "centred") == ["encoder.view"]
    assert views_not_in(model, "top_left") == []


def test_a_config_written_before_the_view_reads_top_left():
    values = config_to_dict(TrainConfig())
    del values["view"]
    assert config_from_dict(TrainConfig, values).view == "top_left"
    assert TrainConfig().view == "centred"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return small_dataset(tmp_path_factory.mktemp("view") / "data")


def test_train_keeps_the_view_it_is_given_and_refuses_weights_of_another(data, tmp_path):
    top_left = main(tiny_config(data, tmp_path / "a", steps=1, view="top_left"))
    checkpoint = Path(top_left["checkpoints"]["last"])
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["model"]["encoder.view.origin"].tolist() == [0, 0]
    assert saved["config"]["view"] == "top_left"
    # fine-tuning in the same view takes the weights; in another, a one-line error
    main(tiny_config(data, tmp_path / "b", steps=1, view="top_left", init_from=[str(checkpoint)]))
    with pytest.raises(CheckpointError, match="does not read the centred view of this run"):
        main(tiny_config(data, tmp_path / "c", steps=1, init_from=[str(checkpoint)]))
