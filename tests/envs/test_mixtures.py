"""World mixtures: each world draws its kind from the reset seed, and nothing else changes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import CorridorEnv
from envs.mixtures import HELD_OUT, MIXTURES, Factor, draw_world, every_world
from envs.options import EnvOptions

SMALL = {"image_size": 32}


def test_no_mixture_is_the_env_without_one():
    plain, unmixed = CorridorEnv(**SMALL), CorridorEnv(**SMALL, mixture="none")
    for seed in range(3):
        assert np.array_equal(plain.reset(seed=seed)[0], unmixed.reset(seed=seed)[0])
    assert draw_world("none", np.random.default_rng(0)) == {}


def test_generalist_worlds_take_each_factor_in_about_half_of_them():
    env = CorridorEnv(**SMALL, mixture="generalist")
    worlds = []
    for seed in range(60):
        env.reset(seed=seed)
        layout = env.layout
        worlds.append((env.randomize_textures, env.obstacle_density, env.n_segments,
                       layout.width, len(layout.obstacles) > 0))  # fmt: skip
    for column, taken in ((0, True), (1, 0.5), (2, 8), (3, 2.2)):
        share = np.mean([world[column] == taken for world in worlds])
        assert 0.3 < share < 0.7, (column, share)
    # the world is built with the drawn arguments: obstacles only where the density is 0.5
    obstacles = [(density, has) for _, density, _, _, has in worlds]
    assert not any(has for density, has in obstacles if density == 0)
    assert np.mean([has for density, has in obstacles if density == 0.5]) > 0.8
    assert len(set(worlds)) > 8
    again = CorridorEnv(**SMALL, mixture="generalist")
    again.reset(seed=7)
    env.reset(seed=7)
    assert (again.n_segments, again.corridor_width) == (env.n_segments, env.corridor_width)
    assert np.array_equal(again.layout.centreline.points, env.layout.centreline.points)


def test_generalist_obstacles_is_generalist_with_obstacles_in_three_worlds_of_four():
    draws = [draw_world("generalist_obstacles", np.random.default_rng(seed)) for seed in range(400)]
    share = np.mean([world.get("obstacle_density") == 0.5 for world in draws])
    assert 0.68 < share < 0.82, share  # 0.75 +- 3.5 standard errors of 400 draws
    for name in ("randomize_textures", "n_segments", "corridor_width"):
        assert 0.4 < np.mean([name in world for world in draws]) < 0.6, name
    plain = {factor.name: factor.changes for factor in MIXTURES["generalist"]}
    assert {f.name: f.changes for f in MIXTURES["generalist_obstacles"]} == plain


def test_a_mixed_env_passes_check_env_and_survives_pickling():
    env = CorridorEnv(**SMALL, mixture="generalist")
    check_env(env, skip_render_check=True)
    env.reset(seed=11)
    for _ in range(5):
        env.step(1)
    copy = pickle.loads(pickle.dumps(env))
    assert (copy.x, copy.y, copy.n_segments) == (env.x, env.y, env.n_segments)


def test_mixtures_never_hold_what_the_suite_keeps_unseen():
    for name in MIXTURES:
        for world in every_world(name):
            assert not set(world) & set(HELD_OUT), name
    with pytest.raises(ValueError, match="no mixture may"):
        Factor("dim", {"light": "outside"})
    with pytest.raises(ValueError, match="--mixture must be one of none, generalist"):
        EnvOptions(mixture="moon")
    with pytest.raises(ValueError, match="obstacle_min_gap"):
        CorridorEnv(mixture="generalist", obstacle_min_gap=1.8)  # too wide for 2.2 m worlds
