"""DAgger over training seeds: ``python -m experiments.dagger.seeds runs/d_s0 runs/d_s1 runs/d_s2``.

One ``python -m experiments.dagger`` run is one training seed; its iterations are single draws
of training noise. This command reads several finished DAgger runs that differ only in the
seed of the BC run they started from, and reports each iteration as the mean over seeds:
success as mean ± std with the 95% Student-t interval of the mean (as the sweep tables do),
every seed's own success, progress, collisions, expert agreement, the mean expert-labelled
frames and the mean wall time per seed. The table goes to the console and, with
``--table-into``, between the markers of a markdown page; ``--plot-into`` writes the PNG.

Each argument is a DAgger output folder (``OUT`` of ``experiments.dagger``) or a BC run whose
``RUN/dagger`` holds one. Runs whose DAgger flags or BC configs differ in anything but the
seed are refused, as are two runs of the same seed; BC settings that change how a run ran or
was watched, not what it learnt (threads, device, progress, logging, closed-loop checks between
epochs unless ``--which best_success`` flies their choice), may differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import configflags
from artifacts import plots
from artifacts.cells import pct
from artifacts.markdown_table import markdown_table
from bc.config import SESSION_FIELDS
from configflags import UserError, option
from eval.compare_table import (
    check_table_into,
    mean_std_cell,
    seeds_success_cell,
    write_table_into,
)
from eval.stats import t_interval

# BC config keys that may differ between the seeds of one row
SEED_KEYS = frozenset({"seed", "run_dir", "resume"})
# bc.train's session fields other than the data and the training length: they change how a
# BC run ran or was watched (threads, progress, closed-loop checks between epochs), not what
# it learnt, so they may differ too
HOW_IT_RAN_KEYS = SESSION_FIELDS - {"data", "epochs", "steps"}
# ...except that the closed-loop checks choose the BC run's best_success.pt, which flies as
# iteration 0 under --which best_success
SELECTION_KEYS = frozenset({"eval_every", "eval_episodes"})


class DaggerSeedsError(UserError):
    """The DAgger runs cannot be reported together."""


@dataclass(frozen=True)
class DaggerSeedsConfig:
    """Which DAgger runs to report together, and where the table and plot go."""

    runs: tuple[Path, ...] = option(
        (), "DAgger output folders, or BC runs whose RUN/dagger holds one (one per seed)",
        positional=True, metavar="RUN",
    )  # fmt: skip
    table_into: Path | None = option(
        None, "also write the table into this markdown file, between <!-- NAME:start --> and"
        " <!-- NAME:end --> (NAME: --table-name)",
    )  # fmt: skip
    table_name: str = option("dagger_seeds", "marker name of the table in --table-into")
    plot_into: Path | None = option(None, "also write the success plot to this PNG file")

    def __post_init__(self) -> None:
        if not self.runs:
            raise ValueError("name the DAgger runs to report, e.g. runs/d_s0 runs/d_s1 runs/d_s2")


@dataclass(frozen=True)
class SeedRun:
    """One finished DAgger run: its folder, its flags, its BC config and its rows."""

    out: Path
    flags: dict[str, Any]
    bc_config: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def seed(self) -> int:
        return int(self.bc_config["seed"])


def dagger_out(path: Path) -> Path:
    """The DAgger output folder that ``path`` names (itself or ``path/dagger``)."""
    for candidate in (path, path / "dagger"):
        if (candidate / "dagger.json").is_file():
            return candidate
    raise DaggerSeedsError(
        f"{path} holds no DAgger run (no dagger.json in it or in {path / 'dagger'}):"
        f" run python -m experiments.dagger --run RUN first"
    )


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DaggerSeedsError(f"cannot read {what} {path}: {error}") from None


def load_seed_run(path: Path) -> SeedRun:
    """A finished DAgger run, refused when its results or its BC run are missing."""
    out = dagger_out(path)
    results = out / "results.json"
    if not results.is_file():
        raise DaggerSeedsError(
            f"{out} has not finished (no results.json): rerun its experiments.dagger command"
        )
    flags = _read_json(out / "dagger.json", "DAgger flags")
    bc_config_path = Path(str(flags.get("run", ""))) / "config.json"
    if not bc_config_path.is_file():
        raise DaggerSeedsError(
            f"the BC run of {out} is gone ({bc_config_path} does not exist): its config says"
            " which seed it was"
        )
    return SeedRun(
        out, flags, _read_json(bc_config_path, "BC config"), _read_json(results, "results")
    )


def _differences(a: dict[str, Any], b: dict[str, Any], ignore: frozenset[str]) -> list[str]:
    return sorted(key for key in set(a) | set(b) if key not in ignore and a.get(key) != b.get(key))


def check_comparable(runs: list[SeedRun]) -> None:
    """Refuse runs that differ in more than the BC run's seed, or that share a seed."""
    first = runs[0]
    ignore = SEED_KEYS | HOW_IT_RAN_KEYS
    if first.flags.get("which") == "best_success":
        ignore -= SELECTION_KEYS
    for other in runs[1:]:
        flags = _differences(first.flags, other.flags, frozenset({"run", "iterations"}))
        if flags:
            raise DaggerSeedsError(
                f"{first.out} and {other.out} were run with different DAgger flags"
                f" ({', '.join(flags)}): report them separately"
            )
        config = _differences(first.bc_config, other.bc_config, ignore)
        if config:
            raise DaggerSeedsError(
                f"the BC runs of {first.out} and {other.out} differ in {', '.join(config)},"
                " not only in the seed: report them separately"
            )
    seeds = [run.seed for run in runs]
    repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
    if repeated:
        raise DaggerSeedsError(
            f"training seed {repeated[0]} appears twice: pass one DAgger run per seed"
        )


@dataclass(frozen=True)
class IterationRow:
    """One iteration over all seeds."""

    iteration: int
    beta: float | None
    seeds: list[int]
    expert_frames: list[int]
    success: list[float]
    progress: list[float]
    collisions: list[float]
    agreement: list[float]
    episodes: list[int]
    wall_s: list[float]

    def as_dict(self) -> dict[str, Any]:
        interval = t_interval(self.success)
        assert interval is not None
        return {
            "iteration": self.iteration,
            "beta": self.beta,
            "seeds": self.seeds,
            "expert_frames": self.expert_frames,
            "success": self.success,
            "success_mean": interval.mean,
            "success_ci": [interval.low, interval.high],
            "progress": self.progress,
            "collisions": self.collisions,
            "agreement": self.agreement,
            "episodes": self.episodes,
            "wall_s": self.wall_s,
        }


def iteration_rows(runs: list[SeedRun]) -> list[IterationRow]:
    """The iterations every run reached, each over all runs (seed order)."""
    runs = sorted(runs, key=lambda run: run.seed)
    common = min(len(run.rows) for run in runs)
    rows = []
    for index in range(common):
        per_seed = [run.rows[index] for run in runs]
        rows.append(
            IterationRow(
                iteration=per_seed[0]["iteration"],
                beta=per_seed[0]["beta"],
                seeds=[run.seed for run in runs],
                expert_frames=[row["expert_frames"] for row in per_seed],
                success=[row["success_rate"] for row in per_seed],
                progress=[row["progress_frac"] for row in per_seed],
                collisions=[row["collision_rate"] for row in per_seed],
                agreement=[row["agreement"] for row in per_seed],
                episodes=[row["episodes"] for row in per_seed],
                wall_s=[row["wall_s"] for row in per_seed],
            )
        )
    return rows


def success_cell(values: list[float]) -> str:
    """``97.3 ± 1.5% [93%, 100%]``; a single seed has no interval."""
    if len(values) == 1:
        return f"{pct(values[0])} (1 seed)"
    return seeds_success_cell(values)


def row_cells(row: IterationRow) -> list[str]:
    """The table cells of one iteration, in ``COLUMNS`` order."""
    return [
        str(row.iteration),
        "BC" if row.beta is None else f"{row.beta:.3g}",
        str(len(row.seeds)),
        f"{round(sum(row.expert_frames) / len(row.expert_frames)):,}",
        success_cell(row.success),
        ", ".join(f"{round(100 * value)}" for value in row.success),
        mean_std_cell(row.progress, True),
        mean_std_cell(row.collisions, True),
        mean_std_cell(row.agreement, True),
        f"{sum(row.wall_s) / len(row.wall_s):.0f} s",
    ]


COLUMNS = (
    "iteration", "beta", "seeds", "expert-labelled frames", "success [95% CI]",
    "success per seed (%)", "progress", "collisions", "expert agreement", "wall / seed",
)  # fmt: skip


def results_markdown(rows: list[IterationRow], command: str) -> str:
    """The markdown table and its footnote (what the figures are, and the command)."""
    lines = markdown_table(COLUMNS, [row_cells(row) for row in rows], compact_rule=True)
    episodes = sorted({n for row in rows for n in row.episodes})
    seeds = ", ".join(str(seed) for seed in rows[0].seeds)
    lines += [
        "",
        f"Generated by `{command}`: training seeds {seeds}; mean ± std over the seeds and the 95%"
        f" Student-t interval of the mean; {'/'.join(map(str, episodes))} held-out episodes per"
        " seed and iteration; expert-labelled frames are the mean over seeds; wall time per seed"
        " and iteration (collection, retraining and evaluation).",
    ]
    return "\n".join(lines) + "\n"


def plot_success(rows: list[IterationRow], path: Path) -> None:
    """Mean success with its t-interval, and each seed, against iteration and frames."""
    intervals = [t_interval(row.success) for row in rows]
    mean = [100 * interval.mean for interval in intervals if interval is not None]
    errors = None
    if all(interval is not None and interval.defined for interval in intervals):
        lows = [100 * interval.low for interval in intervals]  # type: ignore[operator,union-attr]
        highs = [100 * interval.high for interval in intervals]  # type: ignore[operator,union-attr]
        errors = [
            [m - low for m, low in zip(mean, lows, strict=True)],
            [high - m for m, high in zip(mean, highs, strict=True)],
        ]
    plots.plot_success(
        path,
        [row.iteration for row in rows],
        [sum(row.expert_frames) / len(row.expert_frames) for row in rows],
        mean,
        errors,
        frames_label="expert-labelled training frames (mean over seeds)",
        success_label="closed-loop success (%)",
        seeds=[[100 * row.success[index] for row in rows] for index in range(len(rows[0].seeds))],
        mean_label="mean, 95% t-interval",
        whole_iterations=True,
    )


def console_table(rows: list[IterationRow]) -> Table:
    """The table as the console prints it."""
    table = Table(title="DAgger over training seeds: closed-loop success per iteration")
    for name in COLUMNS:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row_cells(row))
    return table


def command_line(config: DaggerSeedsConfig) -> str:
    """The command that regenerates the table, as the footnote names it."""
    parts = ["python -m experiments.dagger.seeds", *(str(run) for run in config.runs)]
    if config.table_into is not None:
        parts += ["--table-into", str(config.table_into), "--table-name", config.table_name]
    if config.plot_into is not None:
        parts += ["--plot-into", str(config.plot_into)]
    return " ".join(parts)


def main(config: DaggerSeedsConfig) -> list[dict[str, Any]]:
    """Read the runs, write the table (and plot) where asked; return the rows as dicts."""
    if config.table_into is not None:
        check_table_into(config.table_into, config.table_name)
    runs = [load_seed_run(path) for path in config.runs]
    check_comparable(runs)
    rows = iteration_rows(runs)
    console = Console()
    lengths = sorted({len(run.rows) - 1 for run in runs})
    if len(lengths) > 1:
        console.print(
            f"note: the runs reached {', '.join(map(str, lengths))} iterations; the table stops"
            f" at iteration {lengths[0]}, which all of them reached"
        )
    console.print(console_table(rows))
    if config.table_into is not None:
        write_table_into(config.table_into, results_markdown(rows, command_line(config)),
                         config.table_name)  # fmt: skip
    if config.plot_into is not None:
        config.plot_into.parent.mkdir(parents=True, exist_ok=True)
        plot_success(rows, config.plot_into)
    return [row.as_dict() for row in rows]


if __name__ == "__main__":
    configflags.run_main(main, DaggerSeedsConfig, "python -m experiments.dagger.seeds", __doc__)
