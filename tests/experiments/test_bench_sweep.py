"""``python -m experiments.sweep.bench``: the figures it returns and prints, and its bad flags.

The sweeps run their trials in this process (``InlineBackend``) and Ray is a stand-in, so the
whole bench takes seconds; what is checked is what the bench asks of each sweep and the
figures it derives from their timings.
"""

from __future__ import annotations

import re
import tempfile
from types import SimpleNamespace

import pytest

from experiments.sweep import bench as bench_sweep
from experiments.sweep.bench import BenchConfig, main
from experiments.sweep.results import read_jsonl
from experiments.sweep.runner import SweepResult
from experiments.sweep.spec_sources import resolve_spec
from experiments.sweep.trial import dataset_dir
from tests.commands import assert_one_error_line, module_env, refused_flags, run_module
from tests.experiments.helpers import InlineBackend

PROG = "python -m experiments.sweep.bench"


class FakeRay:
    """What the bench does with the ``ray`` module: init once, shut down once."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def init(self, **kwargs) -> None:
        assert kwargs["num_cpus"] == 2
        self.calls.append("init")

    def shutdown(self) -> None:
        self.calls.append("shutdown")


def test_each_backend_runs_the_same_trials_on_the_one_dataset(tmp_path, monkeypatch, capsys):
    backends, jobs, rows, roots = [], [], {}, set()

    def inline_backend(name, address, workers, cpus, gpus):
        backends.append((name, workers))
        backend = InlineBackend()
        jobs.append(backend.jobs)
        return backend

    real_sweep = bench_sweep.sweep

    def sweep_and_read(config):
        result = real_sweep(config)
        rows[config.out.name] = read_jsonl(config.out / "results.jsonl")
        roots.add(config.out.parent)
        return result

    ray = FakeRay()
    monkeypatch.setattr("experiments.sweep.runner.make_backend", inline_backend)
    monkeypatch.setattr(bench_sweep, "sweep", sweep_and_read)
    monkeypatch.setattr(bench_sweep, "import_ray", lambda purpose: ray)
    # the default working folder, made in tmp_path
    temp = SimpleNamespace(mkdtemp=lambda prefix: tempfile.mkdtemp(prefix=prefix, dir=tmp_path))
    monkeypatch.setattr(bench_sweep, "tempfile", temp)

    config = BenchConfig(trials=2, epochs=1, episodes=1)
    figures = main(config)

    assert backends == [("local", 1), ("local", 2), ("ray", 2)]
    assert ray.calls == ["init", "shutdown"]
    # every sweep ran every trial, with the bench's flags, and recorded no dataset itself
    assert set(rows) == {"local_1", "local_2", "ray_2"}
    for sweep_rows in rows.values():
        assert [row["seed"] for row in sweep_rows] == [0, 1]
        assert {(row["epochs"], row["episodes"]) for row in sweep_rows} == {(1, 1)}
        assert len({row["dataset"] for row in sweep_rows}) == 1
    assert all(key.startswith("trial:") for keys in jobs for key in keys), jobs
    assert sorted(figures) == [
        "local_1_s", "local_2_s", "ray_2_s", "ray_overhead_per_trial_s", "ray_start_s",
        "speedup_2",
    ]  # fmt: skip
    assert all(figures[key] > 0 for key in ("local_1_s", "local_2_s", "ray_2_s", "ray_start_s"))
    assert figures["speedup_2"] == pytest.approx(figures["local_1_s"] / figures["local_2_s"])
    overhead = (figures["ray_2_s"] - figures["local_2_s"]) / config.trials
    assert figures["ray_overhead_per_trial_s"] == pytest.approx(overhead)
    out = capsys.readouterr().out
    for line in ("local, 1 worker", "local, 2 workers", "Ray (local), 2 at once"):
        assert line in out
    assert f"{overhead:+.2f} s" in out and "load average" in out
    (root,) = roots
    assert root.parent == tmp_path and not root.exists(), "the working folder was left behind"


def test_figures_and_table_follow_the_trial_phase_times(tmp_path, monkeypatch, capsys):
    seconds = {1: 8.0, 2: 5.0}  # trial phase of 2 trials with 1 and 2 workers

    def timed_sweep(config):
        spec = resolve_spec(config)  # the flags the bench passes make a valid sweep
        trials = spec.trials()
        assert [trial.seed for trial in trials] == [0, 1]
        # the trial phase alone is timed: the recorded dataset is in place before it
        assert (dataset_dir(config.out, trials[0].dataset) / "manifest.json").is_file()
        rows = [{"seed": trial.seed} for trial in trials]
        return SweepResult(config.out, trials, rows, trials_s=seconds[config.workers])

    monkeypatch.setattr(bench_sweep, "sweep", timed_sweep)
    figures = main(BenchConfig(trials=2, ray=False, out=tmp_path / "bench"))
    assert figures == {"local_1_s": 8.0, "local_2_s": 5.0, "speedup_2": 1.6}
    out = capsys.readouterr().out
    rows = [re.findall(r"\d+\.\d+", line) for line in out.splitlines() if "local," in line]
    # trial phase, trials/min = 60 x 2 trials / trial phase, speed-up against 1 worker
    assert rows == [["8.0", "15.0", "1.00"], ["5.0", "24.0", "1.60"]]
    assert "Ray" not in out
    assert (tmp_path / "bench" / "dataset").is_dir(), "a given --out is kept"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trials", "1"], "--trials must be >= 2"),
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--episodes", "0"], "--episodes must be >= 1"),
        (["--trials", "two"], "--trials"),
        (["--workers", "2"], "--workers"),
    ],
)
def test_bad_flags_are_one_error_line_and_exit_2(argv, message, capsys):
    assert_one_error_line(refused_flags(BenchConfig, PROG, argv, capsys), message)


def test_the_command_line_exits_2_with_one_line(tmp_path):
    argv = ["--trials", "1", "--out", "out"]
    result = run_module(
        "experiments.sweep.bench", *argv, cwd=tmp_path, env=module_env(), timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: --trials must be >= 2\n"
    assert result.stdout == "" and list(tmp_path.iterdir()) == []
