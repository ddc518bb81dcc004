"""Every registered net: shapes, a finite loss that back-propagates, exact save/load."""

from __future__ import annotations

import pytest
import torch

from bc.checkpoint import read_checkpoint, save_checkpoint
from bc.heads import HEADS, make_head
from bc.nets import NETS, NetSpec, build_net, get_net_entry
from bc.nets.tiny import TinyEncoder, temporal_kernels
from tests.extras import require_extra


def _cases() -> list:
    """Every net x frames x head. Nets registered as slow run only with ``-m slow``; for nets
    outside the tiny family the heads other than the classifier only change the last layer,
    so they run with ``-m slow`` too and keep the default test run short."""
    cases = []
    for name, entry in NETS.items():
        tiny = entry.builder.__module__ == "bc.nets.tiny"
        for frames in entry.frames:
            for head in HEADS:
                slow = entry.slow or (not tiny and head != "classifier")
                marks = [pytest.mark.slow] if slow else []
                cases.append(
                    pytest.param(name, frames, head, marks=marks, id=f"{name}-f{frames}-{head}")
                )
    return cases


def _forward(model: torch.nn.Module, x: torch.Tensor, recurrent: bool) -> torch.Tensor:
    return model(x)[0] if recurrent else model(x)


@pytest.mark.parametrize(("name", "frames", "head_name"), _cases())
def test_net_learns_a_step_and_round_trips(
    name: str, frames: int, head_name: str, tmp_path
) -> None:
    torch.manual_seed(0)
    entry = get_net_entry(name)
    head = make_head(head_name, 3, "bin" if head_name == "classifier" else "continuous")
    spec = NetSpec(frames=frames, channels=3, height=32, width=32, n_outputs=head.n_outputs)
    model = build_net(name, spec)
    time = 4 if entry.recurrent else frames
    x = torch.randn(2, time, 3, 32, 32)
    out = _forward(model, x, entry.recurrent)
    expected = (2, time, head.n_outputs) if entry.recurrent else (2, head.n_outputs)
    assert out.shape == expected
    flat = out.reshape(-1, head.n_outputs)
    bins = torch.randint(0, 3, (flat.shape[0],))
    loss = head.loss(flat, bins, 1.0 - bins.float())
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    torch.optim.SGD(model.parameters(), lr=0.01).step()

    path = tmp_path / "net.pt"
    save_checkpoint(
        path,
        {
            "format": "corridor-bc-checkpoint",
            "format_version": 1,
            "net": name,
            "spec": spec.__dict__,
            "model": model.state_dict(),
            "config": {},
            "norm": {},
        },
    )
    loaded = build_net(name, NetSpec(**read_checkpoint(path)["spec"]))
    loaded.load_state_dict(read_checkpoint(path)["model"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    model.eval()
    loaded.eval()
    with torch.no_grad():
        assert torch.equal(
            _forward(model, x, entry.recurrent), _forward(loaded, x, entry.recurrent)
        )


def test_tiny_flattens_to_8000_features_at_128() -> None:
    encoder = TinyEncoder(3, 128, 128)
    assert encoder.output_dim == 8000
    assert encoder(torch.zeros(1, 3, 128, 128)).shape == (1, 8000)


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (64, 64), (96, 128)])
@pytest.mark.parametrize("name", [n for n, e in NETS.items() if not e.slow])
def test_feature_sizes_follow_the_image_size(name: str, size: tuple[int, int]) -> None:
    entry = NETS[name]
    frames = max(entry.frames)
    model = build_net(name, NetSpec(frames=frames, channels=4, height=size[0], width=size[1]))
    encoder = model.encoder
    assert hasattr(encoder, "output_dim")
    x = torch.rand(1, 2 if entry.recurrent else frames, 4, *size)
    out = model(x)[0] if entry.recurrent else model(x)
    assert out.shape[-1] == 3


def test_image_smaller_than_32_is_refused() -> None:
    with pytest.raises(ValueError, match="32x32"):
        NetSpec(height=31, width=64)


@pytest.mark.parametrize(("frames", "kernels"), [(1, (1, 1)), (3, (2, 2)), (5, (3, 3))])
def test_tiny_3d_temporal_kernels_span_the_stack(frames: int, kernels: tuple[int, int]) -> None:
    assert temporal_kernels(frames) == kernels
    model = build_net("tiny_3d", NetSpec(frames=frames, height=32, width=32))
    assert model.encoder.output_shape[1] == 1  # time collapsed to one step
    assert isinstance(model.encoder.conv1, torch.nn.Conv3d)


@pytest.mark.parametrize("name", ["tiny_nfc", "tiny_3d", "tiny_early"])
@pytest.mark.parametrize("frames", [3, 5])
def test_every_frame_of_the_stack_matters(name: str, frames: int) -> None:
    torch.manual_seed(0)
    model = build_net(name, NetSpec(frames=frames, height=32, width=32)).eval()
    x = torch.rand(1, frames, 3, 32, 32)
    with torch.no_grad():
        base = model(x)
        for t in range(frames):
            changed = x.clone()
            changed[:, t] = torch.rand(3, 32, 32)
            assert not torch.allclose(model(changed), base), f"frame {t} is ignored"


def test_siamese_encoder_is_shared_across_frames() -> None:
    model = build_net("tiny_nfc", NetSpec(frames=3, height=32, width=32))
    first_layer = model.head[0]
    assert first_layer.in_features == 3 * model.encoder.output_dim
    assert sum(1 for _ in model.encoder.parameters()) == 4  # one encoder, not three


def test_early_fusion_stacks_frames_on_channels() -> None:
    model = build_net("tiny_early", NetSpec(frames=5, channels=3, height=32, width=32))
    assert model.encoder.conv1.in_channels == 15


def test_recurrent_state_carries_step_by_step() -> None:
    torch.manual_seed(0)
    model = build_net("tiny_lstm", NetSpec(frames=1, height=32, width=32)).eval()
    x = torch.rand(2, 6, 3, 32, 32)
    with torch.no_grad():
        whole, _ = model(x)
        state, steps = None, []
        for t in range(6):
            out, state = model(x[:, t : t + 1], state)
            steps.append(out)
    assert state[0].shape == (2, 2, 64)  # (layers, batch, hidden)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-5, atol=1e-6)


def test_recurrent_nets_take_one_frame_and_lstm_is_two_layers_of_64() -> None:
    entry = NETS["tiny_lstm"]
    assert entry.recurrent and entry.frames == (1,)
    model = build_net("tiny_lstm", NetSpec(height=32, width=32))
    assert (model.lstm.hidden_size, model.lstm.num_layers) == (64, 2)
    with pytest.raises(ValueError, match="frames"):
        build_net("tiny_lstm", NetSpec(frames=3, height=32, width=32))


def test_unknown_net_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="tiny_nfc"):
        get_net_entry("resnet9000")


def test_nature_encoder_has_the_weights_of_sb3_nature_cnn() -> None:
    torch_layers = require_extra("stable_baselines3.common.torch_layers", "sb3")
    import gymnasium as gym
    import numpy as np

    space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)
    reference = torch_layers.NatureCNN(space).cnn
    encoder = build_net("nature_nfc", NetSpec(frames=3)).encoder
    shapes = [tuple(p.shape) for p in encoder.parameters()]
    assert shapes == [tuple(p.shape) for p in reference.parameters()]
    assert sum(p.numel() for p in encoder.parameters()) == 75_936


def test_nature_nfc_parameters_by_hand() -> None:
    # 64x64: conv k8 s4 -> 15, conv k4 s2 -> 6, conv k3 s1 pad 1 -> 6: 64 x 6 x 6 = 2,304
    # features a frame; 3 frames -> FC 6,912 -> 512 -> 3.
    model = build_net("nature_nfc", NetSpec(frames=3))
    assert model.encoder.output_dim == 2_304
    head = 6_912 * 512 + 512 + 512 * 3 + 3
    assert sum(p.numel() for p in model.parameters()) == 75_936 + head == 3_616_931
