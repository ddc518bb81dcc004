import json
import math
import shutil
from pathlib import Path

import pytest
import torch

import eval.during_training as during_training
import eval.fly as fly
from bc.errors import TrainError
from bc.train import main as train
from configflags import parse_config
from envs.seeds import eval_seed
from eval.during_training import (
    LOGGED_KEYS,
    TRAINING_WORLDS_START,
    closed_loop_callback,
    evaluate_checkpoint,
)
from eval.errors import EvalError
from eval.rollout import RolloutConfig
from eval.rollout import main as rollout
from tests.bc.helpers import read_metrics, tiny_config
from tests.eval.helpers import shared_tiny_run, train_tiny_run


@pytest.fixture
def checkpoint(tmp_path, tmp_path_factory):
    run = shutil.copytree(shared_tiny_run(tmp_path_factory), tmp_path / "run")
    return run / "checkpoints" / "last.pt"


def test_returns_the_metrics_the_trainer_logs(checkpoint):
    metrics = evaluate_checkpoint(checkpoint, episodes=2, seed=0, workers=1)
    for key in ("success_rate", "progress_frac", "progress_m", "collision_rate"):
        assert isinstance(metrics[key], float)
    assert set(metrics) == {*LOGGED_KEYS, "episodes"}  # a classifier has every metric
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["episodes"] == 2.0 and 0.0 <= metrics["success_rate"] <= 1.0


def test_selection_worlds_are_not_the_reported_worlds(checkpoint, monkeypatch):
    seen = []
    real = fly.run_episodes

    def spy(setup, tasks, workers, on_result=None):
        seen.extend(task.seed for task in tasks)
        return real(setup, tasks, workers, on_result)

    monkeypatch.setattr(fly, "run_episodes", spy)
    evaluate_checkpoint(checkpoint, episodes=2, seed=0)
    assert seen == [eval_seed(0, TRAINING_WORLDS_START), eval_seed(0, TRAINING_WORLDS_START + 1)]
    assert not set(seen) & {eval_seed(0, i) for i in range(100)}


def test_the_trainers_random_state_and_threads_survive(checkpoint):
    torch.set_num_threads(2)
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    evaluate_checkpoint(checkpoint, episodes=1)
    assert torch.equal(torch.rand(4), expected)
    assert torch.get_num_threads() == 2


def test_bad_arguments(checkpoint):
    with pytest.raises(EvalError, match="image_size 32 \\(checkpoint\\) != 64"):
        evaluate_checkpoint(checkpoint, episodes=1, env_overrides={"image_size": 64})
    with pytest.raises(ValueError, match="episodes"):
        evaluate_checkpoint(checkpoint, episodes=0)
    with pytest.raises(ValueError, match="workers"):
        evaluate_checkpoint(checkpoint, episodes=1, workers=0)


def test_trainer_hook_keeps_best_success_and_rollout_picks_it(tmp_path):
    run = train_tiny_run(tmp_path, epochs=2, eval_every=1, eval_episodes=2)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [sorted(row["eval"]) == sorted({*LOGGED_KEYS, "episodes"}) for row in rows] == [True] * 2
    assert (run / "checkpoints" / "best_success.pt").is_file()
    result = rollout(
        parse_config(
            RolloutConfig,
            ["--run", str(run), "--which", "best_success", "--episodes", "1", "--quiet"],
            "python -m eval.rollout",
        )
    )
    assert result.path.name == "best_success_seed0_n1.json"


def test_eval_every_calls_the_evaluator_hook(data, tmp_path, monkeypatch) -> None:
    calls = []

    def evaluate_checkpoint(path, episodes, seed, workers):
        calls.append((Path(path).name, episodes, seed, workers))
        return {"success_rate": 0.5}

    monkeypatch.setattr(during_training, "evaluate_checkpoint", evaluate_checkpoint)
    config = tiny_config(
        data, tmp_path / "runs", epochs=4, eval_every=2, eval_episodes=3, eval_workers=2, seed=9
    )
    results = train(config, epoch_callback=closed_loop_callback(config))
    assert calls == [("last.pt", 3, 9, 2), ("last.pt", 3, 9, 2)]
    assert [("eval" in r) for r in read_metrics(results["run_dir"])] == [False, True, False, True]
    assert (Path(results["run_dir"]) / "checkpoints" / "best_success.pt").is_file()


def test_no_callback_without_eval_every(data, tmp_path) -> None:
    assert closed_loop_callback(tiny_config(data, tmp_path)) is None


def test_an_evaluation_error_stops_training_with_the_epoch(data, tmp_path, monkeypatch) -> None:
    def evaluate_checkpoint(path, episodes, seed, workers):
        raise EvalError("the checkpoint flies another env")

    monkeypatch.setattr(during_training, "evaluate_checkpoint", evaluate_checkpoint)
    config = tiny_config(data, tmp_path / "runs", eval_every=1)
    with pytest.raises(TrainError, match="closed-loop evaluation after epoch 1: the checkpoint"):
        train(config, epoch_callback=closed_loop_callback(config))
