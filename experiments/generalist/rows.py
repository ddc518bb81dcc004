"""Each training seed's results as one line of a rows file, and the tables made from them.

A seed's line holds what the recipe's tables need and nothing of its runs: the recipe it ran
(:func:`recipe_identity`), the machine that trained it, BC's expert-labelled frames, the wall
time of each step, DAgger's frames and wall time per iteration, and the suite's summary of
each of its rows (the expert, BC, every DAgger iteration) on every track. With ``--rows FILE``
the lines outlive the run folders: the tables come back from the file on a fresh clone, and
seeds trained in different sessions, or on different machines, pool into one table. A seed
whose line is in the file for the same recipe is not run again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from artifacts.atomic import write_text_atomic
from artifacts.formats import check_format
from configflags import UserError
from eval.stats import POOLED_FIELDS, pool_summaries
from eval.suite_report import suite_markdown
from eval.tracks import SUITE_VERSION, Track

FORMAT = "corridor-bc generalist seed"
FORMAT_VERSION = 1
EXPERT = "expert"
BC = "BC mixed"
# what a line keeps of a suite cell: enough to pool seeds exactly (eval.stats.pool_summaries)
KEPT_FIELDS = ("success_rate", *POOLED_FIELDS)
# the settings that make two seeds' lines parts of one recipe (and so of one table)
IDENTITY_FIELDS = ("runs", "obs_mode", "augment", "epochs", "iterations", "runs_per_iteration",
                   "finetune_epochs", "dagger_episodes", "episodes")  # fmt: skip


def dagger_label(iteration: int) -> str:
    """The suite row of DAgger iteration ``iteration`` (1 is the first after BC)."""
    return f"DAgger mixed {iteration}"


# the worlds the recipe records on (and DAgger too, unless --dagger-mixture says otherwise)
RECORDING_MIXTURE = "generalist"
# settings added later: in the identity only away from their default (the value every line
# made before them had), so that those lines keep theirs
OPTIONAL_IDENTITY_FIELDS = {
    "dagger_mixture": RECORDING_MIXTURE, "view": "top_left", "image_size": 64, "fov": 90.0,
}  # fmt: skip


def recipe_identity(config: Any, tracks: Sequence[Track]) -> dict[str, Any]:
    """The recipe's settings that its results depend on, with the suite's version and tracks."""
    identity = {name: getattr(config, name) for name in IDENTITY_FIELDS}
    for name, default in OPTIONAL_IDENTITY_FIELDS.items():
        if getattr(config, name) != default:
            identity[name] = getattr(config, name)
    identity["suite_version"] = SUITE_VERSION
    identity["tracks"] = [track.name for track in tracks]
    return identity


def suite_cells(data: Mapping[str, Any], seeds: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Each seed's own cells, ``{seed: {label: {track: summary}}}``, from ``eval.suite``'s data.

    The suite's rows pool the seeds in ``seeds``' order (``Recipe.suite_rows``); each cell
    keeps every checkpoint's summary in that order. The expert's row is one and the same for
    every seed.
    """
    cells: dict[int, dict[str, Any]] = {seed: {} for seed in seeds}
    for row in data["rows"]:
        for track, cell in row["tracks"].items():
            per_seed = [cell] * len(seeds) if row["label"] == EXPERT else cell["per_checkpoint"]
            if len(per_seed) != len(seeds):
                raise ValueError(f"suite row {row['label']!r} pools {len(per_seed)} checkpoints,"
                                 f" not the {len(seeds)} seeds")  # fmt: skip
            for seed, summary in zip(seeds, per_seed, strict=True):
                kept = {name: summary[name] for name in KEPT_FIELDS}
                cells[seed].setdefault(row["label"], {})[track] = kept
    return cells


def seed_line(
    identity: Mapping[str, Any],
    seed: int,
    *,
    machine: Mapping[str, str],
    bc_frames: int,
    collect_s: float,
    train_s: float,
    dagger: Iterable[Mapping[str, Any]],
    suite: Mapping[str, Any],
) -> dict[str, Any]:
    """One seed's line.

    ``dagger`` is DAgger's rows and ``suite`` the seed's cells (:func:`suite_cells`). Of
    iteration 0 (DAgger's closed-loop check of BC) the line keeps only the wall time,
    ``bc_check_s`` (lines made before it was kept have none).
    """
    dagger = list(dagger)
    line = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipe": dict(identity),
        "seed": seed,
        "machine": dict(machine),
        "bc_frames": bc_frames,
        "collect_s": collect_s,
        "train_s": train_s,
        "dagger": [
            {
                "iteration": row["iteration"],
                "expert_frames": row["expert_frames"],
                "wall_s": row["wall_s"],
            }
            for row in dagger
            if row["iteration"] >= 1
        ],  # fmt: skip
        "suite": dict(suite),
    }
    checks = [row["wall_s"] for row in dagger if row["iteration"] == 0]
    if checks:
        line["bc_check_s"] = checks[0]
    return line


def _all_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` (none if it does not exist); one-line UserErrors for bad ones."""
    if not path.exists():
        return []
    if not path.is_file():
        raise UserError(f"--rows {path} is not a file: give the JSON lines file to keep")
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path} line {number} is not JSON ({error.msg}): restore the file"
                " from git, or delete the line to run that seed again"
            ) from None
        check_format(f"{path} line {number}", line, (FORMAT_VERSION,), UserError, name=FORMAT,
                     kind="generalist seed's line")  # fmt: skip
        lines.append(line)
    return lines


def read_lines(path: Path, identity: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """The lines of ``path`` that belong to the recipe ``identity``, by seed."""
    return {line["seed"]: line for line in _all_lines(path) if line["recipe"] == identity}


def _recipe_and_seed(line: Mapping[str, Any]) -> tuple[str, int]:
    return json.dumps(line["recipe"], sort_keys=True), line["seed"]


def write_lines(path: Path, lines: Sequence[Mapping[str, Any]]) -> None:
    """Add ``lines`` to ``path``, replacing a line of the same recipe and seed."""
    new = {_recipe_and_seed(line) for line in lines}
    kept = [line for line in _all_lines(path) if _recipe_and_seed(line) not in new]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(json.dumps(line) + "\n" for line in [*kept, *lines]))


def labels(line: Mapping[str, Any]) -> list[str]:
    """A line's suite rows in table order: the expert, BC, then DAgger's iterations."""
    return [EXPERT, BC, *(dagger_label(row["iteration"]) for row in line["dagger"])]


def pooled_suite(lines: Sequence[Mapping[str, Any]], tracks: Sequence[Track]) -> dict[str, Any]:
    """The suite table's data (as ``eval.suite`` makes it) with each row pooled over ``lines``.

    The expert's row is the first line's: the expert flies the same episodes for every seed.
    """
    names = [track.name for track in tracks]
    rows = [
        {
            "label": EXPERT,
            "checkpoints": [],
            "tracks": {n: pool_summaries([lines[0]["suite"][EXPERT][n]]) for n in names},
        }
    ]
    for label in labels(lines[0])[1:]:
        cells = {n: pool_summaries([line["suite"][label][n] for line in lines]) for n in names}
        seeds = [f"seed {line['seed']}" for line in lines]
        rows.append({"label": label, "checkpoints": seeds, "tracks": cells})
    return {
        "suite_version": lines[0]["recipe"]["suite_version"],
        "tracks": [track.to_dict() for track in tracks],
        "episodes": lines[0]["recipe"]["episodes"],
        "rows": rows,
    }


def suite_block(data: Mapping[str, Any], command: str) -> str:
    """The suite table of :func:`pooled_suite`'s data, as markdown."""
    return suite_markdown(dict(data), generated_by=command, pooled="seeds")


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def recipe_block(lines: Sequence[Mapping[str, Any]], command: str) -> str:
    """Markdown: each recipe's expert-labelled frames and wall time, mean over the seeds."""
    table = [
        "| recipe | expert-labelled frames | wall time per seed |",
        "|---|---|---|",
    ]
    bc_wall = _mean([line["collect_s"] + line["train_s"] for line in lines])
    frames = _mean([line["bc_frames"] for line in lines])
    table.append(f"| {BC} | {frames:,.0f} | {_minutes(bc_wall)} |")
    wall = bc_wall
    # DAgger's check of BC before its first iteration, where every line kept it
    checked = bool(lines[0]["dagger"]) and all("bc_check_s" in line for line in lines)
    if checked:
        wall += _mean([line["bc_check_s"] for line in lines])
    for index, row in enumerate(lines[0]["dagger"]):
        at = [line["dagger"][index] for line in lines]
        wall += _mean([r["wall_s"] for r in at])
        frames = _mean([r["expert_frames"] for r in at])
        table.append(f"| {dagger_label(row['iteration'])} | {frames:,.0f} | {_minutes(wall)} |")
    machines = sorted({f"{line['machine']['cpu']}, {line['machine']['kernels']}"
                       for line in lines})  # fmt: skip
    table += [
        "",
        f"Generated by `{command}`: the recording is shared by the seeds and counted once;"
        " wall time cumulative down the table, on the machine that ran each seed"
        f" ({'; '.join(machines)})"
        + (", DAgger's including its closed-loop check of BC before iteration 1." if checked
           else "."),
    ]  # fmt: skip
    return "\n".join(table) + "\n"
