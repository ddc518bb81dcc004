"""Training runs loaded for comparison, grouped into rows, and the numbers of each group.

``eval.compare`` reads each run (its ``config.json``, ``metrics.jsonl`` and the closed-loop
results of one checkpoint), groups runs that differ only in their training seed, and asks
this module for a group's numbers; ``eval.compare_plots`` and ``eval.compare_table`` draw
them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval.errors import EvalError
from eval.run_files import (
    EXPERT_DIR_NAME,
    eval_files,
    find_runs,
    is_run_dir,
    lookup,
    pick_results,
    read_json,
    read_metrics,
)
from eval.stats import mean_std, wilson_interval

EVAL_METRICS = {
    "success_rate": "success",
    "progress_frac": "progress (fraction)",
    "progress_m": "progress (m)",
    "collision_rate": "collisions",
    "timeout_rate": "timeouts",
    "agreement": "expert agreement",
    "mean_steps": "episode length (steps)",
    "expert_nll": "expert label NLL",
    "yaw_mse": "yaw MSE vs expert",
}
RATES = ("success_rate", "collision_rate", "timeout_rate")


@dataclass
class RunData:
    """One run (or the expert folder): its config, metric rows and closed-loop results."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    results: dict[str, Any] | None
    expert: bool = False


@dataclass
class Group:
    """Runs shown as one row and one curve."""

    label: str
    runs: list[RunData] = field(default_factory=list)


def _is_expert_dir(path: Path) -> bool:
    return any(read_json(p).get("kind") == "expert" for p in eval_files(path))


def runs_to_compare(named: Sequence[Path], runs_dir: Path) -> list[Path]:
    """The run folders named, checked; none named: every run in ``runs_dir`` and its expert."""
    if named:
        for path in named:
            if not path.is_dir():
                raise EvalError(f"run directory {path} does not exist")
            if not is_run_dir(path) and not eval_files(path):
                raise EvalError(
                    f"{path} is neither a run (config.json + checkpoints/) nor holds eval/*.json"
                )
        return list(named)
    runs = find_runs(runs_dir)
    expert = runs_dir / EXPERT_DIR_NAME
    if expert.is_dir() and eval_files(expert):
        runs.append(expert)
    if not runs:
        raise EvalError(
            f"no runs found in {runs_dir}/; name run directories, or train one with "
            "`python -m bc.train`"
        )
    return runs


def load_training_run(path: Path, which: str, eval_seed: int | None) -> RunData:
    """Read a training run's config, metrics and the closed-loop results of ``which``.

    The expert's folder (results only, no config) loads too, as a run flagged ``expert``.
    """
    config_path = path / "config.json"
    config = read_json(config_path) if config_path.is_file() else {}
    metrics_path = path / "metrics.jsonl"
    metrics = read_metrics(metrics_path) if metrics_path.is_file() else []
    expert = not config and _is_expert_dir(path)
    results = pick_results(path, "expert" if expert else which, eval_seed)
    return RunData(path, config, metrics, results, expert)


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics row as dotted keys (lists and strings dropped)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def tag_key(tag: str) -> str:
    """A metric name as the dotted key of ``flatten`` (TensorBoard's ``val/loss`` works too)."""
    return tag.replace("/", ".")


def metric_series(run: RunData, tag: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of ``tag`` over a run's metric rows; a row without ``x_key`` counts by position."""
    xs, ys = [], []
    key = tag_key(tag)
    for index, row in enumerate(run.metrics):
        flat = flatten(row)
        if key in flat:
            xs.append(flat.get(x_key, float(index + 1)))
            ys.append(flat[key])
    return np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)


def group_runs(runs: Sequence[RunData], keys: Sequence[str]) -> list[Group]:
    """Groups in order of first appearance; the expert is always a group of its own."""
    groups: dict[Any, Group] = {}
    for run in runs:
        if run.expert:
            key: Any = ("expert", str(run.path))
            label = "expert" if run.path.name == EXPERT_DIR_NAME else f"expert ({run.path.name})"
        elif keys:
            values = tuple(lookup(run.config, k) for k in keys)
            key = ("group", values)
            label = " ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))
        else:
            key, label = ("run", str(run.path)), run.path.name
        groups.setdefault(key, Group(label)).runs.append(run)
    return list(groups.values())


def checkpoint_row(metrics: Sequence[Mapping[str, Any]], which: str) -> dict[str, float] | None:
    """The flattened metrics row of the epoch that ``which`` holds.

    ``best_val_loss``: the epoch with the lowest ``val.loss`` (the first on a tie, as the
    trainer keeps the first); ``best_success``: the highest ``eval.success_rate``; ``last``:
    the last row.
    """
    rows = [flatten(r) for r in metrics if r.get("complete", True)]
    if not rows:
        return None
    if which == "last":
        return rows[-1]
    key, sign = ("val.loss", 1.0) if which == "best_val_loss" else ("eval.success_rate", -1.0)
    scored = [(sign * row[key], index) for index, row in enumerate(rows) if key in row]
    if not scored:
        return None
    return rows[min(scored)[1]]


def eval_value(run: RunData, metric: str) -> float | None:
    """A closed-loop summary metric of a run (None without results or value)."""
    if run.results is None:
        return None
    value = run.results["summary"].get(metric)
    return None if value is None else float(value)


def _single_error(run: RunData, metric: str) -> tuple[float, float] | None:
    """Error bar (below, above) of one run: Wilson 95% for rates, std over episodes else."""
    summary = run.results["summary"] if run.results else None
    if summary is None or summary.get(metric) is None:
        return None
    value = float(summary[metric])
    n = int(summary["episodes"])
    if metric in RATES:
        low, high = wilson_interval(round(value * n), n)
        return max(value - low, 0.0), max(high - value, 0.0)
    std = summary.get(f"{metric}_std")
    if std is None:
        return None
    return float(std), float(std)


def group_stat(group: Group, metric: str) -> tuple[float, tuple[float, float] | None, int]:
    """(value, error bar, runs with results) of a closed-loop metric for a group."""
    values = [v for v in (eval_value(run, metric) for run in group.runs) if v is not None]
    if not values:
        return math.nan, None, 0
    if len(values) == 1:
        with_results = [run for run in group.runs if eval_value(run, metric) is not None]
        return values[0], _single_error(with_results[0], metric), 1
    mean, std = mean_std(values)
    return mean, (std, std), len(values)
