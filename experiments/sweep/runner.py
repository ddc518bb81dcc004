"""Sweeps: ``python -m experiments.sweep SPEC.toml`` (docs/sweeps.md).

A sweep runs trials, each one ``expert.collect`` -> ``bc.train`` -> ``eval.rollout`` with the
flags its spec gives it: fixed flags, a grid and/or random samples over any flag of the three
commands, crossed with seeds. A short form works without a file::

    python -m experiments.sweep --grid train.frames=1,3 --seeds 0,1,2 --set train.epochs=2

Everything is checked before anything runs (unknown flags, values a command refuses, an
empty grid, an unreachable Ray address, a missing ``init_from`` checkpoint of a trial still to
run: one ``error:`` line, exit 2). Datasets are recorded
once per distinct collect config (``OUT/datasets/<fingerprint>/``) before the trials that
read them; each trial runs in a process of its own and leaves ``OUT/trials/<id>/`` (its job,
log, training run, evaluation and ``result.json``). ``OUT/results.jsonl`` and
``OUT/results.md`` are rewritten after every trial, and so is the spec's ``rows`` file if it
names one: the result rows to commit, so that the report regenerates from a fresh clone.

Rerunning the same command skips finished trials, those of ``OUT/trials/`` and those of the
``rows`` file (a fresh clone resumes where the committed rows end): a sweep killed even with
SIGKILL loses only the trials in flight. A failed trial is reported with the end of its log
and the others go on; the sweep then exits 1. ``--backend ray`` runs the same jobs as Ray
tasks (a local Ray, or the cluster at ``--address``), each holding the spec's
``[resources]``.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from artifacts.atomic import write_json_atomic
from bc.transfer import parse_init_from
from configflags import CommandFailed, UserError
from dataset import DatasetError, read_manifest
from eval.compare_table import check_table_into, write_table_into
from experiments.sweep.backends import Job, make_backend
from experiments.sweep.config import SweepConfig
from experiments.sweep.results import (
    groups_table,
    page_table,
    plan_table,
    read_rows,
    rows_table,
    write_results,
)
from experiments.sweep.spec import SweepSpec, Trial
from experiments.sweep.spec_sources import resolve_spec
from experiments.sweep.trial import (
    JOB_FILE,
    LOG_FILE,
    RESULT_FILE,
    dataset_dir,
    trial_dir,
)

SPEC_FILE = "sweep.json"
LOCK_FILE = ".lock"
LOG_TAIL_LINES = 15


@dataclass
class SweepResult:
    """What ``main`` returns: rows of finished trials in spec order, failures, timings."""

    out: Path
    trials: list[Trial]
    rows: list[dict[str, Any]]
    failed: dict[str, str] = field(default_factory=dict)
    ran: list[str] = field(default_factory=list)  # ids this call ran, in the order they ended
    elapsed_s: float = 0.0
    trials_s: float = 0.0  # from the first trial started to the last one finished


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no log)"
    text = path.read_text(errors="replace").rstrip().splitlines()
    return "\n".join(text[-lines:]) or "(empty log)"


def _dataset_ready(directory: Path, key: str) -> bool:
    try:
        manifest = read_manifest(directory)
    except DatasetError:
        return False
    return bool(manifest.get("complete")) and manifest.get("config_hash") == key


def committed_rows(spec: SweepSpec, trials: list[Trial]) -> dict[str, dict[str, Any]]:
    """The rows of the spec's ``rows`` file whose trials the spec still makes, by trial id."""
    if spec.rows is None or not Path(spec.rows).is_file():
        return {}
    rows = read_rows(Path(spec.rows), "; restore it from git")
    ids = {trial.id for trial in trials}
    return {row["trial"]: row for row in rows if row.get("trial") in ids}


def _finished_row(root: Path, trial: Trial) -> dict[str, Any] | None:
    path = trial_dir(root, trial.id) / RESULT_FILE
    try:
        row = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return row if row.get("trial") == trial.id else None


class Sweep:
    """One call's work on a sweep folder: what is done, what runs next, what came out."""

    def __init__(self, spec: SweepSpec, trials: list[Trial], out: Path, console: Console) -> None:
        self.spec, self.trials, self.out, self.console = spec, trials, out, console
        self.committed = Path(spec.rows) if spec.rows else None
        self.rows = committed_rows(spec, trials)
        self.rows.update({t.id: row for t in trials if (row := _finished_row(out, t)) is not None})
        self.failed: dict[str, str] = {}
        self.ran: list[str] = []
        self.waiting = [t for t in trials if t.id not in self.rows]
        keys = list(dict.fromkeys(t.dataset for t in self.waiting))
        self.ready = {k for k in keys if _dataset_ready(dataset_dir(out, k), k)}
        self.datasets = [k for k in keys if k not in self.ready]
        self.first_trial_at: float | None = None
        self.cwd = str(Path.cwd())

    def check_init_sources(self) -> None:
        """Refuse, before anything runs, a waiting trial whose ``--init-from`` file is missing.

        Such a path names another sweep's checkpoint (``transfer_target.toml`` reads
        ``transfer_source.toml``'s); without it every trial would fail once it had started.
        """
        for trial in self.waiting:
            for source in trial.flags["train"].get("init_from") or ():
                path, _ = parse_init_from(source)
                if not (Path(self.cwd) / path).is_file():  # where the trials' jobs will run
                    raise UserError(
                        f"trial {trial.label}: train.init_from {path} does not exist (paths are"
                        f" relative to {self.cwd}); run the sweep that makes it first, or fix"
                        " the path in the spec"
                    )

    def _dataset_job(self, key: str) -> Job:
        trial = next(t for t in self.waiting if t.dataset == key)
        folder = self.out / "datasets"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{key}.json"
        write_json_atomic(path, {"kind": "dataset", "collect": trial.flags["collect"],
                                 "out": str(dataset_dir(self.out, key)),
                                 "cpus": self.spec.cpus})  # fmt: skip
        return Job(f"dataset:{key}", path, folder / f"{key}.log", self.cwd)

    def _trial_job(self, trial: Trial) -> Job:
        directory = trial_dir(self.out, trial.id)
        shutil.rmtree(directory, ignore_errors=True)  # what a killed run of it left
        directory.mkdir(parents=True)
        path = directory / JOB_FILE
        write_json_atomic(path, {"kind": "trial", "sweep": self.spec.name, "trial": trial.to_dict(),
                                 "root": str(self.out), "cpus": self.spec.cpus})  # fmt: skip
        return Job(f"trial:{trial.id}", path, directory / LOG_FILE, self.cwd)

    def next_job(self) -> Job | None:
        """The next job whose inputs are ready: datasets first, then trials in spec order."""
        if self.datasets:
            return self._dataset_job(self.datasets.pop(0))
        for trial in self.waiting:
            if trial.dataset in self.ready:
                self.waiting.remove(trial)
                if self.first_trial_at is None:
                    self.first_trial_at = time.perf_counter()
                return self._trial_job(trial)
        return None

    def finished(self, job: Job, code: int) -> None:
        """Record a job's outcome; a failure is printed with the end of its log."""
        kind, _, key = job.key.partition(":")
        if kind == "dataset":
            if code == 0 and _dataset_ready(dataset_dir(self.out, key), key):
                self.ready.add(key)
                return
            self._report(f"dataset {key} failed (exit {code})", job.log)
            for trial in [t for t in self.waiting if t.dataset == key]:
                self.waiting.remove(trial)
                self.failed[trial.id] = f"its dataset failed: see datasets/{key}.log"
        else:
            trial = next(t for t in self.trials if t.id == key)
            self.ran.append(key)
            row = _finished_row(self.out, trial) if code == 0 else None
            if row is not None:
                self.rows[key] = row
            else:
                last = _log_tail(job.log, 1)
                self.failed[key] = f"exit {code}: {last} (log: trials/{key}/{LOG_FILE})"
                self._report(f"trial {key} ({trial.label}) failed (exit {code})", job.log)
        self.write()

    def write(self) -> None:
        """Rewrite the sweep's results files (and the committed rows) from the rows so far."""
        write_results(self.out, self.spec.name, self.trials, self.rows, self.failed,
                      self.committed)  # fmt: skip

    def _report(self, what: str, log: Path) -> None:
        self.console.print(f"[bold red]{what}[/]; the end of {log}:", highlight=False)
        self.console.print(_log_tail(log), markup=False, highlight=False)

    @property
    def pending(self) -> bool:
        return bool(self.datasets or self.waiting)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("running {task.fields[running]}"),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )


def run_sweep(sweep: Sweep, backend: Any, quiet: bool) -> None:
    """Submit jobs as the backend has room and their inputs are ready, until all are done."""
    running: dict[str, Job] = {}
    with _progress(quiet) as progress:
        sweep.console = progress.console  # failures print above the bar, even when quiet
        task = progress.add_task(
            "trials", total=len(sweep.trials), completed=len(sweep.rows), running=0, failed=0
        )
        while sweep.pending or running:
            while len(running) < backend.capacity and (job := sweep.next_job()) is not None:
                backend.submit(job)
                running[job.key] = job
            if not running and sweep.waiting:
                # nothing could start: cannot happen while every dataset is ready or failed
                # its trials, but a loop waiting on nothing must not hang the sweep
                for trial in sweep.waiting:
                    sweep.failed[trial.id] = "its dataset was never recorded"
                sweep.waiting.clear()
            for job, code in backend.wait(timeout=0.5):
                running.pop(job.key)
                sweep.finished(job, code)
            staging = sum(key.startswith("dataset:") for key in running)
            progress.update(
                task,
                description="trials" + (f" (recording {staging} dataset(s))" if staging else ""),
                completed=len(sweep.rows) + len(sweep.failed),
                running=len(running) - staging,
                failed=len(sweep.failed),
            )


def _lock(out: Path) -> Any:
    out.mkdir(parents=True, exist_ok=True)
    handle = open(out / LOCK_FILE, "w")  # noqa: SIM115 - held until the sweep ends
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"another sweep is running in {out}; wait for it") from None
    return handle


def sweep_command(config: SweepConfig, table_name: str) -> str:
    """The command line that regenerates the page table, for the note under it."""
    words = ["python -m experiments.sweep"]
    if config.spec is not None:
        words.append(str(config.spec))
    words += [f"--grid {item}" for item in config.grid]
    words += [f"--set {item}" for item in config.fixed]
    words += [f"--random '{item}'" for item in config.random]
    if config.seeds:
        words.append(f"--seeds {config.seeds}")
    if config.name:
        words.append(f"--name {config.name}")
    words.append(f"--table-into {config.table_into}")
    if config.table_name:
        words.append(f"--table-name {table_name}")
    return " ".join(words)


def budget_line(spec: SweepSpec, trials: int) -> str:
    """What the spec's ``[budget]`` says before anything runs (or that it has none)."""
    if spec.budget_minutes is None:
        return f"budget of {spec.name}: none given ({trials} trials); see docs/sweeps.md"
    line = (
        f"budget of {spec.name}: {trials} trials in about {spec.budget_minutes:g} min on the"
        " 2-core machine"
    )
    return f"{line}; rule: {spec.budget_rule}" if spec.budget_rule else line


def main(config: SweepConfig) -> SweepResult:
    """Run (or resume) the sweep; write its results; return them.

    Raises ``CommandFailed`` (exit 1) at the end if any trial failed.
    """
    started = time.perf_counter()
    spec = resolve_spec(config)
    trials = spec.trials()
    out = Path(config.out or spec.out or Path("sweeps") / spec.name).resolve()
    console = Console(quiet=config.quiet)
    datasets = len({t.dataset for t in trials})
    table_name = config.table_name or spec.name
    if config.table_into is not None:
        check_table_into(config.table_into, table_name)  # before any work, not after it
    console.print(budget_line(spec, len(trials)), highlight=False)
    if config.dry_run:
        console.print(plan_table(f"{spec.name}: {len(trials)} trials, {datasets} dataset(s)",
                                 trials))  # fmt: skip
        return SweepResult(out, trials, [])
    backend = make_backend(config.backend, config.address, config.workers, spec.cpus,
                           spec.gpus)  # fmt: skip
    try:
        lock = _lock(out)
        try:
            sweep = Sweep(spec, trials, out, console)
            sweep.check_init_sources()
            write_json_atomic(out / SPEC_FILE, {**spec.to_dict(), "trials": [t.id for t in trials]})
            console.print(
                f"sweep {spec.name}: {len(trials)} trials ({len(sweep.rows)} done before),"
                f" {datasets} dataset(s), {backend.describe()}; results in {out}",
                highlight=False,
            )
            try:
                run_sweep(sweep, backend, config.quiet)
            finally:
                sweep.write()
        finally:
            lock.close()
    finally:
        backend.close()
    ended = time.perf_counter()
    rows = [sweep.rows[t.id] for t in trials if t.id in sweep.rows]
    result = SweepResult(out, trials, rows, sweep.failed, sweep.ran, ended - started,
                         ended - (sweep.first_trial_at or ended))  # fmt: skip
    console.print(rows_table(f"sweep {spec.name}", trials, sweep.rows, sweep.failed))
    if rows:
        console.print(groups_table(rows))
    console.print(f"results in {out} (results.jsonl, results.md, trials/)", highlight=False)
    if config.table_into is not None and len(rows) == len(trials):
        command = sweep_command(config, table_name)
        write_table_into(config.table_into, page_table(trials, rows, command), table_name)
        console.print(f"table {table_name} written into {config.table_into}", highlight=False)
    elif config.table_into is not None:
        console.print(f"{config.table_into} left as it was: {len(trials) - len(rows)} of"
                      f" {len(trials)} trials have no result", highlight=False)  # fmt: skip
    if sweep.failed:
        raise CommandFailed(
            f"{len(sweep.failed)} of {len(trials)} trials failed ({', '.join(sweep.failed)});"
            f" their logs are in {out}/trials/; rerun the same command to retry them"
        )
    return result
