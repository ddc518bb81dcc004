"""Offline metrics of a pass over a split: loss, bin accuracy per class, yaw error, and their cells.

Every head is measured on the same scale (accuracy is "predicted bin == label bin"), so one
tracker serves them all; ``bc.train`` and ``bc.offline_metrics`` print the same columns.
"""

from __future__ import annotations

from typing import Any

import torch

from bc.heads import Prediction


class MetricTracker:
    """Sums over a pass (loss, bin accuracy per class, yaw error), reported as means."""

    def __init__(self, n_bins: int):
        self.n_bins = n_bins
        self.reset()

    def reset(self) -> None:
        """Start a new pass."""
        self.loss_sum = 0.0
        self.count = 0
        self.correct = torch.zeros(self.n_bins, dtype=torch.int64)
        self.total = torch.zeros(self.n_bins, dtype=torch.int64)
        self.yaw_error_sum = 0.0

    def update(
        self, loss_sum: float, prediction: Prediction, bins: torch.Tensor, yaw: torch.Tensor
    ) -> None:
        """Add one batch: ``loss_sum`` is the summed (not averaged) loss of its samples."""
        bins = bins.detach().cpu()
        hit = prediction.bins.detach().cpu() == bins
        self.loss_sum += float(loss_sum)
        self.count += int(bins.numel())
        self.correct += torch.bincount(bins[hit], minlength=self.n_bins)
        self.total += torch.bincount(bins, minlength=self.n_bins)
        self.yaw_error_sum += float(
            (prediction.yaw.detach().cpu() - yaw.detach().cpu()).square().sum()
        )

    def recount(self, predicted: torch.Tensor, bins: torch.Tensor) -> None:
        """Replace the pass's hits by those of ``predicted`` against ``bins``.

        Both hold every frame of the pass, ``predicted`` as the policy acts along each run
        (``Quantiser.run_bins``).
        """
        hit = predicted == bins
        if int(bins.numel()) != self.count:
            raise ValueError(f"recount needs the pass's {self.count} frames, got {bins.numel()}")
        self.correct = torch.bincount(bins[hit], minlength=self.n_bins)

    def state(self) -> dict[str, Any]:
        """Plain-python sums, for checkpoints taken in the middle of a pass."""
        return {
            "loss_sum": self.loss_sum,
            "count": self.count,
            "correct": self.correct.tolist(),
            "total": self.total.tolist(),
            "yaw_error_sum": self.yaw_error_sum,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``state``."""
        self.loss_sum = float(state["loss_sum"])
        self.count = int(state["count"])
        self.correct = torch.tensor(state["correct"], dtype=torch.int64)
        self.total = torch.tensor(state["total"], dtype=torch.int64)
        self.yaw_error_sum = float(state["yaw_error_sum"])

    def result(self) -> dict[str, Any]:
        """Means of the pass: loss, accuracy, per-class accuracy, yaw MSE, sample count.

        ``per_class_accuracy`` holds None for classes absent from the pass.
        """
        count = max(self.count, 1)
        per_class = [
            (int(c) / int(t)) if int(t) else None
            for c, t in zip(self.correct, self.total, strict=True)
        ]
        return {
            "loss": self.loss_sum / count,
            "accuracy": int(self.correct.sum()) / count,
            "per_class_accuracy": per_class,
            "yaw_mse": self.yaw_error_sum / count,
            "samples": self.count,
        }


def previous_labels(bins: torch.Tensor, run_of: torch.Tensor) -> torch.Tensor:
    """The label of the previous frame of the same run (-1 at a run's first frame)."""
    previous = torch.full_like(bins, -1)
    same_run = run_of[1:] == run_of[:-1]
    previous[1:] = torch.where(same_run, bins[:-1], -1)
    return previous


def shortcut_metrics(
    bins: torch.Tensor, run_of: torch.Tensor, predicted: torch.Tensor
) -> dict[str, Any]:
    """How much of an accuracy the copycat shortcut could give, and where the policy errs.

    ``bins`` are a split's label bins, ``run_of`` each frame's run and ``predicted`` the
    policy's bin per frame (-1: not predicted). A keyframe is a frame whose label differs from
    the previous frame's in the same run (the expert changes its action); a steady frame one
    whose label repeats it. ``repeat_accuracy`` is what "repeat the previous action" scores on
    the frames that have one; ``keyframe_accuracy`` and ``steady_accuracy`` are the policy's
    accuracy on each kind. A policy that copies its previous action scores its repeat accuracy
    on steady frames and nothing on keyframes.
    """
    bins, run_of, predicted = bins.cpu(), run_of.cpu(), predicted.cpu()
    previous = previous_labels(bins, run_of)
    has_previous = (previous >= 0) & (predicted >= 0)
    keyframes = has_previous & (bins != previous)
    steady = has_previous & (bins == previous)
    hit = predicted == bins

    def share(chosen: torch.Tensor, of: torch.Tensor) -> float | None:
        count = int(of.sum())
        return int((chosen & of).sum()) / count if count else None

    return {
        "repeat_accuracy": share(steady, has_previous),
        "keyframe_accuracy": share(hit, keyframes),
        "steady_accuracy": share(hit, steady),
        "keyframes": int(keyframes.sum()),
    }


METRIC_COLUMNS = (
    "loss",
    "accuracy",
    "per-bin accuracy",
    "keyframe / steady acc.",
    "repeat-previous acc.",
    "yaw MSE",
    "samples",
)


def metric_cells(metrics: dict[str, Any]) -> list[str]:
    """One split's metrics as table cells, in the order of ``METRIC_COLUMNS``.

    Per-bin accuracy shows one figure per action bin: a 0.00 is a bin the policy never gets
    right (a one-class policy has 0.00 on both turns), ``-`` a bin the split does not hold.
    Keyframe / steady accuracy and the repeat-previous baseline: :func:`shortcut_metrics`. A
    policy with a speed output shows its speed accuracy under the yaw accuracy.
    """
    per_bin = metrics.get("per_class_accuracy") or []

    def rate(key: str) -> str:
        value = metrics.get(key)
        return "-" if value is None else f"{value:.2f}"

    accuracy = f"{metrics['accuracy']:.3f}"
    if metrics.get("speed_accuracy") is not None:  # a speed output: its accuracy below
        accuracy += f"\nspeed {metrics['speed_accuracy']:.3f}"
    return [
        f"{metrics['loss']:.4f}",
        accuracy,
        " ".join("-" if value is None else f"{value:.2f}" for value in per_bin),
        f"{rate('keyframe_accuracy')} / {rate('steady_accuracy')}",
        rate("repeat_accuracy"),
        f"{metrics['yaw_mse']:.4f}",
        str(metrics["samples"]),
    ]


def track(
    tracker: MetricTracker,
    speed_tracker: MetricTracker | None,
    outputs_set: Any,
    loss_sum: float,
    outputs: torch.Tensor,
    labels: Any,
) -> Prediction:
    """Add a batch to the yaw tracker (and the speed tracker); returns the yaw prediction.

    ``outputs_set`` is the policy's ``bc.outputs.OutputSet`` and ``labels`` its ``Labels``.
    """
    prediction = outputs_set.predict(outputs)
    tracker.update(loss_sum, prediction, labels.bins, labels.yaw)
    if speed_tracker is not None:
        speed = outputs_set.predict_speed(outputs)
        speed_tracker.update(0.0, speed, labels.speed_bins, labels.speed)
    return prediction


def speed_metrics(tracker: MetricTracker) -> dict[str, Any]:
    """The speed output's figures of a pass: accuracy, per-bin accuracy, command MSE."""
    result = tracker.result()
    return {
        "speed_accuracy": result["accuracy"],
        "speed_per_class_accuracy": result["per_class_accuracy"],
        "speed_mse": result["yaw_mse"],
    }
