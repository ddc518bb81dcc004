"""--init-from CKPT[:PART], --freeze and --pretrained."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bc.errors import CheckpointError, ConfigError
from bc.nets import NETS, NetSpec, build_net, register_net
from bc.nets.temporal import FrameStackPolicy
from bc.nets.tiny import TinyEncoder
from bc.train import main
from bc.transfer import freeze, freeze_statistics, init_from, load_pretrained, parse_init_from
from tests.bc.helpers import small_dataset, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """(data, last.pt of a tiny_nfc f3 run)."""
    root = tmp_path_factory.mktemp("transfer")
    data = small_dataset(root / "data")
    results = main(tiny_config(data, root / "runs", steps=2))
    return data, Path(results["checkpoints"]["last"])


def _spec(frames: int = 3) -> NetSpec:
    return NetSpec(frames=frames, height=32, width=32)


def test_whole_checkpoint_copies_every_tensor(trained) -> None:
    _, checkpoint = trained
    model = build_net("tiny_nfc", _spec())
    names = init_from(model, str(checkpoint), "tiny_nfc")
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert sorted(names) == sorted(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


def test_a_part_moves_between_families(trained) -> None:
    _, checkpoint = trained
    model = build_net("tiny_lstm", _spec(1))
    lstm_before = model.lstm.weight_ih_l0.clone()
    names = init_from(model, f"{checkpoint}:encoder", "tiny_lstm")
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert names and all(name.startswith("encoder.") for name in names)
    assert torch.equal(model.encoder.conv1.weight, saved["encoder.conv1.weight"])
    assert torch.equal(model.lstm.weight_ih_l0, lstm_before)


def test_weights_written_before_the_centred_view_keep_theirs(trained, tmp_path) -> None:
    _, checkpoint = trained
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"] = {k: v for k, v in payload["model"].items() if "view" not in k}
    legacy = tmp_path / "legacy.pt"
    torch.save(payload, legacy)
    whole = build_net("tiny_nfc", _spec())
    assert whole.encoder.view.crop == (1, 1, 30, 30)  # 32 pixels: 30 read, centred
    assert "encoder.view.origin" in init_from(whole, str(legacy), "tiny_nfc")
    assert whole.encoder.view.crop == (0, 0, 30, 30)  # the top-left part they were trained on
    part = build_net("tiny_lstm", _spec(1))
    init_from(part, f"{legacy}:encoder", "tiny_lstm")
    assert part.encoder.view.crop == (0, 0, 30, 30)
    frames = torch.rand(2, 3, 32, 32)
    conv1, conv2 = part.encoder.conv1, part.encoder.conv2
    assert torch.equal(part.encoder(frames), conv2(conv1(frames).relu()).relu().flatten(1))


def test_a_parameter_prefix_selects_one_layer(trained) -> None:
    _, checkpoint = trained
    model = build_net("tiny_nfc", _spec())
    names = init_from(model, f"{checkpoint}:encoder.conv1", "tiny_nfc")
    assert sorted(names) == ["encoder.conv1.bias", "encoder.conv1.weight"]


def test_repeated_init_from_applies_in_order(trained, tmp_path) -> None:
    data, checkpoint = trained
    other = main(tiny_config(data, tmp_path, steps=1, seed=5))["checkpoints"]["last"]
    results = main(
        tiny_config(
            data,
            tmp_path / "b",
            steps=1,
            lr=1e-12,
            optimizer="sgd",
            momentum=0.0,
            init_from=[str(checkpoint), f"{other}:head"],
        )
    )
    final = torch.load(results["checkpoints"]["last"], weights_only=True)["model"]
    first = torch.load(checkpoint, weights_only=True)["model"]
    second = torch.load(other, weights_only=True)["model"]
    torch.testing.assert_close(final["encoder.conv1.weight"], first["encoder.conv1.weight"])
    torch.testing.assert_close(final["head.2.bias"], second["head.2.bias"])


def test_incompatible_shapes_are_one_line(trained) -> None:
    _, checkpoint = trained
    model = build_net("tiny_nfc", _spec(5))
    with pytest.raises(CheckpointError) as info:
        init_from(model, str(checkpoint), "tiny_nfc")
    message = str(info.value)
    assert "\n" not in message and "head.0.weight" in message and "(1024, 960)" in message


def test_unknown_part_and_missing_target_parameters(trained) -> None:
    _, checkpoint = trained
    with pytest.raises(CheckpointError, match="its parts: encoder, head"):
        init_from(build_net("tiny_nfc", _spec()), f"{checkpoint}:lstm", "tiny_nfc")
    with pytest.raises(CheckpointError, match="take a part"):
        init_from(build_net("tiny_lstm", _spec(1)), str(checkpoint), "tiny_lstm")
    with pytest.raises(CheckpointError, match="does not exist"):
        init_from(build_net("tiny_nfc", _spec()), "nowhere.pt:encoder", "tiny_nfc")


def test_parse_init_from(tmp_path) -> None:
    assert parse_init_from("runs/a/last.pt") == (Path("runs/a/last.pt"), None)
    assert parse_init_from("runs/a/last.pt:encoder") == (Path("runs/a/last.pt"), "encoder")
    odd = tmp_path / "with:colon.pt"
    odd.write_bytes(b"")
    assert parse_init_from(str(odd)) == (odd, None)


def test_freeze_prefixes_and_backbone_alias() -> None:
    model = build_net("tiny_lstm", _spec(1))
    names = freeze(model, ["backbone", "lstm.weight_ih_l0"])
    assert all(n.startswith("encoder.") or n == "lstm.weight_ih_l0" for n in names)
    assert not model.encoder.conv1.weight.requires_grad
    assert model.lstm.weight_hh_l0.requires_grad and model.head.weight.requires_grad
    with pytest.raises(ConfigError, match="no parameter starts with"):
        freeze(build_net("tiny", _spec(1)), ["lstm"])
    with pytest.raises(ConfigError, match="no parameter to train"):
        freeze(build_net("tiny", _spec(1)), ["encoder", "head"])


def test_frozen_batch_norm_keeps_its_statistics() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    freeze(model, ["1"])
    model.train()
    freeze_statistics(model)
    before = model[1].running_mean.clone()
    model(torch.randn(2, 3, 8, 8))
    assert torch.equal(model[1].running_mean, before)
    assert model[0].training


class _PretrainableEncoder(TinyEncoder):
    loaded: list[str] = []

    def load_pretrained(self, path: str) -> None:
        if Path(path).read_text() == "bad":
            raise ValueError("bad weights: missing keys conv1.weight")
        self.loaded.append(str(path))


@pytest.fixture
def pretrainable_net():
    name = "test_pretrainable"

    @register_net(name, frames=(1,))
    def build(spec: NetSpec) -> nn.Module:
        return FrameStackPolicy(
            _PretrainableEncoder(spec.channels, spec.height, spec.width), 1, spec.n_outputs
        )

    yield name
    NETS.pop(name)


def test_pretrained_calls_the_encoder_hook(pretrainable_net, tmp_path) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_text("ok")
    model = build_net(pretrainable_net, _spec(1))
    load_pretrained(model, str(weights), pretrainable_net)
    assert _PretrainableEncoder.loaded[-1] == str(weights)
    weights.write_text("bad")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_pretrained(model, str(weights), pretrainable_net)


def test_pretrained_on_a_net_without_support(trained, tmp_path) -> None:
    data, _ = trained
    weights = tmp_path / "weights.pth"
    weights.write_text("ok")
    with pytest.raises(ConfigError, match="net tiny_nfc has no pretrained weights support"):
        main(tiny_config(data, tmp_path, steps=1, pretrained=str(weights)))


def test_pretrained_through_main(pretrainable_net, trained, tmp_path) -> None:
    data, _ = trained
    weights = tmp_path / "weights.pth"
    weights.write_text("ok")
    main(
        tiny_config(
            data, tmp_path, steps=1, net=pretrainable_net, frames=1, pretrained=str(weights)
        )
    )
    assert _PretrainableEncoder.loaded[-1] == str(weights)
