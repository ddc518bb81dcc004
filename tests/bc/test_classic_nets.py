"""Classic deep nets: torchvision layout, weight loading, freezing, training, specs.

Nothing here reaches the network: weight files are state dicts of the project's own
torchvision-structured models, perturbed, saved in ``tmp_path``.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bc.net_table import END_MARKER, START_MARKER, NetTableConfig, PeakTensorMemory
from bc.net_table import main as net_table_main
from bc.nets import NETS, NetSpec, build_net
from bc.nets.classic import (
    ARCHITECTURES,
    CLASSIC_NETS,
    ClassicBackbone,
    PretrainedWeightsError,
    adapt_first_conv_weight,
    alexnet,
    densenet121,
    inception_v3,
    resnet18,
    squeezenet1_0,
    squeezenet1_1,
    vgg16,
)
from bc.nets.temporal import FrameStackPolicy

# torchvision's published parameter counts (weights meta "num_params"), 1000 classes.
TORCHVISION_PARAMETERS = {
    "alexnet": (alexnet, 61_100_840),
    "vgg16": (vgg16, 138_357_544),
    "resnet18": (resnet18, 11_689_512),
    "densenet121": (densenet121, 7_978_856),
    "squeezenet1_0": (squeezenet1_0, 1_248_424),
    "squeezenet1_1": (squeezenet1_1, 1_235_496),
    "inception_v3": (inception_v3, 27_161_264),
}

# Keys of torchvision's state dicts, with their shapes, spread over each architecture.
TORCHVISION_KEYS = {
    "alexnet": {
        "features.0.weight": (64, 3, 11, 11),
        "features.3.weight": (192, 64, 5, 5),
        "features.10.bias": (256,),
        "classifier.1.weight": (4096, 9216),
        "classifier.4.weight": (4096, 4096),
        "classifier.6.weight": (1000, 4096),
    },
    "vgg16": {
        "features.0.weight": (64, 3, 3, 3),
        "features.5.weight": (128, 64, 3, 3),
        "features.28.weight": (512, 512, 3, 3),
        "classifier.0.weight": (4096, 25088),
        "classifier.3.bias": (4096,),
        "classifier.6.weight": (1000, 4096),
    },
    "resnet18": {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "bn1.num_batches_tracked": (),
        "layer1.0.conv1.weight": (64, 64, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "layer4.1.bn2.running_var": (512,),
        "fc.weight": (1000, 512),
    },
    "densenet121": {
        "features.conv0.weight": (64, 3, 7, 7),
        "features.norm0.running_mean": (64,),
        "features.denseblock1.denselayer1.norm1.weight": (64,),
        "features.denseblock1.denselayer1.conv1.weight": (128, 64, 1, 1),
        "features.denseblock2.denselayer12.conv2.weight": (32, 128, 3, 3),
        "features.transition3.conv.weight": (512, 1024, 1, 1),
        "features.denseblock4.denselayer16.norm1.weight": (992,),
        "features.norm5.running_var": (1024,),
        "classifier.weight": (1000, 1024),
    },
    "squeezenet1_0": {
        "features.0.weight": (96, 3, 7, 7),
        "features.3.squeeze.weight": (16, 96, 1, 1),
        "features.3.expand1x1.weight": (64, 16, 1, 1),
        "features.12.expand3x3.weight": (256, 64, 3, 3),
        "classifier.1.weight": (1000, 512, 1, 1),
    },
    "squeezenet1_1": {
        "features.0.weight": (64, 3, 3, 3),
        "features.3.squeeze.weight": (16, 64, 1, 1),
        "features.12.expand3x3.bias": (256,),
        "classifier.1.bias": (1000,),
    },
    "inception_v3": {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_1a_3x3.bn.running_mean": (32,),
        "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
        "Mixed_5b.branch1x1.conv.weight": (64, 192, 1, 1),
        "Mixed_6b.branch7x7_2.conv.weight": (128, 128, 1, 7),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "AuxLogits.conv0.conv.weight": (128, 768, 1, 1),
        "AuxLogits.conv1.conv.weight": (768, 128, 5, 5),
        "AuxLogits.fc.weight": (1000, 768),
        "fc.weight": (1000, 2048),
    },
}

# Small inputs keep forward passes cheap; each is at least the architecture's minimum.
SMALL_INPUT = {"inception_v3": 80, "alexnet": 64}


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    # The test machines' few cores are shared: with one thread per process, no OpenMP thread
    # spins waiting for a sibling descheduled by another job (which made passes 30x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_input(arch: str) -> int:
    return SMALL_INPUT.get(arch, 48)


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-default running statistics, so that unloaded buffers show."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.running_mean.shape
            module.running_mean.copy_(0.1 * torch.randn(size, generator=generator))
            module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
            module.num_batches_tracked.fill_(7)
    return model


def save(state: dict, tmp_path, name: str = "weights.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def penultimate(model: nn.Module, arch: str, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(features entering the ImageNet classification layer, logits) of the full model."""
    head = model.get_submodule(ARCHITECTURES[arch].head)
    seen = []
    handle = head.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return seen[0], logits


@pytest.mark.parametrize("arch", list(TORCHVISION_PARAMETERS))
def test_parameter_counts_equal_torchvision(arch):
    constructor, expected = TORCHVISION_PARAMETERS[arch]
    model = constructor()
    assert sum(parameter.numel() for parameter in model.parameters()) == expected


@pytest.mark.parametrize("arch", list(TORCHVISION_KEYS))
def test_key_names_and_shapes_equal_torchvision(arch):
    with torch.device("meta"):
        state = ARCHITECTURES[arch].build(num_classes=1000).state_dict()
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    for key, shape in TORCHVISION_KEYS[arch].items():
        assert shapes.get(key) == shape, key


def test_every_family_is_registered_as_frame_stack_and_lstm():
    for name, (arch, slow) in CLASSIC_NETS.items():
        entry, lstm = NETS[name], NETS[f"{name}_lstm"]
        assert entry.frames == (1, 3, 5) and not entry.recurrent
        assert lstm.frames == (1,) and lstm.recurrent
        assert entry.slow == lstm.slow == slow
        assert arch in entry.description
    assert {"alex", "vgg16", "inception", "res18", "dense", "squeeze", "squeeze11"} <= set(NETS)
    assert CLASSIC_NETS["squeeze"][0] == "squeezenet1_0"
    assert CLASSIC_NETS["squeeze11"][0] == "squeezenet1_1"


def test_native_input_sizes():
    sizes = {arch: architecture.input_size for arch, architecture in ARCHITECTURES.items()}
    assert sizes == dict.fromkeys(ARCHITECTURES, 224) | {"inception_v3": 299}
    with pytest.raises(ValueError, match="at least 75"):
        ClassicBackbone("inception_v3", input_size=64)


@pytest.mark.parametrize(
    "arch",
    [
        pytest.param(arch, marks=pytest.mark.slow) if arch == "vgg16" else arch
        for arch in ARCHITECTURES
    ],
)
def test_pretrained_round_trip_gives_the_full_models_penultimate_features(arch, tmp_path):
    # With ImageNet weights torchvision's inception_v3 rescales its input (transform_input);
    # the backbone folds that rescaling into its first layer instead.
    kwargs = {"transform_input": True} if arch == "inception_v3" else {}
    torch.manual_seed(0)
    full = randomised(ARCHITECTURES[arch].build(num_classes=1000, **kwargs)).eval()
    path = save(full.state_dict(), tmp_path)
    torch.manual_seed(1)
    size = small_input(arch)
    backbone = ClassicBackbone(arch, input_size=size).eval()
    x = torch.randn(2, 3, size, size)
    truth, logits = penultimate(full, arch, x)
    if truth.dim() == 4:  # squeezenet: the 1x1 classifier conv sees maps, then pools them
        truth = truth.mean(dim=(2, 3))
    with torch.no_grad():
        assert not torch.allclose(backbone(x), truth)
        backbone.load_pretrained(path)
        features = backbone(x)
    assert features.shape == (2, backbone.output_dim)
    # Random weights make activations large; the inception fold reorders sums: relative error.
    scale = float(truth.abs().max())
    torch.testing.assert_close(features, truth, rtol=1e-4, atol=1e-5 * scale)
    head = full.get_submodule(ARCHITECTURES[arch].head)
    if isinstance(head, nn.Linear):
        scale = float(logits.abs().max())
        torch.testing.assert_close(head(features), logits, rtol=1e-4, atol=1e-5 * scale)
    # Head (and aux classifier) are discarded; the rest is the full model's, key for key.
    backbone.load_pretrained(path, transform_input=False)
    dropped = (ARCHITECTURES[arch].head, *ARCHITECTURES[arch].dropped)
    expected = {k: v for k, v in full.state_dict().items() if not k.startswith(dropped)}
    loaded = backbone.net.state_dict()
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_inception_input_transform_folds_exactly(mode, tmp_path):
    torch.manual_seed(0)
    full = randomised(inception_v3(transform_input=True))
    backbone = ClassicBackbone("inception_v3", input_size=75)
    backbone.load_pretrained(save(full.state_dict(), tmp_path))
    first, folded = full.Conv2d_1a_3x3, backbone.net.Conv2d_1a_3x3
    first.train(mode == "train")
    folded.train(mode == "train")
    x = torch.randn(3, 3, 75, 75)
    with torch.no_grad():  # in train mode BatchNorm uses the batch mean, which absorbs the shift
        torch.testing.assert_close(folded(x), first(full._transform_input(x)))


def test_registered_net_loads_pretrained_through_its_encoder(tmp_path):
    torch.manual_seed(0)
    full = squeezenet1_1().eval()
    path = save(full.state_dict(), tmp_path)
    net = build_net("squeeze11", NetSpec(frames=3, height=48, width=64)).eval()
    net.encoder.load_pretrained(path)
    x = torch.randn(1, 3, 3, 48, 64)  # (B, T, C, H, W), not the native size
    resized = F.interpolate(x[0], size=(224, 224), mode="bilinear", align_corners=False)
    truth, _ = penultimate(full, "squeezenet1_1", resized)
    with torch.no_grad():
        features = net.encoder(x[0])
    torch.testing.assert_close(features, truth.mean(dim=(2, 3)), rtol=1e-5, atol=1e-5)


def test_backbone_resizes_frames_bilinearly_to_its_input_size():
    torch.manual_seed(0)
    backbone = ClassicBackbone("resnet18").eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        features = backbone(x)
        expected = backbone.net(
            F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        )
    assert torch.equal(features, expected)
    with pytest.raises(ValueError, match=r"expects \(N, 3, H, W\)"):
        backbone(torch.randn(2, 1, 64, 64))


@pytest.mark.parametrize("arch", ["squeezenet1_0", "squeezenet1_1", "resnet18"])
def test_squeezenets_convolve_channels_last_frames_to_the_same_features(arch):
    torch.manual_seed(0)
    backbone = ClassicBackbone(arch, input_size=64).eval()
    seen = []
    backbone.net.get_submodule(ARCHITECTURES[arch].first_conv).register_forward_hook(
        lambda module, inputs, output: seen.append(inputs[0])
    )
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        features = backbone(x)
        expected = backbone.net(x)  # the frames as they come, contiguous
    # SqueezeNet trains 1.4-1.6x faster on a CPU with channels-last frames; ResNet-18 does not
    wanted = arch.startswith("squeezenet")
    assert seen[0].is_contiguous(memory_format=torch.channels_last) == wanted
    assert not seen[1].is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def squeeze_state():
    torch.manual_seed(0)
    return squeezenet1_1().state_dict()


@pytest.fixture(scope="module")
def resnet_state():
    torch.manual_seed(0)
    return randomised(resnet18()).state_dict()


def test_missing_key_is_refused_with_its_name(resnet_state, tmp_path):
    state = dict(resnet_state)
    del state["layer3.1.bn2.running_var"], state["fc.bias"]
    backbone = ClassicBackbone("resnet18", input_size=32)
    before = copy.deepcopy(backbone.state_dict())
    with pytest.raises(PretrainedWeightsError) as error:
        backbone.load_pretrained(save(state, tmp_path))
    assert "missing keys (2): layer3.1.bn2.running_var, fc.bias" in str(error.value)
    assert isinstance(error.value, ValueError)
    after = backbone.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)  # nothing half-loaded


def test_wrongly_shaped_and_unexpected_keys_are_refused_with_shapes(squeeze_state, tmp_path):
    state = dict(squeeze_state)
    state["features.3.squeeze.weight"] = torch.zeros(16, 32, 1, 1)
    state["classifier.1.weight"] = torch.zeros(10, 512, 1, 1)  # a 10-class head
    state["features.13.weight"] = torch.zeros(3)
    with pytest.raises(PretrainedWeightsError) as error:
        ClassicBackbone("squeezenet1_1").load_pretrained(save(state, tmp_path))
    message = str(error.value)
    assert "unexpected keys (1): features.13.weight" in message
    assert "features.3.squeeze.weight (expected (16, 64, 1, 1), got (16, 32, 1, 1))" in message
    assert "classifier.1.weight (expected (1000, 512, 1, 1), got (10, 512, 1, 1))" in message
    assert "missing" not in message


def test_another_architectures_file_is_refused(resnet_state, tmp_path):
    with pytest.raises(PretrainedWeightsError, match=r"missing keys \(52\).*and 32 more"):
        ClassicBackbone("squeezenet1_1").load_pretrained(save(resnet_state, tmp_path))


def test_policy_checkpoint_is_refused_with_a_hint(tmp_path):
    net = build_net("squeeze11", NetSpec())
    with pytest.raises(PretrainedWeightsError, match="--init-from CKPT:encoder"):
        net.encoder.load_pretrained(save(net.state_dict(), tmp_path))


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module."])
def test_wrapped_and_data_parallel_files_load(wrap, squeeze_state, tmp_path):
    if wrap == "module.":
        state = {f"module.{key}": value for key, value in squeeze_state.items()}
    else:
        state = {wrap: squeeze_state, "epoch": 3}
    backbone = ClassicBackbone("squeezenet1_1")
    backbone.load_pretrained(save(state, tmp_path))
    assert torch.equal(backbone.net.features[0].weight, squeeze_state["features.0.weight"])


def test_unreadable_files_are_refused(tmp_path):
    backbone = ClassicBackbone("squeezenet1_1")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="not a readable torch state dict"):
        backbone.load_pretrained(garbage)
    with pytest.raises(PretrainedWeightsError, match="cannot open weight file"):
        backbone.load_pretrained(tmp_path / "absent.pth")
    with pytest.raises(PretrainedWeightsError, match="not tensors: epoch"):
        backbone.load_pretrained(save({"epoch": 3, "w": torch.zeros(1)}, tmp_path))


def test_batchnorm_counters_may_be_missing(resnet_state, tmp_path):
    state = {k: v for k, v in resnet_state.items() if not k.endswith("num_batches_tracked")}
    backbone = ClassicBackbone("resnet18", input_size=32)
    backbone.load_pretrained(save(state, tmp_path))
    assert backbone.net.bn1.num_batches_tracked.item() == 0
    assert torch.equal(backbone.net.bn1.running_var, resnet_state["bn1.running_var"])


def test_densenet_legacy_key_names_load(tmp_path):
    torch.manual_seed(0)
    state = randomised(densenet121()).state_dict()
    legacy = {
        key.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): value
        for key, value in state.items()
    }
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    backbone = ClassicBackbone("densenet121", input_size=32)
    backbone.load_pretrained(save(legacy, tmp_path))
    layer = backbone.net.features.denseblock3.denselayer7
    prefix = "features.denseblock3.denselayer7"
    assert torch.equal(layer.norm1.running_mean, state[f"{prefix}.norm1.running_mean"])
    assert torch.equal(layer.conv2.weight, state[f"{prefix}.conv2.weight"])


def test_inception_aux_logits_are_checked_then_dropped(tmp_path):
    torch.manual_seed(0)
    state = inception_v3().state_dict()
    backbone = ClassicBackbone("inception_v3", input_size=75)
    assert not any(key.startswith("AuxLogits") for key in backbone.net.state_dict())
    assert sum(p.numel() for p in backbone.parameters()) == 27_161_264 - 3_326_696 - 2_049_000
    without_aux = {key: value for key, value in state.items() if not key.startswith("AuxLogits.")}
    with pytest.raises(PretrainedWeightsError, match="AuxLogits.fc.weight"):
        backbone.load_pretrained(save(without_aux, tmp_path))
    backbone.load_pretrained(save(state, tmp_path))
    backbone.train()
    assert backbone(torch.randn(2, 3, 75, 75)).shape == (2, 2048)  # a tensor, no aux output


def test_first_conv_weight_adaptation():
    rgb = torch.randn(8, 3, 5, 5)
    depth = adapt_first_conv_weight(rgb, 1)
    assert torch.allclose(depth, rgb.sum(dim=1, keepdim=True))
    rgbd = adapt_first_conv_weight(rgb, 4)
    assert torch.equal(rgbd[:, :3], rgb)
    assert torch.allclose(rgbd[:, 3:], rgb.mean(dim=1, keepdim=True))
    # A grey image repeated over 2 channels meets the same response as RGB filters give it.
    grey = torch.randn(1, 1, 9, 9)
    two = adapt_first_conv_weight(rgb, 2)
    torch.testing.assert_close(
        F.conv2d(grey.expand(-1, 2, -1, -1), two), F.conv2d(grey.expand(-1, 3, -1, -1), rgb)
    )


@pytest.mark.parametrize("channels", [1, 4])
def test_depth_and_rgbd_backbones_load_rgb_weights(channels, resnet_state, tmp_path):
    backbone = ClassicBackbone("resnet18", channels=channels, input_size=32).eval()
    backbone.load_pretrained(save(resnet_state, tmp_path))
    expected = adapt_first_conv_weight(resnet_state["conv1.weight"], channels)
    assert torch.equal(backbone.net.conv1.weight, expected)
    assert torch.equal(backbone.net.layer4[1].conv2.weight, resnet_state["layer4.1.conv2.weight"])
    assert backbone(torch.randn(2, channels, 40, 40)).shape == (2, 512)
    # A file whose first conv already takes `channels` inputs loads as it is.
    own = dict(resnet_state, **{"conv1.weight": torch.randn(64, channels, 7, 7)})
    backbone.load_pretrained(save(own, tmp_path, "own.pth"))
    assert torch.equal(backbone.net.conv1.weight, own["conv1.weight"])
    wrong = dict(resnet_state, **{"conv1.weight": torch.randn(64, 2, 7, 7)})
    with pytest.raises(PretrainedWeightsError, match=rf"or \(64, {channels}, 7, 7\), got"):
        backbone.load_pretrained(save(wrong, tmp_path, "wrong.pth"))


def frame_stack_net(seed: int = 0) -> FrameStackPolicy:
    torch.manual_seed(seed)
    return FrameStackPolicy(ClassicBackbone("resnet18", input_size=64), frames=3, n_outputs=3)


def sgd_steps(model: nn.Module, steps: int = 3) -> None:
    generator = torch.Generator().manual_seed(0)
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    model.train()
    for _ in range(steps):
        x = torch.randn(4, 3, 3, 64, 64, generator=generator)
        target = torch.randint(0, 3, (4,), generator=generator)
        loss = F.cross_entropy(model(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    after = module.state_dict()
    return {key for key in before if not torch.equal(before[key], after[key])}


@pytest.mark.parametrize("how", ["trainer prefix", "freeze()"])
def test_frozen_backbone_stays_bit_identical_while_the_head_trains(how):
    model = frame_stack_net()
    if how == "trainer prefix":  # what the trainer's --freeze backbone does
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(not name.startswith("encoder."))
    else:
        model.encoder.freeze()
    assert model.encoder.frozen
    encoder_before, head_before = snapshot(model.encoder), snapshot(model.head)
    sgd_steps(model)
    assert model.training and model.head.training and not model.encoder.training
    assert not any(module.training for module in model.encoder.modules())
    assert changed(encoder_before, model.encoder) == set()  # parameters AND buffers
    assert changed(head_before, model.head) == set(head_before)


def test_unfrozen_backbone_changes_weights_and_batchnorm_statistics():
    model = frame_stack_net()
    before = snapshot(model.encoder)
    sgd_steps(model)
    moved = changed(before, model.encoder)
    assert "net.conv1.weight" in moved and "net.bn1.running_mean" in moved
    assert "net.layer4.1.bn2.num_batches_tracked" in moved
    model.encoder.freeze()
    model.encoder.unfreeze()
    model.train()
    assert not model.encoder.frozen and model.encoder.training


def test_partial_freeze_keeps_the_frozen_batchnorm_statistics():
    model = frame_stack_net()
    frozen = ("encoder.net.conv1.", "encoder.net.bn1.", "encoder.net.layer1.")
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(not name.startswith(frozen))
    before = snapshot(model)
    sgd_steps(model)
    moved = changed(before, model)
    assert not {key for key in moved if key.startswith(frozen)}
    assert "encoder.net.layer2.0.bn1.running_mean" in moved
    assert "encoder.net.layer2.0.conv1.weight" in moved
    assert model.encoder.training and not model.encoder.net.layer1[0].bn1.training


def train_registered_net(name: str, steps: int = 2) -> None:
    entry = NETS[name]
    torch.manual_seed(0)
    frames = 1 if entry.recurrent else 3
    net = build_net(name, NetSpec(frames=frames, height=48, width=64, n_outputs=3))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    time = 2 if entry.recurrent else frames
    x = torch.randn(2, time, 3, 48, 64)  # (B, T, C, H, W)
    target = torch.tensor([0, 2])
    first_conv = net.encoder.net.get_submodule(net.encoder.architecture.first_conv).weight
    start = first_conv.detach().clone()
    net.train()
    for _ in range(steps):
        if entry.recurrent:
            out, (hidden, cell) = net(x)
            assert out.shape == (2, time, 3) and hidden.shape[1] == 2
            loss = F.cross_entropy(out.flatten(0, 1), target.repeat_interleave(time))
        else:
            out = net(x)
            assert out.shape == (2, 3)
            loss = F.cross_entropy(out, target)
        optimizer.zero_grad()
        loss.backward()
        assert torch.isfinite(loss)
        missing = [n for n, p in net.named_parameters() if p.grad is None]
        assert not missing, missing
        assert all(torch.isfinite(p.grad).all() for p in net.parameters())
        optimizer.step()
    assert not torch.equal(first_conv, start)  # the gradient reached the first convolution


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.slow) if NETS[name].slow else name
        for base in CLASSIC_NETS
        for name in (base, f"{base}_lstm")
    ],
)
def test_registered_net_trains_a_few_steps(name):
    train_registered_net(name)


@pytest.mark.parametrize("frames", [1, 3, 5])
def test_frame_stack_shapes_and_exact_state_round_trip(frames):
    spec = NetSpec(frames=frames, height=40, width=40, n_outputs=4)
    torch.manual_seed(0)
    net = build_net("squeeze11", spec).eval()
    torch.manual_seed(1)
    twin = build_net("squeeze11", spec).eval()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(2, frames, 3, 40, 40)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 4)
        assert torch.equal(out, twin(x))


def test_recurrent_net_carries_its_state():
    torch.manual_seed(0)
    net = build_net("squeeze11_lstm", NetSpec(height=40, width=40)).eval()
    x = torch.randn(1, 4, 3, 40, 40)
    with torch.no_grad():
        whole, _ = net(x)
        first, state = net(x[:, :2])
        second, _ = net(x[:, 2:], state)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, rtol=1e-5, atol=1e-6)


def test_peak_tensor_memory_counts_live_storage():
    x = torch.zeros(2**18)  # 1 MiB
    meter = PeakTensorMemory()
    meter.track([x])
    with meter:
        a = x + 1
        b = a * 2  # x, a, b live: 3 MiB
        b.relu_()  # in place: nothing new
        view = b.view(2, -1)  # a view: nothing new
        del a, view
        c = b - 1  # a is gone: x, b, c
        del b, c
        d = x.sum()
    assert meter.peak == 3 * 2**20
    assert meter.current == 2**20 + d.untyped_storage().nbytes()


def test_specs_measure_and_write_the_docs_table(tmp_path):
    docs = tmp_path / "classic_nets.md"
    docs.write_text(f"# Title\n\nintro\n\n{START_MARKER}\nold table\n{END_MARKER}\n\nafter\n")
    config = NetTableConfig(
        nets=["tiny", "squeeze11_lstm"], repeats=1, warmup=0, write_docs=True, docs=str(docs)
    )
    rows = net_table_main(config)
    assert [row.name for row in rows] == ["tiny", "squeeze11_lstm"]
    squeeze = rows[1]
    assert (squeeze.height, squeeze.width) == (224, 224)
    assert squeeze.encoder_parameters == 1_235_496 - 513_000  # squeezenet1_1 minus its head
    net = build_net("squeeze11_lstm", NetSpec())
    assert squeeze.parameters == sum(p.numel() for p in net.parameters())
    weights = 4 * squeeze.parameters
    assert weights < squeeze.cpu.memory_bytes < weights + 64 * 2**20
    assert squeeze.cpu.fps > 0
    text = docs.read_text()
    assert text.startswith("# Title\n\nintro\n\n" + START_MARKER)
    assert text.endswith(f"{END_MARKER}\n\nafter\n")
    assert "old table" not in text
    assert "| squeeze11_lstm | 1x224x224 | " in text
    assert "| net | input (TxHxW) | params | encoder params | CPU MiB | CPU fps |" in text


def test_specs_refuses_unknown_nets_and_docs_without_markers(tmp_path):
    with pytest.raises(ValueError, match="unknown --nets nope"):
        NetTableConfig(nets=["nope"])
    docs = tmp_path / "plain.md"
    docs.write_text("# no markers\n")
    config = NetTableConfig(nets=["tiny"], repeats=1, warmup=0, write_docs=True, docs=str(docs))
    with pytest.raises(ValueError, match="specs:start"):
        net_table_main(config)
    assert docs.read_text() == "# no markers\n"


def test_input_size_trains_a_classic_net_at_the_recorded_size_and_the_policy_keeps_it(
    data, tmp_path
):
    """--input-size 32: the backbone sees 32x32 frames, and the checkpoint rebuilds it so."""
    from bc.config import TrainConfig
    from bc.errors import ConfigError
    from bc.policy import load_policy
    from bc.train import main as train
    from tests.bc.helpers import tiny_config

    summary = train(tiny_config(data, tmp_path, net="squeeze11", frames=1, input_size=32,
                                steps=2))  # fmt: skip
    policy = load_policy(summary["checkpoints"]["last"])
    assert policy.spec.input_size == 32 and policy.model.encoder.input_size == 32
    frame = torch.zeros(1, 1, 3, 32, 32)
    assert policy.model(frame).shape == (1, 3)
    with pytest.raises(ValueError, match="classic nets"):
        build_net("tiny_nfc", NetSpec(input_size=64))
    with pytest.raises(ConfigError, match="--input-size is for the classic nets"):
        TrainConfig(net="tiny_nfc", input_size=64)
