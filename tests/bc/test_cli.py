"""``python -m bc.train`` as users run it: one-line errors, exit codes, defaults, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bc.checkpoint import read_checkpoint
from bc.config import TrainConfig, config_from_dict, config_to_dict
from bc.errors import ConfigError
from bc.train import cli, config_from_cli
from configflags import build_parser
from tests.bc.helpers import read_metrics, small_dataset
from tests.commands import (
    ROOT,
    assert_exit_2_one_line,
    module_command,
    module_env,
    run_here,
    run_module,
)


def _run(
    args: list[str], cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    env = module_env(OMP_NUM_THREADS="1")
    return run_module("bc.train", *args, cwd=cwd or ROOT, env=env, timeout=timeout)


def _here(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m bc.train ARGS`` run in this process (no interpreter start-up)."""
    return run_here("bc.train", *args, cwd=cwd)


def test_unknown_net(data) -> None:
    # in a child Python, as users run it; the other bad-input cases run in this process
    assert_exit_2_one_line(
        _run(["--data", str(data), "--net", "nope"]), "unknown --net 'nope'", "tiny_nfc"
    )


def test_frames_zero(data) -> None:
    assert_exit_2_one_line(_here(["--data", str(data), "--frames", "0"]), "--frames must be >= 1")


def test_missing_dataset_and_dataset_without_runs(tmp_path) -> None:
    assert_exit_2_one_line(_here(["--data", str(tmp_path / "missing")]), "does not exist")
    empty = tmp_path / "empty"
    (empty / "runs").mkdir(parents=True)
    (empty / "manifest.json").write_text(
        json.dumps(
            {
                "format_version": 1,
                "env_kwargs": {
                    "n_bins": 3,
                    "obs_mode": "rgb",
                    "image_size": 32,
                    "action_type": "discrete",
                },
                "runs": [],
                "splits": {"train": [], "val": [], "test": []},
            }
        )
    )
    assert_exit_2_one_line(_here(["--data", str(empty), "--runs-dir", str(tmp_path)]), "no runs")


def test_incompatible_init_from(data, tmp_path) -> None:
    first = _here(
        [
            "--data",
            str(data),
            "--runs-dir",
            str(tmp_path),
            "--steps",
            "1",
            "--no-progress",
            "--no-tensorboard",
            "--batch-size",
            "4",
        ]
    )
    assert first.returncode == 0, first.stderr
    checkpoint = next(tmp_path.iterdir()) / "checkpoints" / "last.pt"
    result = _here(
        [
            "--data",
            str(data),
            "--runs-dir",
            str(tmp_path),
            "--frames",
            "5",
            "--init-from",
            str(checkpoint),
        ]
    )
    assert_exit_2_one_line(result, "head.0.weight", "net tiny_nfc")


def test_bad_flag_values_are_one_line_too(data) -> None:
    assert_exit_2_one_line(_here(["--data", str(data), "--frames", "three"]), "--frames")
    assert_exit_2_one_line(_here(["--data", str(data), "--optimizer", "rmsprop"]), "--optimizer")


def test_no_arguments_trains_the_default_pipeline(tmp_path) -> None:
    small_dataset(tmp_path / "data" / "default")
    result = _here(["--epochs", "1", "--batch-size", "8", "--no-progress"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.endswith("_tiny_nfc_f3")
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["data"], config["net"], config["frames"], config["head"]) == (
        "data/default",
        "tiny_nfc",
        3,
        "classifier",
    )
    assert not (tmp_path / "runs" / "latest").exists()


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# SIGTERM ends a command as SIGINT does (configflags.run_main turns it into Ctrl-C:
# tests/test_configflags.py), and eval.suite's interrupted run is stopped with it
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_ctrl_c_is_one_line_and_resume_continues(data, tmp_path, signum) -> None:
    argv = ["--data", str(data), "--runs-dir", str(tmp_path), "--epochs", "10000",
            "--batch-size", "4", "--no-progress", "--no-tensorboard"]  # fmt: skip
    process = subprocess.Popen(
        module_command("bc.train", *argv),
        cwd=ROOT,
        env=module_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # as from a terminal: a test run started in the background (``cmd &``) would pass
        # its ignored SIGINT on, and a process that starts with SIGINT ignored keeps ignoring it
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("*/metrics.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL  # no handler: last.pt must suffice
    else:
        assert process.returncode == 130
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: interrupted in epoch"), stderr
        assert "--resume" in lines[0] and "Traceback" not in stderr
    (run_dir,) = tmp_path.iterdir()
    # intact whenever the kill came; a kill between saving it and appending the epoch's
    # metrics line leaves metrics.jsonl one short, which the resume restores from last.pt
    last = read_checkpoint(run_dir / "checkpoints" / "last.pt")
    done = last["epoch"]
    assert len(read_metrics(run_dir)) in (done, done - 1)
    result = _here(["--resume", str(run_dir), "--epochs", str(done + 1), "--no-progress"])
    assert result.returncode == 0, result.stderr
    records = read_metrics(run_dir)
    assert [r["epoch"] for r in records] == list(range(1, done + 2))


def test_cli_makes_the_epoch_callback_with_the_factory(data, tmp_path) -> None:
    made = []

    def factory(config: TrainConfig):
        made.append(config.eval_every)
        return lambda epoch, checkpoint: {"success_rate": 0.25 * epoch}

    argv = ["--data", str(data), "--runs-dir", str(tmp_path), "--epochs", "2", "--eval-every", "1"]
    previous = signal.getsignal(signal.SIGTERM)  # run_main turns SIGTERM into Ctrl-C
    try:
        results = cli([*argv, "--no-progress", "--no-tensorboard"], epoch_callback_factory=factory)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert made == [1]
    records = read_metrics(results["run_dir"])
    assert [r["eval"] for r in records] == [{"success_rate": 0.25}, {"success_rate": 0.5}]


def test_resume_refuses_experiment_flags(data, tmp_path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(
        json.dumps(dataclasses.asdict(TrainConfig(data=str(data))))
    )
    with pytest.raises(ConfigError, match="--lr cannot change"):
        config_from_cli(["--resume", str(run_dir), "--lr", "0.1"])
    config = config_from_cli(["--resume", str(run_dir), "--epochs", "20", "--device", "cpu"])
    assert (config.epochs, config.device, config.resume, config.data) == (
        20,
        "cpu",
        str(run_dir),
        str(data),
    )


def test_help_has_a_line_for_every_field() -> None:
    parser = build_parser(TrainConfig, "python -m bc.train", "", aliases=True)
    text = parser.format_help()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        assert flag in text, flag
        assert field.metadata["help"]
    assert "--time_length" in text  # the original scripts' spelling works too


def test_cli_parses_lists_and_booleans() -> None:
    config = config_from_cli(
        [
            "--init-from",
            "a.pt:encoder",
            "--init-from",
            "b.pt",
            "--freeze",
            "encoder",
            "lstm",
            "--net",
            "tiny_lstm",
            "--frames",
            "1",
            "--no-progress",
            "--bptt",
            "full",
        ]
    )
    assert config.init_from == ["a.pt:encoder", "b.pt"]
    assert config.freeze == ["encoder", "lstm"]
    assert config.progress is False and config.bptt == "full"
    assert config_from_cli(["--balance"]).balance is True


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"frames": 0}, "--frames must be >= 1"),
        ({"net": "tiny", "frames": 3}, "takes --frames in {1}"),
        ({"net": "tiny_lstm", "frames": 3}, "recurrent"),
        ({"head": "classifier", "target": "continuous"}, "--target continuous"),
        (
            {
                "sliding_step": 9,
                "time_length": 4,
                "net": "tiny_lstm",
                "frames": 1,
                "bptt": "sliding",
            },
            "--sliding-step",
        ),
        ({"accumulate": True}, "--accumulate"),
        ({"balance": True, "net": "tiny_lstm", "frames": 1}, "--balance"),
        ({"lr": 0}, "--lr"),
        ({"momentum": 1.0}, "--momentum"),
        ({"batch_size": 0}, "--batch-size"),
        ({"clip": -1}, "--clip"),
        ({"epochs": 0}, "--epochs"),
        ({"subsample": 0}, "--subsample"),
        ({"optimizer": "rmsprop"}, "--optimizer"),
        ({"input_norm": "zscore"}, "--input-norm"),
        ({"freeze": ["none", "encoder"]}, "--freeze none"),
        ({"resume": "a", "run_dir": "b"}, "--run-dir"),
        ({"eval_every": -1}, "--eval-every"),
    ],
)
def test_config_errors_say_what_to_do(values, message) -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(**values)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_defaults_are_the_default_pipeline() -> None:
    config = TrainConfig()
    assert (config.data, config.net, config.frames, config.head, config.target) == (
        "data/default",
        "tiny_nfc",
        3,
        "classifier",
        "bin",
    )
    assert config.eval_every == 0 and config.freeze == [] and config.init_from == []


def test_an_older_config_with_out_reads_as_runs_dir() -> None:
    values = config_to_dict(TrainConfig())
    del values["runs_dir"]
    values["out"] = "elsewhere"  # the field's name before --runs-dir
    assert config_from_dict(TrainConfig, values).runs_dir == "elsewhere"
