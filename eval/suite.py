"""The generalisation suite: fly policies (and the expert) on a fixed set of tracks.

``python -m eval.suite`` with no arguments flies the newest run's ``last`` checkpoint on every
track of ``eval.tracks`` (its own world, random textures, held-out texture families,
obstacles, long corridors, light outside the training range, narrow corridors, and all of
them at once), 100 episodes each, and prints one row per policy and one column per track:
success with its 95% Wilson interval, then progress and collisions. Give policies as
arguments: ``expert``, a run folder, a ``.pt`` checkpoint, an exported ``.onnx`` /
``.torchscript`` file, or ``LABEL=PATH,PATH,...`` to pool several (training seeds) into one
row, whose cells then count every seed's episodes.

Each worker flies ``--batch`` episodes side by side and the policy decides for all of them
in one forward pass (``eval.episode_group``), so the suite runs close to the env's own
speed; one checkpoint's tracks fly together in one pool (``eval.fly.fly_together``), so the
batch stays full from track to track and the workers start once per checkpoint. Every flight
(one checkpoint on one track) is written to ``OUT/flights/``; a rerun reuses the flights
whose checkpoint file, track definition, episodes and batch are unchanged, so an interrupted
suite loses at most the checkpoint in progress (its tracks still to fly). The table goes
to ``OUT/suite.json``, ``OUT/suite.md`` and ``OUT/suite.png``, and with ``--table-into`` into
a marker block of a results page.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from artifacts.atomic import write_text_atomic
from artifacts.formats import check_format
from artifacts.markdown_block import write_block
from bc.checkpoint_names import DEFAULT_CHECKPOINT
from configflags import option, run_main
from eval.errors import EvalError
from eval.fly import HeldOutWorlds, Pilot, fly_together, load_pilot
from eval.run_files import (
    CHECKPOINTS,
    DEFAULT_RUNS_DIR,
    newest_run,
    read_json,
    resolve_checkpoint,
    write_json,
)
from eval.stats import summarize
from eval.suite_report import plot_suite, suite_markdown, suite_table
from eval.tracks import SUITE_VERSION, TRACK_NAMES, Track, tracks_from_flag

FORMAT = "corridor-bc suite"
FLIGHT_FORMAT = "corridor-bc suite flight"
FORMAT_VERSION = 1
EXPERT = "expert"
DEFAULT_OUT = Path("runs/suite")
DEFAULT_BATCH = 16


@dataclass(frozen=True)
class SuiteConfig:
    """Which policies fly which tracks, how, and where the results go."""

    policies: tuple[str, ...] = option(
        (), "expert, a run folder, a checkpoint or exported file, or LABEL=PATH,PATH,... (one"
        " row over several, e.g. training seeds); default: the newest run", positional=True,
    )  # fmt: skip
    tracks: str = option("", f"comma-separated tracks (default: all: {', '.join(TRACK_NAMES)})")
    episodes: int = option(100, "episodes per track and checkpoint")
    which: str = option(
        DEFAULT_CHECKPOINT, "checkpoint of a run folder", choices=tuple(CHECKPOINTS)
    )
    workers: int = option(0, "worker processes (0: one per usable core)")
    batch: int = option(
        DEFAULT_BATCH, "episodes each worker flies side by side, deciding in one forward pass"
    )
    agreement: bool = option(
        False, "label every visited state with the expert too (agreement; about 1.5x slower)"
    )
    runs_dir: Path = option(DEFAULT_RUNS_DIR, "where runs are found (for the default policy)")
    out: Path = option(DEFAULT_OUT, "folder of the flights and the table")
    table_into: Path | None = option(
        None, "markdown page that gets the table between the --table-name markers"
    )
    table_name: str = option("suite", "block of --table-into: <!-- NAME:start --> ... end")
    quiet: bool = option(False, "no progress bar or table")

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise EvalError(f"--episodes must be >= 1, got {self.episodes}")
        if self.workers < 0:
            raise EvalError(f"--workers must be >= 0 (0: the usable cores), got {self.workers}")
        if self.batch < 1:
            raise EvalError(f"--batch must be >= 1, got {self.batch}")
        try:
            tracks_from_flag(self.tracks)
        except ValueError as error:
            raise EvalError(f"--tracks: {error}") from None


@dataclass(frozen=True)
class Row:
    """One row of the table: a label and the checkpoints it pools (none: the expert)."""

    label: str
    checkpoints: tuple[Path, ...] = ()

    @property
    def expert(self) -> bool:
        return not self.checkpoints

    @property
    def slug(self) -> str:
        """The label as a folder name (``OUT/flights/SLUG``)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.label)


def _checkpoint(text: str, which: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise EvalError(f"policy {text} does not exist (a run folder, a .pt or exported file)")
    if path.is_dir():
        return resolve_checkpoint(path, None, which)[0]
    return path


def _default_label(path: Path) -> str:
    parent = path.resolve().parent
    run = parent.parent if parent.name == "checkpoints" else parent
    return f"{run.name}/{path.stem}"


def parse_rows(config: SuiteConfig) -> list[Row]:
    """The rows the policy arguments ask for, in order; one-line errors for bad ones."""
    given = config.policies or [str(newest_run(config.runs_dir))]
    rows = []
    for text in given:
        if text == EXPERT:
            rows.append(Row(EXPERT))
            continue
        label, _, paths = text.rpartition("=")
        checkpoints = tuple(_checkpoint(p, config.which) for p in paths.split(",") if p)
        if not checkpoints:
            raise EvalError(f"policy {text!r} names no checkpoint: LABEL=PATH[,PATH...]")
        rows.append(Row(label or _default_label(checkpoints[0]), checkpoints))
    slugs = [row.slug for row in rows]
    repeated = sorted({row.label for row in rows if slugs.count(row.slug) > 1})
    if repeated:
        raise EvalError(
            f"two rows are labelled {repeated[0]!r} (or alike as a folder name): give one"
            " LABEL=PATH"
        )
    return rows


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@dataclass
class PlannedFlight:
    """One checkpoint (or the expert) on one track: where its result goes, what it is."""

    row: Row
    checkpoint: Path | None
    track: Track
    path: Path
    identity: dict[str, Any] = field(default_factory=dict)


def plan_flights(
    rows: list[Row], tracks: tuple[Track, ...], config: SuiteConfig
) -> list[PlannedFlight]:
    """Every flight, track-major; each with the identity a reusable result must match."""
    flights = []
    for row in rows:
        checkpoints: tuple[Path | None, ...] = row.checkpoints or (None,)
        digests = {c: None if c is None else _digest(c) for c in checkpoints}
        for position, checkpoint in enumerate(checkpoints):
            # named by what flies, not by its place in the row: a checkpoint's flights are
            # found again when the row pools other seeds around it
            digest = digests[checkpoint]
            repeat = [digests[c] for c in checkpoints[:position]].count(digest)
            stem = ("expert" if digest is None else digest) + (f".{repeat}" if repeat else "")
            for track in tracks:
                identity = {
                    "suite_version": SUITE_VERSION,
                    "track": track.to_dict(),
                    "episodes": config.episodes,
                    "batch": config.batch,
                    "agreement": config.agreement,
                    "checkpoint_sha256": digest,
                }
                path = config.out / "flights" / row.slug / f"{stem}_{track.name}.json"
                flights.append(PlannedFlight(row, checkpoint, track, path, identity))
    return flights


def _reusable(flight: PlannedFlight) -> dict[str, Any] | None:
    if not flight.path.is_file():
        return None
    try:
        data = read_json(flight.path)
        check_format(str(flight.path), data, (FORMAT_VERSION,), EvalError, name=FLIGHT_FORMAT,
                     kind="suite flight")  # fmt: skip
    except EvalError:
        return None
    return data if data.get("identity") == flight.identity else None


def _pilot(flight: PlannedFlight) -> Pilot:
    return load_pilot(flight.checkpoint, expert=flight.row.expert,
                      env_overrides=flight.track.overrides)  # fmt: skip


def _fly_group(
    planned: list[PlannedFlight], config: SuiteConfig, on_result: Any
) -> list[dict[str, Any]]:
    """Fly one checkpoint's flights in one pool; write and return each flight's data."""
    pilots = [_pilot(flight) for flight in planned]
    worlds = [HeldOutWorlds(seed=f.track.seed, episodes=config.episodes) for f in planned]
    flown = fly_together(pilots, worlds, workers=config.workers, batch=config.batch,
                         agreement=config.agreement, on_result=on_result)  # fmt: skip
    steps = sum(done.summary["total_steps"] for done in flown)
    results = []
    for flight, pilot, done in zip(planned, pilots, flown, strict=True):
        data = {
            "format": FLIGHT_FORMAT,
            "format_version": FORMAT_VERSION,
            "identity": flight.identity,
            "row": flight.row.label,
            "checkpoint": None if flight.checkpoint is None else str(flight.checkpoint),
            "env_kwargs": pilot.env_kwargs,
            "workers": done.workers,
            # the flights of a checkpoint fly together: each gets its steps' share of the time
            "seconds": done.seconds * done.summary["total_steps"] / steps,
            "summary": done.summary,
            "records": [record.to_dict() for record in done.records],
        }
        write_json(flight.path, data)
        results.append(data)
    return results


def _cell(flights: list[dict[str, Any]]) -> dict[str, Any]:
    """One table cell: the pooled summary of a row's checkpoints on a track, and each's rate."""
    records = [record for data in flights for record in data["records"]]
    summary = summarize(records)
    summary["per_checkpoint_success"] = [data["summary"]["success_rate"] for data in flights]
    # each checkpoint's own summary, in the row's order (experiments.generalist keeps them)
    summary["per_checkpoint"] = [data["summary"] for data in flights]
    summary["seconds"] = sum(data["seconds"] for data in flights)
    return summary


@dataclass
class SuiteResult:
    """What one call produced: the table data and where it was written."""

    data: dict[str, Any]
    json_path: Path
    markdown_path: Path
    plot_path: Path


def main(config: SuiteConfig) -> SuiteResult:
    """Fly what is not flown yet, then write and print the table."""
    started = time.perf_counter()
    console = Console(stderr=True, quiet=config.quiet)
    tracks = tracks_from_flag(config.tracks)
    rows = parse_rows(config)
    flights = plan_flights(rows, tracks, config)
    results: dict[int, dict[str, Any]] = {}
    todo = []
    for index, flight in enumerate(flights):
        reused = _reusable(flight)
        if reused is None:
            todo.append(index)
        else:
            results[index] = reused
    if results:
        console.print(f"reusing {len(results)} of {len(flights)} flights from {config.out}")
    # every checkpoint is loaded and checked against every track before anything flies
    for index in todo:
        _pilot(flights[index])
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=console, transient=True, disable=config.quiet,
    ) as progress:  # fmt: skip
        bar = progress.add_task("suite episodes", total=len(todo) * config.episodes)
        groups: dict[tuple[str, Path | None], list[int]] = {}
        for index in todo:
            groups.setdefault((flights[index].row.label, flights[index].checkpoint), []).append(
                index
            )
        for (label, _), indices in groups.items():
            progress.update(bar, description=f"{label}: {len(indices)} tracks")
            group_started = time.perf_counter()
            flown = _fly_group([flights[i] for i in indices], config,
                               lambda _: progress.advance(bar))  # fmt: skip
            results.update(zip(indices, flown, strict=True))
            console.print(
                f"flew {label}: {len(indices)} tracks x {config.episodes} episodes in"
                f" {time.perf_counter() - group_started:.0f} s"
            )
    table_rows = []
    for row in rows:
        cells = {}
        for track in tracks:
            chosen = [
                results[i] for i, f in enumerate(flights) if f.row == row and f.track == track
            ]
            cells[track.name] = _cell(chosen)
        checkpoints = [str(c) for c in row.checkpoints]
        table_rows.append({"label": row.label, "checkpoints": checkpoints, "tracks": cells})
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "suite_version": SUITE_VERSION,
        "tracks": [track.to_dict() for track in tracks],
        "episodes": config.episodes,
        "batch": config.batch,
        "rows": table_rows,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": time.perf_counter() - started,
    }
    json_path = config.out / "suite.json"
    write_json(json_path, data)
    markdown = suite_markdown(data)
    markdown_path = config.out / "suite.md"
    write_text_atomic(markdown_path, markdown)
    plot_path = plot_suite(data, config.out / "suite.png")
    if config.table_into is not None:
        write_block(config.table_into, config.table_name, markdown, "--table-into", EvalError)
    if not config.quiet:
        Console().print(suite_table(data))
        print(f"results: {json_path}, {markdown_path}, {plot_path}")
    return SuiteResult(data, json_path, markdown_path, plot_path)


def load_suite(path: Path) -> dict[str, Any]:
    """A ``suite.json`` (one-line EvalError if it is not one)."""
    data = read_json(path)
    check_format(str(path), data, (FORMAT_VERSION,), EvalError, name=FORMAT, kind="suite")
    return data


if __name__ == "__main__":
    run_main(main, SuiteConfig, "python -m eval.suite", __doc__, interrupted="interrupted")
