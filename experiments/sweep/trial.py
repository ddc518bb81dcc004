"""One job of a sweep, in a process of its own: record a dataset, or run one trial.

``python -m experiments.sweep.trial JOB.json`` is what both backends start, one process per
job (a fresh interpreter: a trial's result cannot depend on what ran before it in the same
process, a crash or a kill takes only that job, and its whole output, PyBullet's included,
goes to its log). A trial trains (``bc.train.main``) on its staged dataset, flies its
closed-loop evaluation (``eval.rollout.main``) and writes its results row,
``trials/<id>/result.json``, atomically and last: a trial without one did not finish.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json_atomic
from configflags import option, run_main
from experiments.sweep.spec import Trial, build_config
from expert.workers import die_with_parent

DATASETS_DIR = "datasets"
TRIALS_DIR = "trials"
RESULT_FILE = "result.json"
JOB_FILE = "job.json"
LOG_FILE = "log.txt"
RUN_DIR = "run"
EVAL_FILE = "eval.json"


def trial_dir(root: Path, trial_id: str) -> Path:
    """Where one trial keeps its job, log, training run, evaluation and results row."""
    return Path(root) / TRIALS_DIR / trial_id


def dataset_dir(root: Path, key: str) -> Path:
    """The dataset recorded for collect fingerprint ``key`` (shared by its trials)."""
    return Path(root) / DATASETS_DIR / key


def run_dataset(job: dict[str, Any]) -> None:
    """Record (or resume) the job's dataset with ``expert.collect``."""
    from expert.collect import main as collect  # here: a trial's process needs none of it

    flags = {"workers": max(1, math.floor(job["cpus"])), **job["collect"]}
    config = build_config("collect", flags, out=job["out"], quiet=True)
    result = collect(config)
    print(f"dataset {job['out']}: {result.kept} runs, {result.frames} frames", flush=True)


def run_trial(job: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one trial; writes and returns its results row."""
    # here, not at the top: a dataset job's process is spared torch's import
    from bc.machine import training_machine
    from bc.run_dir import all_actions_step
    from bc.train import main as train
    from eval.during_training import closed_loop_callback
    from eval.rollout import main as rollout

    started = time.perf_counter()
    trial = Trial.from_dict(job["trial"])
    root = Path(job["root"])
    directory = trial_dir(root, trial.id)
    train_config = build_config(
        "train",
        trial.flags["train"],
        data=str(dataset_dir(root, trial.dataset)),
        run_dir=str(directory / RUN_DIR),
        progress=False,
    )
    summary = train(train_config, closed_loop_callback(train_config))
    eval_flags = {"workers": max(1, math.floor(job["cpus"])), **trial.flags["eval"]}
    rollout_config = build_config(
        "eval", eval_flags, run=directory / RUN_DIR, out=directory / EVAL_FILE, quiet=True
    )
    evaluation = rollout(rollout_config)
    row = results_row(job["sweep"], trial, summary, evaluation.summary, rollout_config.which)
    row["all_actions_step"] = all_actions_step(directory / RUN_DIR)
    row["machine"] = training_machine()
    row["wall_s"] = round(time.perf_counter() - started, 3)
    write_json_atomic(directory / RESULT_FILE, row)
    print(f"trial {trial.id}: success {row['success_rate']:.3f}", flush=True)
    return row


# bc.train tests these checkpoints on the test split, under these keys of its summary
TEST_SPLIT_OF_CHECKPOINT = {"last": "test_last", "best_val_loss": "test"}


def results_row(
    sweep: str,
    trial: Trial,
    summary: dict[str, Any],
    closed_loop: dict[str, Any],
    checkpoint: str,
) -> dict[str, Any]:
    """One trial's results: what it swept, its seed, offline and closed-loop metrics.

    Flat keys a report can group by: ``values`` (the swept flags), ``config`` (the same as
    one string: the seeds of a configuration share it) and ``seed``. The test split's figures
    are those of ``checkpoint``, the one flown in closed loop.
    """
    best_val = summary.get("best_val") or summary["val"]
    test_key = TEST_SPLIT_OF_CHECKPOINT.get(checkpoint)  # best_success is not tested
    test = (summary.get(test_key) if test_key else None) or {}
    return {
        "sweep": sweep,
        "trial": trial.id,
        "config": " ".join(f"{k}={json.dumps(v)}" for k, v in trial.values.items()) or "-",
        "values": trial.values,
        "seed": trial.seed,
        "dataset": trial.dataset,
        "val_loss": summary["best_val_loss"],
        "val_accuracy": best_val.get("accuracy"),
        "test_loss": test.get("loss"),
        "test_accuracy": test.get("accuracy"),
        "test_per_class_accuracy": test.get("per_class_accuracy"),
        "val_majority_rate": summary.get("val_majority_rate"),
        "train_frames": summary.get("train_frames"),
        "train_s": summary.get("train_time_s"),
        "best_epoch": summary["best_epoch"],
        "epochs": summary["epochs"],
        "steps": summary.get("steps"),
        "checkpoint": checkpoint,
        "episodes": closed_loop["episodes"],
        "success_rate": closed_loop["success_rate"],
        "success_ci": [closed_loop["success_ci_low"], closed_loop["success_ci_high"]],
        "collision_rate": closed_loop["collision_rate"],
        "progress_frac": closed_loop["progress_frac"],
        "agreement": closed_loop["agreement"],
        "run_dir": f"{TRIALS_DIR}/{trial.id}/{RUN_DIR}",
        "eval_file": f"{TRIALS_DIR}/{trial.id}/{EVAL_FILE}",
    }


def job_command(job_path: Path) -> list[str]:
    """The command line that runs one job file in a fresh interpreter."""
    return [sys.executable, "-m", "experiments.sweep.trial", str(job_path),
            "--parent", str(os.getpid())]  # fmt: skip


def job_environment() -> dict[str, str]:
    """The environment for a job: ours, with the project importable from any folder."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def launch_job(job_path: str, log_path: str, cwd: str) -> int:
    """Run one job to its end (blocking) with its output appended to ``log_path``.

    What a Ray task calls; the local backend starts the same command without waiting.
    """
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            job_command(Path(job_path)),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd if Path(cwd).is_dir() else None,
            env=job_environment(),
        )
        try:
            return process.wait()
        finally:
            if process.poll() is None:  # this task was cancelled: take the job with it
                process.kill()
                process.wait()


@dataclass(frozen=True)
class JobConfig:
    """The job file to run."""

    job: Path = option(help="job file written by python -m experiments.sweep", positional=True)
    parent: int = option(0, help="process id to die with (0: none)")


def main(config: JobConfig) -> dict[str, Any] | None:
    """Run the job file's dataset or trial."""
    if config.parent:
        die_with_parent(config.parent)
    job = json.loads(Path(config.job).read_text())
    if job["kind"] == "dataset":
        run_dataset(job)
        return None
    return run_trial(job)


if __name__ == "__main__":
    run_main(main, JobConfig, "python -m experiments.sweep.trial", __doc__)
