"""How a per-frame encoder is spread over time: siamese frame stacks and LSTMs.

Any encoder works here: an ``nn.Module`` with an ``output_dim`` attribute whose forward maps
``(N, C, H, W) -> (N, output_dim)``. Submodule names (``encoder``, ``head``, ``lstm``) are
the parts that ``--init-from CKPT:PART`` and ``--freeze`` address, so keep them stable.
"""

from __future__ import annotations

import torch
from torch import nn


class FrameStackPolicy(nn.Module):
    """One encoder shared by every frame ("siamese"), features concatenated, MLP head.

    With ``frames == 1`` this is the plain single-frame net.
    """

    def __init__(self, encoder: nn.Module, frames: int, n_outputs: int, hidden: int = 1024):
        super().__init__()
        self.frames = frames
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Linear(frames * encoder.output_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, n_outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, time = x.shape[:2]
        if time != self.frames:
            raise ValueError(f"expected {self.frames} frames, got input of shape {tuple(x.shape)}")
        features = self.encoder(x.flatten(0, 1))  # (B*T, C, H, W) -> (B*T, F)
        features = features.view(batch, time * features.shape[-1])  # (B, T*F), oldest first
        return self.head(features)  # (B, n_outputs)


class RecurrentPolicy(nn.Module):
    """Encoder per frame, then an LSTM, then a linear read-out at every step."""

    recurrent = True

    def __init__(
        self, encoder: nn.Module, n_outputs: int, hidden_size: int = 64, num_layers: int = 2
    ):
        super().__init__()
        self.encoder = encoder
        self.lstm = nn.LSTM(encoder.output_dim, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, n_outputs)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        return self.read(self.encode(x), state)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Image features of every frame: ``(B, T, C, H, W) -> (B, T, F)``."""
        batch, time = x.shape[:2]
        return self.encoder(x.flatten(0, 1)).view(batch, time, -1)

    def read(
        self, features: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The outputs at every step of ``features`` (B, T, F) from ``state``, and the state."""
        hidden, state = self.lstm(features, state)  # (B, T, hidden_size)
        return self.head(hidden), state  # (B, T, n_outputs)
