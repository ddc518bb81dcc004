"""A sweep's results: ``results.jsonl``, ``results.md`` and the console tables.

Each finished trial's row lives in ``trials/<id>/result.json`` (written last by the trial);
``results.jsonl`` holds the rows of the spec's trials that have one, in spec order
(configuration-major, seeds together), and is rewritten atomically after every trial, so it
is whole after any interruption. A row's ``values`` (and ``config``, the same as one string)
and ``seed`` are what a report groups by.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from artifacts.atomic import write_text_atomic
from artifacts.cells import interval_cell, pct
from artifacts.markdown_table import markdown_row, markdown_rule, markdown_table
from configflags import UserError
from eval.compare_table import mean_std_cell, seeds_success_cell
from eval.stats import mean_std
from experiments.sweep.spec import Trial, show_value

RESULTS_JSONL = "results.jsonl"
RESULTS_MD = "results.md"
# the per-trial columns after the swept values: (header, row -> cell)
METRIC_COLUMNS = ("val acc", "test acc", "val loss", "success [95% CI]", "collisions",
                  "agreement", "wall")  # fmt: skip


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metric_cells(row: dict[str, Any]) -> list[str]:
    """The metric cells of one row, in METRIC_COLUMNS order."""
    return [
        pct(row["val_accuracy"]),
        pct(row["test_accuracy"]),
        _number(row["val_loss"]),
        interval_cell(row["success_rate"], *row["success_ci"]),
        pct(row["collision_rate"]),
        pct(row["agreement"]),
        f"{row['wall_s']:.0f} s",
    ]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """One row per finished trial, in spec order, one JSON object a line."""
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``results.jsonl``."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def read_rows(path: Path, fix: str = "") -> list[dict[str, Any]]:
    """The rows of a rows file, or a one-line ``UserError`` naming it (``fix``: what to do)."""
    try:
        return read_jsonl(path)
    except (OSError, ValueError) as error:
        raise UserError(f"{path}: not a rows file ({error}){fix}") from None


def _swept_keys(trials: Sequence[Trial]) -> list[str]:
    keys: list[str] = []
    for trial in trials:
        keys += [key for key in trial.values if key not in keys]
    return keys


def _config_groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["config"], []).append(row)
    return groups


def _mean_cell(rows: Sequence[dict[str, Any]], key: str) -> str:
    return mean_std_cell([row.get(key) for row in rows], True)


def _group_cells(rows: Sequence[dict[str, Any]]) -> list[str]:
    return [str(len(rows)), _mean_cell(rows, "success_rate"), _mean_cell(rows, "val_accuracy"),
            _mean_cell(rows, "test_accuracy")]  # fmt: skip


GROUP_COLUMNS = ("configuration", "seeds", "success", "val acc", "test acc")


def _short(keys: Sequence[str]) -> list[str]:
    """Column headers: the flag without its section where that is unambiguous."""
    names = [key.rpartition(".")[2] for key in keys]
    return [name if names.count(name) == 1 else key for name, key in zip(names, keys, strict=True)]


# the console leaves out the trial id and the loss (results.md has them) to fit a terminal
CONSOLE_SKIP = ("val loss",)


def rows_table(
    title: str, trials: Sequence[Trial], rows: dict[str, dict[str, Any]], failed: dict[str, str]
) -> Table:
    """The console table: one line per trial of the spec (finished, failed or not run)."""
    keys = _swept_keys(trials)
    table = Table(title=title)
    for header in _short(keys):
        table.add_column(header, justify="right")
    table.add_column("seed", justify="right")
    shown = [i for i, column in enumerate(METRIC_COLUMNS) if column not in CONSOLE_SKIP]
    for i in shown:
        table.add_column(METRIC_COLUMNS[i], justify="right")
    for trial in trials:
        values = [show_value(trial.values[k]) if k in trial.values else "-" for k in keys]
        if trial.id in rows:
            cells = metric_cells(rows[trial.id])
            cells = [cells[i] for i in shown]
        else:
            status = "failed" if trial.id in failed else "not run"
            cells = [status] + ["-"] * (len(shown) - 1)
        table.add_row(*values, str(trial.seed), *cells)
    return table


def plan_table(title: str, trials: Sequence[Trial]) -> Table:
    """The trials a spec makes, for ``--dry-run``: values, seed, dataset and id."""
    keys = _swept_keys(trials)
    table = Table(title=title)
    for header in [*_short(keys), "seed", "dataset", "trial id"]:
        table.add_column(header, justify="left" if header == "trial id" else "right")
    for trial in trials:
        values = [show_value(trial.values[k]) if k in trial.values else "-" for k in keys]
        table.add_row(*values, str(trial.seed), trial.dataset, trial.id)
    return table


def groups_table(ordered_rows: Sequence[dict[str, Any]]) -> Table:
    """The console table of means over seeds, one line per configuration."""
    table = Table(title="by configuration: mean ± std over seeds")
    for column in GROUP_COLUMNS:
        table.add_column(column, justify="left" if column == "configuration" else "right")
    for config, rows in _config_groups(ordered_rows).items():
        table.add_row(config, *_group_cells(rows))
    return table


def results_markdown(
    name: str, trials: Sequence[Trial], rows: dict[str, dict[str, Any]], failed: dict[str, str]
) -> str:
    """``results.md``: the trials table, the means by configuration, and what failed."""
    keys = _swept_keys(trials)
    header = ["trial", *keys, "seed", *METRIC_COLUMNS]
    lines = [f"# Sweep {name}", "", f"{len(rows)} of {len(trials)} trials finished.", ""]
    lines += markdown_table(header, [
        [trial.id, *[show_value(trial.values[k]) if k in trial.values else "-" for k in keys],
         str(trial.seed), *metric_cells(rows[trial.id])]
        for trial in trials if trial.id in rows
    ])  # fmt: skip
    ordered = [rows[t.id] for t in trials if t.id in rows]
    if ordered:
        lines += ["", "## By configuration (mean ± std over seeds)", ""]
        lines += markdown_table(GROUP_COLUMNS, [
            [config, *_group_cells(group)] for config, group in _config_groups(ordered).items()
        ])  # fmt: skip
    if failed:
        lines += ["", "## Failed", ""]
        lines += [f"- `{trial_id}`: {reason}" for trial_id, reason in failed.items()]
    return "\n".join(lines) + "\n"


def write_results(
    out: Path,
    name: str,
    trials: Sequence[Trial],
    rows: dict[str, dict[str, Any]],
    failed: dict[str, str],
    committed: Path | None = None,
) -> None:
    """Rewrite ``results.jsonl`` and ``results.md`` from the rows so far.

    ``committed``: the spec's rows file, rewritten too with all of its finished trials.
    """
    ordered = [rows[t.id] for t in trials if t.id in rows]
    write_jsonl(out / RESULTS_JSONL, ordered)
    if committed is not None:
        committed.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(committed, ordered)
    write_text_atomic(out / RESULTS_MD, results_markdown(name, trials, rows, failed))


# the columns of the page table (--table-into) after the swept values and the seed count
PAGE_COLUMNS = ("success [95% CI]", "progress", "collisions", "expert agreement",
                "test accuracy", "training frames", "training, longest seed", "wall / trial",
                "test accuracy per action, lowest seed")  # fmt: skip


def _page_success(rows: Sequence[dict[str, Any]]) -> str:
    if len(rows) == 1:
        return interval_cell(rows[0]["success_rate"], *rows[0]["success_ci"])
    return seeds_success_cell([row["success_rate"] for row in rows])


def _page_frames(rows: Sequence[dict[str, Any]]) -> str:
    frames = sorted({row["train_frames"] for row in rows if row.get("train_frames") is not None})
    if not frames:
        return "-"
    return f"{frames[0]:,}" if len(frames) == 1 else f"{frames[0]:,}-{frames[-1]:,}"


def _page_training(rows: Sequence[dict[str, Any]]) -> str:
    """The longest seed's training time: what a per-seed time budget is checked against."""
    times = [row["train_s"] for row in rows if row.get("train_s") is not None]
    return f"{max(times) / 60:.1f} min" if times else "-"


def per_action_cell(rows: Sequence[dict[str, Any]]) -> str:
    """Each action's test accuracy, the lowest over the seeds: a 0.00 is a one-class seed."""
    per_seed = [row.get("test_per_class_accuracy") for row in rows]
    if not per_seed or any(accuracies is None for accuracies in per_seed):
        return "-"
    lowest = []
    for values in zip(*per_seed, strict=True):
        present = [value for value in values if value is not None]
        lowest.append(f"{min(present):.2f}" if present else "-")
    return " ".join(lowest)


def page_table(trials: Sequence[Trial], rows: Sequence[dict[str, Any]], command: str) -> str:
    """The means over seeds, one row per configuration, for a results page (``--table-into``).

    Success is the mean ± std of the seeds' success rates and the 95% Student-t interval of
    that mean (one seed: its Wilson interval over the episodes).
    """
    keys = _swept_keys(trials)
    header = [*_short(keys), "seeds", *PAGE_COLUMNS]
    lines = [markdown_row(header), markdown_rule(len(header))]
    for group in _config_groups(rows).values():
        values = group[0]["values"]
        lines.append(markdown_row([
            *[show_value(values[k]) if k in values else "-" for k in keys],
            str(len(group)),
            _page_success(group),
            _mean_cell(group, "progress_frac"),
            _mean_cell(group, "collision_rate"),
            _mean_cell(group, "agreement"),
            _mean_cell(group, "test_accuracy"),
            _page_frames(group),
            _page_training(group),
            f"{mean_std([row['wall_s'] for row in group])[0]:.0f} s",
            per_action_cell(group),
        ]))  # fmt: skip
    episodes = sorted({row["episodes"] for row in rows})
    checkpoints = sorted({row.get("checkpoint", "last") for row in rows})
    note = (
        f"Generated by `{command}`: mean ± std over training seeds and the 95% Student-t"
        f" interval of the mean; {'/'.join(map(str, episodes))} held-out episodes per trial,"
        f" `{'/'.join(checkpoints)}` checkpoints; training frames are the expert-labelled"
        " frames of the training split; training time of the longest seed (bc.train on one core)"
        " and mean wall time per trial (training and evaluation); test"
        " accuracy per action (the bins in order, left turn first) is the lowest over the seeds,"
        " so a 0.00 marks a seed whose policy never takes that action on the test split."
    )
    return "\n".join(lines) + "\n\n" + note + "\n"
