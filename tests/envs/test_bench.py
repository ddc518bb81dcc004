"""``python -m envs.bench``: the rates it returns and prints, and its bad flags.

The rates are checked against a clock that advances only inside the timed calls, by a known
amount per call: every rate then has one right value, whatever the machine.
"""

from __future__ import annotations

import math
import re

import pybullet
import pytest

from envs import bench
from envs.bench import BenchConfig, main
from tests.commands import assert_one_error_line, module_env, refused_flags, run_module

PROG = "python -m envs.bench"
STEP_S, RENDER_S, RESET_S = 0.004, 0.001, 0.02


class VirtualClock:
    """``time.perf_counter`` for the bench: seconds pass only when a timed call says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def counted(monkeypatch):
    """Env steps, resets and raw renders, counted, each taking a known time on the clock."""
    clock = VirtualClock()
    counts = {"steps": 0, "terminated": 0, "renders": 0, "sizes": [], "reset_seeds": []}

    class CountedEnv(bench.CorridorEnv):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            counts["sizes"].append((kwargs["image_size"], self.observation_space.shape))

        def step(self, action):
            result = super().step(action)
            counts["steps"] += 1
            counts["terminated"] += result[2]
            clock.now += STEP_S
            return result

        def reset(self, *, seed=None, options=None):
            counts["reset_seeds"].append(seed)
            clock.now += RESET_S
            return super().reset(seed=seed, options=options)

    class CountedPybullet:
        def __getattr__(self, name):
            return getattr(pybullet, name)

        def getCameraImage(self, width, height, *args, **kwargs):  # noqa: N802 (PyBullet's name)
            counts["renders"] += 1
            counts["sizes"].append((width, height))
            clock.now += RENDER_S
            return pybullet.getCameraImage(width, height, *args, **kwargs)

    monkeypatch.setattr(bench, "time", clock)
    monkeypatch.setattr(bench, "CorridorEnv", CountedEnv)
    monkeypatch.setattr(bench, "pb", CountedPybullet())
    return counts


def test_each_size_times_its_steps_renders_and_resets(counted, capsys):
    config = BenchConfig(image_sizes=(32, 48), obs_mode="rgbd", steps=30, seed=5)
    results = main(config)
    assert [r.image_size for r in results] == [32, 48]
    # one env per size at that size, one raw render per step at the env's size
    assert counted["sizes"][0] == (32, (32, 32, 4))
    assert counted["sizes"][1:31] == [(32, 32)] * 30
    assert counted["sizes"][31] == (48, (48, 48, 4))
    assert counted["steps"] == counted["renders"] == 2 * config.steps
    for r in results:
        assert r.env_steps_per_s == pytest.approx(1 / STEP_S)
        assert r.render_per_s == pytest.approx(1 / RENDER_S)
        assert r.ratio == pytest.approx(RENDER_S / STEP_S)
        assert r.resets_per_s == pytest.approx(1 / RESET_S)
    out = capsys.readouterr().out
    assert "CorridorEnv throughput (rgbd, one process, one core)" in out
    rows = [line.split()[1::2] for line in out.splitlines() if re.search(r"\d+x\d+", line)]
    # image, env steps/s, render ceiling/s, ratio, resets/s
    assert rows == [
        ["32x32", "250", "1,000", "25%", "50.0"],
        ["48x48", "250", "1,000", "25%", "50.0"],
    ]


def test_each_ended_episode_is_followed_by_a_timed_reset_to_the_next_seed(counted):
    main(BenchConfig(image_sizes=(32,), steps=200, seed=0))  # worlds 0 and 1 end in 200 steps
    assert counted["terminated"] >= 2
    assert counted["reset_seeds"] == list(range(counted["terminated"] + 1))


def test_a_run_with_no_ended_episode_still_times_one_reset(counted):
    (result,) = main(BenchConfig(image_sizes=(32,), steps=10, seed=7))
    assert counted["terminated"] == 0 and counted["reset_seeds"] == [7, 8]
    assert result.resets_per_s == pytest.approx(1 / RESET_S)


@pytest.mark.parametrize("controls", ["yaw", "yaw_speed"])
def test_real_rates_are_finite_and_positive(controls):
    (result,) = main(BenchConfig(image_sizes=(32,), steps=30, controls=controls))
    for rate in (result.env_steps_per_s, result.render_per_s, result.resets_per_s):
        assert math.isfinite(rate) and rate > 0
    assert result.ratio == pytest.approx(result.env_steps_per_s / result.render_per_s)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "5"], "--steps must be >= 10, got 5"),
        (["--image-sizes", "64", "16"], "--image-sizes must all be >= 32, got (64, 16)"),
        (["--obs-mode", "grey"], "invalid choice: 'grey'"),
        (["--controls", "throttle"], "invalid choice: 'throttle'"),
        (["--steps", "many"], "--steps"),
        (["--episodes", "3"], "unrecognized arguments: --episodes"),
    ],
)
def test_bad_flags_are_one_error_line_and_exit_2(argv, message, capsys):
    assert_one_error_line(refused_flags(BenchConfig, PROG, argv, capsys), message)


def test_the_command_line_exits_2_with_one_line():
    result = run_module("envs.bench", "--steps", "5", env=module_env(), timeout=60)
    assert result.returncode == 2
    assert result.stderr == "error: --steps must be >= 10, got 5\n" and result.stdout == ""
