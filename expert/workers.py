"""Recorder processes: local ones (``WorkerPool``) or Ray actors (``RayRecorderPool``).

A local recorder is a fresh interpreter (``spawn``) with its own env and PyBullet client that
writes its runs straight into the dataset. A Ray recorder is an actor anywhere on a Ray
cluster: it writes each run into a scratch folder of its own node and sends the file back, and
the collecting process publishes it (atomically, as a local run), so no shared filesystem is
needed. Both fly the same worlds with the same seeds, so the content is the same.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import dataclasses
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any

from artifacts.atomic import write_bytes_atomic
from configflags import CommandFailed, UserError
from dataset import RUNS_DIR, run_path
from dataset.previews import write_run_preview
from expert.plan import RunResult
from expert.recorder import RecordingJob, RunRecorder, Stopped

RAY_EXTRA = "the 'ray' extra: pip install -e '.[ray]'"
# seconds to wait for a TCP connection to a Ray address before calling it unreachable
RAY_CONNECT_TIMEOUT_S = 5.0


class RecordingError(CommandFailed):
    """A recorder failed (a bug or a dead process); ``details`` holds its traceback."""


def die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when process ``parent`` dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(job: RecordingJob, tasks: Any, events: Any, stop: Any, parent: int) -> None:
    die_with_parent(parent)
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


def import_ray(purpose: str) -> Any:
    """The ``ray`` module, or a UserError naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise UserError(f"{purpose} needs {RAY_EXTRA}") from None
    return ray


def check_ray_address(address: str) -> None:
    """Refuse a malformed or unreachable ``HOST:PORT`` at once, instead of a long Ray hang.

    ``""`` (start a local Ray), ``local`` and ``auto`` (the cluster this machine is part of)
    are left to Ray, which answers those quickly.
    """
    if address in ("", "auto", "local"):
        return
    where = address.split("://", 1)[1] if "://" in address else address
    host, colon, port = where.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit():
        raise UserError(
            f"--address {address!r}: give auto, HOST:PORT or ray://HOST:PORT (ray start --head"
            " prints it)"
        )
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise UserError(
            f"cannot reach Ray at {address} ({reason}); start the cluster with ray start --head"
            " or pass the address it printed"
        ) from None


class RaySession:
    """A command's connection to Ray: joined if one is open, else started and later shut.

    ``address`` "" starts a local Ray on this machine (``ray.init("local")``); ``auto`` joins
    the cluster this machine belongs to (``ray start``); ``HOST:PORT`` or ``ray://HOST:PORT``
    joins that one. A connection the caller opened already (a test, a notebook) is used as is,
    once a ``HOST:PORT`` given has answered.
    """

    def __init__(self, address: str, purpose: str = "--backend ray") -> None:
        self.ray = import_ray(purpose)
        self.owned = False
        check_ray_address(address)
        if self.ray.is_initialized():
            return
        try:
            self.ray.init(
                address=address or "local",
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        except (ConnectionError, RuntimeError, ValueError) as error:
            message = " ".join(str(error).split())[:300]
            raise UserError(f"cannot connect to Ray at {address or 'local'}: {message}") from None
        self.owned = True

    def cpus(self) -> float:
        """CPUs of the cluster now (1 if Ray does not say)."""
        return float(self.ray.cluster_resources().get("CPU", 1.0))

    def close(self) -> None:
        """Shut Ray down if this session started or joined it."""
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()
        self.owned = False


class RayRecorder:
    """A recorder on a Ray node: flies runs into a scratch folder and returns their files.

    Run as a threaded actor (two threads): ``stop`` is answered while ``record`` runs, which
    abandons the run at its next progress check, its temporary file removed.
    """

    def __init__(self, job: RecordingJob) -> None:
        self.scratch = tempfile.mkdtemp(prefix="corridor-recorder-")
        (Path(self.scratch) / RUNS_DIR).mkdir()
        self.job = dataclasses.replace(job, out=self.scratch)
        self.recorder = RunRecorder(self.job)
        self.stopping = threading.Event()

    def record(self, index: int) -> tuple[RunResult, bytes | None]:
        """Fly world ``index``: the result, and the run file's bytes if the run is kept."""
        result = self.recorder.record(index, None, self.stopping.is_set)
        if not result.kept:
            return result, None
        path = run_path(Path(self.scratch), index)
        data = path.read_bytes()
        path.unlink()
        return result, data

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        self.recorder.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


def publish_run(out: Path, index: int, data: bytes) -> None:
    """Write a run file received from a remote recorder into the dataset, atomically."""
    write_bytes_atomic(run_path(Path(out), index), data)


class RayRecorderPool:
    """Recorders as Ray actors, with ``WorkerPool``'s interface (records only, no previews).

    One actor per recorder, at most as many as the cluster has CPUs (an actor that could never
    be placed would hold its runs forever); runs submitted beyond the actors wait their turn.
    """

    def __init__(self, workers: int, job: RecordingJob, address: str) -> None:
        self.session = RaySession(address, "expert.collect --backend ray")
        ray = self.session.ray
        self.out = Path(job.out)
        actors = max(1, min(workers, int(self.session.cpus())))
        actor_class = ray.remote(num_cpus=1, max_concurrency=2, max_restarts=0)(RayRecorder)
        self.actors = [actor_class.remote(job) for _ in range(actors)]
        self.free = list(self.actors)
        self.waiting: collections.deque[int] = collections.deque()
        self.running: dict[Any, tuple[Any, int]] = {}
        self.events: collections.deque[tuple] = collections.deque()

    def submit(self, kind: str, index: int) -> None:
        if kind != "record":
            raise ValueError(f"Ray recorders only record, not {kind!r}")
        self.waiting.append(index)
        self._dispatch()

    def _dispatch(self) -> None:
        while self.free and self.waiting:
            actor, index = self.free.pop(), self.waiting.popleft()
            self.running[actor.record.remote(index)] = (actor, index)

    def next_event(self, timeout: float) -> tuple | None:
        if self.events:
            return self.events.popleft()
        if not self.running:
            return None
        ray = self.session.ray
        ready, _ = ray.wait(list(self.running), num_returns=1, timeout=timeout)
        if not ready:
            return None
        actor, index = self.running.pop(ready[0])
        try:
            result, data = ray.get(ready[0])
        except ray.exceptions.RayActorError as error:
            raise RecordingError(f"Ray recorder of run {index} died: {error}") from None
        except ray.exceptions.RayTaskError as error:
            cause = error.cause if error.cause is not None else error
            return ("error", index, (f"{type(cause).__name__}: {cause}", str(error)))
        self.free.append(actor)
        self._dispatch()
        if data is not None:
            publish_run(self.out, index, data)
        self.events.append(("done", index, result))
        return ("progress", index, result.frames)

    def close(self) -> None:
        """Stop the actors: runs in flight are abandoned, scratch folders removed."""
        ray = self.session.ray
        try:
            for actor in self.actors:
                actor.stop.remote()
            if self.running:
                ray.wait(list(self.running), num_returns=len(self.running), timeout=10)
            with contextlib.suppress(ray.exceptions.RayError):
                ray.get([actor.close.remote() for actor in self.actors], timeout=10)
            for actor in self.actors:
                ray.kill(actor)
        finally:
            self.session.close()
