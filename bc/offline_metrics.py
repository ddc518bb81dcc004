"""Offline metrics of a checkpoint on a split: ``python -m bc.offline_metrics --run RUN``.

``bc.train`` tests ``last.pt`` and ``best_val_loss.pt`` on the test split when it finishes;
this command does the same for any checkpoint (an older run's, a DAgger iteration's, one
fine-tuned elsewhere) on any split of any dataset recorded for the same env: loss, accuracy,
per-bin accuracy (a 0.00 is a bin the policy never predicts right: a one-class policy shows
as 0.00 on both turns), yaw MSE and the majority-class rate beside them. It uses the training
loop's own evaluation (``bc.step_engine.Trainer.evaluate``), so its figures are those
``bc.train`` prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from artifacts.atomic import write_json_atomic
from bc.checkpoint import checkpoint_dir
from bc.checkpoint_names import CHECKPOINT_NAMES, DEFAULT_CHECKPOINT
from bc.config import TrainConfig, config_from_dict
from bc.data import SPLITS, load_dataset
from bc.errors import ConfigError
from bc.metrics import METRIC_COLUMNS, metric_cells
from bc.nets import NETS
from bc.policy import load_policy
from bc.run_dir import find_latest_run
from bc.step_engine import Trainer
from configflags import option, run_main


@dataclass(frozen=True)
class EvaluateConfig:
    """Which checkpoint, on which splits of which dataset."""

    run: Path | None = option(None, "run directory (default: the newest run in --runs-dir)")
    runs_dir: Path = option(Path("runs"), "where runs live (for the default --run)")
    which: str = option(DEFAULT_CHECKPOINT, "checkpoint of the run", choices=CHECKPOINT_NAMES)
    checkpoint: Path | None = option(None, "checkpoint file (overrides --run and --which)")
    data: Path | None = option(None, "dataset directory (default: the one the run trained on)")
    splits: tuple[str, ...] = option(("val", "test"), "splits to evaluate", choices=SPLITS)
    json_out: Path | None = option(None, "also write the metrics to this JSON file")
    quiet: bool = option(False, "print nothing (the metrics are returned and written)")


def checkpoint_path(config: EvaluateConfig) -> Path:
    """The checkpoint file ``config`` names; a one-line error when it does not exist."""
    if config.checkpoint is not None:
        path = config.checkpoint
    else:
        run = config.run if config.run is not None else find_latest_run(config.runs_dir)
        if run is None:
            raise ConfigError(f"no run in {config.runs_dir}; train one or give --run")
        path = checkpoint_dir(run) / f"{config.which}.pt"
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    return path


def main(config: EvaluateConfig) -> dict[str, Any]:
    """Loss and accuracies of the checkpoint on each split, with the majority-class rates."""
    path = checkpoint_path(config)
    policy = load_policy(path)
    train_config: TrainConfig = config_from_dict(TrainConfig, policy.config)
    data = config.data if config.data is not None else Path(train_config.data)
    dataset = load_dataset(data, in_ram="auto", splits=("train", *config.splits))
    if dataset.n_bins != policy.n_bins:
        raise ConfigError(
            f"{data} has {dataset.n_bins} action bins, the checkpoint {policy.n_bins}"
        )
    trainer = Trainer(
        train_config,
        policy.model,
        policy.head_module,
        policy.norm,
        torch.device("cpu"),
        NETS[policy.net].recurrent,
    )
    majority = int(dataset.splits["train"].class_counts(dataset.n_bins).argmax())
    results: dict[str, Any] = {"checkpoint": str(path), "data": str(data)}
    for name in config.splits:
        if name not in dataset.splits:
            raise ConfigError(f"{data} has no {name} split")
        split = dataset.splits[name]
        metrics = trainer.evaluate(split)
        counts = split.class_counts(dataset.n_bins)
        metrics["majority_rate"] = float(counts[majority]) / max(int(counts.sum()), 1)
        results[name] = metrics
    if config.json_out is not None:
        write_json_atomic(config.json_out, results, indent=2)
    if not config.quiet:
        Console().print(metrics_table(results, config.splits))
    return results


def metrics_table(results: dict[str, Any], splits: tuple[str, ...]) -> Table:
    """The rich table of one checkpoint's metrics, a row per split."""
    table = Table(title=results["checkpoint"])
    for column in ("split", *METRIC_COLUMNS, "majority rate"):
        table.add_column(column, justify="left" if column == "split" else "right")
    for name in splits:
        metrics = results[name]
        table.add_row(name, *metric_cells(metrics), f"{metrics['majority_rate']:.3f}")
    return table


if __name__ == "__main__":
    run_main(main, EvaluateConfig, "python -m bc.offline_metrics", __doc__)
