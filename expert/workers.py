"""Recorder processes: each a fresh interpreter (``spawn``) with its own env and PyBullet client."""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from configflags import CommandFailed
from expert.previews import write_run_preview
from expert.recorder import RecordingJob, RunRecorder, Stopped


class RecordingError(CommandFailed):
    """A recorder failed (a bug or a dead process); ``details`` holds its traceback."""


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when the collecting process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(job: RecordingJob, tasks: Any, events: Any, stop: Any, parent: int) -> None:
    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the collecting process decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    recorder = RunRecorder(job)
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            kind, index = task
            try:
                if kind == "record":
                    result = recorder.record(
                        index, lambda n, i=index: events.put(("progress", i, n)), stop.is_set
                    )
                    events.put(("done", index, result))
                else:
                    fps = job.env_kwargs["control_hz"]
                    write_run_preview(Path(job.out), index, job.video_format, fps)
                    events.put(("preview", index, None))
            except Stopped:
                return
            except Exception as error:  # noqa: BLE001 - reported to and raised by the parent
                events.put(("error", index, (f"{type(error).__name__}: {error}",
                                             traceback.format_exc())))  # fmt: skip
                return
    finally:
        recorder.close()


class WorkerPool:
    """Recorder processes ('spawn': a fresh interpreter and PyBullet client each)."""

    def __init__(self, workers: int, job: RecordingJob) -> None:
        context = multiprocessing.get_context("spawn")
        self.tasks = context.Queue()
        self.events = context.Queue()
        self.stop = context.Event()
        self.processes = [
            context.Process(
                target=_worker_main,
                args=(job, self.tasks, self.events, self.stop, os.getpid()),
                daemon=True,
                name=f"expert-recorder-{i}",
            )
            for i in range(workers)
        ]
        for process in self.processes:
            process.start()

    def submit(self, kind: str, index: int) -> None:
        self.tasks.put((kind, index))

    def next_event(self, timeout: float) -> tuple | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            dead = [p for p in self.processes if not p.is_alive()]
            if dead:
                raise RecordingError(
                    f"recorder process {dead[0].name} died (exit code {dead[0].exitcode})"
                ) from None
            return None

    def close(self) -> None:
        """Stop the workers: a run in flight is abandoned (its temporary file removed).

        Workers leave on their own, each removing the temporary file of the run it was
        writing; one that does not within seconds is killed.
        """
        self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self.tasks.close()
        self.events.close()
