"""Every evaluation flies through eval.fly: the same loading, check, labeller and setup.

Each caller (``eval.rollout``, the trainer's callback, ``eval.bench``; ``experiments.dagger``
in tests/experiments/test_dagger.py) is shown to reach ``eval.fly``'s ``run_episodes`` and to
refuse a checkpoint whose net does not fit the env it records.
"""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import eval.fly as fly
from bc.errors import TrainError
from bc.policy import load_policy
from configflags import parse_config, run_main
from eval.agents import expert_config_dict
from eval.bench import BenchConfig
from eval.bench import main as bench
from eval.during_training import closed_loop_callback, evaluate_checkpoint
from eval.episodes import WorkerSetup
from eval.errors import EvalError
from eval.policy_agent import PolicyAgentFactory
from eval.rollout import RolloutConfig
from eval.rollout import main as rollout
from tests.commands import assert_one_error_line
from tests.eval.helpers import shared_tiny_run, spy_on_flights
from tests.test_import_graph import ALLOWED_IMPORTS

ROOT = Path(__file__).resolve().parents[2]
# the net takes 32x32 frames; this checkpoint claims its env renders 40x40
MISFIT = "the net takes 32x32x3 (H x W x C) observations but the env gives 40x40x3"


@pytest.fixture
def checkpoint(tmp_path, tmp_path_factory) -> Path:
    run = shutil.copytree(shared_tiny_run(tmp_path_factory), tmp_path / "run")
    return run / "checkpoints" / "last.pt"


@pytest.fixture
def misfit(checkpoint) -> Path:
    """A copy of the checkpoint whose recorded env is not the one its net was built for."""
    payload = torch.load(checkpoint, weights_only=True)
    payload["env_kwargs"] = {**payload["env_kwargs"], "image_size": 40}
    path = checkpoint.with_name("misfit.pt")
    torch.save(payload, path)
    return path


@pytest.fixture
def flown(monkeypatch) -> list[WorkerSetup]:
    """The setups eval.fly hands to run_episodes, one per call."""
    return spy_on_flights(monkeypatch)


def test_only_eval_fly_builds_a_worker_setup_and_runs_episodes():
    callers = {}
    for package in ALLOWED_IMPORTS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func).rpartition(".")[2]
                    if name in ("WorkerSetup", "run_episodes"):
                        callers.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    assert callers == {"WorkerSetup": {"eval/fly.py"}, "run_episodes": {"eval/fly.py"}}


def test_rollout_flies_through_eval_fly_and_refuses_a_misfit(checkpoint, misfit, flown, capsys):
    argv = ["--workers", "1", "--episodes", "1", "--quiet"]
    result = rollout(parse_config(RolloutConfig, ["--checkpoint", str(checkpoint), *argv], "x"))
    [setup] = flown
    assert setup.agent == PolicyAgentFactory(str(checkpoint))
    assert result.data["labeller"] == setup.labeller.config
    with pytest.raises(SystemExit) as exit_info:
        run_main(rollout, RolloutConfig, "x", None, ["--checkpoint", str(misfit), *argv])
    assert exit_info.value.code == 2 and len(flown) == 1
    assert_one_error_line(capsys.readouterr().err, MISFIT)


def test_training_callback_flies_through_eval_fly_and_refuses_a_misfit(checkpoint, misfit, flown):
    evaluate_checkpoint(checkpoint, episodes=1)
    [setup] = flown
    assert setup.agent == PolicyAgentFactory(str(checkpoint))
    with pytest.raises(EvalError, match=re.escape(MISFIT)):
        evaluate_checkpoint(misfit, episodes=1)
    with pytest.raises(EvalError, match="n_bins 3 \\(checkpoint\\) != 5"):
        evaluate_checkpoint(checkpoint, episodes=1, env_overrides={"n_bins": 5})
    # what the trainer sees: the epoch's one-line error
    config = SimpleNamespace(eval_every=1, eval_episodes=1, seed=0, eval_workers=1)
    with pytest.raises(TrainError, match=f"after epoch 1: checkpoint {misfit}"):
        closed_loop_callback(config)(1, misfit)
    assert len(flown) == 1


def test_bench_flies_through_eval_fly_and_refuses_a_misfit(checkpoint, misfit, flown, capsys):
    argv = ["--workers", "1", "1", "--episodes", "1"]
    rows = bench(parse_config(BenchConfig, ["--checkpoint", str(checkpoint), *argv], "x"))
    assert len(rows) == 2 and len(flown) == 2  # once per worker count, the same setup
    assert flown[0] == flown[1] and flown[0].agent == PolicyAgentFactory(str(checkpoint))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_main(bench, BenchConfig, "x", None, ["--checkpoint", str(misfit), *argv])
    assert exit_info.value.code == 2 and len(flown) == 2
    assert_one_error_line(capsys.readouterr().err, MISFIT)


def _fly_with(caller: str, checkpoint: Path) -> None:
    if caller == "rollout":
        argv = ["--checkpoint", str(checkpoint), "--episodes", "1", "--workers", "1", "--quiet"]
        rollout(parse_config(RolloutConfig, argv, "x"))
    elif caller == "training":
        evaluate_checkpoint(checkpoint, episodes=1)
    else:
        argv = ["--checkpoint", str(checkpoint), "--episodes", "1", "--workers", "1"]
        bench(parse_config(BenchConfig, argv, "x"))


@pytest.mark.parametrize("caller", ["rollout", "training", "bench"])
@pytest.mark.parametrize(
    "dataset_expert",
    [None, {"kind": "stochastic", "deadband": 0.25}],
    ids=["synthetic data", "recorded by an expert"],
)
def test_every_caller_labels_with_the_same_full_expert_config(
    caller, dataset_expert, checkpoint, flown, monkeypatch
):
    def continuous_policy(path):
        policy = load_policy(path)
        policy.env_kwargs = {**policy.env_kwargs, "action_type": "continuous"}
        policy.expert_config = dataset_expert
        return policy

    monkeypatch.setattr(fly, "load_policy_on_cpu", continuous_policy)
    _fly_with(caller, checkpoint)
    # the dataset's expert, else the default expert of the env's action type, in full
    expected = expert_config_dict(dataset_expert, "continuous")
    assert expected["kind"] == ("continuous" if dataset_expert is None else "stochastic")
    assert {setup.labeller.config == expected for setup in flown} == {True}
    assert {setup.env.env_id for setup in flown} == {"CorridorContinuous-v0"}


def _without_timing(records) -> list[dict]:
    """The records but their latency, the expert NLL rounded to 5 significant digits."""
    rows = [{k: v for k, v in r.to_dict().items() if k != "latency_ms"} for r in records]
    for row in rows:
        row["expert_nll"] = None if row["expert_nll"] is None else float(f"{row['expert_nll']:.5g}")
    return rows


@pytest.mark.parametrize("expert", [False, True])
def test_episodes_flown_side_by_side_give_the_records_of_one_at_a_time(checkpoint, expert):
    pilot = fly.load_pilot(checkpoint, expert=expert)
    worlds = fly.HeldOutWorlds(seed=3, episodes=5)
    alone = fly.fly(pilot, worlds, workers=1)
    grouped = fly.fly(pilot, worlds, workers=1, batch=3)
    seen = []
    pooled = fly.fly(pilot, worlds, workers=2, batch=2, on_result=seen.append)
    # every record reaches the progress callback once, as its episode ends
    assert sorted(r.index for r in seen) == [0, 1, 2, 3, 4]
    # the same decisions, trajectories and outcomes; a batch's float outputs may differ from
    # batch 1's in the last bits, so the expert NLL is compared to float precision
    expected = _without_timing(alone.records)
    assert _without_timing(grouped.records) == expected
    assert _without_timing(pooled.records) == expected
    assert len({r.steps for r in alone.records}) > 1, "episodes of different lengths leave groups"


def test_a_flight_without_agreement_builds_no_labeller(checkpoint, flown):
    pilot = fly.load_pilot(checkpoint)
    flight = fly.fly(pilot, fly.HeldOutWorlds(seed=3, episodes=2), batch=2, agreement=False)
    assert flown[-1].labeller is None and flown[-1].batch == 2
    assert all(r.agreement is None and r.yaw_mse is None for r in flight.records)
    with pytest.raises(ValueError, match="batch 1"):
        fly.fly(pilot, fly.HeldOutWorlds(episodes=2), batch=2, videos=fly.Videos(ROOT, 1))


def test_flights_flown_together_each_fly_their_own_env_as_alone(checkpoint):
    """One pool, one batch across flights: each flight's records are its own flight's."""
    overrides = [{}, {"n_segments": 2}, {"light": "outside"}]
    pilots = [fly.load_pilot(checkpoint, env_overrides=o) for o in overrides]
    worlds = [fly.HeldOutWorlds(seed=s, episodes=3) for s in (3, 4, 5)]
    together = fly.fly_together(pilots, worlds, workers=2, batch=4, agreement=False)
    for pilot, world, flight in zip(pilots, worlds, together, strict=True):
        alone = fly.fly(pilot, world, agreement=False)
        assert _without_timing(flight.records) == _without_timing(alone.records)
        assert flight.env_spec.kwargs == pilot.env_kwargs
    long, short = together[1].summary, together[0].summary
    assert long["corridor_length_m"] > short["corridor_length_m"], "2 segments, not 1"
    with pytest.raises(ValueError, match="one checkpoint"):
        fly.fly_together([pilots[0], fly.load_pilot(None, expert=True)], worlds[:2])
