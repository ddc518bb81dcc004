"""Where a sweep's jobs run: a local process pool, or tasks on a Ray cluster.

Both start the same thing for a job, ``python -m experiments.sweep.trial JOB.json`` with its
output appended to the job's log: locally as a child process of the sweep, on Ray from inside
a task that reserves the spec's ``[resources]`` (``num_cpus``, ``num_gpus``). A job's process
dies with whatever started it (the sweep, or the Ray worker running its task), so killing the
sweep, even with SIGKILL, leaves nothing running.
"""

from __future__ import annotations

import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configflags import UserError
from eval.worker_pool import usable_cores
from experiments.sweep.trial import job_command, job_environment, launch_job
from expert.workers import RaySession

BACKENDS = ("local", "ray")
# how often the local pool looks at its processes while waiting
POLL_S = 0.05


@dataclass(frozen=True)
class Job:
    """A job file, its log and the key the scheduler knows it by."""

    key: str
    path: Path
    log: Path
    cwd: str


class LocalBackend:
    """Up to ``capacity`` jobs at once, each a child process of this one."""

    name = "local"

    def __init__(self, workers: int, cpus: float) -> None:
        self.capacity = workers or max(1, usable_cores() // max(1, math.ceil(cpus)))
        self.running: dict[str, tuple[subprocess.Popen, Job]] = {}

    def describe(self) -> str:
        return f"local pool of {self.capacity} worker{'s' * (self.capacity > 1)}"

    def submit(self, job: Job) -> None:
        with open(job.log, "ab") as log:
            process = subprocess.Popen(
                job_command(job.path),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=job.cwd,
                env=job_environment(),
            )
        self.running[job.key] = (process, job)

    def wait(self, timeout: float) -> list[tuple[Job, int]]:
        """Jobs that ended within ``timeout`` seconds, with their exit codes."""
        deadline = time.monotonic() + timeout
        while True:
            done = [(key, code) for key, (process, _) in self.running.items()
                    if (code := process.poll()) is not None]  # fmt: skip
            if done or time.monotonic() >= deadline:
                return [(self.running.pop(key)[1], code) for key, code in done]
            time.sleep(POLL_S)

    def close(self) -> None:
        """Stop running jobs: SIGTERM (they exit as after Ctrl-C), SIGKILL if they linger."""
        for process, _ in self.running.values():
            process.terminate()
        for process, _ in self.running.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()


class RayBackend:
    """Jobs as Ray tasks, each holding the spec's CPUs and GPUs while it runs.

    At most ``capacity`` are submitted at once (``--workers``, or as many as the cluster's
    CPUs and GPUs hold when it starts), so "running" in the progress means running, not queued.
    """

    name = "ray"

    def __init__(self, address: str, workers: int, cpus: float, gpus: float) -> None:
        self.session = RaySession(address, "experiments.sweep --backend ray")
        ray = self.session.ray
        try:
            resources = ray.cluster_resources()
            if gpus > 0 and resources.get("GPU", 0) < gpus:
                raise UserError(
                    f"the spec asks for {gpus:g} GPU(s) per trial but the Ray cluster has"
                    f" {resources.get('GPU', 0):g}; lower [resources] gpus or add GPU nodes"
                )
            if resources.get("CPU", 0) < cpus:
                raise UserError(
                    f"the spec asks for {cpus:g} CPUs per trial but the Ray cluster has"
                    f" {resources.get('CPU', 0):g}; lower [resources] cpus"
                )
        except UserError:
            self.session.close()
            raise
        fits = int(resources.get("CPU", 1) // cpus)
        if gpus > 0:
            fits = min(fits, int(resources.get("GPU", 0) // gpus))
        self.capacity = workers or max(1, fits)
        self.task = ray.remote(launch_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self.running: dict[Any, Job] = {}

    def describe(self) -> str:
        return f"Ray, {self.capacity} trial{'s' * (self.capacity > 1)} at once"

    def submit(self, job: Job) -> None:
        self.running[self.task.remote(str(job.path), str(job.log), job.cwd)] = job

    def wait(self, timeout: float) -> list[tuple[Job, int]]:
        """Jobs that ended within ``timeout`` seconds, with their exit codes."""
        if not self.running:
            time.sleep(timeout)
            return []
        ray = self.session.ray
        ready, _ = ray.wait(list(self.running), num_returns=1, timeout=timeout)
        if ready:
            ready, _ = ray.wait(list(self.running), num_returns=len(self.running), timeout=0)
        finished = []
        for ref in ready:
            job = self.running.pop(ref)
            try:
                code = int(ray.get(ref))
            except ray.exceptions.RayError as error:
                # the task itself failed (a node lost, a worker killed): say so in the job's log
                with open(job.log, "a") as log:
                    log.write(f"\nRay task failed: {' '.join(str(error).split())[:2000]}\n")
                code = -1
            finished.append((job, code))
        return finished

    def close(self) -> None:
        """Cancel running tasks (their job processes die with them) and leave Ray."""
        ray = self.session.ray
        for ref in self.running:
            ray.cancel(ref, force=True)
        self.running.clear()
        self.session.close()


def make_backend(name: str, address: str, workers: int, cpus: float, gpus: float) -> Any:
    """The backend ``name`` (connecting to Ray now, so a bad address fails before any trial)."""
    if name == "local":
        if address:
            raise UserError("--address is the Ray cluster of --backend ray; add --backend ray")
        return LocalBackend(workers, cpus)
    if name == "ray":
        return RayBackend(address, workers, cpus, gpus)
    raise UserError(f"unknown --backend {name!r}; choose one of {', '.join(BACKENDS)}")
