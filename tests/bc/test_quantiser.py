"""Regressing heads act through the labelling expert's rule: deadband, then hysteresis."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bc.export.runtime import ExportedPolicy
from bc.heads import Quantiser, label_quantiser, make_head
from bc.policy import load_policy
from envs.spaces import yaw_command_to_bin
from expert.experts import ExpertConfig, command_to_bin
from tests.bc.helpers import tiny_config

COMMANDS = np.round(np.linspace(-1.0, 1.0, 81), 4)
# a turn to the left begins, fades below the deadband, dies out, and a weak one never starts
SEQUENCE = (0.5, 0.2, 0.06, 0.02, 0.2, -0.45, -0.1)


@pytest.mark.parametrize("n_bins", [3, 5])
def test_bins_frame_by_frame_are_the_experts_labels_without_a_previous_step(n_bins):
    commands = torch.tensor(COMMANDS, dtype=torch.float32)
    expert_rule = Quantiser(n_bins, 0.4, 0.05).bins(commands).tolist()
    assert expert_rule == [command_to_bin(float(c), n_bins, 0.4) for c in commands]
    assert Quantiser(n_bins).bins(commands).tolist() == [
        yaw_command_to_bin(float(c), n_bins) for c in commands
    ]
    # the two rules differ where it matters: weak turns (the deadband), 0.4 <= |c| < 0.5
    assert expert_rule != Quantiser(n_bins).bins(commands).tolist()


def test_bin_with_the_previous_step_is_the_experts_hysteresis():
    quantiser = Quantiser(3, 0.4, 0.05)
    previous = None
    for command in SEQUENCE:
        expected = command_to_bin(command, 3, 0.4, 0.05, previous)
        assert quantiser.bin(command, previous) == expected
        previous = expected
    assert Quantiser(3).bin(0.45) == 1 and quantiser.bin(0.45) == 0


def test_the_quantiser_is_the_recording_experts_for_a_continuous_target():
    expert = ExpertConfig().to_dict()
    assert label_quantiser(3, "continuous", expert) == Quantiser(3, 0.4, 0.05)
    assert label_quantiser(3, "bin", expert) == Quantiser(3)  # learns bins: nearest
    assert label_quantiser(3, "continuous", None) == Quantiser(3)  # synthetic data
    old = {key: value for key, value in expert.items() if key != "release"}
    assert label_quantiser(3, "continuous", old) == Quantiser(3, 0.4, 0.4)  # no hysteresis
    assert make_head("regressor", 3, "continuous", expert).quantiser == Quantiser(3, 0.4, 0.05)


def test_run_bins_carry_the_previous_bin_along_a_run_and_start_afresh_at_the_next():
    quantiser = Quantiser(3, 0.4, 0.05)
    commands = torch.tensor(SEQUENCE + SEQUENCE[1:3], dtype=torch.float32)
    run_of = torch.tensor([0] * len(SEQUENCE) + [1, 1])
    # run 0 is the expert's sequence; run 1's weak 0.2 and 0.06 start no turn of their own
    assert quantiser.run_bins(commands, run_of).tolist() == _expected_bins() + [1, 1]
    assert not Quantiser(3).hysteresis and not Quantiser(3, 0.4, 0.4).hysteresis
    assert quantiser.hysteresis


def test_offline_accuracy_scores_the_bins_a_hysteresis_head_flies():
    from bc.heads import Prediction
    from bc.metrics import MetricTracker

    commands = torch.tensor(SEQUENCE, dtype=torch.float32)
    labels = torch.tensor(_expected_bins())
    tracker = MetricTracker(3)
    frame_by_frame = Quantiser(3, 0.4, 0.05).bins(commands)  # 0.2 and 0.06 read as straight
    tracker.update(0.0, Prediction(frame_by_frame, commands, None), labels, commands)
    assert tracker.result()["per_class_accuracy"][0] == pytest.approx(1 / 3)
    tracker.recount(Quantiser(3, 0.4, 0.05).run_bins(commands, torch.zeros(7)), labels)
    assert tracker.result()["accuracy"] == 1.0


def test_the_act_thresholds_replace_the_experts_for_a_learnt_command():
    expert = ExpertConfig().to_dict()
    assert label_quantiser(3, "continuous", expert, 0.3, 0.15) == Quantiser(3, 0.3, 0.15)
    assert label_quantiser(3, "continuous", expert, 0.3) == Quantiser(3, 0.3, 0.05)
    assert label_quantiser(3, "continuous", expert, 0.02) == Quantiser(3, 0.02, 0.02)
    assert label_quantiser(3, "bin", expert, 0.3, 0.15) == Quantiser(3)  # learns bins
    head = make_head("gaussian", 3, "continuous", expert, act=(0.3, 0.15))
    assert head.quantiser == Quantiser(3, 0.3, 0.15)


def test_a_regressor_run_flies_with_its_recipes_act_thresholds(data, tmp_path):
    from bc.train import main

    result = main(tiny_config(data, tmp_path / "run", steps=2, head="regressor"))
    path = result["checkpoints"]["last"]
    payload = torch.load(path, weights_only=False)
    assert (payload["config"]["act_deadband"], payload["config"]["act_release"]) == (0.3, 0.15)
    payload["expert_config"] = ExpertConfig().to_dict()  # as a recorded dataset's runs give it
    torch.save(payload, path)
    assert load_policy(path).head_module.quantiser == Quantiser(3, 0.3, 0.15)


def _expected_bins() -> list[int]:
    bins, previous = [], None
    for command in SEQUENCE:
        previous = command_to_bin(command, 3, 0.4, 0.05, previous)
        bins.append(previous)
    return bins


def test_a_regressor_policy_turns_as_the_expert_and_forgets_on_reset(data, tmp_path):
    from bc.train import main

    result = main(tiny_config(data, tmp_path / "run", steps=2, head="regressor"))
    policy = load_policy(result["checkpoints"]["last"])
    policy.head_module = make_head("regressor", 3, "continuous", ExpertConfig().to_dict())
    decide = [policy._decide(torch.tensor([[c]])).action for c in SEQUENCE]
    assert decide == _expected_bins() == [0, 0, 0, 1, 1, 2, 2]
    policy.reset()  # a new episode: the turn of the last one does not go on
    assert policy._decide(torch.tensor([[-0.1]])).action == 1


class _ScriptedRunner:
    """Stands in for an exported graph: the yaw of each call, the nearest bin as its action."""

    def __init__(self, yaws):
        self.yaws = list(yaws)

    def run(self, feeds):
        yaw = self.yaws.pop(0)
        return {"action": np.array([yaw_command_to_bin(yaw, 3)]), "yaw": np.array([yaw])}


def test_an_exported_regressor_turns_as_the_checkpoint_does():
    metadata = {
        "observation": {"channels": 3, "height": 32, "width": 32},
        "frames": 1, "n_outputs": 1, "net": "tiny", "recurrent": False, "head": "regressor",
        "n_bins": 3, "env_kwargs": {}, "expert_config": ExpertConfig().to_dict(),
        "config": {"target": "continuous"},
    }  # fmt: skip
    policy = ExportedPolicy(_ScriptedRunner(SEQUENCE + (-0.1,)), metadata, path=None)
    frame = np.zeros((32, 32, 3), np.uint8)
    assert [policy.act(frame).action for _ in SEQUENCE] == _expected_bins()
    policy.reset()
    assert policy.act(frame).action == 1
