"""The classic ImageNet nets as per-frame encoders, and loading torchvision weight files.

`ClassicBackbone` wraps one torchvision-structured model (``self.net``) whose ImageNet
classification layer is replaced by ``nn.Identity``, so the encoder returns the penultimate
features: ``(N, C, H, W) -> (N, output_dim)``. Frames of any size are resized on the fly to
the architecture's native input size.

Weight files are plain torchvision state dicts (``torch.save(model.state_dict(), path)``);
`ClassicBackbone.load_pretrained` checks them key by key against the full torchvision model,
1000-class head included, and refuses any mismatch with `PretrainedWeightsError`.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bc.errors import CheckpointError
from bc.nets.classic.alexnet import alexnet
from bc.nets.classic.densenet import densenet121, rename_legacy_densenet_keys
from bc.nets.classic.inception import inception_v3
from bc.nets.classic.resnet import resnet18
from bc.nets.classic.squeezenet import squeezenet1_0, squeezenet1_1
from bc.nets.classic.vgg import vgg16

IMAGENET_CLASSES = 1000

# An error message lists at most this many keys per kind of problem, then counts the rest.
_MAX_KEYS_LISTED = 20


class PretrainedWeightsError(CheckpointError, ValueError):
    """A weight file that cannot be read or does not fit: missing, unexpected, misshapen keys.

    A `CheckpointError` too, so the command line reports it as one ``error: ...`` line.
    """


@dataclass(frozen=True)
class InputTransform:
    """A per-channel ``x_c -> x_c * scale_c + shift_c`` before the first conv.

    ``norm`` is the BatchNorm right after that conv, which must be unpadded and bias-free for
    the transform to fold exactly into weights (`fold_input_transform`).
    """

    scale: tuple[float, ...]
    shift: tuple[float, ...]
    norm: str


# torchvision's inception_v3 ``transform_input``: x_c -> x_c * std_c / 0.5 + (mean_c - 0.5) / 0.5
# turns ImageNet-normalised RGB into the [-1, 1] scaling the Google weights were trained on.
INCEPTION_TRANSFORM = InputTransform(
    scale=(0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5),
    shift=((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5),
    norm="Conv2d_1a_3x3.bn",
)


@dataclass(frozen=True)
class Architecture:
    """One torchvision architecture and where its ImageNet-specific parts sit."""

    name: str
    build: Callable[..., nn.Module]  # build(num_classes=..., in_channels=..., **kwargs)
    input_size: int  # native square input size (pixels) the ImageNet weights were trained at
    min_input_size: int  # smallest input the layer arithmetic accepts (torchvision's min_size)
    head: str  # module path of the ImageNet classification layer, replaced by nn.Identity
    first_conv: str  # module path of the convolution that sees the image
    dropped: tuple[str, ...] = ()  # module paths in weight files that the encoder leaves out
    encoder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    # Input rescaling the ImageNet weights expect on top of ImageNet normalisation, folded
    # into the first conv when weights are loaded; None: the weights take normalised input.
    input_transform: InputTransform | None = None
    rename_legacy_keys: Callable[[Mapping[str, torch.Tensor]], dict[str, torch.Tensor]] | None = (
        None
    )
    # Run the convolutions on channels-last frames (measured: SqueezeNet 1.1 trains 1.4-1.6x
    # faster on a CPU at 64 px; ResNet-18 does not gain, so it is not set for it).
    channels_last: bool = False


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture("alexnet", alexnet, 224, 63, head="classifier.6", first_conv="features.0"),
        Architecture("vgg16", vgg16, 224, 32, head="classifier.6", first_conv="features.0"),
        Architecture("resnet18", resnet18, 224, 1, head="fc", first_conv="conv1"),
        Architecture(
            "densenet121",
            densenet121,
            224,
            29,
            head="classifier",
            first_conv="features.conv0",
            rename_legacy_keys=rename_legacy_densenet_keys,
        ),
        Architecture(
            "squeezenet1_0",
            squeezenet1_0,
            224,
            21,
            head="classifier.1",
            first_conv="features.0",
            channels_last=True,
        ),
        Architecture(
            "squeezenet1_1",
            squeezenet1_1,
            224,
            17,
            head="classifier.1",
            first_conv="features.0",
            channels_last=True,
        ),
        # The auxiliary classifier only serves ImageNet training: the encoder is built without
        # it (3.3 M parameters that would never receive a gradient), but weight files must
        # still carry its keys, as every torchvision inception_v3 state dict does.
        Architecture(
            "inception_v3",
            inception_v3,
            299,
            75,
            head="fc",
            first_conv="Conv2d_1a_3x3.conv",
            dropped=("AuxLogits",),
            encoder_kwargs={"aux_logits": False},
            input_transform=INCEPTION_TRANSFORM,
        ),
    )
}


def get_architecture(name: str) -> Architecture:
    """Look up an architecture, with an error that lists the known names."""
    if name not in ARCHITECTURES:
        known = ", ".join(ARCHITECTURES)
        raise ValueError(f"unknown architecture {name!r}; choose one of: {known}")
    return ARCHITECTURES[name]


@functools.cache
def imagenet_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of torchvision's full ImageNet model ``name`` (3 channels, 1000 classes)."""
    # On the meta device nothing is allocated: vgg16's 138 M parameters cost no memory here.
    with torch.device("meta"):
        model = get_architecture(name).build(num_classes=IMAGENET_CLASSES)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def adapt_first_conv_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Turn an RGB first-conv weight ``(out, 3, k, k)`` into one for ``channels`` inputs.

    * fewer than 3 channels (depth = 1): every channel gets the sum over RGB divided by the
      channel count, so a grey image repeated over the channels gives the response the RGB
      filters give to that grey image in colour (timm does the same for 1 channel);
    * more than 3 (RGB-D = 4): RGB as they are, each extra channel the mean of the RGB filters,
      so the extra channels start with a colour-neutral filter of one channel's weight.
    """
    if weight.shape[1] == channels:
        return weight
    if weight.shape[1] != 3:
        raise ValueError(f"can only adapt an RGB weight, got shape {tuple(weight.shape)}")
    if channels < 3:
        summed = weight.sum(dim=1, keepdim=True) / channels
        return summed.expand(-1, channels, -1, -1).contiguous()
    extra = weight.mean(dim=1, keepdim=True).expand(-1, channels - 3, -1, -1)
    return torch.cat([weight, extra], dim=1)


def fold_input_transform(
    conv_weight: torch.Tensor,
    norm_running_mean: torch.Tensor,
    scale: tuple[float, ...],
    shift: tuple[float, ...],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold ``x_c -> x_c * scale_c + shift_c`` into a bias-free, unpadded conv and its BatchNorm.

    ``conv(x * s + b) = conv_{W * s}(x) + sum(W * b)``: the scale goes into the weight, and
    the constant second term (constant only without padding) into the BatchNorm's running
    mean, which it would be subtracted with; in training mode the batch mean removes it.
    """
    scale_tensor = conv_weight.new_tensor(scale).view(1, -1, 1, 1)
    shift_tensor = conv_weight.new_tensor(shift).view(1, -1, 1, 1)
    offset = (conv_weight * shift_tensor).sum(dim=(1, 2, 3))  # (out_channels,)
    return conv_weight * scale_tensor, norm_running_mean - offset


def read_state_dict(path: str | PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict file, unwrapping ``{"state_dict": ...}`` and ``{"model": ...}``.

    A ``module.`` prefix on every key (files saved from ``nn.DataParallel``) is removed.
    """
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:
        message = (
            f"cannot open weight file {path} ({error.strerror or error}); see "
            "docs/classic_nets.md for how to save torchvision's ImageNet weights to a file"
        )
        raise PretrainedWeightsError(message) from error
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        message = f"{path}: not a readable torch state dict file ({error})"
        raise PretrainedWeightsError(message) from error
    for wrapper in ("state_dict", "model"):
        if isinstance(loaded, Mapping) and isinstance(loaded.get(wrapper), Mapping):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, Mapping):
        raise PretrainedWeightsError(
            f"{path}: expected a state dict (a mapping of names to tensors), got {type(loaded)}"
        )
    not_tensors = [str(key) for key, value in loaded.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise PretrainedWeightsError(
            f"{path}: not a state dict; these entries are not tensors: {_list_keys(not_tensors)}"
        )
    state = dict(loaded)
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _list_keys(keys: list[str]) -> str:
    listed = ", ".join(keys[:_MAX_KEYS_LISTED])
    if len(keys) > _MAX_KEYS_LISTED:
        listed += f", ... and {len(keys) - _MAX_KEYS_LISTED} more"
    return listed


def _under(key: str, module_paths: tuple[str, ...]) -> bool:
    return any(key.startswith(path + ".") for path in module_paths)


class ClassicBackbone(nn.Module):
    """A torchvision-structured ImageNet net minus its classification layer, as a frame encoder.

    Args:
        arch: one of `ARCHITECTURES` (``alexnet``, ``vgg16``, ``resnet18``, ``densenet121``,
            ``squeezenet1_0``, ``squeezenet1_1``, ``inception_v3``).
        channels: input channels (3 rgb, 1 depth, 4 rgbd); the first convolution takes that many.
        input_size: square size frames are resized to; defaults to the native one (224, 299 for
            inception_v3), the size ImageNet weights were trained at.

    Freezing: `freeze` (or setting ``requires_grad=False`` on every parameter, as the trainer's
    ``--freeze`` does) makes `frozen` true, and a frozen backbone stays in eval mode whatever
    ``train()`` asks, so BatchNorm running statistics and dropout stay fixed too. Under a
    partial freeze, each BatchNorm layer whose own parameters are all frozen stays in eval mode.
    """

    def __init__(self, arch: str, channels: int = 3, input_size: int | None = None):
        super().__init__()
        architecture = get_architecture(arch)
        size = architecture.input_size if input_size is None else input_size
        if size < architecture.min_input_size:
            raise ValueError(
                f"{arch} needs an input size of at least {architecture.min_input_size}, got {size}"
            )
        self.arch = arch
        self.channels = channels
        self.input_size = size
        self.channels_last = architecture.channels_last
        net = architecture.build(in_channels=channels, **architecture.encoder_kwargs)
        head = net.get_submodule(architecture.head)
        if isinstance(head, nn.Linear):
            self.output_dim = head.in_features
        elif isinstance(head, nn.Conv2d):  # squeezenet: 1x1 conv, then ReLU and global pooling
            self.output_dim = head.in_channels
        else:
            raise TypeError(f"{arch}: cannot read the feature size of head {type(head).__name__}")
        net.set_submodule(architecture.head, nn.Identity())
        self.net = net

    @property
    def architecture(self) -> Architecture:
        """The `Architecture` this backbone was built from."""
        return ARCHITECTURES[self.arch]

    @property
    def frozen(self) -> bool:
        """True when no parameter of the backbone requires a gradient."""
        return not any(parameter.requires_grad for parameter in self.parameters())

    def freeze(self) -> ClassicBackbone:
        """Stop every parameter's gradient and keep the backbone in eval mode from now on."""
        self.requires_grad_(False)
        return self.train(self.training)

    def unfreeze(self) -> ClassicBackbone:
        """Make every parameter trainable again; call ``train()`` to leave eval mode."""
        self.requires_grad_(True)
        return self

    def train(self, mode: bool = True) -> ClassicBackbone:
        """Set training mode, except that frozen parts stay in eval mode (see the class doc)."""
        super().train(mode and not self.frozen)
        if mode:
            for module in self.modules():
                own = list(module.parameters(recurse=False))
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and own:
                    if not any(parameter.requires_grad for parameter in own):
                        module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode frames: ``(N, channels, H, W) -> (N, output_dim)``."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"{self.arch} backbone expects (N, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        size = self.input_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        if self.channels_last:  # same values, another layout: faster convolutions (Architecture)
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x)  # (N, channels, size, size) -> (N, output_dim)

    def load_pretrained(self, path: str | PathLike[str], *, transform_input: bool = True) -> None:
        """Load a torchvision-format state dict file (e.g. ImageNet weights) into the backbone.

        The file must hold every key of torchvision's full model with its shape (1000-class head
        and, for inception_v3, ``AuxLogits`` included); those two parts are then discarded. The
        first convolution may hold 3 input channels (adapted to `channels` by
        `adapt_first_conv_weight`) or exactly `channels`. Files from PyTorch < 0.4.1 that lack
        BatchNorm's ``num_batches_tracked`` counters and densenet files with the old
        ``norm.1``-style names are accepted, as torchvision accepts them.

        ``transform_input`` (inception_v3 with 3 channels only): torchvision's
        ``inception_v3(weights=...)`` rescales ImageNet-normalised input to the [-1, 1] range the
        Google weights expect; that rescaling is folded exactly into the first convolution and
        its BatchNorm, so the encoder computes what torchvision's pretrained model computes on
        ImageNet-normalised frames (``--input-norm imagenet``). Pass False for inception
        weights trained on unscaled input.

        Raises:
            PretrainedWeightsError: listing missing, unexpected and wrongly shaped keys.
        """
        architecture = self.architecture
        state = read_state_dict(path)
        if architecture.rename_legacy_keys is not None:
            state = architecture.rename_legacy_keys(state)
        expected = imagenet_shapes(self.arch)
        first_conv_key = f"{architecture.first_conv}.weight"

        missing = [
            key for key in expected if key not in state and not key.endswith(".num_batches_tracked")
        ]
        unexpected = [key for key in state if key not in expected]
        wrong_shapes = []
        for key, shape in expected.items():
            if key not in state:
                continue
            got = tuple(state[key].shape)
            allowed = [shape]
            if key == first_conv_key and self.channels != 3:
                allowed.append((shape[0], self.channels, *shape[2:]))
            if got not in allowed:
                expected_text = " or ".join(str(option) for option in allowed)
                wrong_shapes.append(f"{key} (expected {expected_text}, got {got})")
        if missing or unexpected or wrong_shapes:
            lines = [
                f"{path} does not fit {self.arch} ({self.channels} channels) in torchvision's "
                f"layout with a {IMAGENET_CLASSES}-class head:"
            ]
            if missing:
                lines.append(f"  missing keys ({len(missing)}): {_list_keys(missing)}")
            if unexpected:
                lines.append(f"  unexpected keys ({len(unexpected)}): {_list_keys(unexpected)}")
            if wrong_shapes:
                lines.append(f"  wrong shapes ({len(wrong_shapes)}): {_list_keys(wrong_shapes)}")
            if any(key.startswith(("encoder.", "head.", "lstm.")) for key in unexpected):
                lines.append(
                    "  (this looks like a corridor-bc policy checkpoint: load it with "
                    "--init-from CKPT:encoder, not --pretrained)"
                )
            raise PretrainedWeightsError("\n".join(lines))

        discarded = (architecture.head, *architecture.dropped)
        encoder_state = {key: value for key, value in state.items() if not _under(key, discarded)}
        encoder_state[first_conv_key] = adapt_first_conv_weight(
            encoder_state[first_conv_key], self.channels
        )
        transform = architecture.input_transform
        if transform is not None and transform_input and self.channels == 3:
            mean_key = f"{transform.norm}.running_mean"
            encoder_state[first_conv_key], encoder_state[mean_key] = fold_input_transform(
                encoder_state[first_conv_key],
                encoder_state[mean_key],
                transform.scale,
                transform.shift,
            )
        for key, value in self.net.state_dict().items():
            if key.endswith(".num_batches_tracked") and key not in encoder_state:
                encoder_state[key] = torch.zeros_like(value)
        self.net.load_state_dict(encoder_state, strict=True)

    def extra_repr(self) -> str:
        """Architecture, channels, input size and feature size, for ``print(model)``."""
        return (
            f"arch={self.arch!r}, channels={self.channels}, input_size={self.input_size}, "
            f"output_dim={self.output_dim}"
        )
