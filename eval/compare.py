"""Compare training runs: curves, closed-loop bars and a markdown results table.

``python -m eval.compare RUN...`` (all runs under ``runs/`` when none are named) reads each
run's ``metrics.jsonl`` and the closed-loop results that ``python -m eval.rollout`` wrote to
its ``eval/`` folder, and writes:

* ``curves_<tag>.png``: training curves of the chosen metrics (``--tags val.loss
  val.accuracy``, nested keys of ``metrics.jsonl`` joined by dots; TensorBoard names such as
  ``val/loss`` work too), optionally smoothed (``--smooth 0.6``, TensorBoard's slider);
* ``closed_loop.png``: bars of closed-loop metrics with error bars;
* a markdown table on stdout, and with ``--table-into docs/results.md`` in that file between
  ``<!-- results:start -->`` and ``<!-- results:end -->`` (the rest of the file is kept).

``--group-by net+frames`` aggregates runs that differ only in their training seed into one
row (mean ± std over runs) and one curve (mean, with a ±std band). The expert's reference
results (``python -m eval.rollout --expert`` writes them to ``runs/expert/``) appear as a row
of their own when that folder is named, or when no run is named.

This module is the command; ``eval.compare_groups`` loads and groups the runs,
``eval.compare_plots`` draws the PNGs and ``eval.compare_table`` writes the table.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from bc.checkpoint_names import DEFAULT_CHECKPOINT
from configflags import option, run_main
from eval.compare_groups import (
    EVAL_METRICS,
    Group,
    flatten,
    group_runs,
    load_training_run,
    runs_to_compare,
    tag_key,
)
from eval.compare_plots import plot_closed_loop, plot_curves
from eval.compare_table import (
    DEFAULT_TABLE_NAME,
    TABLE_END,
    TABLE_START,
    results_table,
    write_table_into,
)
from eval.errors import EvalError
from eval.run_files import CHECKPOINTS, DEFAULT_RUNS_DIR

DEFAULT_TAGS = ("train.loss", "val.loss", "val.accuracy", "eval.success_rate")
DEFAULT_TABLE_TAGS = ("val.loss", "val.accuracy")
X_KEYS = ("epoch", "step")


@dataclass(frozen=True)
class CompareConfig:
    """Which runs to compare, how to group them and where the outputs go."""

    runs: tuple[Path, ...] = option(
        (), "run directories (default: every run in --runs-dir, and its expert/ folder)",
        positional=True, metavar="RUN",
    )  # fmt: skip
    runs_dir: Path = option(DEFAULT_RUNS_DIR, "where runs are looked for when none are named")
    tags: tuple[str, ...] = option(
        (), "metrics.jsonl keys to plot as curves, e.g. val.loss val.accuracy eval.success_rate"
        f" (default: those of {' '.join(DEFAULT_TAGS)} that exist)",
    )  # fmt: skip
    x: str = option("epoch", "x axis of the curves", choices=X_KEYS)
    smooth: float = option(0.0, "EMA smoothing of the curves in [0, 1), TensorBoard's slider")
    legend_names: tuple[str, ...] = option(
        (), "one display name per run (or per group with --group-by), in order"
    )
    group_by: tuple[str, ...] = option(
        (), "config keys whose values make a group, e.g. net+frames or net frames; runs of a"
        " group (different training seeds) become one mean ± std row and curve",
    )  # fmt: skip
    which: str = option(DEFAULT_CHECKPOINT, "whose closed-loop results to report",
                        choices=CHECKPOINTS)  # fmt: skip
    eval_seed: int = option(
        0, "base seed of the closed-loop results to report (eval.rollout --seed)"
    )
    eval_metrics: tuple[str, ...] = option(
        ("success_rate", "progress_frac", "collision_rate", "agreement"),
        f"closed-loop metrics to draw as bars; any of {', '.join(EVAL_METRICS)}",
    )
    table_tags: tuple[str, ...] = option(
        DEFAULT_TABLE_TAGS, "metrics.jsonl keys for the table, at the evaluated checkpoint's epoch"
    )
    out: Path = option(DEFAULT_RUNS_DIR / "compare", "folder for the PNG plots")
    table_into: Path | None = option(
        None, f"markdown file whose {TABLE_START} ... {TABLE_END} block gets the table"
    )
    table_name: str = option(
        DEFAULT_TABLE_NAME,
        "which table of --table-into to replace: the one between <!-- NAME:start --> and "
        "<!-- NAME:end -->",
    )
    plots: bool = option(True, "write the PNG plots (--no-plots: the table only)")

    def __post_init__(self) -> None:
        if not 0.0 <= self.smooth < 1.0:
            raise EvalError(f"--smooth must be in [0, 1), got {self.smooth}")
        unknown = [m for m in self.eval_metrics if m not in EVAL_METRICS]
        if unknown:
            raise EvalError(
                f"unknown --eval-metrics {', '.join(unknown)}; choose from "
                f"{', '.join(EVAL_METRICS)}"
            )
        if self.which not in CHECKPOINTS:
            raise EvalError(
                f"unknown --which {self.which!r}; choose one of {', '.join(CHECKPOINTS)}"
            )

    @property
    def group_keys(self) -> tuple[str, ...]:
        """--group-by split on '+' and ',' as well as spaces."""
        keys: list[str] = []
        for item in self.group_by:
            keys += [k for k in re.split(r"[+,]", item) if k.strip()]
        return tuple(k.strip() for k in keys)


@dataclass
class CompareResult:
    """What the comparison produced."""

    groups: list[Group]
    table: str
    figures: list[Path]


def main(config: CompareConfig) -> CompareResult:
    """Load the runs, write the plots and the table; returns them."""
    runs = [
        load_training_run(path, config.which, config.eval_seed)
        for path in runs_to_compare(config.runs, config.runs_dir)
    ]
    groups = group_runs(runs, config.group_keys)
    if config.legend_names and len(config.legend_names) != len(groups):
        what = "groups" if config.group_keys else "runs (the expert counts as one)"
        raise EvalError(
            f"--legend-names has {len(config.legend_names)} names for {len(groups)} {what}: "
            + ", ".join(group.label for group in groups)
        )
    labels = list(config.legend_names) if config.legend_names else [g.label for g in groups]

    figures: list[Path] = []
    if config.plots:
        available = sorted({k for run in runs for row in run.metrics for k in flatten(row)})
        tags = config.tags or tuple(t for t in DEFAULT_TAGS if t in available)
        missing = [t for t in config.tags if tag_key(t) not in available]
        if missing:
            raise EvalError(
                f"no run has the metric(s) {', '.join(missing)}; available: "
                + (", ".join(available) if available else "none (no metrics.jsonl)")
            )
        for tag in tags:
            path = plot_curves(groups, labels, tag, config.out, config.x, config.smooth)
            if path is not None:
                figures.append(path)
        path = plot_closed_loop(groups, labels, config.eval_metrics, config.out)
        if path is not None:
            figures.append(path)

    table = results_table(
        groups,
        labels,
        which=config.which,
        eval_seed=config.eval_seed,
        table_tags=config.table_tags,
        grouped=bool(config.group_keys),
    )
    print(table)
    if config.table_into is not None:
        write_table_into(config.table_into, table, config.table_name)
    for path in figures:
        print(f"wrote {path}", file=sys.stderr)
    return CompareResult(groups, table, figures)


if __name__ == "__main__":
    run_main(main, CompareConfig, "python -m eval.compare", __doc__, interrupted="interrupted")
