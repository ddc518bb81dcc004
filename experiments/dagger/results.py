"""A DAgger run's results as a markdown table and a PNG: success against iteration and data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from artifacts import plots
from artifacts.cells import interval_cell, pct
from artifacts.markdown_table import markdown_table

COLUMNS = ("iteration", "beta", "expert-labelled frames", "success [95% CI]", "progress",
           "collisions", "expert agreement", "episodes", "wall time")  # fmt: skip


def success_cell(row: dict[str, Any]) -> str:
    """``60.0% [50.0%, 69.9%]``: the iteration's success with its 95% Wilson interval."""
    return interval_cell(row["success_rate"], *row["success_ci"], bound_digits=1)


def iteration_cells(row: dict[str, Any]) -> list[str]:
    """The cells of one iteration's row (0 = the BC run), in ``COLUMNS`` order."""
    return [
        str(row["iteration"]),
        "BC" if row["beta"] is None else f"{row['beta']:.3g}",
        f"{row['expert_frames']:,}",
        success_cell(row),
        pct(row["progress_frac"]),
        pct(row["collision_rate"]),
        pct(row["agreement"]),
        str(row["episodes"]),
        f"{row['wall_s']:.0f} s",
    ]


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """One table row per iteration (0 = the BC run), success with its 95% Wilson interval."""
    cells = [iteration_cells(row) for row in rows]
    return "\n".join(markdown_table(COLUMNS, cells, compact_rule=True)) + "\n"


def plot_success(rows: list[dict[str, Any]], path: Path) -> None:
    """Success (with 95% intervals) against iteration and against expert-labelled frames."""
    plots.plot_success(
        path,
        [row["iteration"] for row in rows],
        [row["expert_frames"] for row in rows],
        [100 * row["success_rate"] for row in rows],
        [
            [100 * (row["success_rate"] - row["success_ci"][0]) for row in rows],
            [100 * (row["success_ci"][1] - row["success_rate"]) for row in rows],
        ],
    )
