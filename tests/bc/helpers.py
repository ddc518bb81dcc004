"""Tiny datasets and configs for the bc tests (``from tests.bc.helpers import ...``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bc.config import TrainConfig
from dataset.synthetic import make_synthetic_dataset


def small_dataset(path: Path, **overrides: Any) -> Path:
    """4 runs of about 20 frames at 32x32 (train 2, val 1, test 1)."""
    kwargs: dict[str, Any] = {"runs": 4, "frames": [22, 19, 18, 21], "size": 32, "seed": 3}
    kwargs.update(overrides)
    return make_synthetic_dataset(path, **kwargs)


def tiny_config(data: Path, runs_dir: Path, **overrides: Any) -> TrainConfig:
    """A config that trains in a second: batch 4, one epoch, no progress bar."""
    values: dict[str, Any] = {
        "data": str(data),
        "runs_dir": str(runs_dir),
        "batch_size": 4,
        "epochs": 1,
        "progress": False,
        "tensorboard": False,
        "device": "cpu",
        "threads": 1,
    }
    values.update(overrides)
    return TrainConfig(**values)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's metrics.jsonl."""
    lines = (Path(run_dir) / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def interrupt_at(epoch_to_stop: int) -> Callable[[int, Path], dict[str, float]]:
    """An epoch callback that interrupts training after ``epoch_to_stop``, as a Ctrl-C would."""

    def callback(epoch: int, checkpoint: Path) -> dict[str, float]:
        if epoch == epoch_to_stop:
            raise KeyboardInterrupt
        return {}

    return callback
