"""Resuming DAgger: kill -9 in each phase of an iteration, then the same command again.

The command must end with the table of an uninterrupted run of it: recording, retraining and
evaluation are deterministic, so the rows (all but the wall time), the episodes flown, and the
retrained run's metrics and weights must match exactly. An interrupted retraining also resumes
after its OUT folder was moved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bc.checkpoint import read_checkpoint
from bc.train import TrainingInterrupted, config_from_cli
from bc.train import main as train
from experiments.dagger.loop import Dagger, DaggerConfig
from tests.bc.helpers import interrupt_at
from tests.commands import kill_9_after, run_here

WORLD = ["--image-size", "32", "--n-segments", "1", "--segment-length", "6", "7"]
# the phases of iteration 1 in the order they run, each with a line that its start prints
PHASES = (
    ("recording", "iteration 1: run 1/3 "),  # after the first of three recorded runs
    ("retraining", "epoch 1 "),  # after the first of six epochs
    ("evaluation", "majority-class rate"),  # the retrained run's summary, then evaluation
)


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory) -> Path:
    """Three recorded runs and a BC run of several short epochs on them.

    DAgger retrains with the BC run's config: six epochs leave time to kill it between two.
    """
    root = tmp_path_factory.mktemp("dagger_resume")
    data = root / "data"
    subprocess.run(
        [sys.executable, "-m", "expert.collect", "--runs", "3", "--quiet", "--out", str(data),
         *WORLD], cwd=root, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    run = root / "bc"
    flags = ["--epochs", "6", "--batch-size", "4", "--no-progress", "--no-tensorboard"]
    train(config_from_cli(["--data", str(data), *flags, "--run-dir", str(run)]))
    return run


def _command(run: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "experiments.dagger", "--run", str(run), "--out", str(out),
            "--iterations", "1", "--runs-per-iteration", "3", "--episodes", "6",
            "--workers", "1"]  # fmt: skip


def _in_phase(out: Path, phase: str) -> bool:
    """Whether a DAgger run killed in iteration 1's ``phase`` left ``out`` as that does."""
    iteration = out / "iter_01"
    run = iteration / "run"
    if phase == "recording":
        recorded = list((out / "data" / "runs").glob("run_1*.h5"))
        return 1 <= len(recorded) < 3 and not run.exists()
    if phase == "retraining":
        return (run / "checkpoints" / "last.pt").is_file() and not (run / "summary.json").exists()
    return (run / "summary.json").is_file() and not (iteration / "eval.json").exists()


def _rows(out: Path) -> list[dict]:
    rows = json.loads((out / "results.json").read_text())
    return [{key: value for key, value in row.items() if key != "wall_s"} for row in rows]


def _episodes(out: Path) -> list[dict]:
    records = json.loads((out / "iter_01" / "eval.json").read_text())["records"]
    return [{key: value for key, value in r.items() if key != "latency_ms"} for r in records]


def test_kill_9_in_each_phase_then_the_same_command_ends_with_the_uninterrupted_table(
    bc_run, tmp_path
):
    straight, out = tmp_path / "straight", tmp_path / "out"
    # the uninterrupted run and the resume run in this process, the killed ones in a child
    done = run_here("experiments.dagger", *_command(bc_run, straight)[3:], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for phase, marker in PHASES:
        output = kill_9_after(_command(bc_run, out), marker, tmp_path)
        assert _in_phase(out, phase), f"the kill did not come in {phase}:\n{output}"
    resumed = run_here("experiments.dagger", *_command(bc_run, out)[3:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr

    assert _rows(out) == _rows(straight)
    assert [row["iteration"] for row in _rows(out)] == [0, 1]
    # beneath the table: every episode flown, and the retraining, metrics and weights
    assert _episodes(out) == _episodes(straight)
    runs = [path / "iter_01" / "run" for path in (out, straight)]
    assert (runs[0] / "metrics.jsonl").read_bytes() == (runs[1] / "metrics.jsonl").read_bytes()
    weights = [read_checkpoint(run / "checkpoints" / "last.pt")["model"] for run in runs]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])


def _interrupt_after_epoch_1(config):
    """DAgger's retraining callback, replaced: Ctrl-C after the retraining's first epoch."""
    return interrupt_at(1)


def test_retraining_resumes_in_a_moved_out_folder(bc_run, tmp_path, monkeypatch):
    settings = dict(run=bc_run, iterations=1, runs_per_iteration=1, episodes=1, workers=1,
                    quiet=True)  # fmt: skip
    monkeypatch.setattr("experiments.dagger.loop.closed_loop_callback", _interrupt_after_epoch_1)
    with pytest.raises(TrainingInterrupted):
        Dagger(DaggerConfig(out=tmp_path / "out", **settings)).retrain(1)
    monkeypatch.undo()
    # its training run's config.json names the dataset, OUT/data, where it was
    os.rename(tmp_path / "out", tmp_path / "moved")
    Dagger(DaggerConfig(out=tmp_path / "moved", **settings)).retrain(1)
    run = tmp_path / "moved" / "iter_01" / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2, 3, 4, 5, 6]
    assert (run / "summary.json").is_file()


def test_an_interrupted_iteration_reports_the_time_of_both_runs(bc_run, tmp_path, monkeypatch):
    """Ctrl-C in iteration 1's retraining: its wall time sums the stopped run and the resumed."""
    config = DaggerConfig(run=bc_run, out=tmp_path / "out", iterations=1, runs_per_iteration=1,
                          episodes=1, workers=1, quiet=True)  # fmt: skip
    monkeypatch.setattr("experiments.dagger.loop.closed_loop_callback", _interrupt_after_epoch_1)
    with pytest.raises(TrainingInterrupted):
        Dagger(config).run_all()
    monkeypatch.undo()
    timings_path = tmp_path / "out" / "timings.json"
    stopped = json.loads(timings_path.read_text())
    spent = stopped["unfinished"]["1"]  # iteration 0 (BC's evaluation) finished, 1 did not
    assert set(stopped) == {"0", "unfinished"} and spent > 0
    rows = Dagger(config).run_all()
    finished = json.loads(timings_path.read_text())
    assert set(finished) == {"0", "1"}
    assert finished["1"] > spent and rows[1]["wall_s"] == finished["1"]
