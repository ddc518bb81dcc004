"""A trained policy for the env: ``load_policy(checkpoint).act(observation)``.

The policy sees exactly what the net was trained on: the same input normalisation (from the
checkpoint), frame stacks whose first frames repeat the episode's first observation (the
dataset's padding rule), and for recurrent nets the LSTM state carried from step to step.
Call ``reset()`` at the start of every episode.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bc.checkpoint import BEST_VAL_LOSS, checkpoint_dir, read_checkpoint
from bc.data import InputNorm
from bc.errors import CheckpointError
from bc.heads import Head, make_head
from bc.nets import NETS, NetSpec, build_net


@dataclass
class PolicyOutput:
    """One decision: the action bin, its yaw command and (classifier) class probabilities."""

    action: int  # bin index in [0, n_bins)
    yaw: float  # yaw command in [-1, 1]
    probs: np.ndarray | None  # (n_bins,) for the classifier, else None


class Policy:
    """A net, its head and normalisation, with the frame buffer or LSTM state of an episode."""

    def __init__(
        self,
        model: nn.Module,
        head: Head,
        norm: InputNorm,
        spec: NetSpec,
        net: str,
        recurrent: bool,
        env_kwargs: dict[str, Any],
        config: dict[str, Any],
        device: torch.device,
        expert_config: dict[str, Any] | None = None,
    ):
        self.model = model.eval()
        self.head_module = head
        self.norm = norm
        self.spec = spec
        self.net = net
        self.recurrent = recurrent
        self.env_kwargs = env_kwargs
        # the expert that recorded the training data: the evaluator's agreement reference
        self.expert_config = expert_config
        self.config = config
        self.n_bins = head.n_bins
        self.head = head.name
        self.device = device
        self._frames: deque[torch.Tensor] = deque(maxlen=spec.frames)
        self._state: Any = None

    def reset(self) -> None:
        """Forget the episode: empty the frame buffer and zero the LSTM state."""
        self._frames.clear()
        self._state = None

    def _frame(self, observation: np.ndarray) -> torch.Tensor:
        observation = np.asarray(observation)
        if observation.ndim == 2 and self.spec.channels == 1:
            observation = observation[..., None]  # depth as (H, W)
        expected = (self.spec.height, self.spec.width, self.spec.channels)
        if observation.shape != expected:
            raise ValueError(
                f"observation of shape {observation.shape}, but the policy was trained on"
                f" {expected} (H, W, C)"
            )
        if observation.dtype != np.uint8:
            raise ValueError(
                f"observation must be uint8 as the env returns it, got {observation.dtype}"
            )
        frame = torch.from_numpy(np.ascontiguousarray(observation)).to(self.device)
        return frame.permute(2, 0, 1)  # (H, W, C) -> (C, H, W)

    @torch.inference_mode()
    def act(self, observation: np.ndarray) -> PolicyOutput:
        """The action for ``observation`` (uint8 ``(H, W, C)``), the next step of the episode."""
        frame = self._frame(observation)
        if self.recurrent:
            inputs = self.norm(frame)[None, None]  # (1, 1, C, H, W)
            outputs, self._state = self.model(inputs, self._state)
            outputs = outputs[:, -1]  # (1, n_outputs)
        else:
            if not self._frames:
                # The episode's first observation fills the stack, as the dataset pads runs.
                self._frames.extend([frame] * self.spec.frames)
            else:
                self._frames.append(frame)
            inputs = self.norm(torch.stack(list(self._frames)))[None]  # (1, F, C, H, W)
            outputs = self.model(inputs)  # (1, n_outputs)
        prediction = self.head_module.predict(outputs)
        probs = prediction.probs[0].cpu().numpy() if prediction.probs is not None else None
        return PolicyOutput(int(prediction.bins[0]), float(prediction.yaw[0]), probs)


def load_policy(checkpoint: str | Path, device: str = "cpu") -> Policy:
    """Rebuild a policy from a checkpoint file alone.

    A run directory means its ``checkpoints/best_val_loss.pt``. A missing, unreadable or
    incompatible file is a one-line CheckpointError.
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = checkpoint_dir(path) / BEST_VAL_LOSS
    payload = read_checkpoint(path, map_location="cpu")
    net = payload["net"]
    if net not in NETS:
        raise CheckpointError(
            f"{path} was trained with net {net!r}, which is not registered here"
            f" (known: {', '.join(sorted(NETS))})"
        )
    try:
        spec = NetSpec(**payload["spec"])
        head = make_head(payload["head"], int(payload["n_bins"]), payload["target"])
        model = build_net(net, spec)
        model.load_state_dict(payload["model"])
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path} does not fit net {net!r}: {reason}") from None
    try:
        torch_device = torch.device(device)
        model.to(torch_device)
    except (RuntimeError, AssertionError) as error:
        raise CheckpointError(f"cannot use device {device!r}: {error}") from None
    return Policy(
        model,
        head,
        InputNorm.from_dict(payload["norm"]),
        spec,
        net,
        bool(payload["recurrent"]),
        dict(payload["env_kwargs"]),
        dict(payload["config"]),
        torch_device,
        payload.get("expert_config"),
    )
