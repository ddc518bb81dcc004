"""Extra inputs, the speed output and per-output weights (bc.extras, bc.outputs)."""

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from bc.config import TrainConfig
from bc.errors import ConfigError, TrainError
from bc.export.exporter import ExportConfig
from bc.export.exporter import main as export_main
from bc.export.runtime import load_exported_policy
from bc.extras import (
    BRANCH_SIZE,
    IMAGE_FEATURES,
    ExtrasPolicy,
    ExtrasSpec,
    drop_actions,
    mirror_extras,
    run_extras,
    step_extras,
)
from bc.heads import ClassifierHead
from bc.outputs import Labels, OutputSet, SpeedHead, keyframe_weights, output_weights
from bc.policy import PolicyOutput, load_policy
from bc.train import main as train_main
from dataset import load_run, read_manifest
from envs.controls import Controls
from envs.options import EnvOptions
from eval.policy_agent import PolicyAgent
from eval.rollout import RolloutConfig
from eval.rollout import main as rollout_main
from expert.collect import main as collect_main
from expert.collect_config import CollectConfig
from tests.bc.helpers import read_metrics, tiny_config
from tests.commands import assert_exit_2_one_line, run_here
from tests.extras import require_extra

TWO = Controls("discrete", "yaw_speed", speed_range=(0.4, 1.2))
ONE = Controls("discrete")


@pytest.fixture(scope="module")
def two_data(tmp_path_factory) -> Path:
    """6 recorded runs of the two-control world in small 32x32 corridors."""
    out = tmp_path_factory.mktemp("two") / "data"
    env = EnvOptions(image_size=32, n_segments=2, segment_length=(4.0, 5.0), controls="yaw_speed")
    collect_main(CollectConfig(out=out, quiet=True, runs=6, env=env))
    return out


def test_run_extras_by_hand():
    yaw = np.array([1.0, 0.0, -1.0], np.float32)
    speed_commands = np.array([1.0, 1.0, -1.0], np.float32)
    speeds = np.array([0.8, 0.9, 1.0], np.float32)
    extras = run_extras(("previous_action", "speed"), TWO, yaw, speed_commands, speeds, 0.8)
    # nothing executed before the first step: straight, at the start speed (command 0)
    expected = [[0.0, 0.0, 0.0], [1.0, 1.0, 0.25], [0.0, 1.0, 0.5]]
    np.testing.assert_allclose(extras, expected, atol=1e-6)
    one = run_extras(("previous_action",), ONE, yaw, None, None, 0.8)
    np.testing.assert_allclose(one, [[0.0], [1.0], [0.0]])


def test_step_extras_in_the_env_equal_the_recorded_ones(two_data):
    """Training reads extras from a run file, the policy from the env: the same numbers."""
    manifest = read_manifest(two_data)
    entry = manifest["runs"][0]
    run = load_run(two_data / entry["file"])
    inputs = ("previous_action", "speed")
    recorded = run_extras(inputs, TWO, run["action_continuous"], run["speed_continuous"],
                          run["speed"], 0.8)  # fmt: skip
    env = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    env.reset(seed=entry["seed"])
    unwrapped = env.unwrapped
    for t in range(entry["frames"]):
        live = step_extras(inputs, unwrapped.controls, unwrapped.last_commands,
                           unwrapped.forward_speed, unwrapped.speed)  # fmt: skip
        np.testing.assert_allclose(live, recorded[t], atol=1e-6, err_msg=f"step {t}")
        env.step(np.array([run["action"][t], run["speed_action"][t]]))
    env.close()


def test_output_weights_by_hand():
    bins = torch.tensor([0, 1, 1, 1])
    speed = torch.tensor([0, 0, 1, 1])
    separate = output_weights("separate", bins, 3, speed, 3)
    # yaw: 1/1 and 1/3, mean 1/2 -> 2 and 2/3; speed: every bin twice -> 1
    np.testing.assert_allclose(separate[:, 0], [2.0, 2 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    np.testing.assert_allclose(separate[:, 1], [1.0, 1.0, 1.0, 1.0])
    joint = output_weights("joint", bins, 3, speed, 3)
    # pairs (0,0), (1,0), (1,1), (1,1): 1, 1, 1/2, 1/2 -> mean 3/4
    np.testing.assert_allclose(joint[:, 0], [4 / 3, 4 / 3, 2 / 3, 2 / 3], rtol=1e-6)
    assert torch.equal(joint[:, 0], joint[:, 1])
    assert output_weights("off", bins, 3, speed, 3) is None


def test_keyframe_weights_by_hand():
    keyframe = torch.tensor([False, True, False, False])
    weights = keyframe_weights(None, keyframe, 5.0)
    # 1, 5, 1, 1 -> mean 2
    np.testing.assert_allclose(weights[:, 0], [0.5, 2.5, 0.5, 0.5])
    assert keyframe_weights(None, keyframe, 1.0) is None


def test_weighted_loss_is_the_weighted_mean_of_per_sample_losses():
    outputs = OutputSet(ClassifierHead(3), SpeedHead("classifier", 3), speed_weight=0.5)
    logits = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    labels = Labels(torch.tensor([0, 1, 2, 1]), torch.zeros(4), torch.tensor([2, 0, 1, 1]),
                    torch.zeros(4), torch.tensor([[1.0, 2.0]] * 2 + [[3.0, 0.0]] * 2))  # fmt: skip
    yaw = torch.nn.functional.cross_entropy(logits[:, :3], labels.bins, reduction="none")
    speed = torch.nn.functional.cross_entropy(logits[:, 3:], labels.speed_bins, reduction="none")
    expected = (yaw * labels.weights[:, 0] + 0.5 * speed * labels.weights[:, 1]).mean()
    assert outputs.loss(logits, labels) == pytest.approx(float(expected))


def test_mirror_flips_the_previous_yaw_only():
    extras = torch.tensor([[[0.5, 1.0, 0.3]], [[1.0, -1.0, 0.2]]])
    names = ["previous_yaw", "previous_speed", "speed"]
    mirrored = mirror_extras(extras, torch.tensor([True, False]), names)
    expected = torch.tensor([[[-0.5, 1.0, 0.3]], [[1.0, -1.0, 0.2]]])
    assert torch.equal(mirrored, expected)


def test_drop_actions_zeroes_the_previous_action_of_a_share_of_samples():
    spec = ExtrasSpec(("previous_action", "speed"), "direct", 1, TWO, 0.8, dropout=0.5)
    extras = torch.ones(2000, 1, 3)
    dropped = drop_actions(extras, spec, torch.Generator().manual_seed(0))
    zeroed = dropped[:, 0, 0] == 0
    assert 0.45 < float(zeroed.float().mean()) < 0.55
    assert torch.equal(zeroed, dropped[:, 0, 1] == 0)
    assert bool((dropped[:, 0, 2] == 1).all())  # the speed is kept


class _Image(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(12, IMAGE_FEATURES)

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.mark.parametrize(("mode", "joined", "outputs"), [
    ("direct", 3, 6), ("prediction", 6, 12), ("thought", BRANCH_SIZE, 6),
])  # fmt: skip
def test_extras_policy_joins_the_extras_as_its_mode_says(mode, joined, outputs):
    model = ExtrasPolicy(_Image(), 3, mode, [3, 3], [True, True])
    out = model(torch.randn(5, 1, 3, 2, 2), torch.randn(5, 4, 3))
    assert out.shape == (5, outputs)
    assert model.heads[0][0].in_features == IMAGE_FEATURES + joined
    if mode != "direct":
        lstm = 4 * (BRANCH_SIZE * (3 + BRANCH_SIZE) + 2 * BRANCH_SIZE)
        assert sum(p.numel() for p in model.branch.parameters()) == lstm


def test_a_two_control_policy_trains_and_flies_with_its_speed(two_data, tmp_path):
    extras = {"extra_inputs": ["previous_action", "speed"], "extra_mode": "thought"}
    config = tiny_config(two_data, tmp_path, balance_outputs="joint", keyframe_weight=2.0, **extras)
    result = train_main(config)
    validation = read_metrics(result["run_dir"])[-1]["val"]
    assert 0.0 <= validation["speed_accuracy"] <= 1.0 and validation["speed_mse"] >= 0.0
    policy = load_policy(Path(result["run_dir"]) / "checkpoints" / "last.pt")
    assert policy.extras_spec.names == ["previous_yaw", "previous_speed", "speed"]
    assert policy.output_set.speed is not None
    with pytest.raises(ValueError, match="extra inputs"):
        policy.act(np.zeros((32, 32, 3), np.uint8))
    out = tmp_path / "eval.json"
    rollout = rollout_main(RolloutConfig(run=Path(result["run_dir"]), which="last", episodes=2,
                                         workers=1, quiet=True, out=out))  # fmt: skip
    assert rollout.summary["episodes"] == 2
    assert all(r.speed_mean is not None for r in rollout.records)


def test_the_agent_flies_the_policys_speed_and_holds_it_without_one():
    env = gym.make("Corridor-v0", image_size=32, controls="yaw_speed")
    env.reset(seed=0)
    decided = PolicyAgent._decision(env, PolicyOutput(0, 1.0, None, speed=1.0, speed_action=2))
    assert decided.env_action.tolist() == [0, 2]
    yaw_only = PolicyAgent._decision(env, PolicyOutput(2, -1.0, None))
    assert yaw_only.env_action.tolist() == [2, 1]  # the start speed, 0.8 m/s, is bin 1
    # a regressor's bin comes through the expert's rule: left at a command of 0.3, where the
    # nearest bin would be straight
    regressed = PolicyAgent._decision(env, PolicyOutput(0, 0.3, None, speed=0.0, speed_action=1))
    assert regressed.env_action.tolist() == [0, 1]
    env.close()


def test_extras_a_world_cannot_give_are_refused(data, tmp_path):
    with pytest.raises((ConfigError, TrainError), match="two-control"):
        train_main(tiny_config(data, tmp_path, extra_inputs=["speed"]))
    with pytest.raises((ConfigError, TrainError), match="two-control"):
        train_main(tiny_config(data, tmp_path, speed_head="classifier"))
    with pytest.raises(ConfigError, match="recurrent"):
        TrainConfig(net="tiny_lstm", extra_inputs=["previous_action"])
    with pytest.raises(ConfigError, match="unknown --extra-inputs"):
        TrainConfig(extra_inputs=["throttle"])


def test_bad_extras_flags_exit_2_with_one_line(data, tmp_path):
    result = run_here("bc.train", "--data", str(data), "--runs-dir", str(tmp_path),
                      "--extra-inputs", "speed", "--epochs", "1")  # fmt: skip
    assert_exit_2_one_line(result, "two-control")


def test_init_from_puts_a_part_where_the_other_net_keeps_it(data, tmp_path):
    """The notes' transfer by parts: an image-only run's encoder into an extras policy."""
    plain = train_main(tiny_config(data, tmp_path / "plain"))
    source = Path(plain["run_dir"]) / "checkpoints" / "last.pt"
    spec = f"{source}:encoder=image.encoder"
    extras = {"extra_inputs": ["previous_action"], "init_from": [spec], "epochs": 1}
    config = tiny_config(data, tmp_path / "extras", freeze=["image.encoder"], **extras)
    result = train_main(config)
    policy = load_policy(Path(result["run_dir"]) / "checkpoints" / "last.pt")
    copied = torch.load(source, weights_only=True)["model"]["encoder.conv1.weight"]
    assert torch.equal(policy.model.image.encoder.conv1.weight, copied)  # frozen: unchanged


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("model_format", ["onnx", "torchscript"])
@pytest.mark.parametrize(("mode", "speed_head"), [("prediction", "classifier"),
                                                  ("direct", "regressor")])  # fmt: skip
def test_an_exported_extras_policy_acts_as_the_checkpoint(
    two_data, tmp_path, model_format, mode, speed_head
):
    if model_format == "onnx":
        require_extra("onnx", "onnx")
        require_extra("onnxruntime", "onnx")
    extras = {"extra_inputs": ["previous_action", "speed"], "extra_mode": mode}
    result = train_main(tiny_config(two_data, tmp_path, steps=2, speed_head=speed_head, **extras))
    checkpoint = Path(result["run_dir"]) / "checkpoints" / "last.pt"
    export = export_main(ExportConfig(checkpoint=checkpoint, format=model_format,
                                      out=tmp_path / f"p.{model_format}", quiet=True))  # fmt: skip
    assert export.metadata["speed_head"] == speed_head
    assert [spec["name"] for spec in export.metadata["inputs"]] == ["frames", "extras"]
    policy, runtime = load_policy(checkpoint), load_exported_policy(export.model)
    manifest = read_manifest(two_data)
    run = load_run(two_data / manifest["runs"][0]["file"])
    recorded = run_extras(policy.extras_spec.inputs, TWO, run["action_continuous"],
                          run["speed_continuous"], run["speed"], 0.8)  # fmt: skip
    for frame, step in zip(run["frames"][:40], recorded[:40], strict=True):
        want, got = policy.act(frame, step), runtime.act(frame, step)
        assert (got.action, got.speed_action) == (want.action, want.speed_action)
        assert got.yaw == pytest.approx(want.yaw, abs=1e-5)
        assert got.speed == pytest.approx(want.speed, abs=1e-5)
