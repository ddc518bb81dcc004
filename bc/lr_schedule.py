"""Learning-rate schedules: the rate of each optimiser step from how far training has come.

The rate is a pure function of the position in training (a fraction in [0, 1) of the
planned steps), so a resumed run sets exactly the rate the uninterrupted run would have
set, with nothing schedule-specific in the checkpoint.
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(schedule: str, base_lr: float, progress: float) -> float:
    """The learning rate at ``progress`` (0 = first step, 1 = end of training).

    ``constant`` keeps ``base_lr``; ``cosine`` falls from ``base_lr`` to 0 along half a
    cosine (Loshchilov and Hutter's SGDR without restarts), so the last epochs take small
    steps and the last checkpoint is not one noisy draw of the final iterates.
    """
    if schedule == "constant":
        return base_lr
    if schedule == "cosine":
        progress = min(max(progress, 0.0), 1.0)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; choose one of {LR_SCHEDULES}")


def training_progress(
    epoch: int, unit: int, units_per_epoch: int, epochs: int, step: int, steps: int
) -> float:
    """How far training is when unit ``unit`` of epoch ``epoch`` (0-based) trains next.

    With ``steps`` > 0 (``--steps``) it is the fraction of steps taken, otherwise the
    fraction of the ``epochs`` passes.
    """
    if steps > 0:
        return step / steps
    return (epoch + unit / max(units_per_epoch, 1)) / epochs
