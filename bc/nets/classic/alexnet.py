"""AlexNet, laid out exactly as torchvision's ``torchvision.models.alexnet``.

Parameter names and shapes match torchvision's (``features.0.weight``, ``classifier.1.weight``,
``classifier.6.weight`` ...), so torchvision-format ImageNet state dicts load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn


class AlexNet(nn.Module):
    """AlexNet ("One weird trick" variant, as in torchvision): 5 conv layers, 3 linear layers.

    ``in_channels`` is this project's addition (torchvision fixes it at 3): depth (1) and
    RGB-D (4) frames give the first convolution that many input channels.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        # Any input of at least 63x63 pixels reaches the classifier with 6x6 cells.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (N, C, 224, 224) -> (N, 256, 6, 6)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, 9216)
        return self.classifier(x)  # (N, num_classes)


def alexnet(num_classes: int = 1000, *, in_channels: int = 3, dropout: float = 0.5) -> AlexNet:
    """AlexNet with torchvision's layout; 61,100,840 parameters with 1000 classes."""
    return AlexNet(num_classes=num_classes, dropout=dropout, in_channels=in_channels)
