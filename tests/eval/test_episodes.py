import dataclasses
from pathlib import Path

import imageio.v2 as imageio
import pytest
import torch

from envs.seeds import eval_seed, is_eval_seed
from eval.episodes import (
    TIMING_FIELDS,
    EnvSpec,
    EpisodeWorker,
    WorkerSetup,
    env_spec_from_kwargs,
    make_tasks,
)
from eval.errors import EvalError
from eval.worker_pool import run_episodes
from tests.eval.helpers import (
    SMALL_ENV,
    CentrelineExpertFactory,
    CentrelineLabellerFactory,
    RandomPolicyFactory,
)

LABELLER = CentrelineLabellerFactory()


def _spec(agent=None, labeller=LABELLER, **env):
    kwargs = {**SMALL_ENV, **env}
    return WorkerSetup(env_spec_from_kwargs(kwargs), agent or RandomPolicyFactory(), labeller)


def _without_timing(records):
    return [{k: v for k, v in r.to_dict().items() if k not in TIMING_FIELDS} for r in records]


def test_episode_i_flies_held_out_world_i():
    tasks = make_tasks(7, 4)
    assert [t.seed for t in tasks] == [eval_seed(7, i) for i in range(4)]
    assert all(is_eval_seed(t.seed) for t in tasks)
    shifted = make_tasks(7, 2, first_world=100)
    assert [t.seed for t in shifted] == [eval_seed(7, 100), eval_seed(7, 101)]
    with_videos = make_tasks(0, 3, Path("v"), 2, "gif")
    assert [t.video_path for t in with_videos] == ["v/episode_000.gif", "v/episode_001.gif", None]


def test_records_are_complete_and_consistent():
    records = run_episodes(_spec(), make_tasks(0, 3))
    assert [r.index for r in records] == [0, 1, 2]
    for record in records:
        assert record.outcome in ("goal", "collision", "timeout")
        assert record.steps >= 1
        assert 0.0 <= record.progress_frac <= 1.0
        assert record.progress_m <= record.corridor_length_m + 1e-6
        assert record.agreed_steps == round(record.agreement * record.steps)
        assert record.expert_nll > 0 and record.yaw_mse >= 0 and record.latency_ms > 0
        assert record.video is None


def test_the_expert_reaches_the_goal_and_agrees_with_itself():
    records = run_episodes(_spec(agent=CentrelineExpertFactory()), make_tasks(0, 3))
    assert [r.outcome for r in records] == ["goal"] * 3
    assert all(r.progress_frac == 1.0 and r.agreement == 1.0 for r in records)
    assert all(r.expert_nll is None for r in records)  # the expert has no probabilities


def test_evaluation_is_deterministic_in_process():
    first = run_episodes(_spec(), make_tasks(3, 3))
    second = run_episodes(_spec(), make_tasks(3, 3))
    assert _without_timing(first) == _without_timing(second)


def test_two_workers_give_the_same_records_as_one():
    # the policy samples from torch's global generator: only per-episode seeding makes the
    # result independent of which worker flies which episode, and in which order
    tasks = make_tasks(0, 4)
    one = run_episodes(_spec(), tasks, workers=1)
    two = run_episodes(_spec(), tasks, workers=2)
    assert _without_timing(one) == _without_timing(two)
    assert len({r.steps for r in one}) > 1  # the episodes differ: a real comparison


def test_an_interrupted_pool_stops_without_a_traceback_from_its_threads(monkeypatch):
    # Ctrl-C while episodes wait their turn: the pool's own thread fails the waiting futures
    # as it finds its workers stopped, so nothing else may cancel them meanwhile (that race
    # printed an InvalidStateError traceback from the thread after "error: interrupted")
    import threading

    failures = []
    monkeypatch.setattr(threading, "excepthook", lambda args: failures.append(args.exc_value))

    def interrupt(record):
        raise KeyboardInterrupt

    for _ in range(3):  # each round leaves most of its 12 episodes waiting
        with pytest.raises(KeyboardInterrupt):
            run_episodes(_spec(), make_tasks(0, 12), workers=2, on_result=interrupt)
    assert failures == []


def test_in_process_run_restores_torch_threads_and_random_state():
    torch.set_num_threads(2)
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    run_episodes(_spec(), make_tasks(0, 2), workers=1)
    assert torch.get_num_threads() == 2
    assert torch.equal(torch.rand(3), expected)


def test_time_limit_is_a_timeout_and_collisions_are_collisions():
    timeout = WorkerSetup(
        EnvSpec("Corridor-v0", {**SMALL_ENV, "max_episode_steps": 5}),
        RandomPolicyFactory(probs=(0.0, 1.0, 0.0)),
        CentrelineLabellerFactory(),
    )
    [record] = run_episodes(timeout, make_tasks(0, 1))
    assert (record.outcome, record.steps) == ("timeout", 5)
    always_left = _spec(agent=RandomPolicyFactory(probs=(1.0, 0.0, 0.0)))
    [record] = run_episodes(always_left, make_tasks(0, 1))
    assert record.outcome == "collision" and record.progress_frac < 1.0


def test_continuous_env_gets_the_yaw_and_regressors_have_no_nll():
    spec = _spec(agent=RandomPolicyFactory(head="regressor"), action_type="continuous")
    assert spec.env.env_id == "CorridorContinuous-v0"
    [record] = run_episodes(spec, make_tasks(0, 1))
    assert record.expert_nll is None and record.agreement is not None


def test_without_labeller_there_is_no_agreement():
    [record] = run_episodes(_spec(labeller=None), make_tasks(0, 1))
    assert record.agreement is None and record.yaw_mse is None and record.expert_nll is None


def test_a_bin_outside_the_action_space_is_a_bug_not_a_result():
    spec = _spec(agent=RandomPolicyFactory(probs=(0.0, 0.0, 0.0, 1.0)))
    with pytest.raises(RuntimeError, match="outside"):
        run_episodes(spec, make_tasks(0, 1))


def test_bad_env_kwargs_and_worker_counts_are_user_errors():
    with pytest.raises(EvalError, match="cannot build env"):
        EpisodeWorker(_spec(obstacle_density=3.0))
    with pytest.raises(EvalError, match="action_type"):
        env_spec_from_kwargs({"action_type": "joystick"})
    with pytest.raises(ValueError, match="workers"):
        run_episodes(_spec(), make_tasks(0, 1), workers=0)


@pytest.mark.parametrize("video_format", ["mp4", "gif"])
def test_video_has_one_frame_per_step_plus_the_end(tmp_path, video_format):
    spec = dataclasses.replace(_spec(), env=env_spec_from_kwargs(SMALL_ENV, render_size=96))
    tasks = make_tasks(0, 2, tmp_path / "videos", 1, video_format)
    records = run_episodes(spec, tasks)
    assert records[0].video == str(tmp_path / "videos" / f"episode_000.{video_format}")
    assert records[1].video is None
    frames = imageio.mimread(records[0].video, memtest=False)
    assert len(frames) == records[0].steps + 1
    assert frames[0].shape[1] == 96 and frames[0].shape[0] > 96
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == [
        f"episode_000.{video_format}"
    ]


def test_a_failed_episode_leaves_no_partial_video(tmp_path):
    spec = dataclasses.replace(
        _spec(agent=RandomPolicyFactory(probs=(0.0, 0.0, 0.0, 1.0))),
        env=env_spec_from_kwargs(SMALL_ENV, render_size=96),
    )
    with pytest.raises(RuntimeError):
        run_episodes(spec, make_tasks(0, 1, tmp_path, 1))
    assert list(tmp_path.iterdir()) == []


def test_worker_setup_pickles_without_the_preloaded_policy():
    import pickle
    import threading

    from eval.policy_agent import PolicyAgentFactory

    # a lock cannot be pickled: the setup pickles only because the factory drops it
    factory = PolicyAgentFactory("x.pt", preloaded=threading.Lock())
    setup = dataclasses.replace(_spec(), agent=factory)
    restored = pickle.loads(pickle.dumps(setup))
    assert restored == setup  # env, labeller and the factory's checkpoint and device
    assert restored.agent.checkpoint == "x.pt" and restored.agent.preloaded is None
    assert factory.preloaded is not None, "pickling emptied the parent's factory"


def test_a_dead_worker_is_a_one_line_error_not_a_hang():
    from tests.eval.helpers import DyingAgentFactory

    with pytest.raises(EvalError, match="an evaluation worker died .* rerun with --workers 1"):
        run_episodes(_spec(agent=DyingAgentFactory()), make_tasks(0, 2), workers=2)
