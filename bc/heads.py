"""Heads: how a net's outputs become a loss, an action bin and a yaw command.

* ``classifier``: ``n_bins`` logits, cross-entropy on the label's bin (continuous labels are
  binned to the nearest bin at load time); acts with the most probable bin, whose yaw is
  the bin's value.
* ``regressor``: one value, MSE on the target yaw (``expert_continuous``, or the bin's yaw
  with ``--target bin``); acts with the clamped value and its nearest bin.
* ``gaussian``: mean and log-std, Gaussian negative log-likelihood; acts with the mean.

A head that regresses the expert's continuous command (``--target continuous``) turns it into
a bin the way the expert turned it into its label (:class:`Quantiser`: a deadband, and a turn
that goes on until the command has nearly died out), not by rounding to the nearest bin, which
turns only past half the maximum rate.

Accuracy is defined for every head as "predicted bin == label bin", so classifier and
regressor runs compare on one scale; ``yaw_mse`` compares them on the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn import functional

from envs.spaces import bin_yaw_commands, yaw_command_to_bin
from expert.experts import ExpertConfig, command_to_bin

LOG_STD_RANGE = (-5.0, 2.0)


def bin_to_yaw(bins: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Yaw command of each action bin (``envs.spaces``' table), float32 on ``bins``' device."""
    table = torch.as_tensor(bin_yaw_commands(n_bins), dtype=torch.float32, device=bins.device)
    return table[bins]


def yaw_to_bin(yaw: torch.Tensor, n_bins: int) -> torch.Tensor:
    """The action bin nearest to each yaw command (``envs.spaces``' rule), on ``yaw``'s device.

    The rule runs on the CPU: predictions are moved there for the metrics anyway.
    """
    bins = yaw_command_to_bin(yaw.detach().to("cpu", torch.float64).numpy(), n_bins)
    return torch.as_tensor(bins, dtype=torch.int64).to(yaw.device)


@dataclass
class Prediction:
    """What a head makes of a batch of outputs ``(M, n_outputs)``."""

    bins: torch.Tensor  # (M,) int64
    yaw: torch.Tensor  # (M,) float32 in [-1, 1]
    probs: torch.Tensor | None  # (M, n_bins) for the classifier


@dataclass(frozen=True)
class Quantiser:
    """How a yaw command becomes an action bin: the nearest bin, or the expert's own rule.

    With a ``deadband`` it is ``expert.experts.command_to_bin``: straight while |command| is
    inside the deadband, never straight outside it, and, given the ``previous`` bin, a turn
    goes on while the command on its side stays above ``release``. A regressor of the discrete
    expert's command flew 2% of the held-out worlds through nearest-bin rounding and 91%
    through this rule (docs/nets.md, "Training recipes").
    """

    n_bins: int
    deadband: float | None = None  # None: the nearest bin
    release: float | None = None

    def bin(self, command: float, previous: int | None = None) -> int:
        """The bin of one command; ``previous`` is the bin acted on the step before, if any."""
        if self.deadband is None:
            return yaw_command_to_bin(command, self.n_bins)
        return command_to_bin(command, self.n_bins, self.deadband, self.release, previous)

    @property
    def hysteresis(self) -> bool:
        """Whether a bin depends on the previous one (a turn goes on below the deadband)."""
        return (
            self.deadband is not None
            and self.release is not None
            and (self.release < self.deadband)
        )

    def run_bins(self, commands: torch.Tensor, run_of: torch.Tensor) -> torch.Tensor:
        """The bins of commands ``(M,)`` taken in order along each run, as a policy acts.

        ``run_of`` is each command's run, a run's commands contiguous and in step order; each
        bin is given its run's previous bin (none at the run's first frame).
        """
        bins, previous, last_run = [], None, None
        for command, run in zip(commands.tolist(), run_of.tolist(), strict=True):
            if run != last_run:
                previous, last_run = None, run
            previous = self.bin(command, previous)
            bins.append(previous)
        return torch.tensor(bins, dtype=torch.int64)

    def bins(self, commands: torch.Tensor) -> torch.Tensor:
        """The bins of independent commands ``(M,)`` (no previous step: frame by frame)."""
        if self.deadband is None:
            return yaw_to_bin(commands, self.n_bins)
        # the expert's own rule, one command at a time: a batch is a few hundred at most
        bins = [self.bin(command) for command in commands.tolist()]
        return torch.tensor(bins, dtype=torch.int64, device=commands.device)


def label_quantiser(
    n_bins: int,
    target: str,
    expert_config: dict[str, Any] | None,
    deadband: float | None = None,
    release: float | None = None,
) -> Quantiser:
    """The quantiser a head acts through: the labelling expert's rule for its continuous command.

    ``deadband`` and ``release`` (``bc.train --act-deadband/--act-release``) replace the
    expert's thresholds: a learnt command is not the expert's, so the rule that binned the
    exact command need not be the one that flies the learnt one best. A head that learns bins
    (``target`` bin) rounds to the nearest, as does one whose data no scripted expert
    labelled (synthetic data).
    """
    if target != "continuous" or not isinstance(expert_config, dict):
        return Quantiser(n_bins)
    try:
        expert = ExpertConfig.from_dict(expert_config)
    except (TypeError, ValueError):
        return Quantiser(n_bins)
    deadband = expert.deadband if deadband is None else deadband
    release = expert.release if release is None else release
    return Quantiser(n_bins, deadband, min(release, deadband))


class Head:
    """Base class: target construction shared by every head."""

    name = ""
    n_outputs = 1

    def __init__(self, n_bins: int, target: str, quantiser: Quantiser | None = None):
        if target not in ("bin", "continuous"):
            raise ValueError(f"target must be bin or continuous, got {target!r}")
        self.n_bins = n_bins
        self.target = target
        self.quantiser = quantiser or Quantiser(n_bins)

    def target_yaw(self, bins: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
        """The yaw a regressing head learns: the label's bin value or the continuous label."""
        return bin_to_yaw(bins, self.n_bins) if self.target == "bin" else yaw

    def loss(
        self, outputs: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:
        """Loss of ``outputs (M, n_outputs)`` against labels ``bins (M,)``, ``yaw (M,)``."""
        raise NotImplementedError

    def predict(self, outputs: torch.Tensor) -> Prediction:
        """Action bins, yaw commands (and class probabilities) for ``outputs (M, n_outputs)``."""
        raise NotImplementedError


class ClassifierHead(Head):
    """Cross-entropy over the env's action bins."""

    name = "classifier"

    def __init__(self, n_bins: int, target: str = "bin", quantiser: Quantiser | None = None):
        super().__init__(n_bins, target, quantiser)
        if target != "bin":
            raise ValueError("the classifier learns bins; target must be 'bin'")
        self.n_outputs = n_bins

    def loss(
        self, outputs: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:  # noqa: D102
        return functional.cross_entropy(outputs, bins, reduction=reduction)

    def predict(self, outputs: torch.Tensor) -> Prediction:  # noqa: D102
        probs = torch.softmax(outputs.float(), dim=-1)
        bins = probs.argmax(dim=-1)
        return Prediction(bins, bin_to_yaw(bins, self.n_bins), probs)


class RegressorHead(Head):
    """Mean squared error on the yaw command."""

    name = "regressor"
    n_outputs = 1

    def loss(
        self, outputs: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:  # noqa: D102
        return functional.mse_loss(outputs[:, 0], self.target_yaw(bins, yaw), reduction=reduction)

    def predict(self, outputs: torch.Tensor) -> Prediction:  # noqa: D102
        yaw = outputs[:, 0].float().clamp(-1.0, 1.0)
        return Prediction(self.quantiser.bins(yaw), yaw, None)


class GaussianHead(Head):
    """A Gaussian over the yaw command: outputs mean and log-std, loss the β-NLL.

    The log-std is clamped to ``LOG_STD_RANGE`` so that a few confident frames cannot drive
    the loss to minus infinity. Each sample's negative log-likelihood is weighted by its
    predicted variance to the power ``nll_beta``, held constant (Seitzer et al. 2022, "On the
    pitfalls of heteroscedastic uncertainty estimation"): under the plain NLL (beta 0) the
    mean's gradient is divided by the variance, so the net can give up on the rare turning
    frames by widening them; beta 1 (``bc.train``'s default) gives the mean the gradient of
    the MSE.
    """

    name = "gaussian"
    n_outputs = 2

    def __init__(
        self,
        n_bins: int,
        target: str,
        quantiser: Quantiser | None = None,
        nll_beta: float = 0.0,
    ):
        super().__init__(n_bins, target, quantiser)
        self.nll_beta = nll_beta

    def loss(
        self, outputs: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor, reduction: str = "mean"
    ) -> torch.Tensor:  # noqa: D102
        mean = outputs[:, 0]
        log_std = outputs[:, 1].clamp(*LOG_STD_RANGE)
        error = (self.target_yaw(bins, yaw) - mean) * torch.exp(-log_std)
        nll = 0.5 * error.square() + log_std + 0.5 * math.log(2 * math.pi)
        if self.nll_beta:
            nll = nll * torch.exp(2.0 * self.nll_beta * log_std).detach()
        if reduction == "none":
            return nll
        return nll.mean() if reduction == "mean" else nll.sum()

    def predict(self, outputs: torch.Tensor) -> Prediction:  # noqa: D102
        yaw = outputs[:, 0].float().clamp(-1.0, 1.0)
        return Prediction(self.quantiser.bins(yaw), yaw, None)


HEADS: dict[str, type[Head]] = {
    "classifier": ClassifierHead,
    "regressor": RegressorHead,
    "gaussian": GaussianHead,
}


def check_act_thresholds(
    deadband: float | None, release: float | None, error: type[Exception]
) -> None:
    """Raise ``error`` unless 0 <= release <= deadband < 1 (each may be unset: the expert's)."""
    if deadband is not None and not 0 <= deadband < 1:
        raise error(f"--act-deadband must be in [0, 1), got {deadband:g}")
    if release is not None and not 0 <= release <= (1 if deadband is None else deadband):
        raise error(f"--act-release must be in [0, --act-deadband], got {release:g}")


def act_thresholds(config: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """The deadband and release a run's regressing head acts with (a ``config.json`` dict)."""
    return config.get("act_deadband"), config.get("act_release")


def make_head(
    name: str,
    n_bins: int,
    target: str,
    expert_config: dict[str, Any] | None = None,
    nll_beta: float = 0.0,
    act: tuple[float | None, float | None] = (None, None),
) -> Head:
    """Build head ``name`` for ``n_bins`` action bins, acting through ``label_quantiser``.

    ``nll_beta`` is the Gaussian head's β-NLL weight (ignored by the others); ``act`` the
    deadband and release a regressing head acts with (None: the labelling expert's).
    """
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r}; choose one of: {', '.join(HEADS)}")
    quantiser = label_quantiser(n_bins, target, expert_config, *act)
    if name == "gaussian":
        return GaussianHead(n_bins, target, quantiser, nll_beta)
    return HEADS[name](n_bins, target, quantiser)
