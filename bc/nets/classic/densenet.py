"""DenseNet-121, laid out exactly as torchvision's ``torchvision.models.densenet121``.

Parameter and buffer names match torchvision's (``features.conv0.weight``,
``features.denseblock1.denselayer1.norm1.weight``, ``features.transition1.conv.weight``,
``features.norm5.running_var``, ``classifier.weight`` ...).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

# Files written before PyTorch allowed no dots in module names spell ``denselayer1.norm1`` as
# ``denselayer1.norm.1`` (torchvision's own download URLs still serve them that way).
_LEGACY_DENSE_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def rename_legacy_densenet_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename old-style ``denselayerN.norm.1.weight`` keys to ``denselayerN.norm1.weight``."""
    renamed = {}
    for key, value in state_dict.items():
        match = _LEGACY_DENSE_LAYER_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 bottleneck then BN-ReLU-conv3x3, producing ``growth_rate`` new maps."""

    def __init__(self, in_features: int, growth_rate: int, bottleneck_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, bottleneck_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bottleneck_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bottleneck_size * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottleneck = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(bottleneck)))


class DenseBlock(nn.Module):
    """Layers that each see the concatenation of the block input and all earlier outputs."""

    def __init__(self, num_layers: int, in_features: int, growth_rate: int, bottleneck_size: int):
        super().__init__()
        for index in range(num_layers):
            layer = DenseLayer(in_features + index * growth_rate, growth_rate, bottleneck_size)
            self.add_module(f"denselayer{index + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.children():
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)  # (N, in_features + num_layers * growth_rate, H, W)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 halving the channels, then 2x2 average pooling."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.add_module("norm", nn.BatchNorm2d(in_features))
        self.add_module("relu", nn.ReLU(inplace=True))
        self.add_module("conv", nn.Conv2d(in_features, out_features, 1, bias=False))
        self.add_module("pool", nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """DenseNet-BC: stem, dense blocks joined by transitions, final BN, linear classifier."""

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, ...] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bottleneck_size: int = 4,
        num_classes: int = 1000,
        in_channels: int = 3,
    ):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                conv0=nn.Conv2d(in_channels, num_init_features, 7, stride=2, padding=3, bias=False),
                norm0=nn.BatchNorm2d(num_init_features),
                relu0=nn.ReLU(inplace=True),
                pool0=nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        )
        num_features = num_init_features
        for index, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, num_features, growth_rate, bottleneck_size)
            self.features.add_module(f"denseblock{index + 1}", block)
            num_features += num_layers * growth_rate
            if index != len(block_config) - 1:
                self.features.add_module(
                    f"transition{index + 1}", Transition(num_features, num_features // 2)
                )
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))  # (N, C, 224, 224) -> (N, 1024, 7, 7)
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)  # (N, 1024)
        return self.classifier(x)  # (N, num_classes)


def densenet121(num_classes: int = 1000, *, in_channels: int = 3) -> DenseNet:
    """DenseNet-121 with torchvision's layout; 7,978,856 parameters with 1000 classes."""
    return DenseNet(32, (6, 12, 24, 16), 64, num_classes=num_classes, in_channels=in_channels)
