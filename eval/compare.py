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
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from configflags import option
from eval.cli import parse_config, run_cli
from eval.errors import EvalError
from eval.runs import (
    CHECKPOINTS,
    DEFAULT_RUNS_DIR,
    EXPERT_DIR_NAME,
    eval_files,
    find_runs,
    is_run_dir,
    lookup,
    pick_results,
    read_json,
    read_metrics,
)
from eval.stats import ema, mean_std, wilson_interval

TABLE_START = "<!-- results:start -->"
TABLE_END = "<!-- results:end -->"
DEFAULT_TAGS = ("train.loss", "val.loss", "val.accuracy", "eval.success_rate")
DEFAULT_TABLE_TAGS = ("val.loss", "val.accuracy")
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
    which: str = option("best_val_loss", "whose closed-loop results to report",
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


@dataclass
class CompareResult:
    """What the comparison produced."""

    groups: list[Group]
    table: str
    figures: list[Path]


# --------------------------------------------------------------------------- loading
def _is_expert_dir(path: Path) -> bool:
    return any(read_json(p).get("kind") == "expert" for p in eval_files(path))


def _runs_to_load(config: CompareConfig) -> list[Path]:
    if config.runs:
        for path in config.runs:
            if not path.is_dir():
                raise EvalError(f"run directory {path} does not exist")
            if not is_run_dir(path) and not eval_files(path):
                raise EvalError(
                    f"{path} is neither a run (config.json + checkpoints/) nor holds eval/*.json"
                )
        return list(config.runs)
    runs = find_runs(config.runs_dir)
    expert = config.runs_dir / EXPERT_DIR_NAME
    if expert.is_dir() and eval_files(expert):
        runs.append(expert)
    if not runs:
        raise EvalError(
            f"no runs found in {config.runs_dir}/; name run directories, or train one with "
            "`python -m bc.train`"
        )
    return runs


def load_run(path: Path, which: str, eval_seed: int | None) -> RunData:
    """Read a run's config, metrics and the closed-loop results of ``which``."""
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


def _tag_key(tag: str) -> str:
    return tag.replace("/", ".")


def _series(run: RunData, tag: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    key = _tag_key(tag)
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


# --------------------------------------------------------------------------- numbers
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


def _eval_value(run: RunData, metric: str) -> float | None:
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
    values = [v for v in (_eval_value(run, metric) for run in group.runs) if v is not None]
    if not values:
        return math.nan, None, 0
    if len(values) == 1:
        with_results = [run for run in group.runs if _eval_value(run, metric) is not None]
        return values[0], _single_error(with_results[0], metric), 1
    mean, std = mean_std(values)
    return mean, (std, std), len(values)


# --------------------------------------------------------------------------- plots
def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120)
    return path


def _file_tag(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", _tag_key(tag))


def plot_curves(
    groups: Sequence[Group], labels: Sequence[str], tag: str, config: CompareConfig
) -> Path | None:
    """One PNG of ``tag`` against the x key; None if no run has the tag."""
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot()
    drawn = False
    for index, (group, label) in enumerate(zip(groups, labels, strict=True)):
        series = [s for s in (_series(run, tag, config.x) for run in group.runs) if len(s[0])]
        if not series:
            continue
        # the group's colour is its position, as in the bar chart, even if others lack the tag
        colour = f"C{index % 10}"
        series = [(x, np.array(ema(y, config.smooth))) for x, y in series]
        if len(series) == 1:
            axes.plot(series[0][0], series[0][1], label=label, color=colour)
        else:
            xs = np.unique(np.concatenate([x for x, _ in series]))
            stacked = np.full((len(series), len(xs)), np.nan)
            for row, (x, y) in enumerate(series):
                stacked[row, np.searchsorted(xs, x)] = y
            counts = np.sum(~np.isnan(stacked), axis=0)
            mean = np.nanmean(stacked, axis=0)
            std = np.array([
                np.nanstd(column, ddof=1) if n > 1 else 0.0
                for column, n in zip(stacked.T, counts, strict=True)
            ])  # fmt: skip
            axes.plot(xs, mean, label=f"{label} (n={len(series)})", color=colour)
            axes.fill_between(xs, mean - std, mean + std, color=colour, alpha=0.2)
        drawn = True
    if not drawn:
        return None
    smooth = f", EMA {config.smooth:g}" if config.smooth else ""
    axes.set(xlabel=config.x, ylabel=tag, title=f"{tag}{smooth}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, config.out / f"curves_{_file_tag(tag)}.png")


def plot_closed_loop(
    groups: Sequence[Group], labels: Sequence[str], config: CompareConfig
) -> Path | None:
    """Bars of the closed-loop metrics with error bars; None if nothing was evaluated."""
    if not any(run.results for group in groups for run in group.runs):
        return None
    metrics = config.eval_metrics
    figure = Figure(figsize=(max(4.0, 1.1 * len(groups) + 2) * len(metrics) / 1.6, 4.4),
                    layout="constrained")  # fmt: skip
    axes_row = figure.subplots(1, len(metrics), squeeze=False)[0]
    positions = np.arange(len(groups))
    for axes, metric in zip(axes_row, metrics, strict=True):
        values, low, high = [], [], []
        for group in groups:
            value, error, _ = group_stat(group, metric)
            values.append(value)
            low.append(error[0] if error else 0.0)
            high.append(error[1] if error else 0.0)
        axes.bar(positions, values, yerr=[low, high], capsize=4,
                 color=[f"C{i % 10}" for i in range(len(groups))])  # fmt: skip
        axes.set_xticks(positions, labels, rotation=30, ha="right", fontsize="small")
        axes.set_title(EVAL_METRICS[metric])
        if metric in RATES or metric in ("progress_frac", "agreement"):
            axes.set_ylim(0, 1.05)
        axes.grid(axis="y", alpha=0.3)
    figure.suptitle(
        "closed loop; error bars: std over runs (groups), else 95% Wilson CI (rates) "
        "or std over episodes",
        fontsize="small",
    )
    return _save(figure, config.out / "closed_loop.png")


# --------------------------------------------------------------------------- table
def _fmt(value: float, percent: bool, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{100 * value:.{digits}f}%" if percent else f"{value:.{digits}f}"


def _cell(values: Sequence[float], percent: bool = False, digits: int = 1) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "-"
    if len(values) == 1:
        return _fmt(values[0], percent, digits)
    mean, std = mean_std(values)
    if percent:
        return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}%"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _success_cell(group: Group) -> str:
    with_results = [run for run in group.runs if run.results]
    if not with_results:
        return "-"
    if len(with_results) == 1:
        s = with_results[0].results["summary"]
        return (f"{_fmt(s['success_rate'], True)} [{_fmt(s['success_ci_low'], True, 0)}, "
                f"{_fmt(s['success_ci_high'], True, 0)}]")  # fmt: skip
    return _cell([run.results["summary"]["success_rate"] for run in with_results], True)


def _progress_cell(group: Group) -> str:
    with_results = [run for run in group.runs if run.results]
    if not with_results:
        return "-"
    metres = _cell([run.results["summary"]["progress_m"] for run in with_results], digits=1)
    fraction = _cell([run.results["summary"]["progress_frac"] for run in with_results], True, 0)
    return f"{metres} m ({fraction})"


def results_table(groups: Sequence[Group], labels: Sequence[str], config: CompareConfig) -> str:
    """The markdown table: one row per group, training metrics at the evaluated checkpoint."""
    header = ["run" if not config.group_keys else "group", "runs", "epoch"]
    header += [f"{tag}" for tag in config.table_tags]
    header += ["success [95% CI]", "progress", "collisions", "expert agreement", "episodes"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, label in zip(groups, labels, strict=True):
        rows = [checkpoint_row(run.metrics, config.which) for run in group.runs if run.metrics]
        rows = [row for row in rows if row is not None]
        epochs = sorted({int(row["epoch"]) for row in rows if "epoch" in row})
        cells = [label, str(len(group.runs)), ",".join(map(str, epochs)) or "-"]
        for tag in config.table_tags:
            percent = _tag_key(tag).endswith(("accuracy", "rate"))
            cells.append(
                _cell([row.get(_tag_key(tag)) for row in rows], percent, 1 if percent else 3)
            )
        evaluated = [run for run in group.runs if run.results]
        cells += [
            _success_cell(group),
            _progress_cell(group),
            _cell([_eval_value(run, "collision_rate") for run in evaluated], True),
            _cell([_eval_value(run, "agreement") for run in evaluated], True),
            ",".join(sorted({str(run.results["summary"]["episodes"]) for run in evaluated})) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + _notes(groups, config)


def _notes(groups: Sequence[Group], config: CompareConfig) -> str:
    evaluated = [run for group in groups for run in group.runs if run.results]
    if not evaluated:
        return f"\nNo closed-loop results for {config.which} (run `python -m eval.rollout`).\n"
    envs = {repr(sorted(run.results["env_kwargs"].items())) for run in evaluated}
    differing = _differing_env_keys(evaluated)
    expert = " (the expert row flies the expert)" if any(run.expert for run in evaluated) else ""
    note = (
        f"\nClosed loop: `{config.which}` checkpoints{expert}, held-out worlds of seed "
        f"{config.eval_seed}; single runs show a 95% Wilson interval, groups mean ± std over "
        "runs. Training columns are at the evaluated checkpoint's epoch.\n"
    )
    if len(envs) > 1:
        note += f"\n**Warning**: the rows were evaluated on different envs ({differing}).\n"
    return note


def _differing_env_keys(runs: Sequence[RunData]) -> str:
    kwargs = [run.results["env_kwargs"] for run in runs]
    keys = sorted({k for kw in kwargs for k in kw})
    differing = [k for k in keys if len({repr(kw.get(k)) for kw in kwargs}) > 1]
    return ", ".join(differing)


def write_table_into(path: Path, table: str) -> None:
    """Replace what lies between the two marker comments of ``path`` with ``table``."""
    if not path.is_file():
        raise EvalError(f"--table-into {path} does not exist; create it with the markers "
                        f"{TABLE_START} and {TABLE_END} where the table goes")  # fmt: skip
    text = path.read_text()
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < 0 or end < start:
        raise EvalError(
            f"--table-into {path} needs the markers {TABLE_START} and then {TABLE_END} on their "
            "own lines, where the table goes"
        )
    if text.count(TABLE_START) > 1 or text.count(TABLE_END) > 1:
        raise EvalError(f"--table-into {path} has more than one {TABLE_START} or {TABLE_END}")
    before = text[: start + len(TABLE_START)]
    after = text[end:]
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(f"{before}\n{table.strip()}\n{after}")
    partial.replace(path)


# --------------------------------------------------------------------------- main
def main(config: CompareConfig) -> CompareResult:
    """Load the runs, write the plots and the table; returns them."""
    runs = [load_run(path, config.which, config.eval_seed) for path in _runs_to_load(config)]
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
        missing = [t for t in config.tags if _tag_key(t) not in available]
        if missing:
            raise EvalError(
                f"no run has the metric(s) {', '.join(missing)}; available: "
                + (", ".join(available) if available else "none (no metrics.jsonl)")
            )
        for tag in tags:
            path = plot_curves(groups, labels, tag, config)
            if path is not None:
                figures.append(path)
        path = plot_closed_loop(groups, labels, config)
        if path is not None:
            figures.append(path)

    table = results_table(groups, labels, config)
    print(table)
    if config.table_into is not None:
        write_table_into(config.table_into, table)
    for path in figures:
        print(f"wrote {path}", file=sys.stderr)
    return CompareResult(groups, table, figures)


def parse_args(argv: Sequence[str] | None = None) -> CompareConfig:
    """Build the config from the command line."""
    return parse_config(CompareConfig, argv, "python -m eval.compare", __doc__)


if __name__ == "__main__":
    sys.exit(run_cli(main, parse_args()))
