import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs.geometry import Centreline, CorridorLayout, Obstacle
from envs.seeds import eval_seed
from expert import ExpertConfig, ExpertLabel, command_to_bin, expert_rng, make_expert
from expert.controller import ControllerConfig, GapPath
from expert.experts import SOURCE_EXPERT, SOURCE_POLICY, SOURCE_RANDOM
from tests.envs.helpers import straight_corridor

SMALL = {"image_size": 32, "n_segments": 2, "segment_length": (4.0, 5.0)}
# long straight stretches: room for obstacles, every slot filled
DENSE = {"image_size": 32, "n_segments": 2, "segment_length": (9.0, 10.0), "obstacle_density": 1.0}
STRAIGHT = straight_corridor(8.0)


def _env(kind="discrete", **kwargs):
    env_id = envs.ENV_IDS["discrete" if kind == "discrete" else "continuous"]
    return gym.make(env_id, **{**SMALL, **kwargs})


def _fly(env, expert, seed, max_steps=1000):
    """One episode: (decisions, final info)."""
    observation, info = env.reset(seed=seed)
    expert.reset(env)
    rng = expert_rng(seed)
    decisions = []
    for _ in range(max_steps):
        decision = expert.decide(env, rng, observation)
        decisions.append(decision)
        observation, _, terminated, truncated, info = env.step(decision.action)
        if terminated or truncated:
            break
    return decisions, info


def test_command_to_bin_has_a_deadband_and_never_flies_straight_outside_it():
    assert command_to_bin(0.1, 3, 0.2) == 1
    assert command_to_bin(-0.19, 3, 0.2) == 1
    assert command_to_bin(0.25, 3, 0.2) == 0  # nearest bin would be straight
    assert command_to_bin(-0.25, 3, 0.2) == 2
    assert command_to_bin(1.0, 3, 0.2) == 0
    # 5 bins: commands 1, 0.5, 0, -0.5, -1
    assert command_to_bin(0.3, 5, 0.2) == 1
    assert command_to_bin(0.9, 5, 0.2) == 0
    assert command_to_bin(-0.6, 5, 0.2) == 3
    assert command_to_bin(0.05, 5, 0.2) == 2


def _layout(*obstacles):
    centreline = Centreline(np.array([[0.0, 0.0], [20.0, 0.0]]))
    return CorridorLayout(centreline, 2.8, tuple(obstacles), ())


def test_gap_path_passes_an_obstacle_on_its_wide_side():
    # a pillar of radius 0.3 at lateral +0.5 leaves 0.6 m on the left, 1.6 m on the right
    path = GapPath(_layout(Obstacle("pillar", 8.0, 0.5, (0.3, 0.3))), 0.2, 0.6, 1.8, 0.9)
    assert path.lateral(8.0) == pytest.approx((0.2 - 1.4) / 2)
    assert path.lateral(8.0 - 0.3 - 0.6) == pytest.approx(path.lateral(8.0))
    assert path.lateral(2.0) == 0.0
    assert path.lateral(15.0) == 0.0
    assert 0.0 > path.lateral(6.5) > path.lateral(8.0)  # on the ramp


def test_gap_path_prefers_the_nearer_gap_when_both_are_wide_enough():
    box = Obstacle("box", 8.0, 0.0, (0.3, 0.2))  # 1.2 m free on both sides
    from_left = GapPath(_layout(box), 0.2, 0.6, 1.8, 0.9, start=(1.0, 0.3))
    from_right = GapPath(_layout(box), 0.2, 0.6, 1.8, 0.9, start=(1.0, -0.3))
    assert from_left.lateral(8.0) == pytest.approx(0.8)
    assert from_right.lateral(8.0) == pytest.approx(-0.8)


def test_gap_path_crosses_straight_between_close_obstacles():
    first = Obstacle("pillar", 6.0, 0.9, (0.2, 0.2))
    second = Obstacle("pillar", 10.0, -0.9, (0.2, 0.2))
    path = GapPath(_layout(first, second), 0.2, 0.6, 1.8, 0.9)
    assert path.lateral(6.0) < 0 < path.lateral(10.0)
    # no return to the centreline in between: the offset changes monotonically
    between = [path.lateral(s) for s in np.linspace(6.8, 9.2, 13)]
    assert np.all(np.diff(between) > 0)


def test_gap_path_planned_from_the_agent_takes_the_gap_on_its_side():
    box = Obstacle("box", 8.0, 0.0, (0.3, 0.2))  # 1.2 m free on both sides
    from_spawn = GapPath(_layout(box), 0.2, 0.6, 1.8, 0.9, start=(1.0, 0.3))
    assert from_spawn.lateral(8.0) == pytest.approx(0.8)
    # the agent went right of the box's centre line: replanned there, it keeps right
    from_right = GapPath(_layout(box), 0.2, 0.6, 1.8, 0.9, start=(6.5, -0.1))
    assert from_right.lateral(8.0) == pytest.approx(-0.8)


def test_gap_path_leaves_out_obstacles_whose_ramp_back_is_behind_the_start():
    first = Obstacle("pillar", 6.0, 0.9, (0.2, 0.2))  # only the right gap is wide enough
    second = Obstacle("box", 14.0, 0.0, (0.3, 0.2))
    path = GapPath(_layout(first, second), 0.2, 0.6, 1.8, 0.9)
    assert path.lateral(6.0) < 0
    # the first one's ramp back ends at 6.0 + 0.2 + 0.6 + 1.8 = 8.6 m
    still_in_ramp = GapPath(_layout(first, second), 0.2, 0.6, 1.8, 0.9, start=(8.5, -0.2))
    assert still_in_ramp.lateral(6.0) < 0
    past = GapPath(_layout(first, second), 0.2, 0.6, 1.8, 0.9, start=(8.7, 0.2))
    assert past.lateral(6.0) == 0.0
    assert past.lateral(14.0) == pytest.approx(0.8)  # the gap on the agent's side (left)


@pytest.mark.parametrize("replan", [True, False])
def test_expert_labels_the_side_of_an_obstacle_the_agent_is_on_when_it_replans(replan):
    env = gym.make("Corridor-v0", **{**DENSE, "n_segments": 1})

    def roomy(obstacle, half_width):  # room for the agent on both sides
        left = half_width - (obstacle.lateral + obstacle.half_width_across)
        right = (obstacle.lateral - obstacle.half_width_across) + half_width
        return min(left, right) > 1.0

    for episode in range(50):
        env.reset(seed=eval_seed(0, episode))
        layout = env.unwrapped.layout
        candidates = [o for o in layout.obstacles if roomy(o, layout.width / 2)]
        if candidates:
            obstacle = candidates[0]
            break
    config = ExpertConfig(controller=ControllerConfig(gap_replan=replan))
    expert = make_expert(config, env)
    expert.reset(env)
    unwrapped = env.unwrapped
    planned = expert.controller.path.lateral(obstacle.s)
    # put the agent 1 m before it, across the obstacle's centre line from the planned gap,
    # heading along the corridor
    s = obstacle.s - obstacle.size[0] - 1.0
    lateral = obstacle.lateral - math.copysign(0.35, planned - obstacle.lateral)
    point, heading = layout.centreline.point_at(s), layout.centreline.heading_at(s)
    unwrapped.x = float(point[0] - lateral * math.sin(heading))
    unwrapped.y = float(point[1] + lateral * math.cos(heading))
    unwrapped.yaw = float(heading)
    terms = expert.steering(env)
    planned_side = np.sign(planned - obstacle.lateral)
    if replan:
        assert np.sign(terms.path_lateral - obstacle.lateral) == -planned_side
    else:
        assert terms.path_lateral == pytest.approx(expert.controller.path.lateral(s + 1.2))
        assert np.sign(terms.path_lateral - obstacle.lateral) == planned_side
    env.close()


def test_label_has_no_side_effects_on_the_env():
    env, twin = _env(), _env()
    expert = make_expert(ExpertConfig(), env)
    env.reset(seed=3)
    twin.reset(seed=3)
    expert.reset(env)
    pose = env.unwrapped.pose.copy()
    first = expert.label(env)
    expert.label(env)
    assert isinstance(first, ExpertLabel)
    assert expert.label(env) == first
    np.testing.assert_array_equal(env.unwrapped.pose, pose)
    a = env.step(first.action)
    b = twin.step(first.action)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:4] == b[1:4]
    env.close()
    twin.close()


@pytest.mark.parametrize("kind", ["discrete", "continuous"])
def test_expert_reaches_the_goal_past_dense_obstacles(kind):
    env = _env(kind, **DENSE)
    expert = make_expert(ExpertConfig(kind=kind), env)
    for episode in range(3):
        seed = eval_seed(11, episode)
        _, info = _fly(env, expert, seed)
        assert len(env.unwrapped.layout.obstacles) >= 2
        assert info["outcome"] == "goal", (seed, info["progress_frac"])
    env.close()


def test_continuous_expert_executes_its_clean_label():
    env = _env("continuous")
    decisions, info = _fly(env, make_expert(ExpertConfig(kind="continuous"), env), 5)
    assert info["outcome"] == "goal"
    for decision in decisions:
        assert decision.source == SOURCE_EXPERT
        assert decision.command == pytest.approx(decision.label.command, abs=1e-6)
        assert decision.action.dtype == np.float32 and decision.action.shape == (1,)
    env.close()


def test_command_to_bin_hysteresis_keeps_a_turn_going_until_release():
    # going on turning left (bin 0) while the command stays left of the release level
    assert command_to_bin(0.1, 3, 0.4, 0.05, previous=0) == 0
    assert command_to_bin(0.1, 3, 0.4, 0.05, previous=1) == 1  # not turning: deadband
    assert command_to_bin(0.04, 3, 0.4, 0.05, previous=0) == 1  # died out: straight
    assert command_to_bin(-0.1, 3, 0.4, 0.05, previous=0) == 1  # other side: deadband
    assert command_to_bin(-0.1, 3, 0.4, 0.05, previous=2) == 2  # right turn goes on
    assert command_to_bin(-0.5, 3, 0.4, 0.05, previous=0) == 2
    assert command_to_bin(0.1, 3, 0.4, 0.05) == 1  # no previous label: plain deadband
    assert command_to_bin(0.1, 3, 0.4, 0.4, previous=0) == 1  # release = deadband: off


def test_release_defaults_to_0_05_and_never_exceeds_the_deadband():
    assert ExpertConfig().release == 0.05 and ExpertConfig().deadband == 0.4
    assert ExpertConfig(deadband=0.02).release == 0.02
    with pytest.raises(ValueError, match="--release"):
        ExpertConfig(deadband=0.2, release=0.3)


def test_configs_recorded_before_hysteresis_read_back_without_it():
    old = ExpertConfig().to_dict()
    old["deadband"] = 0.2
    del old["release"]
    assert ExpertConfig.from_dict(old).release == 0.2
    assert ExpertConfig.from_dict(ExpertConfig().to_dict()) == ExpertConfig()


def test_configs_recorded_before_replanning_plan_once_per_episode():
    old = ExpertConfig().to_dict()
    del old["controller"]["gap_replan"]
    assert ExpertConfig.from_dict(old).controller.gap_replan is False
    assert ExpertConfig().controller.gap_replan is True


def _expected_bins(decisions, deadband, release):
    """The discrete labels re-derived from the recorded commands, step by step."""
    previous, expected = None, []
    for decision in decisions:
        previous = command_to_bin(decision.label.command, 3, deadband, release, previous)
        expected.append(previous)
    return expected


def test_discrete_expert_executes_its_deadband_bin_with_hysteresis():
    env = _env("discrete")
    decisions, _ = _fly(env, make_expert(ExpertConfig(), env), 5)
    commands = envs.bin_yaw_commands(3)
    for decision in decisions:
        assert decision.action == decision.label.action
        assert decision.command == commands[decision.label.action]
    assert [d.label.action for d in decisions] == _expected_bins(decisions, 0.4, 0.05)
    assert {d.action for d in decisions} >= {0, 1}  # it steers, and it flies straight
    env.close()


def test_hysteresis_turns_in_blocks_instead_of_flickering():
    """Without hysteresis a bend is flown as turn/straight/turn/...; with it, as blocks."""

    def turn_blocks(config):
        env = _env("discrete")
        labels = []
        for seed in (3, 4):
            decisions, info = _fly(env, make_expert(config, env), seed)
            assert info["outcome"] == "goal"
            labels += [d.label.action for d in decisions] + [1]
        env.close()
        turning = np.array(labels) != 1
        starts = int(np.sum(turning[1:] & ~turning[:-1]))
        return starts, int(turning.sum())

    flicker_starts, flicker_turns = turn_blocks(ExpertConfig(deadband=0.2, release=0.2))
    block_starts, block_turns = turn_blocks(ExpertConfig(deadband=0.2, release=0.02))
    # mean length of a turn: steps turning per turn started
    assert block_turns / block_starts > 1.5 * flicker_turns / flicker_starts


def test_labels_are_stable_within_a_state_and_reset_per_episode():
    env = _env("discrete")
    expert = make_expert(ExpertConfig(), env)
    first, _ = _fly(env, expert, 5)
    again, _ = _fly(env, expert, 5)  # reset clears the hysteresis state
    assert [d.label for d in first] == [d.label for d in again]
    assert expert.label(env) == expert.label(env)
    env.close()


def test_stochastic_expert_perturbs_execution_but_records_the_clean_label():
    config = ExpertConfig(kind="stochastic")
    assert (config.noise_sigma, config.epsilon) == (0.5, 0.05)
    env = _env("stochastic")
    expert = make_expert(config, env)
    observation, _ = env.reset(seed=7)
    expert.reset(env)
    rng = expert_rng(7)
    clean = make_expert(ExpertConfig(kind="continuous"), env)
    clean.reset(env)
    differences = []
    for _ in range(40):
        decision = expert.decide(env, rng, observation)
        # the command is the controller's alone; the bin's hysteresis is the driver's own
        assert decision.label.command == clean.label(env).command
        differences.append(abs(decision.command - decision.label.command))
        observation, _, terminated, truncated, _ = env.step(decision.action)
        if terminated or truncated:
            break
    assert np.mean(differences) > 0.1
    env.close()


def test_hysteresis_follows_the_executed_turn_when_a_policy_drove():
    # a policy turns left; in the next state the expert's command is mildly left (between
    # release and deadband): the turn the agent began goes on in the label, although the
    # expert's own label for the first state was straight
    env = gym.make("Corridor-v0", **STRAIGHT)
    driven = make_expert(ExpertConfig(alpha=0.0), env, policy=lambda observation, rng: 1.0)
    observer = make_expert(ExpertConfig(), env)
    observation, _ = env.reset(seed=3)
    for expert in (driven, observer):
        expert.reset(env)
    rng = expert_rng(3)
    first = driven.decide(env, rng, observation)
    assert observer.label(env) == first.label
    assert first.label.action == 1 and first.action == 0  # expert: straight; policy: left
    observation, *_ = env.step(first.action)
    # move the agent right of the centreline, heading along it, until pursuit asks for a
    # mild left turn
    unwrapped = env.unwrapped
    probe = make_expert(ExpertConfig(), env).controller
    probe.reset(env)
    for y in np.linspace(-0.02, -0.6, 59):
        unwrapped.y, unwrapped.yaw = float(y), 0.0
        if 0.1 < probe.steer(env).command < 0.35:
            break
    else:
        pytest.fail("no pose with a mild left command")
    second = driven.decide(env, rng, observation)
    assert second.label.action == 0  # left: the executed turn goes on
    assert observer.label(env) == second.label
    # had the expert itself driven straight, the same state would be labelled straight
    assert command_to_bin(second.label.command, 3, 0.4, 0.05, previous=1) == 1
    env.close()


def test_an_expert_that_drove_keeps_its_own_previous_label():
    # with noise the executed bin may differ from the label; the recorded labels go on
    # following the expert's own previous label, as before the executed-turn rule
    env = _env()
    expert = make_expert(ExpertConfig(noise_sigma=0.6), env)
    observation, _ = env.reset(seed=5)
    expert.reset(env)
    rng = expert_rng(5)
    decisions = []
    for _ in range(200):
        decision = expert.decide(env, rng, observation)
        decisions.append(decision)
        observation, _, terminated, truncated, _ = env.step(decision.action)
        if terminated or truncated:
            break
    assert any(d.label.action != d.action for d in decisions)  # the noise did act
    assert [d.label.action for d in decisions] == _expected_bins(decisions, 0.4, 0.05)
    env.close()


def test_same_world_and_rng_give_the_same_actions():
    env = _env("stochastic")
    expert = make_expert(ExpertConfig(kind="stochastic"), env)
    first, _ = _fly(env, expert, 9, max_steps=60)
    second, _ = _fly(env, expert, 9, max_steps=60)
    assert [d.command for d in first] == [d.command for d in second]
    env.close()


def test_epsilon_one_executes_uniformly_random_bins():
    env = _env()
    expert = make_expert(ExpertConfig(epsilon=1.0), env)
    env.reset(seed=1)
    expert.reset(env)
    rng = np.random.default_rng(0)
    decisions = [expert.decide(env, rng) for _ in range(300)]
    assert all(d.source == SOURCE_RANDOM for d in decisions)
    counts = np.bincount([d.action for d in decisions], minlength=3)
    assert counts.min() > 70
    env.close()


def test_alpha_mixing_calls_the_policy_every_step_and_keeps_expert_labels():
    calls = []

    def learner(observation, rng):
        calls.append(observation)
        return -1.0

    env = _env()
    observation, _ = env.reset(seed=2)
    rng = np.random.default_rng(0)
    expert = make_expert(ExpertConfig(alpha=0.7), env, policy=learner)
    expert.reset(env)
    decisions = [expert.decide(env, rng, observation) for _ in range(400)]
    assert len(calls) == 400 and calls[0] is observation
    from_policy = [d for d in decisions if d.source == SOURCE_POLICY]
    assert 0.2 < len(from_policy) / 400 < 0.4
    assert all(d.action == 2 for d in from_policy)  # -1 is the right bin
    assert all(d.label == decisions[0].label for d in decisions)

    calls.clear()
    pure = make_expert(ExpertConfig(), env, policy=learner)
    pure.reset(env)
    assert all(pure.decide(env, rng).source == SOURCE_EXPERT for _ in range(50))
    assert not calls  # alpha = 1: the learner is never asked
    env.close()


@pytest.mark.parametrize("mix_policy, expected", [("straight", {1}), ("random", {0, 1, 2})])
def test_builtin_mix_policies(mix_policy, expected):
    env = _env()
    env.reset(seed=2)
    expert = make_expert(ExpertConfig(alpha=0.0, mix_policy=mix_policy), env)
    expert.reset(env)
    rng = np.random.default_rng(0)
    actions = {expert.act(env, rng) for _ in range(100)}
    assert actions == expected
    env.close()


def test_discrete_kind_on_a_continuous_env_executes_bin_commands():
    env = _env("continuous")
    expert = make_expert(ExpertConfig(kind="discrete"), env)
    decisions, info = _fly(env, expert, 4)
    assert info["outcome"] == "goal"
    assert {float(d.action[0]) for d in decisions} <= {-1.0, 0.0, 1.0}
    env.close()


def test_avoidance_steers_away_from_a_near_wall_and_ignores_the_goal():
    env = gym.make("Corridor-v0", **STRAIGHT)
    env.reset(seed=0)
    expert = make_expert(ExpertConfig(), env)
    expert.reset(env)
    unwrapped = env.unwrapped
    unwrapped.y = 1.0  # 0.4 m from the left wall, heading along the corridor
    terms = expert.steering(env)
    assert terms.avoidance < -0.5 and terms.command < 0
    unwrapped.x, unwrapped.y = 7.5, 0.0  # 0.5 m before the goal panel, facing it
    assert expert.steering(env).avoidance == pytest.approx(0.0, abs=1e-6)
    env.close()


def test_gap_planning_off_follows_the_centreline():
    env = gym.make("Corridor-v0", **{**DENSE, "n_segments": 1})
    env.reset(seed=eval_seed(0, 1))
    config = ExpertConfig(controller=ControllerConfig(gap_planning=False))
    expert = make_expert(config, env)
    expert.reset(env)
    assert expert.controller.path is None
    assert expert.steering(env).path_lateral == 0.0
    env.close()


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"kind": "greedy"}, "--expert"),
        ({"epsilon": 1.5}, "--epsilon"),
        ({"noise_sigma": -0.1}, "--noise-sigma"),
        ({"alpha": 1.1}, "--alpha"),
        ({"deadband": 1.0}, "--deadband"),
        ({"mix_policy": "learner"}, "--mix-policy"),
    ],
)
def test_bad_expert_config_names_the_flag(kwargs, flag):
    with pytest.raises(ValueError, match=flag):
        ExpertConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"lookahead": 0}, {"n_rays": 2}, {"ray_fov": 400}])
def test_bad_controller_config_is_refused(kwargs):
    flag = "--" + next(iter(kwargs)).replace("_", "-")
    with pytest.raises(ValueError, match=f"^{flag} must be .*, got "):
        ControllerConfig(**kwargs)


def test_expert_config_round_trips_through_its_dict():
    config = ExpertConfig(kind="stochastic", alpha=0.5, controller=ControllerConfig(n_rays=9))
    values = config.to_dict()
    assert values["noise_sigma"] == 0.5 and values["controller"]["n_rays"] == 9
    assert ExpertConfig.from_dict(values) == config
    assert dataclasses.asdict(
        ExpertConfig.from_dict(ExpertConfig().to_dict())
    ) == dataclasses.asdict(ExpertConfig())


def test_expert_rng_is_independent_of_the_world_stream():
    assert expert_rng(5).random() != np.random.default_rng(5).random()
    assert expert_rng(5).random() == expert_rng(5).random()


def test_label_commands_are_bounded_and_finite():
    env = _env("continuous", **DENSE)
    decisions, _ = _fly(env, make_expert(ExpertConfig(kind="continuous"), env), 3)
    commands = [d.label.command for d in decisions]
    assert all(math.isfinite(c) and -1.0 <= c <= 1.0 for c in commands)
    env.close()


def test_bench_success_counts_outcomes():
    from expert.bench import BenchConfig, main

    result = main(BenchConfig(success=True, episodes=2, densities=(0.5,), experts=("discrete",)))
    (row,) = result.success
    assert row.episodes == 2 and row.goals + row.collisions + row.timeouts == 2
    assert row.density == 0.5 and row.mean_steps > 50
    assert result.throughput is None


@pytest.mark.slow
def test_bench_throughput_runs_every_worker_count():
    from expert.bench import BenchConfig, main

    result = main(BenchConfig(throughput=True, runs=3, env_steps=50, workers=(1, 2), repeat=1))
    assert set(result.throughput.collect_frames_per_s) == {1, 2}
    assert result.throughput.frames[1] == result.throughput.frames[2] > 0
    assert result.throughput.env_steps_per_s > 0 and result.success == []


def test_bench_rejects_bad_input():
    from expert.bench import BenchConfig

    with pytest.raises(ValueError, match="--densities"):
        BenchConfig(densities=(1.5,))
    with pytest.raises(ValueError, match="--episodes"):
        BenchConfig(episodes=0)


def test_demo_writes_a_video(tmp_path):
    from expert.demo import DemoConfig, main

    out = tmp_path / "demo.gif"
    info = main(DemoConfig(out=out, max_steps=20, render_size=64))
    assert out.stat().st_size > 0
    assert info["outcome"] in envs.corridor_env.OUTCOMES
