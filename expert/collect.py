"""Record expert demonstrations: ``python -m expert.collect --runs 10``.

Writes a dataset in the format of docs/dataset.md (default ``data/default``, which
``python -m bc.train`` reads with no arguments). Run ``i`` always flies world
``envs.seeds.collect_seed(seed, i)`` with the expert's noise drawn from a generator seeded by
that world seed, so the dataset's content does not depend on ``--workers`` or on
interruptions.

Which runs are kept: a run is an attempt at one world. It is dropped when its outcome is not
kept (``--keep goal``, the default, keeps only runs that reached the goal, as the original
study did) or its length is outside ``[--min-steps, --max-steps]``; its index is then used up
and the next index tried. Kept runs, in index order, fill the splits: the first ``--val-runs``
are validation, the next ``--test-runs`` test, the rest training, until ``--runs`` runs are
kept or the training frames reach ``--max-frames`` (the last training run is cut to meet the
budget exactly). Collections with the same seed therefore share their validation and test
runs, and a smaller budget's training runs are a prefix of a larger one's.

Recorders run as local processes (``--workers``), or with ``--backend ray`` as Ray actors on
a Ray cluster (a local one unless ``--address`` is given): each sends its kept run files back
and this process publishes them, so no shared filesystem is needed, and the dataset holds the
same content as a local collection with the same seed (``content_hash``).

Resuming: the manifest is rewritten (atomically) after every finished run, and run files are
published atomically; rerunning the same command keeps finished runs and records the missing
ones. A different config into the same ``--out`` is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from configflags import run_main
from dataset import OUTCOMES, SPLITS, load_run, read_manifest, temp_files
from dataset.previews import write_run_preview
from expert.collect_config import CollectConfig
from expert.dataset_dir import DatasetDirectory
from expert.plan import Plan
from expert.recorder import RecordingJob, RunRecorder
from expert.workers import (
    RayRecorderPool,
    RecordingError,
    WorkerPool,
    check_ray_address,
    import_ray,
)


@dataclass(frozen=True)
class CollectResult:
    """What ``main`` returns."""

    out: Path
    manifest: dict[str, Any]
    frames: int
    kept: int
    dropped: int
    recorded_frames: int
    elapsed_s: float

    @property
    def frames_per_s(self) -> float:
        """Frames recorded by this call per second of wall time (adopted runs excluded)."""
        return self.recorded_frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


class _Display:
    """Rich progress: kept runs, frames, frames/s, expert success; silent when quiet."""

    def __init__(self, quiet: bool, total: int | None, label: str) -> None:
        self.progress = None
        self.frames = 0
        self.start = time.perf_counter()
        if quiet:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} " + label),
            TextColumn("{task.fields[frames]:,} frames"),
            TextColumn("{task.fields[rate]:,.0f} frames/s"),
            TextColumn("expert success {task.fields[success]}"),
            TextColumn("dropped {task.fields[dropped]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(
            "collect", total=total, frames=0, rate=0.0, success="-", dropped=0
        )
        self.progress.start()

    def add_frames(self, count: int) -> None:
        self.frames += count
        self.refresh()

    def refresh(self, completed: int | None = None, results: dict | None = None) -> None:
        if self.progress is None:
            return
        fields: dict[str, Any] = {
            "frames": self.frames,
            "rate": self.frames / max(time.perf_counter() - self.start, 1e-9),
        }
        if results is not None:
            finished = list(results.values())
            goals = sum(r.outcome == "goal" for r in finished)
            fields["success"] = f"{goals / len(finished):.0%}" if finished else "-"
            fields["dropped"] = sum(not r.kept for r in finished)
        if completed is not None:
            fields["completed"] = completed
        self.progress.update(self.task, **fields)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _progress_total(config: CollectConfig) -> tuple[int | None, str]:
    if config.target_runs is not None:
        return config.target_runs, "runs"
    return config.max_frames, "training frames"


def _completed(plan: Plan, config: CollectConfig) -> int:
    return len(plan.entries) if config.target_runs is not None else plan.train_frames


def main(config: CollectConfig) -> CollectResult:
    """Record (or resume) the dataset described by ``config``; returns what it holds."""
    start = time.perf_counter()
    if config.backend == "ray":  # before the directory is touched: a missing extra, a bad address
        import_ray("expert.collect --backend ray")
        check_ray_address(config.address)
    directory = DatasetDirectory(config)
    try:
        directory.open()
        job = RecordingJob.from_config(config, directory.fingerprint)
        plan, recorded_frames = _record(directory, job)

        def previews(indices: list[int]) -> None:
            _make_previews(config, job, indices)

        manifest = directory.finalize(plan, previews if config.video else None)
    finally:
        directory.close()
    result = CollectResult(
        Path(config.out),
        manifest,
        manifest["frames"]["total"],
        len(manifest["runs"]),
        len(manifest["dropped"]),
        recorded_frames,
        time.perf_counter() - start,
    )
    if not config.quiet:
        print_summary(result)
    return result


def _record(directory: DatasetDirectory, job: RecordingJob) -> tuple[Plan, int]:
    """Record attempts until the plan is done; returns it and the frames recorded."""
    config = directory.config
    total, label = _progress_total(config)
    display = _Display(config.quiet, total, label)
    recorded_frames = 0
    pool: WorkerPool | RayRecorderPool | None = None
    recorder: RunRecorder | None = None
    try:
        # one worker records in this process: no start-up cost, same content
        if config.backend == "ray":
            pool = RayRecorderPool(config.workers, job, config.address)
        elif config.workers > 1:
            pool = WorkerPool(config.workers, job)
        else:
            recorder = RunRecorder(job)
        in_flight: set[int] = set()
        while True:
            plan = directory.plan()
            display.refresh(_completed(plan, config), directory.results)
            if plan.done:
                return plan, recorded_frames
            indices = directory.next_indices(plan, in_flight)
            while len(in_flight) < config.workers and not (
                in_flight and directory.enough_in_flight(plan, len(in_flight))
            ):
                index = next(indices)
                in_flight.add(index)
                if pool is not None:
                    pool.submit("record", index)
            if recorder is not None:
                (index,) = in_flight
                events = [("done", index, recorder.record(index, display.add_frames))]
            else:
                event = pool.next_event(timeout=0.2)
                events = [] if event is None else [event]
            for kind, index, payload in events:
                if kind == "progress":
                    display.add_frames(payload)
                elif kind == "error":
                    raise RecordingError(f"recording run {index} failed: {payload[0]}", payload[1])
                elif kind == "done":
                    in_flight.discard(index)
                    directory.results[index] = payload
                    recorded_frames += payload.frames
                    directory.write_manifest(complete=False)
    finally:
        display.stop()
        if pool is not None:
            # runs still in flight lie beyond the dataset (or we were interrupted): stop them
            pool.close()
        if recorder is not None:
            recorder.close()
        for leftover in temp_files(config.out):
            leftover.unlink(missing_ok=True)


def _make_previews(config: CollectConfig, job: RecordingJob, indices: list[int]) -> None:
    """Previews of the given runs, in parallel when there are several workers."""
    if not indices:
        return
    fps = job.env_kwargs["control_hz"]
    # previews are made here from the published files, whatever the backend recorded them
    workers = min(config.workers, len(indices), os.cpu_count() or 1)
    if workers == 1:
        for index in indices:
            write_run_preview(config.out, index, config.video_format, fps)
        return
    pool = WorkerPool(workers, job)
    try:
        for index in indices:
            pool.submit("preview", index)
        pending = set(indices)
        while pending:
            event = pool.next_event(timeout=0.5)
            if event is None:
                continue
            kind, index, payload = event
            if kind == "error":
                raise RecordingError(f"preview of run {index} failed: {payload[0]}", payload[1])
            pending.discard(index)
    finally:
        pool.close()


def content_hash(directory: Path) -> str:
    """A fingerprint of what a dataset holds: its runs, splits and every array and attribute.

    Equal for two collections that recorded the same thing however they ran (workers, backend,
    interruptions); the manifest's package versions and run files' byte layout do not count.
    """
    manifest = read_manifest(Path(directory))
    digest = hashlib.sha256()
    digest.update(json.dumps(manifest["splits"], sort_keys=True).encode())
    for entry in manifest["runs"]:
        data = load_run(Path(directory) / entry["file"])
        attrs = data.pop("attrs")
        digest.update(json.dumps([entry, attrs], sort_keys=True, default=str).encode())
        _digest_value(digest, "run", data)
    return digest.hexdigest()[:16]


def _digest_value(digest: Any, name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key in sorted(value):
            _digest_value(digest, f"{name}.{key}", value[key])
    elif isinstance(value, np.ndarray):
        digest.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(f"{name}={json.dumps(value, sort_keys=True, default=str)}".encode())


def print_summary(result: CollectResult) -> None:
    """A table of the dataset by split, and the collection's figures."""
    from rich.console import Console
    from rich.table import Table

    manifest = result.manifest
    table = Table(title=f"{result.out}: {result.kept} runs, {result.frames:,} frames")
    for column in ("split", "runs", "frames", "goal", "collision", "timeout"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in SPLITS:
        entries = [e for e in manifest["runs"] if e["split"] == split]
        table.add_row(
            split,
            str(len(entries)),
            f"{sum(e['frames'] for e in entries):,}",
            *(str(sum(e["outcome"] == o for e in entries)) for o in OUTCOMES),
        )
    console = Console()
    console.print(table)
    success = manifest["expert_success"]
    rate = success["success_rate"]
    reasons: dict[str, int] = {}
    for entry in manifest["dropped"]:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    dropped = ", ".join(f"{n} {reason}" for reason, n in reasons.items()) or "none"
    console.print(
        f"attempts {success['attempts']}, expert success "
        f"{'-' if rate is None else f'{rate:.1%}'}, dropped: {dropped}\n"
        f"recorded {result.recorded_frames:,} frames in {result.elapsed_s:.1f} s "
        f"({result.frames_per_s:,.0f} frames/s)"
    )


def cli(argv: Sequence[str] | None = None) -> CollectResult:
    """The command line; exit codes as in ``configflags`` (a failed recording exits 1)."""
    return run_main(main, CollectConfig, "python -m expert.collect", __doc__, argv)


if __name__ == "__main__":
    cli()
