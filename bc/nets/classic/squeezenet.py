"""SqueezeNet 1.0 and 1.1, laid out exactly as torchvision's ``squeezenet1_0``/``squeezenet1_1``.

Parameter names and shapes match torchvision's (``features.0.weight``,
``features.3.squeeze.weight``, ``features.3.expand1x1.weight``, ``classifier.1.weight`` ...).
"""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    """Fire module: a 1x1 "squeeze" convolution feeding parallel 1x1 and 3x3 "expand" ones."""

    def __init__(
        self, in_planes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int
    ):
        super().__init__()
        self.squeeze = nn.Conv2d(in_planes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        expanded_1x1 = self.expand1x1_activation(self.expand1x1(x))
        expanded_3x3 = self.expand3x3_activation(self.expand3x3(x))
        return torch.cat([expanded_1x1, expanded_3x3], 1)


# Per version: the stem convolution as (out channels, kernel size), then the trunk: "M" a 3x3
# max pool of stride 2, each Fire module as (squeeze planes, expand planes per branch). A Fire
# module's input is the previous one's two expand branches concatenated.
SQUEEZENET_STEMS: dict[str, tuple[int, int]] = {"1_0": (96, 7), "1_1": (64, 3)}
SQUEEZENET_LAYERS: dict[str, tuple[tuple[int, int] | str, ...]] = {
    "1_0": ("M", (16, 64), (16, 64), (32, 128), "M", (32, 128), (48, 192), (48, 192), (64, 256),
            "M", (64, 256)),
    "1_1": ("M", (16, 64), (16, 64), "M", (32, 128), (32, 128), "M", (48, 192), (48, 192),
            (64, 256), (64, 256)),
}  # fmt: skip


def make_squeezenet_features(version: str, in_channels: int = 3) -> nn.Sequential:
    """The trunk: the stem convolution and its ReLU, then max pools and Fire modules."""
    if version not in SQUEEZENET_STEMS:
        raise ValueError(f"SqueezeNet version must be '1_0' or '1_1', got {version!r}")
    stem_channels, stem_kernel = SQUEEZENET_STEMS[version]
    modules: list[nn.Module] = [
        nn.Conv2d(in_channels, stem_channels, kernel_size=stem_kernel, stride=2),
        nn.ReLU(inplace=True),
    ]
    channels = stem_channels
    for layer in SQUEEZENET_LAYERS[version]:
        if layer == "M":
            modules.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
        else:
            squeeze_planes, expand_planes = layer
            modules.append(Fire(channels, squeeze_planes, expand_planes, expand_planes))
            channels = 2 * expand_planes
    return nn.Sequential(*modules)


class SqueezeNet(nn.Module):
    """SqueezeNet; ``version`` is ``"1_0"`` (the paper's) or ``"1_1"`` (2.4x less compute).

    The classifier is a 1x1 convolution to ``num_classes`` maps, averaged over the image.
    """

    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        dropout: float = 0.5,
        in_channels: int = 3,
    ):
        super().__init__()
        self.features = make_squeezenet_features(version, in_channels)
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                if module is final_conv:
                    nn.init.normal_(module.weight, mean=0.0, std=0.01)
                else:
                    nn.init.kaiming_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, 224, 224) -> (N, 512, 13, 13)
        x = self.classifier(x)  # (N, num_classes, 1, 1)
        return torch.flatten(x, 1)  # (N, num_classes)


def squeezenet1_0(
    num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5
) -> SqueezeNet:
    """SqueezeNet 1.0 with torchvision's layout; 1,248,424 parameters with 1000 classes."""
    return SqueezeNet("1_0", num_classes=num_classes, dropout=dropout, in_channels=in_channels)


def squeezenet1_1(
    num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5
) -> SqueezeNet:
    """SqueezeNet 1.1 with torchvision's layout; 1,235,496 parameters with 1000 classes."""
    return SqueezeNet("1_1", num_classes=num_classes, dropout=dropout, in_channels=in_channels)
