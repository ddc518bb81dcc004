"""A DAgger run's results as a markdown table and a PNG: success against iteration and data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """One table row per iteration (0 = the BC run), success with its 95% Wilson interval."""
    lines = [
        "| iteration | beta | expert-labelled frames | success [95% CI] | progress | collisions"
        " | expert agreement | episodes | wall time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        low, high = row["success_ci"]
        beta = "BC" if row["beta"] is None else f"{row['beta']:.3g}"
        lines.append(
            f"| {row['iteration']} | {beta} | {row['expert_frames']:,} |"
            f" {_pct(row['success_rate'])} [{_pct(low)}, {_pct(high)}] |"
            f" {_pct(row['progress_frac'])} | {_pct(row['collision_rate'])} |"
            f" {_pct(row['agreement'])} | {row['episodes']} | {row['wall_s']:.0f} s |"
        )
    return "\n".join(lines) + "\n"


def plot_success(rows: list[dict[str, Any]], path: Path) -> None:
    """Success (with 95% intervals) against iteration and against expert-labelled frames."""
    success = [100 * row["success_rate"] for row in rows]
    errors = [
        [100 * (row["success_rate"] - row["success_ci"][0]) for row in rows],
        [100 * (row["success_ci"][1] - row["success_rate"]) for row in rows],
    ]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, xs, label in (
        (axes[0], [row["iteration"] for row in rows], "DAgger iteration (0 = BC)"),
        (axes[1], [row["expert_frames"] for row in rows], "expert-labelled training frames"),
    ):
        axis.errorbar(xs, success, yerr=errors, marker="o", capsize=3)
        axis.set_xlabel(label)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("closed-loop success (%), 95% CI")
    axes[0].set_ylim(0, 105)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
