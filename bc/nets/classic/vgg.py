"""VGG-16 (configuration "D", no batch norm), laid out exactly as torchvision's ``vgg16``.

Parameter names and shapes match torchvision's (``features.0.weight`` ... ``features.28.weight``,
``classifier.0.weight``, ``classifier.3.weight``, ``classifier.6.weight``).
"""

from __future__ import annotations

import torch
from torch import nn

# Output channels of each 3x3 convolution; "M" is a 2x2 max pool. VGG paper, configuration D.
VGG16_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip


def make_vgg_features(layers: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    """The convolutional trunk: conv 3x3 + ReLU per number, max pool per ``"M"``."""
    modules: list[nn.Module] = []
    channels = in_channels
    for layer in layers:
        if layer == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            modules.append(nn.Conv2d(channels, int(layer), kernel_size=3, padding=1))
            modules.append(nn.ReLU(inplace=True))
            channels = int(layer)
    return nn.Sequential(*modules)


class VGG(nn.Module):
    """VGG: a trunk of 3x3 convolutions, adaptive pooling to 7x7, three linear layers."""

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        # torchvision's initialisation, so that "structure only" runs start where torchvision's do.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, 224, 224) -> (N, 512, 7, 7)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 25088)
        return self.classifier(x)  # (N, num_classes)


def vgg16(num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5) -> VGG:
    """VGG-16 with torchvision's layout; 138,357,544 parameters with 1000 classes."""
    return VGG(make_vgg_features(VGG16_LAYERS, in_channels), num_classes, dropout)
