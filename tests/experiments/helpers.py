"""What the sweep and report tests share: a tiny spec and a backend that runs jobs inline."""

from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from configflags import UserError
from experiments.sweep.trial import JobConfig
from experiments.sweep.trial import main as run_job

# a spec whose trials take seconds: 3 runs of 32x32 one-segment worlds, one epoch, two episodes
TINY_SPEC = """
name = "tiny"
seeds = [0, 1]
[collect]
runs = 3
image_size = 32
n_segments = 1
segment_length = [4, 5]
[train]
epochs = 1
batch_size = 4
tensorboard = false
[eval]
episodes = 2
[grid]
"""


def tiny_spec(folder: Path, grid: str, seeds: str = "[0, 1]", name: str = "spec") -> Path:
    """Write TINY_SPEC with these seeds and ``[grid]`` lines to ``folder/NAME.toml``."""
    path = folder / f"{name}.toml"
    path.write_text(TINY_SPEC.replace("seeds = [0, 1]", f"seeds = {seeds}") + grid + "\n")
    return path


class InlineBackend:
    """Runs each job in this process when it is submitted: the scheduler without processes.

    What a job's process would print goes to its log, and a UserError becomes exit code 2, as
    ``configflags.run_main`` makes it; anything else propagates and fails the test.
    """

    capacity = 2

    def __init__(self) -> None:
        self.ended: list = []
        self.jobs: list[str] = []

    def describe(self) -> str:
        return "inline"

    def submit(self, job) -> None:
        self.jobs.append(job.key)
        with open(job.log, "w") as log, redirect_stdout(log), redirect_stderr(log):
            try:
                run_job(JobConfig(job.path))
                code = 0
            except UserError as error:
                print(f"error: {error}")
                code = 2
        self.ended.append((job, code))

    def wait(self, timeout: float) -> list:
        ended, self.ended = self.ended, []
        return ended

    def close(self) -> None:
        pass
