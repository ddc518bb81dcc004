import json
import math
import shutil

import pytest
import torch

import eval.during_training as during_training
from envs.seeds import eval_seed
from eval.during_training import LOGGED_KEYS, TRAINING_WORLDS_START, evaluate_checkpoint
from eval.errors import EvalError
from eval.rollout import main as rollout
from eval.rollout import parse_args
from tests.test_eval_fixtures import shared_tiny_run, train_tiny_run


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
    real = during_training.run_episodes

    def spy(spec, tasks, workers):
        seen.extend(task.seed for task in tasks)
        return real(spec, tasks, workers)

    monkeypatch.setattr(during_training, "run_episodes", spy)
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
        parse_args(["--run", str(run), "--which", "best_success", "--episodes", "1", "--quiet"])
    )
    assert result.path.name == "best_success_seed0_n1.json"
