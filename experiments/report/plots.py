"""The findings report's plots: test accuracy and closed-loop success per configuration.

One PNG per finding, two panels: offline (test accuracy) and closed loop (success). Each
configuration shows its seeds as small dots and their mean with the 95% t-interval; success
also shows the pooled Wilson interval of all its episodes, thinner and beside it. Findings
over a numeric axis (dataset size, learning rate) are drawn as one line per series instead.
The file carries no timestamp or version metadata: the same results give the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from artifacts.plots import save_figure  # noqa: E402
from eval.stats import Interval  # noqa: E402
from experiments.report.results import FindingResult, GroupStats
from experiments.report.stats import pooled_wilson  # noqa: E402

PANELS = (("test_accuracy", "test", "offline: test accuracy (%)"),
          ("success_rate", "success", "closed loop: success (%)"))  # fmt: skip


def _error(interval: Interval) -> tuple[list[float], list[float]]:
    if not interval.defined:
        return [0.0], [0.0]
    assert interval.low is not None and interval.high is not None
    return [100 * (interval.mean - interval.low)], [100 * (interval.high - interval.mean)]


def _seed_values(stats: GroupStats, key: str) -> list[float]:
    return [100 * row[key] for row in stats.rows if row.get(key) is not None]


def _points(axis: Any, shown: Sequence[GroupStats], key: str, attribute: str) -> None:
    for position, stats in enumerate(shown):
        interval = getattr(stats, attribute)
        if interval is None:
            continue
        seeds = _seed_values(stats, key)
        axis.plot([position - 0.12] * len(seeds), seeds, "o", color="0.6", markersize=3)
        axis.errorbar([position], [100 * interval.mean], yerr=_error(interval), fmt="o",
                      color="C0", capsize=4, linewidth=2)  # fmt: skip
        if key == "success_rate" and stats.episodes:
            rate, low, high = pooled_wilson(stats.successes, stats.episodes)
            axis.errorbar([position + 0.12], [100 * rate],
                          yerr=([100 * (rate - low)], [100 * (high - rate)]), fmt="s",
                          color="C1", markersize=3, capsize=2, linewidth=1)  # fmt: skip
    axis.set_xticks(range(len(shown)))
    axis.set_xticklabels([s.group.label for s in shown], rotation=20, ha="right", fontsize=8)
    axis.set_xlim(-0.6, len(shown) - 0.4)


def _lines(axis: Any, shown: Sequence[GroupStats], attribute: str, log: bool) -> None:
    series: dict[str, list[GroupStats]] = {}
    for stats in shown:
        series.setdefault(stats.group.series, []).append(stats)
    for index, (name, members) in enumerate(series.items()):
        points = sorted((s.group.x, getattr(s, attribute)) for s in members
                        if getattr(s, attribute) is not None and s.group.x is not None)  # fmt: skip
        if not points:
            continue
        xs = [x for x, _ in points]
        means = [100 * interval.mean for _, interval in points]
        lows = [_error(interval)[0][0] for _, interval in points]
        highs = [_error(interval)[1][0] for _, interval in points]
        axis.errorbar(xs, means, yerr=(lows, highs), fmt="o-", color=f"C{index}", capsize=4,
                      label=name)  # fmt: skip
    if log:
        axis.set_xscale("log")
    axis.legend(fontsize=8)


def plot_finding(result: FindingResult, path: Path) -> None:
    """Write the finding's PNG to ``path`` (groups without trials are left out)."""
    finding = result.finding
    shown = [stats for stats in result.groups.values() if stats.rows]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for axis, (key, attribute, label) in zip(axes, PANELS, strict=True):
        if finding.x_label:
            _lines(axis, shown, attribute, finding.x_log)
            axis.set_xlabel(finding.x_label)
        else:
            _points(axis, shown, key, attribute)
        axis.set_ylabel(label)
        if key == "success_rate":  # accuracies sit in a narrow band: let them use the panel
            axis.set_ylim(-2, 102)
        axis.grid(alpha=0.3)
    figure.suptitle(f"{finding.title}\nmean of seeds with 95% t-interval"
                    + ("" if finding.x_label else "; grey: seeds; orange: pooled episodes"),
                    fontsize=9)  # fmt: skip
    figure.tight_layout()
    save_figure(figure, path, dpi=90, metadata={"Software": None})
    plt.close(figure)
