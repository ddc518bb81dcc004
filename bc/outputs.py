"""A policy's outputs and their losses: the yaw head, and in the two-control world a speed head.

:class:`OutputSet` is what the trainer asks for a loss and a prediction. It holds the yaw
head (``bc.heads``: the env's action bins), an optional speed head over the speed bins (a
classifier, or a regressor of the speed command), the loss weight of the speed, whether the
outputs end with an extras branch's own prediction (``--extra-mode prediction``, trained on
the same labels) and per-sample weights (per-output balancing, keyframe weighting). With
neither a speed head nor weights it is the yaw head, unchanged.

Labels travel in :class:`Labels`: the yaw bins and commands every head has, the speed bins
and commands of two-control data, and a weight per sample and output.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.nn import functional

from bc.heads import ClassifierHead, Head, Prediction
from envs.controls import speed_bin_commands, speed_command_to_bin


@dataclass
class Labels:
    """The labels of a batch's samples (every tensor of one shape, ``(M,)`` or ``(B, T)``).

    ``weights`` is ``(..., 2)``: each sample's weight in the yaw and in the speed loss.
    """

    bins: torch.Tensor
    yaw: torch.Tensor
    speed_bins: torch.Tensor | None = None
    speed: torch.Tensor | None = None
    weights: torch.Tensor | None = None

    def select(self, mask: torch.Tensor) -> Labels:
        """The labels of the samples in ``mask`` (flattened)."""
        return self.take(mask)

    def take(self, index: Any) -> Labels:
        """Every tensor indexed by ``index`` (a mask, or a tuple of per-dimension indices)."""
        return Labels(*(None if t is None else t[index] for t in self._tensors()))

    def to(self, device: torch.device) -> Labels:
        return Labels(*(None if t is None else t.to(device) for t in self._tensors()))

    def _tensors(self) -> tuple[torch.Tensor | None, ...]:
        return (self.bins, self.yaw, self.speed_bins, self.speed, self.weights)

    def numel(self) -> int:
        return int(self.bins.numel())


class SpeedHead:
    """The speed output: a classifier over the speed bins or a regressor of the command."""

    def __init__(self, kind: str, speed_bins: int):
        if kind not in ("classifier", "regressor"):
            raise ValueError(f"speed head must be classifier or regressor, got {kind!r}")
        self.kind = kind
        self.speed_bins = int(speed_bins)
        self.n_outputs = self.speed_bins if kind == "classifier" else 1
        self._table = torch.as_tensor(speed_bin_commands(self.speed_bins), dtype=torch.float32)

    def loss(self, outputs: torch.Tensor, labels: Labels) -> torch.Tensor:
        """Per-sample loss ``(M,)``."""
        if self.kind == "classifier":
            return functional.cross_entropy(outputs, labels.speed_bins, reduction="none")
        return functional.mse_loss(outputs[:, 0], labels.speed, reduction="none")

    def predict(self, outputs: torch.Tensor) -> Prediction:
        """Speed bins and commands (``yaw`` holds the speed command) of ``outputs``."""
        if self.kind == "classifier":
            probs = torch.softmax(outputs.float(), dim=-1)
            bins = probs.argmax(dim=-1)
            return Prediction(bins, self._table.to(bins.device)[bins], probs)
        command = outputs[:, 0].float().clamp(-1.0, 1.0)
        bins = speed_command_to_bin(command.detach().cpu().double().numpy(), self.speed_bins)
        return Prediction(torch.as_tensor(bins).to(command.device), command, None)


class OutputSet:
    """The heads of a policy's outputs, their weighted loss and their predictions."""

    def __init__(
        self,
        yaw: Head,
        speed: SpeedHead | None = None,
        speed_weight: float = 1.0,
        auxiliary: bool = False,
    ):
        self.yaw = yaw
        self.speed = speed
        self.speed_weight = float(speed_weight)
        self.auxiliary = auxiliary
        self.sizes = (yaw.n_outputs, speed.n_outputs if speed is not None else 0)

    @property
    def n_outputs(self) -> int:
        """Outputs the net produces: the heads', then the branch's own (prediction mode)."""
        return sum(self.sizes) * (2 if self.auxiliary else 1)

    @property
    def head_outputs(self) -> list[int]:
        """The output count of each head, in order (yaw, then speed if any)."""
        return [n for n in self.sizes if n]

    @property
    def head_classifiers(self) -> list[bool]:
        """Whether each head is a classifier, in the order of :attr:`head_outputs`."""
        kinds = [isinstance(self.yaw, ClassifierHead)]
        if self.speed is not None:
            kinds.append(self.speed.kind == "classifier")
        return kinds

    def yaw_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The yaw head's outputs ``(M, n)`` of the net's ``(M, n_outputs)``."""
        return outputs[:, : self.sizes[0]]

    def speed_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The speed head's outputs (two controls)."""
        return outputs[:, self.sizes[0] : sum(self.sizes)]

    def loss(
        self,
        outputs: torch.Tensor,
        labels: Labels,
        reduction: str = "mean",
        auxiliary: bool = True,
    ) -> torch.Tensor:
        """The weighted loss of ``outputs (M, n_outputs)``: yaw, speed, and the branch's own.

        ``auxiliary=False`` leaves the branch's own loss out: the policy's loss, which compares
        across extra modes (validation reports it).
        """
        total = self._heads_loss(outputs[:, : sum(self.sizes)], labels, reduction)
        if self.auxiliary and auxiliary:
            total = total + self._heads_loss(outputs[:, sum(self.sizes) :], labels, reduction)
        return total

    def _heads_loss(self, outputs: torch.Tensor, labels: Labels, reduction: str) -> torch.Tensor:
        weights = labels.weights
        yaw_outputs = self.yaw_outputs(outputs)
        if weights is None and self.speed is None:
            return self.yaw.loss(yaw_outputs, labels.bins, labels.yaw, reduction=reduction)
        yaw = self.yaw.loss(yaw_outputs, labels.bins, labels.yaw, reduction="none")  # (M,)
        parts = yaw if weights is None else yaw * weights[:, 0]
        if self.speed is not None:
            speed = self.speed.loss(self.speed_outputs(outputs), labels)
            if weights is not None:
                speed = speed * weights[:, 1]
            parts = parts + self.speed_weight * speed
        return parts.mean() if reduction == "mean" else parts.sum()

    def predict(self, outputs: torch.Tensor) -> Prediction:
        """The yaw head's prediction."""
        return self.yaw.predict(self.yaw_outputs(outputs))

    def predict_speed(self, outputs: torch.Tensor) -> Prediction | None:
        """The speed head's prediction (None with one control)."""
        return None if self.speed is None else self.speed.predict(self.speed_outputs(outputs))


def output_weights(
    mode: str,
    bins: torch.Tensor,
    n_bins: int,
    speed_bins: torch.Tensor | None,
    n_speed_bins: int,
) -> torch.Tensor | None:
    """``(N, 2)`` per-sample weights of the yaw and the speed loss: per-output balancing.

    ``separate`` weights each output by the inverse frequency of its own label (the notes'
    balancing_v2, which drew each output's samples through its own sampler: weighting is the
    same in expectation without drawing three times the samples); ``joint`` weights both by
    the inverse frequency of the pair of labels (balancing_v3, which keeps the correlation
    between outputs); ``off`` gives None. Weights have mean 1 over the split.
    """
    if mode == "off":
        return None
    speed = speed_bins if speed_bins is not None else torch.zeros_like(bins)
    n_speed = n_speed_bins if speed_bins is not None else 1
    if mode == "separate":
        yaw_weight = _inverse_frequency(bins, n_bins)
        speed_weight = _inverse_frequency(speed, n_speed)
        return torch.stack([yaw_weight, speed_weight], dim=1)
    if mode == "joint":
        weight = _inverse_frequency(bins * n_speed + speed, n_bins * n_speed)
        return torch.stack([weight, weight], dim=1)
    raise ValueError(f"output balancing must be off, separate or joint, got {mode!r}")


def keyframe_weights(
    weights: torch.Tensor | None, keyframe: torch.Tensor, factor: float
) -> torch.Tensor | None:
    """``weights`` (or ones) times ``factor`` on keyframes, renormalised to mean 1.

    A keyframe is a step whose label differs from the previous step's label
    (``bc.metrics.previous_labels``): where "repeat the previous action" errs (Wen et al. 2021
    weight the samples where a predictor from past actions errs).
    """
    if factor == 1.0:
        return weights
    base = weights if weights is not None else torch.ones(len(keyframe), 2)
    scaled = base * torch.where(keyframe, factor, 1.0)[:, None]
    return scaled / scaled.mean(dim=0, keepdim=True)


def _inverse_frequency(labels: torch.Tensor, n: int) -> torch.Tensor:
    counts = torch.bincount(labels, minlength=n).to(torch.float32)
    weight = 1.0 / counts.clamp_min(1.0)[labels]
    return weight / weight.mean()


def without_weights(labels: Labels) -> Labels:
    """The same labels with every sample weighted equally (validation)."""
    return replace(labels, weights=None)


def split_labels(split: Any, targets: torch.Tensor, outputs: OutputSet) -> Labels:
    """The labels of a split's frames ``targets`` (speed labels when there is a speed head)."""
    speed = outputs.speed is not None
    return Labels(
        split.bins[targets],
        split.yaw[targets],
        split.speed_bins[targets] if speed else None,
        split.speed[targets] if speed else None,
        None if split.weights is None else split.weights[targets],
    )
