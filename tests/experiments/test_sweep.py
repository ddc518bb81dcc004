"""Sweeps end to end: trials, results rows, failures, resuming, kill -9 and the Ray backend."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bc.machine import training_machine
from bc.run_dir import all_actions_step
from configflags import CommandFailed, UserError
from experiments.sweep.config import SweepConfig
from experiments.sweep.results import read_jsonl
from experiments.sweep.runner import main
from experiments.sweep.spec_sources import resolve_spec
from tests.experiments.helpers import InlineBackend, tiny_spec


def _metrics(rows):
    """Rows without what may differ between two equal sweeps (wall and training time)."""
    return [{k: v for k, v in row.items() if k not in ("wall_s", "train_s")} for row in rows]


def test_the_scheduler_stages_the_dataset_goes_on_past_a_failure_and_retries_only_it(
    tmp_path, monkeypatch, capsys
):
    backend = InlineBackend()
    monkeypatch.setattr("experiments.sweep.runner.make_backend", lambda *args: backend)
    spec = tiny_spec(tmp_path, 'train.pretrained = ["", "no/such/weights.pt"]', seeds="[0]")
    out = tmp_path / "out"
    with pytest.raises(CommandFailed, match="1 of 2 trials failed"):
        main(SweepConfig(spec=spec, out=out, quiet=True))
    (row,) = read_jsonl(out / "results.jsonl")
    assert backend.jobs[:2] == [f"dataset:{row['dataset']}", f"trial:{row['trial']}"]
    failed = backend.jobs[2].partition(":")[2]
    assert len(backend.jobs) == 3 and failed.startswith("pretrained-no_such")
    assert row["values"] == {"train.pretrained": ""}
    assert "pretrained" in (out / "trials" / failed / "log.txt").read_text()
    assert not (out / "trials" / failed / "result.json").exists()
    printed = capsys.readouterr().err  # even --quiet prints a failure with its log's end
    assert f"trial {failed}" in printed and "failed (exit 2)" in printed
    assert "error: " in printed.split("failed (exit 2)", 1)[1]

    backend.jobs.clear()
    with pytest.raises(CommandFailed, match="1 of 2 trials failed"):
        main(SweepConfig(spec=spec, out=out, quiet=True))
    assert backend.jobs == [f"trial:{failed}"], "only the failed trial runs again"


def test_the_page_table_is_the_mean_over_seeds_with_its_t_interval(tmp_path, monkeypatch):
    backend = InlineBackend()
    monkeypatch.setattr("experiments.sweep.runner.make_backend", lambda *args: backend)
    spec = tiny_spec(tmp_path, "train.lr = [1e-3]")
    page = tmp_path / "results.md"
    page.write_text("# Results\n\nno markers yet\n")
    with pytest.raises(UserError, match="<!-- lr:start -->"):
        main(SweepConfig(spec=spec, out=tmp_path / "out", quiet=True, table_into=page,
                         table_name="lr"))  # fmt: skip
    assert backend.jobs == [], "a page without the markers is refused before any work"

    page.write_text("# Results\n\n<!-- lr:start -->\nold\n<!-- lr:end -->\n\nafter\n")
    result = main(SweepConfig(spec=spec, out=tmp_path / "out", quiet=True, table_into=page,
                              table_name="lr"))  # fmt: skip
    text = page.read_text()
    assert "old" not in text and text.endswith("<!-- lr:end -->\n\nafter\n")
    (row,) = [line for line in text.splitlines() if line.startswith("| 0.001 |")]
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    rates = [r["success_rate"] for r in result.rows]
    mean = sum(rates) / 2
    std = abs(rates[0] - rates[1]) / 2**0.5
    half = 12.7062 * std / 2**0.5  # t(0.975, 1 degree of freedom) * s / sqrt(n)
    low, high = max(0.0, mean - half), min(1.0, mean + half)
    assert cells[:2] == ["0.001", "2"]
    assert cells[2] == f"{100 * mean:.1f} ± {100 * std:.1f}% [{100 * low:.0f}%, {100 * high:.0f}%]"
    summaries = [json.loads((result.out / r["run_dir"] / "summary.json").read_text())
                 for r in result.rows]  # fmt: skip
    frames = {s["train_frames"] for s in summaries}
    assert frames == {r["train_frames"] for r in result.rows} and len(frames) == 1
    assert cells[7] == f"{frames.pop():,}", "both seeds train on the same dataset"
    assert [r["train_s"] for r in result.rows] == [s["train_time_s"] for s in summaries]
    longest = max(s["train_time_s"] for s in summaries)
    assert cells[8] == f"{longest / 60:.1f} min", "a per-seed budget is checked on the longest"
    per_action = [min(values) for values in zip(*(s["test_last"]["per_class_accuracy"]
                                                  for s in summaries), strict=True)]  # fmt: skip
    assert cells[10] == " ".join(f"{value:.2f}" for value in per_action)
    assert "--table-into" in text and "--table-name lr" in text, "the note says how to rerun it"


def test_the_committed_rows_are_written_after_each_trial_and_a_fresh_clone_resumes_from_them(
    tmp_path, monkeypatch, capsys
):
    backend = InlineBackend()
    monkeypatch.setattr("experiments.sweep.runner.make_backend", lambda *args: backend)
    monkeypatch.chdir(tmp_path)  # a spec's rows path is relative to the repository root
    text = tiny_spec(tmp_path, "train.lr = [1e-3]", seeds="[0]").read_text()
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'rows = "rows/tiny.jsonl"\n' + text + '[budget]\nminutes = 3\nrule = "one seed"\n'
    )
    main(SweepConfig(spec=spec, out=tmp_path / "out", quiet=False))
    assert "budget of tiny: 1 trials in about 3 min on the 2-core machine; rule: one seed" in (
        " ".join(capsys.readouterr().out.split())
    )
    committed = read_jsonl(tmp_path / "rows" / "tiny.jsonl")
    assert committed == read_jsonl(tmp_path / "out" / "results.jsonl") and len(committed) == 1
    assert not Path(committed[0]["run_dir"]).is_absolute(), "rows hold no machine's paths"

    backend.jobs.clear()  # a fresh clone: the sweep folder is gone, the committed rows are not
    result = main(SweepConfig(spec=spec, out=tmp_path / "fresh", quiet=True))
    assert backend.jobs == [] and result.rows == committed
    (tmp_path / "rows" / "tiny.jsonl").write_text("{not json\n")
    with pytest.raises(UserError, match="not a rows file"):
        main(SweepConfig(spec=spec, out=tmp_path / "fresh", quiet=True))


def test_a_missing_init_from_checkpoint_is_refused_before_anything_runs(tmp_path, monkeypatch):
    backend = InlineBackend()
    monkeypatch.setattr("experiments.sweep.runner.make_backend", lambda *args: backend)
    monkeypatch.chdir(tmp_path)  # init_from paths are relative to the repository root
    text = tiny_spec(tmp_path, 'train.init_from = [["source/last.pt:encoder"]]', seeds="[0]")
    spec = tmp_path / "spec.toml"
    spec.write_text('rows = "rows/tiny.jsonl"\n' + text.read_text())
    with pytest.raises(UserError, match=r"train.init_from source/last.pt does not exist .*run the"
                       " sweep that makes it first"):  # fmt: skip
        main(SweepConfig(spec=spec, out=tmp_path / "out", quiet=True))
    assert backend.jobs == [] and not (tmp_path / "out" / "sweep.json").exists()

    # a fresh clone of finished work: the committed rows need no source checkpoint
    (trial,) = resolve_spec(SweepConfig(spec=spec)).trials()
    (tmp_path / "rows").mkdir()
    row = {"trial": trial.id, "config": "train.init_from=...", "values": trial.values, "seed": 0,
           "val_accuracy": 0.9, "test_accuracy": 0.9, "val_loss": 0.3, "success_rate": 0.5,
           "success_ci": [0.1, 0.9], "collision_rate": 0.5, "agreement": 0.8, "episodes": 2,
           "train_frames": 100, "train_s": 1.0, "wall_s": 2.0}  # fmt: skip
    (tmp_path / "rows" / "tiny.jsonl").write_text(json.dumps(row) + "\n")
    result = main(SweepConfig(spec=spec, out=tmp_path / "fresh", quiet=True))
    assert backend.jobs == [] and [row["trial"] for row in result.rows] == [trial.id]


def test_a_failed_trial_is_reported_the_others_go_on_and_a_rerun_retries_only_it(tmp_path, capsys):
    # the second value names weights that do not exist: that trial fails when training starts
    spec = tiny_spec(tmp_path, 'train.pretrained = ["", "no/such/weights.pt"]', seeds="[0]")
    out = tmp_path / "out"
    with pytest.raises(CommandFailed, match="1 of 2 trials failed"):
        main(SweepConfig(spec=spec, out=out, workers=2, quiet=True))
    printed = capsys.readouterr().err
    assert "failed (exit 2)" in printed and "no/such/weights.pt" in printed, printed

    (row,) = read_jsonl(out / "results.jsonl")
    assert row["values"] == {"train.pretrained": ""} and row["seed"] == 0
    summary = json.loads((out / row["run_dir"] / "summary.json").read_text())
    evaluation = json.loads((out / row["eval_file"]).read_text())["summary"]
    assert row["val_loss"] == summary["best_val_loss"]
    assert row["checkpoint"] == "last", "eval.rollout's default checkpoint"
    assert row["test_accuracy"] == summary["test_last"]["accuracy"]
    assert row["test_per_class_accuracy"] == summary["test_last"]["per_class_accuracy"]
    assert row["success_rate"] == evaluation["successes"] / 2
    assert row["success_ci"] == [evaluation["success_ci_low"], evaluation["success_ci_high"]]
    assert row["episodes"] == 2 and row["wall_s"] > 0
    assert row["steps"] == summary["steps"]
    assert row["all_actions_step"] == all_actions_step(out / row["run_dir"])
    assert row["machine"] == training_machine()
    (failed,) = [p for p in (out / "trials").iterdir() if p.name != row["trial"]]
    error_line = (failed / "log.txt").read_text().splitlines()[-1]
    assert error_line.startswith("error: ") and "pretrained" in error_line
    assert error_line in (out / "results.md").read_text()
    assert not (failed / "result.json").exists()

    done = out / "trials" / row["trial"] / "result.json"
    dataset_log = next((out / "datasets").glob("*.log"))
    before = (done.stat().st_mtime_ns, dataset_log.stat().st_mtime_ns)
    with pytest.raises(CommandFailed, match="1 of 2 trials failed"):
        main(SweepConfig(spec=spec, out=out, workers=2, quiet=True))
    # the finished trial and the recorded dataset were not run again
    assert (done.stat().st_mtime_ns, dataset_log.stat().st_mtime_ns) == before
    assert len(read_jsonl(out / "results.jsonl")) == 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted local sweep: 2 configurations x 2 seeds."""
    root = tmp_path_factory.mktemp("sweep")
    spec = tiny_spec(root, "train.frames = [1, 3]")
    result = main(SweepConfig(spec=spec, out=root / "local", workers=2, quiet=True))
    return spec, result


def test_a_sweep_runs_every_trial_and_rerunning_skips_them(reference):
    spec, result = reference
    assert len(result.rows) == 4 and sorted(result.ran) == sorted(t.id for t in result.trials)
    assert [(r["values"]["train.frames"], r["seed"]) for r in result.rows] == [
        (1, 0), (1, 1), (3, 0), (3, 1),
    ]  # fmt: skip
    # seeds change the weights: a sweep whose trials all came out equal would prove nothing
    assert len({row["val_loss"] for row in result.rows}) == 4
    again = main(SweepConfig(spec=spec, out=result.out, quiet=True))
    assert again.ran == [] and _metrics(again.rows) == _metrics(result.rows)


def test_kill_9_loses_only_the_trials_in_flight(reference, tmp_path):
    spec, uninterrupted = reference
    out = tmp_path / "out"
    for dataset in (uninterrupted.out / "datasets").iterdir():  # recorded once, reused
        if dataset.is_dir():
            shutil.copytree(dataset, out / "datasets" / dataset.name)
    child = subprocess.Popen(
        [sys.executable, "-m", "experiments.sweep", str(spec), "--out", str(out),
         "--workers", "1", "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(out.glob("trials/*/result.json")) and time.monotonic() < deadline:
        assert child.poll() is None, "the sweep ended before the kill"
        time.sleep(0.05)
    in_flight = psutil.Process(child.pid).children(recursive=True)
    child.send_signal(signal.SIGKILL)
    child.wait()
    _, alive = psutil.wait_procs(in_flight, timeout=30)
    assert not alive, f"trial processes outlived the sweep: {alive}"
    finished = {path.parent.name for path in out.glob("trials/*/result.json")}
    assert 1 <= len(finished) < 4
    # the kill may come between a trial's result.json and the results.jsonl that lists it
    if (out / "results.jsonl").exists():
        assert {row["trial"] for row in read_jsonl(out / "results.jsonl")} <= finished

    resumed = main(SweepConfig(spec=spec, out=out, workers=2, quiet=True))
    assert sorted(resumed.ran) == sorted(t.id for t in resumed.trials if t.id not in finished)
    assert _metrics(resumed.rows) == _metrics(uninterrupted.rows)
    assert _metrics(read_jsonl(out / "results.jsonl")) == _metrics(uninterrupted.rows)
    assert not list((out / "datasets").glob("*.log")), "the copied dataset was recorded again"


def test_the_ray_backend_gives_the_local_rows(reference, ray_session, tmp_path):
    spec, local = reference
    remote = main(SweepConfig(spec=spec, out=tmp_path / "ray", backend="ray", quiet=True))
    assert len(remote.rows) == 4
    assert _metrics(remote.rows) == _metrics(local.rows)


def test_trial_processes_die_with_a_killed_parent(tmp_path):
    # what makes kill -9 safe: a job process asks Linux to kill it when its parent dies
    parent = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time; subprocess.Popen([sys.executable,"
         " '-c', 'import os, sys, time; from expert.workers import die_with_parent;"
         " die_with_parent(os.getppid()); print(os.getpid(), flush=True); time.sleep(60)']);"
         " time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )  # fmt: skip
    grandchild = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    grandchild.wait(timeout=10)
    assert not grandchild.is_running()
