"""artifacts.step_timings: a resumed step reports the time of every run that worked on it."""

import json

import pytest

import artifacts.step_timings as step_timings
from artifacts.step_timings import UNFINISHED, StepTimings


class _Clock:
    """perf_counter that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = _Clock()
    monkeypatch.setattr(step_timings.time, "perf_counter", fake)
    return fake


def test_a_finished_step_records_its_time_and_keeps_it(tmp_path, clock):
    path = tmp_path / "timings.json"
    timings = StepTimings(path)
    with timings.timed("collect"):
        clock.now += 12.5
    assert timings["collect"] == 12.5 and "collect" in timings
    assert json.loads(path.read_text()) == {"collect": 12.5}
    # run again once finished: the block runs, the recorded time stays
    ran = []
    again = StepTimings(path)
    with again.timed("collect"):
        ran.append(True)
        clock.now += 1.0
    assert ran and again["collect"] == 12.5
    assert json.loads(path.read_text()) == {"collect": 12.5}


def test_an_interrupted_step_adds_its_time_to_the_run_that_finishes_it(tmp_path, clock):
    path = tmp_path / "timings.json"
    timings = StepTimings(path)
    with pytest.raises(KeyboardInterrupt), timings.timed("dagger_s0"):
        clock.now += 300.0
        raise KeyboardInterrupt
    assert "dagger_s0" not in timings and timings.get("dagger_s0", -1.0) == -1.0
    assert json.loads(path.read_text()) == {UNFINISHED: {"dagger_s0": 300.0}}
    # a second interrupted run adds to the first; a third finishes: the sum of all three
    with pytest.raises(RuntimeError), StepTimings(path).timed("dagger_s0"):
        clock.now += 50.0
        raise RuntimeError("a worker died")
    resumed = StepTimings(path)
    with resumed.timed("dagger_s0"):
        clock.now += 200.0
    assert resumed["dagger_s0"] == 550.0
    assert json.loads(path.read_text()) == {"dagger_s0": 550.0}  # nothing left unfinished


def test_unfinished_time_is_kept_per_step(tmp_path, clock):
    path = tmp_path / "timings.json"
    timings = StepTimings(path)
    with timings.timed("collect"):
        clock.now += 10.0
    with pytest.raises(KeyboardInterrupt), timings.timed("train_s0"):
        clock.now += 7.0
        raise KeyboardInterrupt
    with StepTimings(path).timed("train_s1"):
        clock.now += 3.0
    assert json.loads(path.read_text()) == {
        "collect": 10.0,
        "train_s1": 3.0,
        UNFINISHED: {"train_s0": 7.0},
    }


def test_a_file_of_finished_steps_alone_reads_as_before(tmp_path):
    path = tmp_path / "timings.json"
    path.write_text(json.dumps({"collect": 192.4, "train_s0": 1045.8}))
    timings = StepTimings(path)
    assert timings["train_s0"] == 1045.8 and timings.get("dagger_s0") == 0.0
    assert timings.unfinished == {}
