"""Running many closed-loop episodes: in this process, or in a pool of worker processes.

One worker runs in the calling process (no start-up cost, plain tracebacks); more run in a
'spawn' process pool, each worker with its own :class:`~eval.episodes.EpisodeWorker` (its own
env and PyBullet client) and one torch thread, so that N workers do not oversubscribe N cores.
With ``setup.batch`` above 1 a worker is an :class:`~eval.episode_group.EpisodeGroupWorker`
and flies one contiguous share of the tasks, ``batch`` episodes side by side. Records come
back in task order, whatever worker flew them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from eval.episode_group import EpisodeGroupWorker
from eval.episodes import EpisodeRecord, EpisodeTask, EpisodeWorker, WorkerSetup
from eval.errors import EvalError


def usable_cores() -> int:
    """CPU cores this process may run on: its affinity mask, which a cluster slot narrows."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# 'spawn' starts each worker from a fresh interpreter: no PyBullet client, torch thread pool
# or open file is inherited from the parent, on every platform
MP_CONTEXT = "spawn"

_worker: EpisodeWorker | EpisodeGroupWorker | None = None
# where a pool worker reports each record as its episode ends (the parent's progress)
_finished: Any = None
# how often the parent looks for finished episodes while its workers fly (seconds)
POLL_S = 0.2


def _make_worker(setup: WorkerSetup) -> EpisodeWorker | EpisodeGroupWorker:
    return EpisodeGroupWorker(setup) if setup.batch > 1 else EpisodeWorker(setup)


def work_units(setup: WorkerSetup, tasks: Sequence[EpisodeTask], workers: int) -> list[list[int]]:
    """The units of work, as positions in ``tasks``: single tasks, or one share per worker.

    A share (``setup.batch`` above 1) is flown ``batch`` at a time, each slot refilled in
    its order. Tasks of several flights (consecutive tasks with the same ``env``) are shared
    flight by flight: each worker gets a contiguous part of every flight, so that flights of
    long and short episodes spread evenly and a worker's slots change env only between
    flights.
    """
    if setup.batch <= 1:
        return [[position] for position in range(len(tasks))]
    flights: list[list[int]] = []
    for position, task in enumerate(tasks):
        if not flights or task.env != tasks[flights[-1][-1]].env:
            flights.append([])
        flights[-1].append(position)
    shares = min(workers, max(len(flight) for flight in flights))
    units: list[list[int]] = [[] for _ in range(shares)]
    for flight in flights:
        bounds = [len(flight) * share // shares for share in range(shares + 1)]
        for share in range(shares):
            units[share] += flight[bounds[share] : bounds[share + 1]]
    return [unit for unit in units if unit]


def _run_unit(
    worker: EpisodeWorker | EpisodeGroupWorker,
    unit: list[EpisodeTask],
    on_record: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    if isinstance(worker, EpisodeGroupWorker):
        return worker.run(unit, on_record)
    records = []
    for task in unit:
        records.append(worker.run(task))
        if on_record is not None:
            on_record(records[-1])
    return records


def limit_torch_threads(threads: int) -> None:
    """Limit torch (if imported) to ``threads`` intra- and inter-op threads."""
    torch = sys.modules.get("torch")
    if torch is None:
        # the agent does not use torch (the expert): importing it would only cost start-up
        return
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        # settable only before the first inter-op parallel work; the intra-op limit is what
        # matters for one observation at a time
        pass


def _init_worker(setup: WorkerSetup, finished: Any) -> None:
    global _worker, _finished
    _finished = finished
    # several workers each with a full thread pool would fight over the same cores; the
    # variable covers torch imported later, the call below torch imported already (unpickling
    # a policy's factory imports it before this initializer runs)
    os.environ["OMP_NUM_THREADS"] = str(setup.torch_threads)
    _worker = _make_worker(setup)
    limit_torch_threads(setup.torch_threads)


def _run_in_worker(unit: list[EpisodeTask]) -> list[EpisodeRecord]:
    if _worker is None:
        raise RuntimeError("worker used before its initializer ran")
    return _run_unit(_worker, unit, _finished.put)


def run_episodes(
    setup: WorkerSetup,
    tasks: Sequence[EpisodeTask],
    workers: int = 1,
    on_result: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    """Run ``tasks`` and return their records in task order.

    ``workers == 1`` runs in this process (no start-up cost, plain tracebacks), with torch
    limited to ``setup.torch_threads`` for the duration so that its numbers match a worker's;
    more workers run in a 'spawn' process pool, each worker with its own env.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    positions = work_units(setup, tasks, workers)
    units = [[tasks[position] for position in unit] for unit in positions]
    if workers == 1 or len(units) <= 1:
        flown = list(_run_here(setup, units, on_result))
    else:
        flown = _run_pool(setup, units, min(workers, len(units)), on_result)
    records: list[EpisodeRecord | None] = [None] * len(tasks)
    for position, record in zip((p for unit in positions for p in unit), flown, strict=True):
        records[position] = record
    return [record for record in records if record is not None]


def _run_here(
    setup: WorkerSetup,
    units: Sequence[list[EpisodeTask]],
    on_result: Callable[[EpisodeRecord], None] | None,
) -> Iterator[EpisodeRecord]:
    worker = _make_worker(setup)
    torch = sys.modules.get("torch")
    with contextlib.ExitStack() as stack:
        stack.callback(worker.close)
        if torch is not None:
            threads = torch.get_num_threads()
            torch.set_num_threads(setup.torch_threads)
            stack.callback(torch.set_num_threads, threads)
            # episodes re-seed torch's generator; the caller's (a trainer mid-run) must not
            # notice
            stack.enter_context(torch.random.fork_rng(devices=[]))
        for unit in units:
            yield from _run_unit(worker, unit, on_result)


def _run_pool(
    setup: WorkerSetup,
    units: Sequence[list[EpisodeTask]],
    workers: int,
    on_result: Callable[[EpisodeRecord], None] | None,
) -> list[EpisodeRecord]:
    context = multiprocessing.get_context(MP_CONTEXT)
    results: dict[int, list[EpisodeRecord]] = {}
    # each record also comes through this queue as its episode ends, so that progress moves
    # while a worker's unit (a whole share of the tasks when flying in groups) is in flight
    finished = context.Queue()
    reported = 0

    def report(wait_s: float = 0.0) -> None:
        nonlocal reported
        while True:
            try:
                record = finished.get(timeout=wait_s) if wait_s else finished.get_nowait()
            except queue.Empty:
                return
            reported += 1
            if on_result is not None:
                on_result(record)

    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(setup, finished)) as pool:  # fmt: skip
        position = {pool.submit(_run_in_worker, unit): i for i, unit in enumerate(units)}
        pending = set(position)
        try:
            while pending:
                done, pending = wait(pending, timeout=POLL_S, return_when=FIRST_COMPLETED)
                report()
                for future in done:
                    results[position[future]] = future.result()
        except BrokenProcessPool as error:
            raise EvalError(
                f"an evaluation worker died ({error}); rerun with --workers 1 to see why"
            ) from error
        except BaseException:
            # interrupted (Ctrl-C, SIGTERM) or failed: the episodes in flight are lost anyway,
            # so the workers stop now instead of finishing their shares first
            _stop_workers(pool)
            raise
    # a record put just before its unit returned may still be on its way through the pipe
    total = sum(len(records) for records in results.values())
    while reported < total:
        before = reported
        report(wait_s=5.0)
        if reported == before:  # nothing came in 5 s: it never will
            break
    return [record for i in range(len(units)) for record in results[i]]


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    # ProcessPoolExecutor has no public way to stop busy workers before Python 3.14
    # (terminate_workers); its _processes maps pid -> Process. The waiting futures are the
    # pool's own thread's to cancel (shutdown) or fail (it finds the workers gone): cancelling
    # them from here races with it, and its thread dies with InvalidStateError (Python 3.11)
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
