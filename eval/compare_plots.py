"""The comparison's PNG plots: training curves per metric and closed-loop bars per group.

Each group keeps its colour (its position) in every plot, so a curve and a bar of the same
group match even where other groups lack the metric.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from artifacts.plots import save_figure
from eval.compare_groups import EVAL_METRICS, RATES, Group, group_stat, metric_series, tag_key
from eval.stats import ema


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    return save_figure(figure, path, dpi=120)


def _file_tag(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", tag_key(tag))


def plot_curves(
    groups: Sequence[Group],
    labels: Sequence[str],
    tag: str,
    out_dir: Path,
    x_key: str = "epoch",
    smooth: float = 0.0,
) -> Path | None:
    """``out_dir/curves_<tag>.png``: ``tag`` against ``x_key``; None if no run has the tag.

    ``smooth`` is the EMA weight in [0, 1) (TensorBoard's slider); a group of several runs is
    drawn as their mean with a ±std band.
    """
    figure = Figure(figsize=(7, 4.2), layout="constrained")
    axes = figure.add_subplot()
    drawn = False
    for index, (group, label) in enumerate(zip(groups, labels, strict=True)):
        series = [s for s in (metric_series(run, tag, x_key) for run in group.runs) if len(s[0])]
        if not series:
            continue
        # the group's colour is its position, as in the bar chart, even if others lack the tag
        colour = f"C{index % 10}"
        series = [(x, np.array(ema(y, smooth))) for x, y in series]
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
    smoothing = f", EMA {smooth:g}" if smooth else ""
    axes.set(xlabel=x_key, ylabel=tag, title=f"{tag}{smoothing}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return _save(figure, out_dir / f"curves_{_file_tag(tag)}.png")


def plot_closed_loop(
    groups: Sequence[Group], labels: Sequence[str], metrics: Sequence[str], out_dir: Path
) -> Path | None:
    """``out_dir/closed_loop.png``: bars of ``metrics``; None if nothing was evaluated."""
    if not any(run.results for group in groups for run in group.runs):
        return None
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
    return _save(figure, out_dir / "closed_loop.png")
