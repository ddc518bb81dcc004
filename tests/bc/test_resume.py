"""Resuming bc.train runs as users do: kill -9 in epoch 2, the printed resume command, moved
run folders, and a run killed after its last epoch.

Each resumed run is compared with an uninterrupted run of the same command: training here is
deterministic (batch order and augmentation come from generators keyed by seed, epoch and
unit; last.pt holds the weights, the optimiser and torch's generator), so metrics.jsonl and the
checkpoints must match bit for bit.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import torch

from bc.checkpoint import read_checkpoint
from bc.errors import ConfigError, TrainError
from bc.train import TrainingInterrupted, config_from_cli, main
from tests.bc.helpers import interrupt_at, small_dataset
from tests.commands import ROOT, kill_9_after, module_command, module_env, run_module

FLAGS = ["--epochs", "3", "--batch-size", "4", "--no-progress", "--no-tensorboard",
         "--device", "cpu", "--threads", "1"]  # fmt: skip
# summary.json fields that measure the wall clock: they differ between two runs
TIMING_KEYS = {"train_time_s", "samples_per_s"}


def _kill_9_in_epoch_2(argv: list[str]) -> str:
    """Start ``python -m bc.train ARGV``, SIGKILL it once epoch 1's line is out; its output."""
    command = module_command("bc.train", *argv)
    # "epoch 1 ..." is printed once epoch 1's last.pt and metrics are written
    return kill_9_after(command, "epoch 1 ", ROOT, module_env(OMP_NUM_THREADS="1"))


def _assert_same_tensors(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key, value in first.items():
        if isinstance(value, dict):
            _assert_same_tensors(value, second[key])
        elif isinstance(value, torch.Tensor):
            assert torch.equal(value, second[key]), key
        else:
            assert value == second[key], key


def _assert_same_training(run_dir: Path, straight: Path) -> None:
    """Metrics, checkpoints and results of ``run_dir`` equal those of ``straight``."""
    assert (run_dir / "metrics.jsonl").read_bytes() == (straight / "metrics.jsonl").read_bytes()
    for name in ("last.pt", "best_val_loss.pt"):
        resumed = read_checkpoint(run_dir / "checkpoints" / name)
        reference = read_checkpoint(straight / "checkpoints" / name)
        for key in ("model", "optimizer", "rng"):
            _assert_same_tensors(resumed[key], reference[key])
        for key in ("epoch", "unit", "step", "best_val_loss", "best_epoch", "record"):
            assert resumed[key] == reference[key], key
    summaries = [json.loads((path / "summary.json").read_text()) for path in (run_dir, straight)]
    for key in ("train", "val", "best_val", "test", "test_last", "steps", "epochs"):
        assert summaries[0][key] == summaries[1][key], key


@pytest.fixture(scope="module")
def long_data(tmp_path_factory) -> Path:
    """About 150 steps an epoch: time enough to kill a run in the middle of one."""
    return small_dataset(tmp_path_factory.mktemp("resume") / "data", frames=[300, 300, 30, 30])


@pytest.fixture(scope="module")
def straight(long_data, tmp_path_factory) -> Path:
    """The uninterrupted run of the command the killed runs were started with."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    main(config_from_cli(["--data", str(long_data), *FLAGS, "--run-dir", str(run_dir)]))
    return run_dir


@pytest.mark.parametrize("named", [True, False], ids=["run-dir", "runs-dir"])
def test_kill_9_in_epoch_2_then_resume_matches_an_uninterrupted_run(
    long_data, straight, tmp_path, named
) -> None:
    where = ["--run-dir", str(tmp_path / "run")] if named else ["--runs-dir", str(tmp_path)]
    _kill_9_in_epoch_2(["--data", str(long_data), *FLAGS, *where])
    (run_dir,) = tmp_path.iterdir()
    assert read_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == 1, (
        "the kill came after epoch 2 was saved, not during it"
    )
    # the command that a Ctrl-C prints (a kill -9 prints nothing)
    env = module_env(OMP_NUM_THREADS="1")
    result = run_module("bc.train", "--resume", str(run_dir), env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    _assert_same_training(run_dir, straight)


def _printed_resume_argv(interrupted: TrainingInterrupted) -> list[str]:
    command = shlex.split(str(interrupted).split("resume with ", 1)[1])
    assert command[:3] == ["python", "-m", "bc.train"]
    return command[3:]


@pytest.mark.parametrize("named", [True, False], ids=["run-dir", "runs-dir"])
def test_the_printed_resume_command_continues_exactly(data, tmp_path, monkeypatch, named) -> None:
    flags = ["--data", str(data), *FLAGS]
    straight = main(config_from_cli([*flags, "--run-dir", str(tmp_path / "straight")]))
    monkeypatch.chdir(tmp_path)  # a relative --run-dir, as in the docs
    where = ["--run-dir", "runs/my run"] if named else ["--runs-dir", "runs"]
    with pytest.raises(TrainingInterrupted) as interrupted:
        main(config_from_cli([*flags, *where]), epoch_callback=interrupt_at(2))
    argv = _printed_resume_argv(interrupted.value)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert argv == ["--resume", str(run_dir.relative_to(tmp_path))]
    resumed = main(config_from_cli(argv))
    _assert_same_training(run_dir, Path(straight["run_dir"]))
    # the training time is the whole run's: the epochs before the interruption count too
    timings = [json.loads(line) for line in (run_dir / "timing.jsonl").read_text().splitlines()]
    assert [timing["epoch"] for timing in timings] == [1, 2, 3]
    assert resumed["train_time_s"] == pytest.approx(sum(t["seconds"] for t in timings))
    assert resumed["train_time_s"] > timings[-1]["seconds"] > 0


def test_a_moved_run_resumes_from_its_new_folder(data, tmp_path, monkeypatch) -> None:
    flags = ["--data", str(data), *FLAGS]
    straight = main(config_from_cli([*flags, "--run-dir", str(tmp_path / "straight")]))
    (tmp_path / "first").mkdir()
    monkeypatch.chdir(tmp_path / "first")
    with pytest.raises(TrainingInterrupted):
        main(config_from_cli([*flags, "--run-dir", "run"]), epoch_callback=interrupt_at(2))
    moved = tmp_path / "elsewhere" / "renamed"
    moved.parent.mkdir()
    os.rename(tmp_path / "first" / "run", moved)
    # its saved run_dir, "run", now names no folder, or another one where it is given again
    with pytest.raises(ConfigError, match="--run-dir run, which names another folder") as error:
        config_from_cli(["--resume", str(moved), "--run-dir", "run"])
    assert "\n" not in str(error.value)
    assert config_from_cli(["--resume", str(moved), "--run-dir", str(moved)]).run_dir == str(moved)

    main(config_from_cli(["--resume", str(moved)]))
    _assert_same_training(moved, Path(straight["run_dir"]))
    saved = json.loads((moved / "config.json").read_text())
    assert (saved["run_dir"], saved["resume"]) == (str(moved), str(moved))
    assert not (tmp_path / "first" / "run").exists()


def test_a_run_killed_after_its_last_epoch_finishes_on_resume(data, tmp_path) -> None:
    run_dir = tmp_path / "run"
    argv = ["--data", str(data), *FLAGS, "--run-dir", str(run_dir)]
    main(config_from_cli(argv))
    finished = json.loads((run_dir / "summary.json").read_text())
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    # what a kill while the test split was evaluated leaves: every epoch saved, no summary
    (run_dir / "summary.json").unlink()
    main(config_from_cli(["--resume", str(run_dir)]))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {k: v for k, v in summary.items() if k not in TIMING_KEYS} == {
        k: v for k, v in finished.items() if k not in TIMING_KEYS
    }
    # nothing left to train: the time is the finished run's own, not the resume's zero
    assert finished["train_time_s"] > 0
    assert summary["train_time_s"] == pytest.approx(finished["train_time_s"])
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics
    with pytest.raises(TrainError, match="nothing to train"):
        main(config_from_cli(["--resume", str(run_dir)]))
