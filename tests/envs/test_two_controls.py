"""The two-control world (``controls="yaw_speed"``): yaw and forward speed."""

import hashlib
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import CorridorEnv
from envs.controls import Controls, speed_bin_commands, speed_command_to_bin
from tests.envs.helpers import straight_corridor

SMALL = {"image_size": 32, "n_segments": 2, "segment_length": (4.0, 6.0)}
TWO = {"controls": "yaw_speed"}
STRAIGHT = straight_corridor(8.0)


@pytest.mark.parametrize("env_id", ["Corridor-v0", "CorridorContinuous-v0"])
def test_check_env_passes_without_warnings(env_id):
    env = gym.make(env_id, render_mode="rgb_array", **TWO, **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_action_spaces_hold_a_yaw_and_a_speed():
    discrete = CorridorEnv(speed_bins=5, **TWO, **SMALL)
    continuous = CorridorEnv(action_type="continuous", **TWO, **SMALL)
    assert discrete.action_space == gym.spaces.MultiDiscrete([3, 5])
    assert continuous.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    discrete.close()
    continuous.close()


def _digest(action_type: str, seed: int) -> str:
    env = CorridorEnv(action_type=action_type, obstacle_density=1.0, **TWO, **SMALL)
    rng = np.random.default_rng(5)
    env.action_space.seed(int(rng.integers(1000)))
    digest = hashlib.sha256()
    obs, info = env.reset(seed=seed)
    digest.update(obs.tobytes())
    for _ in range(120):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        digest.update(obs.tobytes() + np.float64(reward).tobytes())
        digest.update(np.float64(info["speed"]).tobytes())
        if terminated or truncated:
            obs, info = env.reset()
    env.close()
    return digest.hexdigest()


@pytest.mark.parametrize("action_type", ["discrete", "continuous"])
def test_same_seed_same_episode(action_type):
    assert _digest(action_type, 4) == _digest(action_type, 4)
    assert _digest(action_type, 4) != _digest(action_type, 5)


def test_speed_moves_towards_the_command_at_the_bounded_acceleration():
    # 10 Hz, acceleration 1 m/s^2: at most 0.1 m/s per step, from the start speed 0.8 m/s
    env = CorridorEnv(acceleration=1.0, speed_range=(0.4, 1.2), **TWO, **STRAIGHT)
    _, info = env.reset(seed=0)
    assert info["speed"] == pytest.approx(0.8)
    x = env.x
    _, _, _, _, info = env.step(np.array([1, 2]))  # straight, fastest bin (1.2 m/s)
    assert info["speed"] == pytest.approx(0.9)
    # four sub-steps at 0.825, 0.85, 0.875 and 0.9 m/s, each 0.025 s long
    assert env.x - x == pytest.approx(0.025 * (0.825 + 0.85 + 0.875 + 0.9))
    speeds = [env.step(np.array([1, 2]))[4]["speed"] for _ in range(5)]
    assert speeds == pytest.approx([1.0, 1.1, 1.2, 1.2, 1.2])
    speeds = [env.step(np.array([1, 0]))[4]["speed"] for _ in range(9)]
    assert speeds == pytest.approx([1.1, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.4])
    env.close()


def test_continuous_speed_command_maps_linearly_onto_the_speed_range():
    controls = Controls("continuous", "yaw_speed", speed_range=(0.4, 1.2))
    assert [controls.target_speed(c) for c in (-1.0, 0.0, 0.5, 1.0)] == pytest.approx(
        [0.4, 0.8, 1.0, 1.2]
    )
    assert controls.speed_command(1.0) == pytest.approx(0.5)
    assert controls.speed_command(3.0) == 1.0  # clipped to the range
    env = CorridorEnv(action_type="continuous", acceleration=100.0, **TWO, **STRAIGHT)
    env.reset(seed=0)
    assert env.step(np.array([0.0, 0.5], np.float32))[4]["speed"] == pytest.approx(1.0)
    env.close()


def test_speed_bins_run_from_slowest_to_fastest():
    assert speed_bin_commands(3).tolist() == [-1.0, 0.0, 1.0]
    assert speed_bin_commands(5).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    commands = np.array([-1.0, -0.6, -0.4, 0.2, 0.9, 7.0])
    assert speed_command_to_bin(commands, 3).tolist() == [0, 0, 1, 1, 2, 2]


def test_one_control_world_is_unchanged_and_reports_its_speed():
    env = CorridorEnv(turn_speed=0.4, **STRAIGHT)
    _, info = env.reset(seed=0)
    assert info["speed"] == pytest.approx(0.8)
    assert env.step(1)[4]["speed"] == pytest.approx(0.8)
    assert env.step(0)[4]["speed"] == pytest.approx(0.4)
    env.close()


@pytest.mark.parametrize(
    "action",
    [1, np.array([1]), np.array([3, 0]), np.array([1, 3]), np.array([1.0, 2.0]), "fast"],
)
def test_discrete_actions_must_be_a_yaw_bin_and_a_speed_bin(action):
    env = CorridorEnv(**TWO, **SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="a yaw bin and a speed bin"):
        env.step(action)
    env.close()


@pytest.mark.parametrize("action", [0.5, np.array([0.5]), np.array([0.0, 1.5]), [np.nan, 0.0]])
def test_continuous_actions_need_two_commands_in_range(action):
    env = CorridorEnv(action_type="continuous", **TWO, **SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="yaw and speed commands"):
        env.step(action)
    env.close()


def test_a_yaw_alone_keeps_the_current_speed():
    env = CorridorEnv(action_type="continuous", **TWO, **STRAIGHT)
    env.reset(seed=0)
    env.step(np.array([0.0, 1.0], np.float32))
    action = env.yaw_command_to_action(0.2)
    assert env.action_to_commands(action) == pytest.approx((0.2, env.controls.speed_command(0.9)))
    env.close()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"controls": "throttle"}, "controls"),
        ({"speed_bins": 1}, "speed_bins"),
        ({"speed_range": (1.0, 0.5)}, "speed_range"),
        ({"acceleration": 0.0}, "acceleration"),
        ({"controls": "yaw_speed", "speed": 2.0}, "speed"),
        ({"controls": "yaw_speed", "turn_speed": 0.5}, "turn_speed"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        CorridorEnv(**kwargs)


def test_pickled_env_continues_identically():
    env = CorridorEnv(**TWO, **SMALL)
    env.reset(seed=3)
    for action in ([1, 2], [0, 1], [1, 0]):
        env.step(np.array(action))
    clone = pickle.loads(pickle.dumps(env))
    a, b = env.step(np.array([2, 2])), clone.step(np.array([2, 2]))
    assert np.array_equal(a[0], b[0]) and a[4]["speed"] == b[4]["speed"]
    env.close()
    clone.close()
