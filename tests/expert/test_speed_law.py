"""The expert in the two-control world: its speed law, its labels and the datasets it records."""

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

import envs
from dataset import load_run, read_manifest
from envs.controls import Controls
from envs.geometry import Centreline, CorridorLayout, Obstacle
from envs.options import EnvOptions
from expert import ExpertConfig, expert_rng, make_expert
from expert.collect import main
from expert.collect_config import CollectConfig
from expert.speed_law import SpeedLawConfig, bend_angles, target_speed

SLOW, FAST = 0.4, 1.2
# a straight of 10 m, a 90-degree left bend, then 10 m
BEND = Centreline(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]))


def _state(x, y=0.0, centreline=BEND, obstacles=(), acceleration=1.0):
    """What the speed law reads of an env: its controls, acceleration, layout and position."""
    return SimpleNamespace(
        controls=Controls("discrete", "yaw_speed", speed_range=(SLOW, FAST)),
        acceleration=acceleration,
        layout=CorridorLayout(centreline, 2.8, tuple(obstacles), ()),
        x=x,
        y=y,
    )


def test_bend_angles_by_hand():
    headings = np.radians([0.0, 90.0, 45.0, -170.0, 170.0])
    assert np.degrees(bend_angles(headings)) == pytest.approx([90.0, 45.0, 145.0, 20.0])


def test_a_straight_with_nothing_ahead_is_flown_fastest():
    straight = Centreline(np.array([[0.0, 0.0], [20.0, 0.0]]))
    assert target_speed(_state(3.0, centreline=straight), 0.0, SpeedLawConfig()) == FAST


def test_a_right_angle_bend_is_passed_slowest_and_braked_for_in_time():
    config = SpeedLawConfig()  # brake at half of 1 m/s^2
    assert target_speed(_state(10.0), 0.0, config) == pytest.approx(SLOW)
    # 0.5 m before the vertex: the speed from which braking at 0.5 m/s^2 reaches 0.4 m/s
    assert target_speed(_state(9.5), 0.0, config) == pytest.approx(math.sqrt(0.16 + 0.5))
    assert target_speed(_state(7.0), 0.0, config) == FAST  # sqrt(0.16 + 3) > 1.2
    # held for after_bend (1.5 m) past the vertex, then fast again
    assert target_speed(_state(10.0, 1.0), 0.0, config) == pytest.approx(SLOW)
    assert target_speed(_state(10.0, 2.0), 0.0, config) == FAST


def test_a_gentler_bend_takes_off_less_speed():
    gentle = Centreline(np.array([[0.0, 0.0], [10.0, 0.0], [20.0, 10.0]]))  # 45 degrees
    assert target_speed(_state(10.0, centreline=gentle), 0.0, SpeedLawConfig()) == pytest.approx(
        FAST - 0.5 * (FAST - SLOW)
    )


def test_obstacles_are_passed_at_their_speed_within_the_margin():
    straight = Centreline(np.array([[0.0, 0.0], [20.0, 0.0]]))
    pillar = Obstacle("pillar", 8.0, 0.5, (0.3, 0.3))
    config = SpeedLawConfig(obstacle_speed=0.35, obstacle_margin=0.8)
    passing = SLOW + 0.35 * (FAST - SLOW)
    for x in (6.9, 8.0, 9.1):  # from 0.8 m before the pillar's edge to 0.8 m after it
        state = _state(x, centreline=straight, obstacles=[pillar])
        assert target_speed(state, 0.0, config) == pytest.approx(passing)
    behind = _state(9.2, centreline=straight, obstacles=[pillar])
    assert target_speed(behind, 0.0, config) == FAST


def test_sharp_steering_slows_the_agent():
    straight = Centreline(np.array([[0.0, 0.0], [20.0, 0.0]]))
    state = _state(3.0, centreline=straight)
    config = SpeedLawConfig(turn_slowdown=0.5)
    assert target_speed(state, -1.0, config) == pytest.approx(FAST - 0.5 * (FAST - SLOW))
    assert target_speed(state, 0.5, config) == pytest.approx(FAST - 0.25 * (FAST - SLOW))


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_expert_flies_the_two_control_world_at_varying_speed(kind):
    world = {"image_size": 32, "n_segments": 3, "obstacle_density": 0.5, "bend_angles": (90.0,)}
    env = gym.make(envs.ENV_IDS[kind], controls="yaw_speed", **world)
    expert = make_expert(ExpertConfig(kind=kind), env)
    for seed in (1, 2):
        observation, info = env.reset(seed=seed)
        expert.reset(env)
        rng = expert_rng(seed)
        speeds, labels = [], []
        while True:
            decision = expert.decide(env.unwrapped, rng, observation)
            labels.append(decision.label)
            observation, _, terminated, truncated, info = env.step(decision.action)
            speeds.append(info["speed"])
            if terminated or truncated:
                break
        assert info["outcome"] == "goal"
        assert min(speeds) < 0.7 and max(speeds) > 1.15
        assert {label.speed_action for label in labels} >= {1, 2}
        assert all(-1.0 <= label.speed_command <= 1.0 for label in labels)
    env.close()


def test_one_control_labels_have_no_speed():
    env = gym.make("Corridor-v0", image_size=32)
    expert = make_expert(ExpertConfig(), env)
    env.reset(seed=0)
    expert.reset(env)
    label = expert.label(env.unwrapped)
    assert label.speed_action is None and label.speed_command is None
    assert expert.decide(env.unwrapped, expert_rng(0)).speed_command is None
    env.close()


def test_a_mixing_policy_may_command_the_speed_too():
    env = gym.make("CorridorContinuous-v0", image_size=32, controls="yaw_speed")
    config = ExpertConfig(kind="continuous", alpha=0.0)
    env.reset(seed=0)
    for policy, speed in ((lambda obs, rng: (0.25, -0.5), -0.5), (lambda obs, rng: 0.25, None)):
        expert = make_expert(config, env, policy=policy)
        expert.reset(env)
        decision = expert.decide(env.unwrapped, expert_rng(0))
        assert decision.command == 0.25
        expected = decision.label.speed_command if speed is None else speed
        assert decision.speed_command == pytest.approx(expected)
        assert decision.action.tolist() == pytest.approx([0.25, expected])
    env.close()


def test_the_speed_law_leaves_old_fingerprints_alone_and_round_trips():
    assert "speed" not in ExpertConfig().to_dict()
    assert "controls" not in CollectConfig().env_kwargs()
    changed = ExpertConfig(speed=SpeedLawConfig(brake=0.8))
    assert changed.to_dict()["speed"]["brake"] == 0.8
    assert ExpertConfig.from_dict(changed.to_dict()) == changed
    assert ExpertConfig.from_dict(ExpertConfig().to_dict()) == ExpertConfig()


@pytest.mark.parametrize("kwargs", [{"bend_slowdown": 1.5}, {"brake": 0.0}, {"after_bend": -1}])
def test_bad_speed_law_names_the_flag(kwargs):
    with pytest.raises(ValueError, match="--" + next(iter(kwargs)).replace("_", "-")):
        SpeedLawConfig(**kwargs)


def test_two_control_datasets_record_the_speed_and_both_labels(tmp_path):
    env = EnvOptions(image_size=32, n_segments=2, segment_length=(4.0, 6.0), controls="yaw_speed")
    main(CollectConfig(out=tmp_path, quiet=True, runs=3, env=env))
    manifest = read_manifest(tmp_path)
    assert manifest["env_kwargs"]["controls"] == "yaw_speed"
    entry = manifest["runs"][0]
    run = load_run(tmp_path / entry["file"])
    assert run["attrs"]["controls"] == "yaw_speed" and run["attrs"]["speed_bins"] == 3
    # the speed a step began at: the start speed, then at most 0.1 m/s more per step
    assert run["speed"][0] == pytest.approx(0.8)
    assert np.all(np.abs(np.diff(run["speed"])) <= 0.1 + 1e-6)
    # the discrete expert executes its labels
    np.testing.assert_array_equal(run["speed_action"], run["expert_speed_action"])
    assert len(set(run["expert_speed_action"].tolist())) >= 2
    # replaying the executed actions reproduces the recorded speeds
    replay = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    _, info = replay.reset(seed=entry["seed"])
    for t in range(entry["frames"]):
        assert info["speed"] == pytest.approx(run["speed"][t])
        action = np.array([run["action"][t], run["speed_action"][t]])
        _, _, _, _, info = replay.step(action)
    assert info["outcome"] == entry["outcome"]
    replay.close()
