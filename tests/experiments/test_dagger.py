import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from configflags import UserError
from dataset import load_run
from dataset.verify import check_dataset
from experiments.dagger.loop import (
    Dagger,
    DaggerConfig,
    DaggerError,
    _check_same_config,
    _identity,
)
from experiments.dagger.loop import main as dagger
from expert.experts import SOURCE_POLICY, Takeover
from tests.commands import assert_exit_2_one_line, run_here, run_module
from tests.eval.helpers import policies_claim_bins, spy_on_flights

TINY_WORLD = ["--image-size", "32", "--n-segments", "1", "--segment-length", "4", "5"]


def _run(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = run_module(module, *args, cwd=cwd, timeout=600)
    assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def bc_run(tmp_path_factory) -> Path:
    """A tiny recorded dataset and a one-epoch BC run on it."""
    root = tmp_path_factory.mktemp("dagger")
    data = str(root / "data")  # absolute: the run's config.json is read from other folders
    _run("expert.collect", "--runs", "3", "--quiet", "--out", data, *TINY_WORLD, cwd=root)
    _run("bc.train", "--data", data, "--epochs", "1", "--no-progress", "--no-tensorboard",
         "--run-dir", "runs/bc", cwd=root)  # fmt: skip
    return root / "runs" / "bc"


def _tiny(run: Path, out: Path, **values) -> DaggerConfig:
    settings = dict(run=run, out=out, iterations=1, runs_per_iteration=2, episodes=2,
                    workers=1, quiet=True)  # fmt: skip
    settings.update(values)
    return DaggerConfig(**settings)


def test_beta_schedules_by_hand():
    config = DaggerConfig(beta=0.5, iterations=4, beta_schedule="constant")
    assert [config.beta_at(i) for i in (1, 2, 3, 4)] == [0.5, 0.5, 0.5, 0.5]
    config = DaggerConfig(beta=0.8, iterations=4, beta_schedule="linear")
    assert [config.beta_at(i) for i in (1, 2, 3, 4)] == pytest.approx([0.8, 0.6, 0.4, 0.2])
    config = DaggerConfig(beta=0.5, iterations=3, beta_schedule="exponential")
    assert [config.beta_at(i) for i in (1, 2, 3)] == [0.5, 0.25, 0.125]


def test_takeover_engages_beyond_and_hands_back_under_half():
    takeover = Takeover(offset=0.6, heading=40.0, handback=0.5)
    assert not takeover.update(0.5, 0.0)
    assert takeover.update(-0.7, 0.0)  # either side of the centreline
    assert takeover.update(0.4, 0.0)  # still above 0.3 m
    assert not takeover.update(0.2, math.radians(10))
    assert takeover.update(0.0, math.radians(-41))
    assert takeover.update(0.0, math.radians(25))  # 25 > 20 degrees
    assert not takeover.update(0.0, math.radians(19))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--beta", "1.5"], "--beta must be in [0, 1]"),
        (["--run", "no/such/run"], "does not exist"),
        (["--beta-schedule", "cosine"], "invalid choice"),
        (["--select-episodes", "0"], "--select-episodes must be >= 1"),
        (["--mixture", "moon"], "--mixture must be one of none, generalist"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, flags, message):
    assert_exit_2_one_line(run_here("experiments.dagger", *flags, cwd=tmp_path), message)


def test_a_dataset_for_another_env_is_refused(bc_run, tmp_path):
    other = tmp_path / "other"
    _run("expert.collect", "--runs", "3", "--quiet", "--out", str(other), "--image-size", "40",
         "--n-segments", "1", "--segment-length", "4", "5", cwd=tmp_path)  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoints").symlink_to(bc_run / "checkpoints")
    config = json.loads((bc_run / "config.json").read_text())
    config["data"] = str(other)
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(DaggerError, match="image_size"):
        dagger(_tiny(run, tmp_path / "out"))


def test_a_changed_config_in_the_same_out_is_refused(bc_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "dagger.json").write_text(json.dumps({"beta": 0.9}))
    with pytest.raises(DaggerError, match="beta"):
        dagger(_tiny(bc_run, out))


@pytest.mark.parametrize("schedule, allowed", [("exponential", True), ("linear", False)])
def test_more_iterations_extend_a_run_unless_beta_depends_on_them(
    bc_run, tmp_path, schedule, allowed
):
    out = tmp_path / "out"
    first = _tiny(bc_run, out)
    first = dataclasses.replace(first, iterations=1, beta_schedule=schedule)
    identity = _identity(first, bc_run)
    out.mkdir()
    (out / "dagger.json").write_text(json.dumps(identity))
    more = dataclasses.replace(first, iterations=3)
    if allowed:
        _check_same_config(out, _identity(more, bc_run))
        assert json.loads((out / "dagger.json").read_text())["iterations"] == 3
        with pytest.raises(DaggerError, match="iterations"):  # fewer is not an extension
            _check_same_config(out, _identity(first, bc_run))
    else:
        with pytest.raises(DaggerError, match="iterations=1"):
            _check_same_config(out, _identity(more, bc_run))


def test_kill_9_mid_iteration_resumes_and_the_dataset_verifies(bc_run, tmp_path):
    out = tmp_path / "out"
    argv = ["experiments.dagger", "--run", str(bc_run), "--out", str(out), "--iterations",
            "1", "--runs-per-iteration", "3", "--episodes", "2", "--workers", "1",
            "--quiet"]  # fmt: skip
    child = subprocess.Popen([sys.executable, "-m", *argv], cwd=tmp_path,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # fmt: skip
    first_run = out / "data" / "runs" / "run_1000000.h5"
    deadline = time.monotonic() + 300
    while not first_run.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert first_run.exists(), "DAgger recorded nothing before the kill"

    rows = dagger(_tiny(bc_run, out, runs_per_iteration=3))
    assert [row["iteration"] for row in rows] == [0, 1]
    report = check_dataset(out / "data")
    assert report.ok, report.problems
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    added = [entry for entry in manifest["runs"] if entry.get("dagger_iteration") == 1]
    assert [entry["run_index"] for entry in added] == [1_000_000, 1_000_001, 1_000_002]
    source = json.loads((bc_run.parent.parent / "data" / "manifest.json").read_text())
    assert len(source["runs"]) == 3, "the source dataset must not change"
    assert rows[1]["expert_frames"] == rows[0]["expert_frames"] + sum(e["frames"] for e in added)
    for name in ("results.md", "results.json", "success.png"):
        assert (out / name).is_file()

    # a finished run only reports: into a page's named block, with the plot beside it
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- dagger:start -->\nold\n<!-- dagger:end -->\nend\n")
    again = dagger(_tiny(bc_run, out, runs_per_iteration=3, table_into=page,
                         plot_into=tmp_path / "img" / "dagger.png"))  # fmt: skip
    assert again == rows
    text = page.read_text()
    assert text.startswith("intro\n<!-- dagger:start -->\n| iteration |") and "old" not in text
    assert text.endswith("<!-- dagger:end -->\nend\n")
    assert (out / "results.md").read_text().strip() in text
    assert (tmp_path / "img" / "dagger.png").stat().st_size > 0


def test_mixture_records_the_iterations_on_its_worlds(bc_run, tmp_path):
    out = tmp_path / "out"
    config = _tiny(bc_run, out, mixture="generalist_obstacles")
    assert _identity(config, bc_run)["mixture"] == "generalist_obstacles"
    assert "mixture" not in _identity(_tiny(bc_run, out), bc_run)  # older runs still resume
    Dagger(config).collect(1)
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert "mixture" not in manifest["env_kwargs"], "the BC dataset's worlds are unchanged"
    added = [entry for entry in manifest["runs"] if entry.get("dagger_iteration") == 1]
    assert [entry["mixture"] for entry in added] == ["generalist_obstacles"] * 2
    differs = []
    for entry in added:
        run = load_run(out / "data" / entry["file"])
        seed = int(run["attrs"]["seed"])
        first = {}
        for mixture in ("generalist_obstacles", "none"):
            env = gym.make(manifest["env_id"], **{**manifest["env_kwargs"], "mixture": mixture})
            first[mixture] = env.reset(seed=seed)[0]
            env.close()
        assert np.array_equal(first["generalist_obstacles"], run["frames"][0])
        differs.append(not np.array_equal(first["none"], run["frames"][0]))
    assert any(differs), "these seeds draw a mixed world: the check above can fail"


def test_a_table_file_without_markers_is_refused_before_any_work(bc_run, tmp_path):
    page = tmp_path / "page.md"
    page.write_text("no markers here\n")
    with pytest.raises(UserError, match="<!-- dagger:start -->"):
        dagger(_tiny(bc_run, tmp_path / "out", table_into=page))
    assert not (tmp_path / "out").exists()


def test_best_success_retrains_with_closed_loop_selection(bc_run, tmp_path):
    with pytest.raises(DaggerError, match="no checkpoints/best_success.pt: train it with"):
        dagger(_tiny(bc_run, tmp_path / "refused", which="best_success"))
    root = bc_run.parent.parent
    _run("bc.train", "--data", str(root / "data"), "--epochs", "2", "--no-progress",
         "--no-tensorboard", "--eval-every", "1", "--eval-episodes", "2",
         "--run-dir", str(tmp_path / "bc_sel"), cwd=tmp_path)  # fmt: skip
    out = tmp_path / "out"
    rows = dagger(_tiny(tmp_path / "bc_sel", out, which="best_success", select_episodes=3))
    assert [row["iteration"] for row in rows] == [0, 1]
    run = out / "iter_01" / "run"
    assert (run / "checkpoints" / "best_success.pt").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "eval" in r]
    assert len(evaluated) == 2 and all(r["eval"]["episodes"] == 3 for r in evaluated)
    assert json.loads((out / "iter_01" / "eval.json").read_text())["which"] == "best_success"
    assert json.loads((out / "dagger.json").read_text())["select_episodes"] == 3
    # select_episodes is part of a run's identity only under best_success
    assert "select_episodes" not in _identity(_tiny(bc_run, out), bc_run)


def test_each_iteration_is_evaluated_through_eval_fly(bc_run, tmp_path, monkeypatch):
    from bc.policy import load_policy
    from eval.agents import expert_config_dict
    from eval.errors import EvalError
    from experiments.dagger.loop import Dagger

    flown = spy_on_flights(monkeypatch)
    results = Dagger(_tiny(bc_run, tmp_path / "out")).evaluate(0)
    [setup] = flown
    # the recording expert, stored in the checkpoint, is the one agreement is measured against
    recorded = load_policy(bc_run / "checkpoints" / "last.pt").expert_config
    assert recorded is not None and recorded["kind"] == "discrete"
    assert setup.labeller.config == results["labeller"] == expert_config_dict(recorded)

    policies_claim_bins(monkeypatch, 5)
    with pytest.raises(EvalError, match="the net predicts 5 action bins but the env has n_bins 3"):
        dagger(_tiny(bc_run, tmp_path / "refused"))
    assert len(flown) == 1, "refused before any episode flew"


def test_dagger_of_a_two_control_policy_with_extras_records_and_retrains(tmp_path):
    """The learner reads its extras from the env it records in and flies its own speed."""
    data = str(tmp_path / "data")
    _run("expert.collect", "--runs", "3", "--quiet", "--out", data, "--controls", "yaw_speed",
         *TINY_WORLD, cwd=tmp_path)  # fmt: skip
    _run("bc.train", "--data", data, "--epochs", "1", "--no-progress", "--no-tensorboard",
         "--extra-inputs", "previous_action", "speed", "--extra-mode", "thought",
         "--run-dir", "runs/bc", cwd=tmp_path)  # fmt: skip
    rows = dagger(_tiny(tmp_path / "runs" / "bc", tmp_path / "dagger", beta=0.0))
    assert [row["iteration"] for row in rows] == [0, 1]
    aggregated = tmp_path / "dagger" / "data"
    assert check_dataset(aggregated).ok
    manifest = json.loads((aggregated / "manifest.json").read_text())
    assert manifest["env_kwargs"]["controls"] == "yaw_speed"
    learner_steps = 0
    for entry in manifest["runs"]:
        run = load_run(aggregated / entry["file"])
        assert "expert_speed_action" in run  # the speed labels of every recorded step
        learner_steps += int((run["source"] == SOURCE_POLICY).sum())
    assert learner_steps > 0  # the learner flew (beta 0: whenever the takeover let it)
