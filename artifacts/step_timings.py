"""Wall time of each step of a resumable job, kept in a JSON file beside its work.

A job that can be interrupted and rerun (the generalist recipe, DAgger) reports how long each
of its steps took. A step's time is the sum over every run that worked on it: a run stopped
by an exception (Ctrl-C, or SIGTERM, which ``configflags.run_main`` turns into one) adds its
time to the step's unfinished total, and the run that finishes the step records that total
plus its own. So a resumed step reports the wall time it cost, the work its interrupted run
lost included, not only its last part. A run killed outright (SIGKILL, a power cut) has no
chance to add its time: that much goes unreported.

The file maps each finished step to its seconds; ``"unfinished"`` maps the steps begun and not
finished to the seconds spent on them so far, and is left out when there are none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from artifacts.atomic import write_json_atomic

UNFINISHED = "unfinished"


class StepTimings:
    """The finished steps' wall times of one job, and the time spent on unfinished ones."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.unfinished: dict[str, float] = dict(data.pop(UNFINISHED, {}))
        self.finished: dict[str, float] = data

    def __contains__(self, key: str) -> bool:
        return key in self.finished

    def __getitem__(self, key: str) -> float:
        return self.finished[key]

    def get(self, key: str, default: float = 0.0) -> float:
        return self.finished.get(key, default)

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        """Time the block as step ``key``, unless the step is already finished.

        A finished step's block still runs (a resumable step finds its work done and returns
        at once), but its time is kept from the run that finished it.
        """
        if key in self.finished:
            yield
            return
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self.unfinished[key] = self.unfinished.get(key, 0.0) + time.perf_counter() - started
            self._write()
            raise
        spent = self.unfinished.pop(key, 0.0)
        self.finished[key] = spent + time.perf_counter() - started
        self._write()

    def _write(self) -> None:
        data: dict[str, object] = dict(self.finished)
        if self.unfinished:
            data[UNFINISHED] = self.unfinished
        write_json_atomic(self.path, data, indent=2)
