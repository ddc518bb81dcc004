"""The comparison's markdown table, and writing it into a page between two marker comments.

``python -m eval.compare --table-into docs/results.md`` replaces what lies between
``<!-- results:start -->`` and ``<!-- results:end -->`` and keeps the rest of the file, so a
results page regenerates in place. ``--table-name NAME`` uses the markers
``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` instead, so one page can hold several
generated tables.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from artifacts.cells import interval_cell, pct
from artifacts.markdown_block import block_markers, check_page, write_block
from artifacts.markdown_table import markdown_row, markdown_rule
from eval.compare_groups import Group, RunData, checkpoint_row, eval_value, tag_key
from eval.errors import EvalError
from eval.stats import mean_std, t_interval

DEFAULT_TABLE_NAME = "results"
TABLE_START, TABLE_END = block_markers(DEFAULT_TABLE_NAME)


def table_markers(name: str = DEFAULT_TABLE_NAME) -> tuple[str, str]:
    """The start and end marker comments of the table called ``name``."""
    return block_markers(name)


def _fmt(value: float, percent: bool, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pct(value, digits) if percent else f"{value:.{digits}f}"


def mean_std_cell(values: Sequence[float], percent: bool = False, digits: int = 1) -> str:
    """``12.3 ± 0.4`` (``12.3 ± 0.4%`` with ``percent``) over the given values; one value alone."""
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
        return interval_cell(s["success_rate"], s["success_ci_low"], s["success_ci_high"])
    return seeds_success_cell([run.results["summary"]["success_rate"] for run in with_results])


def seeds_success_cell(rates: Sequence[float]) -> str:
    """``56.0 ± 4.1% [46%, 66%]``: success over training seeds.

    The mean ± std and the 95% Student-t interval of the mean: the form of every table on
    docs/results.md that groups training seeds.
    """
    interval = t_interval(rates)
    assert interval is not None, "no success rates"
    return f"{mean_std_cell(rates, True)} [{pct(interval.low, 0)}, {pct(interval.high, 0)}]"


def _progress_cell(group: Group) -> str:
    with_results = [run for run in group.runs if run.results]
    if not with_results:
        return "-"
    metres = mean_std_cell([run.results["summary"]["progress_m"] for run in with_results], digits=1)
    fraction = mean_std_cell(
        [run.results["summary"]["progress_frac"] for run in with_results], True, 0
    )
    return f"{metres} m ({fraction})"


def results_table(
    groups: Sequence[Group],
    labels: Sequence[str],
    *,
    which: str,
    eval_seed: int,
    table_tags: Sequence[str],
    grouped: bool = False,
) -> str:
    """The markdown table: one row per group, training metrics at the evaluated checkpoint.

    ``which`` names the checkpoint whose closed-loop results (of ``eval_seed``'s worlds) the
    rows show; ``table_tags`` are the training columns; ``grouped`` heads the first column
    "group" instead of "run".
    """
    header = ["group" if grouped else "run", "runs", "epoch"]
    header += [f"{tag}" for tag in table_tags]
    header += ["success [95% CI]", "progress", "collisions", "expert agreement", "episodes"]
    lines = [markdown_row(header), markdown_rule(len(header), compact=True)]
    for group, label in zip(groups, labels, strict=True):
        rows = [checkpoint_row(run.metrics, which) for run in group.runs if run.metrics]
        rows = [row for row in rows if row is not None]
        epochs = sorted({int(row["epoch"]) for row in rows if "epoch" in row})
        cells = [label, str(len(group.runs)), ",".join(map(str, epochs)) or "-"]
        for tag in table_tags:
            percent = tag_key(tag).endswith(("accuracy", "rate"))
            cells.append(
                mean_std_cell([row.get(tag_key(tag)) for row in rows], percent, 1 if percent else 3)
            )
        evaluated = [run for run in group.runs if run.results]
        cells += [
            _success_cell(group),
            _progress_cell(group),
            mean_std_cell([eval_value(run, "collision_rate") for run in evaluated], True),
            mean_std_cell([eval_value(run, "agreement") for run in evaluated], True),
            ",".join(sorted({str(run.results["summary"]["episodes"]) for run in evaluated})) or "-",
        ]
        lines.append(markdown_row(cells))
    return "\n".join(lines) + "\n" + _notes(groups, which, eval_seed)


def _notes(groups: Sequence[Group], which: str, eval_seed: int) -> str:
    evaluated = [run for group in groups for run in group.runs if run.results]
    if not evaluated:
        return f"\nNo closed-loop results for {which} (run `python -m eval.rollout`).\n"
    distinct_envs = {repr(sorted(run.results["env_kwargs"].items())) for run in evaluated}
    differing = _differing_env_keys(evaluated)
    expert = " (the expert row flies the expert)" if any(run.expert for run in evaluated) else ""
    note = (
        f"\nClosed loop: `{which}` checkpoints{expert}, held-out worlds of seed "
        f"{eval_seed}; single runs show a 95% Wilson interval, groups mean ± std over "
        "runs and a 95% Student-t interval of the mean. Training columns are at the evaluated"
        " checkpoint's epoch.\n"
    )
    if len(distinct_envs) > 1:
        note += f"\n**Warning**: the rows were evaluated on different envs ({differing}).\n"
    return note


def _differing_env_keys(runs: Sequence[RunData]) -> str:
    kwargs = [run.results["env_kwargs"] for run in runs]
    keys = sorted({k for kw in kwargs for k in kw})
    differing = [k for k in keys if len({repr(kw.get(k)) for kw in kwargs}) > 1]
    return ", ".join(differing)


def check_table_into(path: Path, name: str = DEFAULT_TABLE_NAME) -> str:
    """Refuse a table file without the markers of table ``name``; returns the page's text.

    Commands that write a table at the end of long work call it first, so that a missing
    marker is found before the work, not after.
    """
    return check_page(path, name, "--table-into", EvalError)


def write_table_into(path: Path, table: str, name: str = DEFAULT_TABLE_NAME) -> None:
    """Replace what lies between the two marker comments of table ``name`` in ``path``."""
    write_block(path, name, table, "--table-into", EvalError)
