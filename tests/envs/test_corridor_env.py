import dataclasses
import hashlib
import inspect
import math
import pickle
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import psutil
import pybullet as pb
import pytest
from gymnasium.utils.env_checker import check_env

from envs import CorridorEnv, bin_yaw_commands, yaw_command_to_bin
from envs.geometry import Centreline, generate_obstacles, segment_distance, wall_polylines
from envs.options import EnvOptions
from envs.scene import Appearance, random_appearance
from envs.seeds import collect_seed, eval_seed, is_eval_seed
from tests.envs.helpers import straight_corridor

SMALL = {"image_size": 32, "n_segments": 2, "segment_length": (4.0, 6.0)}
STRAIGHT = straight_corridor(6.0)


@pytest.mark.parametrize("env_id", ["Corridor-v0", "CorridorContinuous-v0"])
@pytest.mark.parametrize("obs_mode", ["rgb", "depth", "rgbd"])
def test_check_env_passes_without_warnings(env_id, obs_mode):
    env = gym.make(env_id, obs_mode=obs_mode, render_mode="rgb_array", **SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_make_without_import_through_module_prefix():
    code = (
        "import gymnasium as gym; e = gym.make('envs:Corridor-v0', image_size=32); "
        "print(e.reset(seed=0)[0].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "(32, 32, 3)" in out.stdout


def _rollout_digest(seed: int, steps: int = 200) -> str:
    env = gym.make("Corridor-v0", obstacle_density=1.0, **SMALL)
    digest = hashlib.sha256()
    obs, info = env.reset(seed=seed)
    digest.update(obs.tobytes())
    rng = np.random.default_rng(7)
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(3)))
        digest.update(obs.tobytes())
        digest.update(np.float64(reward).tobytes())
        digest.update(repr(sorted((k, str(v)) for k, v in info.items())).encode())
        if terminated or truncated:
            obs, info = env.reset()
            digest.update(obs.tobytes())
    env.close()
    return digest.hexdigest()


def test_same_seed_same_episode_in_process():
    assert _rollout_digest(11) == _rollout_digest(11)


def test_same_seed_same_episode_across_processes():
    code = "from tests.envs.test_corridor_env import _rollout_digest; print(_rollout_digest(11))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == _rollout_digest(11)


def test_different_seeds_give_different_worlds():
    env = CorridorEnv(**SMALL)
    obs_a, _ = env.reset(seed=1)
    points_a = env.layout.centreline.points.copy()
    obs_b, _ = env.reset(seed=2)
    assert not np.array_equal(points_a, env.layout.centreline.points)
    assert not np.array_equal(obs_a, obs_b)
    env.close()


def test_randomize_off_gives_a_fixed_look():
    env = CorridorEnv(randomize=False, clutter_density=0.0, **STRAIGHT)
    first, _ = env.reset(seed=1)
    second, _ = env.reset(seed=1)
    assert np.array_equal(first, second)
    env.close()


def test_texture_randomisation_changes_textures_only():
    fixed = Appearance()
    drawn_walls = set()
    for seed in range(6):
        plain = random_appearance(np.random.default_rng(seed), 2, textures=False)
        textured = random_appearance(np.random.default_rng(seed), 2, textures=True)
        textures = ("wall_texture", "floor_texture", "ceiling_texture", "obstacle_texture")
        for name in textures:
            assert getattr(plain, name) == getattr(fixed, name)
        drawn_walls.add(textured.wall_texture)
        # tints, light and clutter colours are the same draws either way
        plain_rest = {k: v for k, v in vars(plain).items() if k not in textures}
        assert plain_rest == {k: v for k, v in vars(textured).items() if k not in textures}
    assert len(drawn_walls) > 1

    def world(randomize_textures):
        env = CorridorEnv(randomize_textures=randomize_textures, image_size=32, n_segments=2)
        obs = [env.reset(seed=seed)[0] for seed in range(3)]
        points = env.layout.centreline.points.copy()
        env.close()
        return obs, points

    (plain_obs, plain_points), (textured_obs, textured_points) = world(False), world(True)
    assert np.array_equal(plain_points, textured_points)
    assert any(not np.array_equal(a, b) for a, b in zip(plain_obs, textured_obs, strict=True))


def test_held_out_textures_come_only_from_the_family_no_training_world_draws():
    from envs.scene import fixed_appearance
    from envs.textures import HELD_OUT_TEXTURES, TRAINING_TEXTURES, texture_files

    assert not set(HELD_OUT_TEXTURES) & set(TRAINING_TEXTURES)
    assert len(texture_files()) == len(TRAINING_TEXTURES) + len(HELD_OUT_TEXTURES)
    names = ("wall_texture", "floor_texture", "ceiling_texture", "obstacle_texture")
    training, held_out = set(), set()
    for seed in range(40):
        for textures in (False, True):
            look = random_appearance(np.random.default_rng(seed), 2, textures=textures)
            training |= {getattr(look, name) for name in names}
        look = random_appearance(np.random.default_rng(seed), 2, textures=True, held_out=True)
        held_out |= {getattr(look, name) for name in names}
    training |= {getattr(fixed_appearance(2), name) for name in names}
    assert training == set(TRAINING_TEXTURES) and held_out == set(HELD_OUT_TEXTURES)
    with pytest.raises(ValueError, match="held_out_textures must be used with --randomize"):
        CorridorEnv(held_out_textures=True)


def test_outside_light_is_dimmer_and_harsher_than_any_training_world():
    from envs.scene import (
        OUTSIDE_AMBIENT,
        OUTSIDE_DIFFUSE,
        TRAINING_DIFFUSE,
        fixed_appearance,
        lighting,
    )

    ambients = []
    for seed in range(50):
        look = random_appearance(np.random.default_rng(seed), 2, textures=False)
        ambients.append(lighting(look, "training", np.random.default_rng(seed))[1])
    outside = [
        lighting(fixed_appearance(2), "outside", np.random.default_rng(seed))[1]
        for seed in range(50)
    ]
    assert max(o["lightAmbientCoeff"] for o in outside) <= OUTSIDE_AMBIENT[1]
    assert OUTSIDE_AMBIENT[1] < min(a["lightAmbientCoeff"] for a in ambients)
    assert max(max(o["lightColor"]) for o in outside) < min(min(a["lightColor"]) for a in ambients)
    assert all(o["lightDiffuseCoeff"] == OUTSIDE_DIFFUSE > TRAINING_DIFFUSE for o in outside)
    bright = CorridorEnv(image_size=32, n_segments=1).reset(seed=3)[0].mean()
    dim = CorridorEnv(image_size=32, n_segments=1, light="outside").reset(seed=3)[0].mean()
    assert dim < 0.8 * bright


def test_arguments_added_later_are_left_out_of_a_dataset_at_their_defaults():
    from envs.options import LATE_ARGUMENTS, recorded_env_kwargs

    assert not set(LATE_ARGUMENTS) & set(recorded_env_kwargs(EnvOptions(), "discrete"))
    changed = EnvOptions(light="outside", randomize_textures=True, held_out_textures=True)
    recorded = recorded_env_kwargs(changed, "discrete")
    assert recorded["light"] == "outside" and recorded["held_out_textures"] is True


def test_driving_into_a_wall_terminates_with_collision():
    env = CorridorEnv(**STRAIGHT)
    env.reset(seed=0)
    for _ in range(100):
        _, reward, terminated, truncated, info = env.step(0)  # keep turning left
        if terminated:
            break
    assert terminated and not truncated
    assert info["outcome"] == "collision" and info["collision"] and info["hit"] == "wall"
    assert reward < -env.collision_penalty + 1.0
    env.close()


def test_a_collision_away_from_the_walls_is_with_an_obstacle():
    """The geometry says which: a sphere further than its radius from both walls hit no wall."""
    env = CorridorEnv(**{**STRAIGHT, "obstacle_density": 1.0, "segment_length": (10.0, 10.0)})
    obstacle_hits = 0
    for seed in range(20):
        env.reset(seed=seed)
        while True:
            _, _, terminated, truncated, info = env.step(1)  # straight ahead
            if terminated or truncated:
                break
            assert info["hit"] is None
        if info["outcome"] == "collision":
            clear_of_walls = info["wall_distance"] > env.agent_radius + 0.05
            assert info["hit"] == ("obstacle" if clear_of_walls else "wall"), seed
            obstacle_hits += clear_of_walls
    assert obstacle_hits >= 3, "these worlds put obstacles in the way: the check above can fail"
    env.close()


def test_straight_corridor_driven_straight_reaches_the_goal():
    env = CorridorEnv(**STRAIGHT)
    env.reset(seed=0)
    steps = 0
    while True:
        _, _, terminated, _, info = env.step(1)
        steps += 1
        if terminated:
            break
    assert info["outcome"] == "goal" and not info["collision"]
    assert info["progress_frac"] == 1.0
    # 6 m corridor, start 1 m in, goal touched one radius early, 0.08 m per step
    expected = (6.0 - 1.0 - env.agent_radius) / (env.speed / 10.0)
    assert abs(steps - expected) <= 1
    env.close()


def test_step_after_termination_is_refused():
    env = CorridorEnv(**STRAIGHT)
    env.reset(seed=0)
    while not env.step(1)[2]:
        pass
    with pytest.raises(RuntimeError, match="reset"):
        env.step(1)
    env.close()


def test_registered_time_limit_truncates():
    env = gym.make("Corridor-v0", max_episode_steps=5, **SMALL)
    env.reset(seed=0)
    results = [env.step(1) for _ in range(5)]
    assert results[-1][3] and not any(r[3] for r in results[:-1])
    env.close()


def test_reward_is_progress_along_the_centreline():
    env = CorridorEnv(**STRAIGHT)
    _, info = env.reset(seed=0)
    _, reward, _, _, after = env.step(1)
    assert reward == pytest.approx(after["progress_m"] - info["progress_m"])
    assert reward == pytest.approx(0.08, abs=1e-9)
    env.close()


def test_depth_matches_the_distance_to_the_goal_panel():
    env = CorridorEnv(obs_mode="depth", depth_range=10.0, **STRAIGHT)
    obs, _ = env.reset(seed=0)
    centre = obs[15:17, 15:17, 0].astype(float).mean()
    # the camera is 1 m in, the goal panel's face at 6 m: 5 m of 10 m
    assert centre == pytest.approx(5.0 / 10.0 * 255, abs=3)
    env.close()


def test_rgbd_stacks_rgb_and_depth():
    rgb_env = CorridorEnv(obs_mode="rgb", **STRAIGHT)
    rgbd_env = CorridorEnv(obs_mode="rgbd", **STRAIGHT)
    depth_env = CorridorEnv(obs_mode="depth", **STRAIGHT)
    rgb, _ = rgb_env.reset(seed=4)
    rgbd, _ = rgbd_env.reset(seed=4)
    depth, _ = depth_env.reset(seed=4)
    assert np.array_equal(rgbd[:, :, :3], rgb)
    assert np.array_equal(rgbd[:, :, 3:], depth)
    for env in (rgb_env, rgbd_env, depth_env):
        env.close()


def test_ray_scan_sees_the_walls_at_half_the_width():
    env = CorridorEnv(**STRAIGHT)
    env.reset(seed=0)
    left, right, ahead = env.ray_scan(np.array([math.pi / 2, -math.pi / 2, 0.0]), max_range=8.0)
    assert left == pytest.approx(env.corridor_width / 2, abs=1e-3)
    assert right == pytest.approx(env.corridor_width / 2, abs=1e-3)
    assert ahead == pytest.approx(5.0, abs=1e-3)
    env.close()


@pytest.mark.parametrize("size", [32, 128, (48, 96)])
def test_image_sizes(size):
    env = CorridorEnv(image_size=size, n_segments=1)
    obs, _ = env.reset(seed=0)
    expected = (size, size) if isinstance(size, int) else size
    assert obs.shape == (*expected, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    env.close()


def test_a_number_finds_the_bin_the_array_path_finds():
    """The scalar path (python floats) gives the array path's bins, ties and ends included."""
    rng = np.random.default_rng(0)
    for n_bins in (2, 3, 4, 5, 7):
        ties = 1.0 - (np.arange(n_bins) + 0.5) * 2.0 / (n_bins - 1)  # halfway between bins
        commands = np.concatenate([rng.uniform(-1.5, 1.5, 500), ties, [-1.0, 1.0, np.inf, -np.inf]])
        expected = yaw_command_to_bin(commands, n_bins)
        for kind in (float, np.float32, np.float64):
            values = commands.astype(np.float32) if kind is np.float32 else commands
            scalar = [yaw_command_to_bin(kind(c), n_bins) for c in values]
            assert all(type(b) is int for b in scalar)
            assert scalar == yaw_command_to_bin(values, n_bins).tolist()
        assert scalar == expected.tolist()


def test_discrete_bins_and_continuous_actions():
    assert np.allclose(bin_yaw_commands(3), [1.0, 0.0, -1.0])
    assert np.allclose(bin_yaw_commands(5), [1.0, 0.5, 0.0, -0.5, -1.0])
    assert [yaw_command_to_bin(c, 5) for c in (1.0, 0.6, 0.1, -0.3, -2.0)] == [0, 1, 2, 3, 4]
    env = CorridorEnv(action_type="continuous", **STRAIGHT)
    env.reset(seed=0)
    yaw = env.yaw
    env.step(np.array([0.5], dtype=np.float32))
    assert env.yaw - yaw == pytest.approx(0.5 * env.max_yaw_rate / 10.0)
    env.close()


def test_continuous_step_takes_a_number_a_0d_or_a_1_array_alike():
    poses = []
    for action in (0.37, np.float32(0.37), np.array(0.37), np.array([0.37], np.float32)):
        env = CorridorEnv(action_type="continuous", **STRAIGHT)
        env.reset(seed=4)
        obs, reward, *_ = env.step(action)
        poses.append((env.pose.tobytes(), obs.tobytes(), reward))
        env.close()
    assert len(set(poses)) == 1
    env = CorridorEnv(action_type="continuous", **STRAIGHT)
    env.reset(seed=4)
    yaw = env.yaw
    env.step(np.float32(-0.25))
    assert env.yaw - yaw == pytest.approx(-0.25 * env.max_yaw_rate / 10.0)
    env.close()


@pytest.mark.parametrize(
    "action", [1.5, -1.01, np.array([2.0]), float("nan"), np.array([0.1, 0.2]), "left", None]
)
def test_continuous_actions_outside_the_box_are_refused_not_clipped(action):
    env = CorridorEnv(action_type="continuous", **STRAIGHT)
    env.reset(seed=0)
    pose = env.pose
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="outside the action space"):
            env.step(action)
    np.testing.assert_array_equal(env.pose, pose)  # nothing moved
    env.close()


def test_clip_action_wrapper_clips_for_those_who_want_it():
    clipped = gym.wrappers.ClipAction(gym.make("CorridorContinuous-v0", **STRAIGHT))
    plain = gym.make("CorridorContinuous-v0", **STRAIGHT)
    clipped.reset(seed=2)
    plain.reset(seed=2)
    np.testing.assert_array_equal(clipped.step(np.array([3.0]))[0], plain.step(1.0)[0])
    clipped.close()
    plain.close()


def test_discrete_actions_are_unchanged_and_floats_refused():
    env = CorridorEnv(**STRAIGHT)
    env.reset(seed=0)
    for action in (0, np.int64(1), np.array(2)):
        env.step(action)
    for action in (3, -1, 0.5, np.array([1])):
        with pytest.raises(ValueError, match="outside the action space"):
            env.step(action)
    env.close()


def test_turn_speed_slows_the_agent_while_turning():
    env = CorridorEnv(turn_speed=0.4, **STRAIGHT)
    env.reset(seed=0)
    x = env.x
    env.step(1)
    assert env.x - x == pytest.approx(0.08)
    start = np.array([env.x, env.y])
    env.step(0)
    assert np.linalg.norm(np.array([env.x, env.y]) - start) == pytest.approx(0.04, abs=1e-4)
    env.close()


def test_pickled_env_continues_identically():
    env = CorridorEnv(**SMALL)
    env.reset(seed=3)
    for action in (1, 0, 1, 2):
        env.step(action)
    clone = pickle.loads(pickle.dumps(env))
    a, b = env.step(1), clone.step(1)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert np.array_equal(a[4]["pose"], b[4]["pose"])
    env.close()
    clone.close()


def test_close_disconnects_the_client():
    env = CorridorEnv(**SMALL)
    env.reset(seed=0)
    client = env._client
    env.close()
    assert not pb.isConnected(physicsClientId=client)
    assert not env.connected
    env.close()  # closing twice is harmless


def test_many_resets_do_not_grow_memory():
    env = CorridorEnv(image_size=32, obstacle_density=1.0)
    process = psutil.Process()
    for seed in range(50):  # warm up allocator pools
        env.reset(seed=seed)
    before = process.memory_info().rss
    for seed in range(500):
        env.reset(seed=seed)
    grown = (process.memory_info().rss - before) / 2**20
    env.close()
    assert grown < 50, f"500 resets grew memory by {grown:.1f} MB"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"speed": -1.0}, "speed"),
        ({"image_size": 0}, "image_size"),
        ({"image_size": 16}, "image_size"),
        ({"obs_mode": "thermal"}, "obs_mode"),
        ({"action_type": "hybrid"}, "action_type"),
        ({"n_bins": 4}, "n_bins"),
        ({"obstacle_density": 1.5}, "obstacle_density"),
        ({"fov": 200}, "fov"),
        ({"render_mode": "human"}, "render_mode"),
        ({"segment_length": (5.0, 2.0)}, "segment_length"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name) as error:
        CorridorEnv(**kwargs)
    assert "must be" in str(error.value)


def test_walls_of_a_right_angle_bend_by_hand():
    centreline = Centreline(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]))
    left, right = wall_polylines(centreline, width=2.0)
    assert np.allclose(left, [[0, 1], [9, 1], [9, 10]])
    assert np.allclose(right, [[0, -1], [11, -1], [11, 10]])
    s, lateral, segment = centreline.project(10.5, 4.0)
    assert (s, lateral, segment) == (pytest.approx(14.0), pytest.approx(-0.5), 1)
    assert np.allclose(centreline.point_at(12.0), [10.0, 2.0])
    assert centreline.heading_at(12.0) == pytest.approx(math.pi / 2)


def test_segment_distance_by_hand():
    a0, a1 = np.array([0.0, 0.0]), np.array([4.0, 0.0])
    assert segment_distance(a0, a1, np.array([1.0, 3.0]), np.array([3.0, 3.0])) == 3.0
    assert segment_distance(a0, a1, np.array([2.0, -1.0]), np.array([2.0, 1.0])) == 0.0
    assert segment_distance(a0, a1, np.array([7.0, 4.0]), np.array([9.0, 4.0])) == 5.0


def test_generated_corridors_never_touch_themselves():
    env = CorridorEnv(image_size=32, n_segments=8, segment_length=(4.0, 6.0))
    for seed in range(30):
        env.reset(seed=seed)
        centreline = env.layout.centreline
        points = centreline.points
        assert np.all(np.abs(centreline.headings) <= math.pi / 2 + 1e-9)
        for i in range(centreline.n_segments):
            for j in range(i + 2, centreline.n_segments):
                gap = segment_distance(points[i], points[i + 1], points[j], points[j + 1])
                assert gap >= env.corridor_width + 2 * env.wall_thickness
    env.close()


def test_every_obstacle_leaves_a_passable_gap():
    width, min_gap = 2.8, 1.2
    centreline = Centreline(np.array([[0.0, 0.0], [60.0, 0.0]]))
    for seed in range(50):
        rng = np.random.default_rng(seed)
        for obstacle in generate_obstacles(rng, centreline, width, 1.0, min_gap):
            half = obstacle.half_width_across
            gap_left = width / 2 - (obstacle.lateral + half)
            gap_right = (obstacle.lateral - half) + width / 2
            assert max(gap_left, gap_right) >= min_gap - 1e-9
            assert min(gap_left, gap_right) >= -1e-9  # never inside a wall


def test_obstacle_density_puts_obstacles_in_the_world():
    env = CorridorEnv(image_size=32, obstacle_density=1.0)
    env.reset(seed=0)
    assert len(env.layout.obstacles) == len(env.bodies.obstacles) > 0
    env.close()


def test_recording_and_evaluation_seeds_are_disjoint():
    recording = {collect_seed(base, i) for base in range(5) for i in range(200)}
    evaluation = {eval_seed(base, i) for base in range(5) for i in range(200)}
    assert not recording & evaluation
    assert all(is_eval_seed(s) for s in evaluation)
    assert not any(is_eval_seed(s) for s in recording)


def test_info_carries_privileged_state():
    env = CorridorEnv(**STRAIGHT)
    _, info = env.reset(seed=0)
    for key in ("pose", "progress_m", "progress_frac", "lateral_offset", "wall_distance",
                "collision", "outcome", "heading_error"):  # fmt: skip
        assert key in info
    assert info["wall_distance"] == pytest.approx(env.corridor_width / 2)
    assert info["progress_m"] == pytest.approx(1.0)
    env.close()


def test_vector_env_runs_corridor_envs():
    vec = gym.make_vec("Corridor-v0", num_envs=2, vectorization_mode="sync", **SMALL)
    obs, _ = vec.reset(seed=[0, 1])
    assert obs.shape == (2, 32, 32, 3)
    obs, rewards, _, _, _ = vec.step(np.array([1, 1]))
    assert rewards.shape == (2,)
    vec.close()


def test_env_options_mirror_the_env_arguments():
    names = {f.name for f in dataclasses.fields(EnvOptions)}
    signature = inspect.signature(CorridorEnv.__init__).parameters
    expected = set(signature) - {"self", "render_mode", "action_type", "render_size"}
    assert names == expected
    for f in dataclasses.fields(EnvOptions):
        assert f.default == signature[f.name].default, f.name


def test_env_options_report_env_errors_under_the_flag_name():
    with pytest.raises(ValueError, match="^--corridor-width must be"):
        EnvOptions(corridor_width=0.5)
