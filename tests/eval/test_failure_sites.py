"""eval.failure_sites: failed episodes placed at the bend or straight where they ended."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from envs.corridor_env import CorridorEnv
from envs.options import full_env_kwargs
from eval.failure_sites import FailureSitesConfig, bend_site, main
from tests.commands import assert_exit_2_one_line, run_here

SEED = 11


def test_a_bend_is_named_by_its_angle_and_side():
    assert bend_site(-math.pi / 2) == "90 right"  # clockwise: the heading falls
    assert bend_site(math.radians(45.0)) == "45 left"


def _record(seed: int, outcome: str, progress_m: float, hit: str | None) -> dict:
    return {"seed": seed, "outcome": outcome, "progress_m": progress_m, "hit": hit}


@pytest.fixture(scope="module")
def world() -> tuple[dict, list[float], list[float]]:
    """(env kwargs, the bends' distances along the centreline, their turns in degrees)."""
    kwargs = full_env_kwargs({"obs_mode": "depth"})
    env = CorridorEnv(**kwargs)
    env.reset(seed=SEED)
    points = env.layout.centreline.points
    env.close()
    # from the corners themselves: segment lengths and headings, computed here by hand
    steps = np.diff(points, axis=0)
    lengths = np.hypot(steps[:, 0], steps[:, 1])
    headings = np.degrees(np.arctan2(steps[:, 1], steps[:, 0]))
    return kwargs, list(np.cumsum(lengths)[:-1]), list(np.diff(headings))


def test_each_failure_lands_at_its_site(world, tmp_path: Path):
    kwargs, bends, turns = world
    records = [
        _record(SEED, "collision", bends[0] + 0.4, "wall"),
        _record(SEED, "collision", bends[1] - 0.7, "obstacle"),
        _record(SEED, "timeout", (bends[0] + bends[1]) / 2, None),  # mid-segment
        _record(SEED, "collision", bends[0] - 0.2, None),  # a file without hits
        _record(SEED, "goal", bends[-1] + 5.0, None),
    ]
    path = tmp_path / "flight.json"
    path.write_text(json.dumps({"env_kwargs": kwargs, "records": records}))
    rows = {row.site: row for row in main(FailureSitesConfig(paths=(tmp_path,)))}

    def named(turn: float) -> str:
        return f"{round(abs(turn))} {'left' if turn > 0 else 'right'}"

    first, second = named(turns[0]), named(turns[1])
    expected = {first: [0, 0, 0, 0], second: [0, 0, 0, 0], "straight": [0, 0, 0, 0]}
    expected[first][0] += 1  # wall
    expected[second][1] += 1  # obstacle
    expected["straight"][3] += 1  # timeout
    expected[first][2] += 1  # hit unrecorded
    assert {
        site: [row.walls, row.obstacles, row.unrecorded, row.timeouts] for site, row in rows.items()
    } == {site: counts for site, counts in expected.items() if any(counts)}
    assert sum(row.failures for row in rows.values()) == 4  # the goal is no failure
    # a wider --near takes the mid-segment timeout to a bend
    segment = bends[1] - bends[0]
    wide = main(FailureSitesConfig(paths=(path,), near=segment))
    assert "straight" not in {row.site for row in wide}


def test_bad_input_is_one_line(tmp_path: Path):
    assert_exit_2_one_line(
        run_here("eval.failure_sites", str(tmp_path / "missing.json")), "does not exist"
    )
    (tmp_path / "other.json").write_text("{}")
    assert_exit_2_one_line(run_here("eval.failure_sites", str(tmp_path)), "no evaluation file")
    assert_exit_2_one_line(run_here("eval.failure_sites", "--near", "0", str(tmp_path)), "--near")
