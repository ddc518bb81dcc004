"""The evaluator's API: load_policy, Policy.reset/act, PolicyOutput, CheckpointError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bc.checkpoint import read_checkpoint, save_checkpoint
from bc.config import TrainConfig
from bc.data import InputNorm, load_dataset
from bc.errors import CheckpointError
from bc.heads import make_head
from bc.policy import PolicyOutput, load_policy
from bc.run_dir import find_latest_run
from bc.sampling import WindowUnit
from bc.step_engine import Trainer
from bc.train import main
from tests.bc.helpers import small_dataset, tiny_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """RGB-D, unlike the shared ``data`` of tests/conftest.py."""
    return small_dataset(tmp_path_factory.mktemp("policy") / "data", obs_mode="rgbd")


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("policy_runs")
    configs = {
        "frames": {"net": "tiny_nfc", "frames": 3, "input_norm": "scale"},
        "lstm": {"net": "tiny_lstm", "frames": 1, "bptt": "window", "time_length": 5},
        "gaussian": {"net": "tiny_3d", "frames": 5, "head": "gaussian"},
    }
    return {
        name: Path(main(tiny_config(data, out / name, steps=3, **options))["checkpoints"]["last"])
        for name, options in configs.items()
    }


def _run_frames(data: Path, split_name: str = "val") -> list[np.ndarray]:
    split = load_dataset(data).splits[split_name]
    frames = split.gather(torch.arange(int(split.lengths[0])))
    return [f.permute(1, 2, 0).numpy() for f in frames]


def _trainer_for(checkpoint: Path, data: Path) -> tuple[Trainer, object]:
    payload = read_checkpoint(checkpoint)
    config = TrainConfig(**payload["config"])
    policy = load_policy(checkpoint)
    trainer = Trainer(
        config,
        policy.model,
        policy.head_module,
        InputNorm.from_dict(payload["norm"]),
        torch.device("cpu"),
        policy.recurrent,
    )
    return trainer, policy


def test_frame_stack_policy_sees_the_training_stacks(runs, data) -> None:
    trainer, policy = _trainer_for(runs["frames"], data)
    split = load_dataset(data).splits["val"]
    length = int(split.lengths[0])
    with torch.no_grad():
        batch = trainer.frame_batch(split, torch.arange(length))
        expected = torch.softmax(policy.model.eval()(batch.inputs), dim=-1)
    policy.reset()
    probs = np.stack([policy.act(frame).probs for frame in _run_frames(data)])
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-4, atol=1e-6)


def test_forks_deciding_together_see_the_training_stacks(runs, data) -> None:
    """act_batch encodes each frame once, when it arrives, and stacks the kept features.

    Two episodes of different lengths side by side, then the longer one alone (the lone-frame
    case), then the first fork starts over: every step's probabilities are those of the
    training's own frame stacks.
    """
    from bc.policy import act_batch

    trainer, policy = _trainer_for(runs["frames"], data)
    splits = load_dataset(data).splits
    expected = {}
    with torch.no_grad():
        for name in ("val", "train"):
            batch = trainer.frame_batch(splits[name], torch.arange(int(splits[name].lengths[0])))
            expected[name] = torch.softmax(policy.model.eval()(batch.inputs), dim=-1).numpy()
    episodes = {name: _run_frames(data, name) for name in ("val", "train")}
    assert len(episodes["val"]) != len(episodes["train"])
    forks = {name: policy.fork() for name in episodes}
    got: dict[str, list[np.ndarray]] = {name: [] for name in episodes}
    for step in range(max(len(frames) for frames in episodes.values())):
        flying = [name for name, frames in episodes.items() if step < len(frames)]
        outputs = act_batch([forks[n] for n in flying], [episodes[n][step] for n in flying])
        for name, output in zip(flying, outputs, strict=True):
            got[name].append(output.probs)
    for name in episodes:
        np.testing.assert_allclose(np.stack(got[name]), expected[name], rtol=1e-5, atol=1e-7)
    fork = forks["val"]
    fork.reset()
    again = [act_batch([fork], [frame])[0].probs for frame in episodes["val"]]
    np.testing.assert_allclose(np.stack(again), expected["val"], rtol=1e-5, atol=1e-7)
    # a fork decides an episode one way: act() after act_batch needs a reset, and back
    with pytest.raises(ValueError, match="reset"):
        fork.act(episodes["val"][0])
    fork.reset()
    fork.act(episodes["val"][0])
    with pytest.raises(ValueError, match="reset"):
        act_batch([fork], [episodes["val"][1]])


def test_recurrent_policy_carries_the_state_step_by_step(runs, data) -> None:
    trainer, policy = _trainer_for(runs["lstm"], data)
    split = load_dataset(data).splits["val"]
    length = int(split.lengths[0])
    unit = WindowUnit(torch.tensor([0]), torch.tensor([0]), torch.tensor([length]), length)
    with torch.no_grad():
        batch = trainer.window_batch(split, unit)
        expected = torch.softmax(policy.model.eval()(batch.inputs)[0][0], dim=-1)
    policy.reset()
    probs = np.stack([policy.act(frame).probs for frame in _run_frames(data)])
    np.testing.assert_allclose(probs, expected.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["frames", "lstm", "gaussian"])
def test_reset_starts_a_new_episode(runs, data, name) -> None:
    policy = load_policy(runs[name])
    frames = _run_frames(data)[:6]
    policy.reset()
    first = [policy.act(f) for f in frames]
    policy.reset()
    again = [policy.act(f) for f in frames]
    assert all(isinstance(o, PolicyOutput) for o in first)
    assert [o.yaw for o in first] == [o.yaw for o in again]
    if name != "gaussian":
        # Without a reset the same frame comes with another history, so another output.
        assert np.array_equal(first[0].probs, again[0].probs)
        continued = policy.act(frames[0])
        assert not np.array_equal(continued.probs, first[0].probs)


def test_gaussian_policy_acts_with_the_mean(runs, data) -> None:
    policy = load_policy(runs["gaussian"])
    assert policy.head == "gaussian"
    output = policy.act(_run_frames(data)[0])
    assert output.probs is None and -1.0 <= output.yaw <= 1.0
    assert output.action == int(round((1 - output.yaw) * (policy.n_bins - 1) / 2))


def test_policy_checks_the_observation(runs) -> None:
    policy = load_policy(runs["frames"])
    with pytest.raises(ValueError, match=r"\(32, 32, 4\)"):
        policy.act(np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        policy.act(np.zeros((32, 32, 4), np.float32))


def test_policy_exposes_what_the_evaluator_needs(runs) -> None:
    policy = load_policy(runs["lstm"])
    assert policy.env_kwargs["obs_mode"] == "rgbd" and policy.env_kwargs["n_bins"] == 3
    assert policy.config["net"] == "tiny_lstm" and policy.config["bptt"] == "window"
    assert (policy.n_bins, policy.head) == (3, "classifier")
    run_dir = runs["lstm"].parents[1]
    assert load_policy(run_dir).net == "tiny_lstm"  # a run directory means best_val_loss.pt


def _one_line(checkpoint) -> str:
    with pytest.raises(CheckpointError) as info:
        load_policy(checkpoint)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_bad_checkpoints_are_one_line_errors(runs, tmp_path) -> None:
    assert "does not exist" in _one_line(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a zip file at all")
    assert "not a readable" in _one_line(garbage)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "corridor-bc-checkpoint", "payload": Path("x")}, evil)
    assert "not a readable" in _one_line(evil)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    assert "not a corridor-bc checkpoint" in _one_line(foreign)


def test_incompatible_checkpoints_are_one_line_errors(runs, tmp_path) -> None:
    payload = read_checkpoint(runs["frames"])
    unknown = tmp_path / "unknown.pt"
    save_checkpoint(unknown, {**payload, "net": "gone_net"})
    assert "gone_net" in _one_line(unknown)
    misshapen = tmp_path / "misshapen.pt"
    save_checkpoint(misshapen, {**payload, "spec": {**payload["spec"], "frames": 5}})
    assert "does not fit" in _one_line(misshapen)
    future = tmp_path / "future.pt"
    save_checkpoint(future, {**payload, "format_version": 99})
    assert "format_version 99 is not one" in _one_line(future)


def test_checkpoints_refuse_non_plain_values(tmp_path) -> None:
    with pytest.raises(TypeError, match="weights_only"):
        save_checkpoint(tmp_path / "x.pt", {"config": {"path": Path("a")}})
    assert not (tmp_path / "x.pt").exists()


def test_find_latest_run(tmp_path) -> None:
    assert find_latest_run(tmp_path) is None
    for name in ("20261121-101500_tiny_f1", "20261121-201500_tiny_f1", "20261120-235959_x"):
        (tmp_path / name / "checkpoints").mkdir(parents=True)
        (tmp_path / name / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "20261122-000000_unfinished").mkdir()
    assert find_latest_run(tmp_path).name == "20261121-201500_tiny_f1"


def test_classifier_policy_maps_bins_to_yaw(runs) -> None:
    policy = load_policy(runs["frames"])
    head = make_head("classifier", 3, "bin")
    assert policy.head_module.n_outputs == head.n_outputs
    output = policy.act(np.full((32, 32, 4), 128, np.uint8))
    assert output.yaw == {0: 1.0, 1: 0.0, 2: -1.0}[output.action]
    assert output.probs.dtype == np.float32 and output.probs.argmax() == output.action


@pytest.mark.parametrize("name", ["frames", "lstm", "gaussian"])
def test_forks_deciding_together_act_as_each_would_alone(runs, data, name) -> None:
    """act_batch over forks in different episodes gives each fork's own act() decisions."""
    from bc.policy import act_batch

    policy = load_policy(runs[name])
    episodes = [_run_frames(data, "val"), _run_frames(data, "train")]
    length = min(len(frames) for frames in episodes)
    alone = [policy.fork() for _ in episodes]
    together = [policy.fork() for _ in episodes]
    for step in range(length):
        observations = [frames[step] for frames in episodes]
        singles = [fork.act(obs) for fork, obs in zip(alone, observations, strict=True)]
        batched = act_batch(together, observations)
        for single, joint in zip(singles, batched, strict=True):
            assert joint.action == single.action
            assert joint.yaw == pytest.approx(single.yaw, abs=1e-5)
            if single.probs is not None:
                np.testing.assert_allclose(joint.probs, single.probs, atol=1e-5)
    # a fork is an episode of its own: the original policy never moved
    assert not policy._started and policy._state is None
    with pytest.raises(ValueError, match="forks of one policy"):
        act_batch([policy.fork(), load_policy(runs[name])], observations)
