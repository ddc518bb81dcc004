"""``python -m bc.offline_metrics``: a checkpoint's offline metrics, as bc.train reports them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bc.errors import ConfigError
from bc.offline_metrics import EvaluateConfig
from bc.offline_metrics import main as evaluate
from bc.train import main as train
from tests.bc.helpers import tiny_config


def test_last_and_best_match_what_training_reported(data, tmp_path) -> None:
    results = train(tiny_config(data, tmp_path, epochs=2))
    run = results["run_dir"]
    last = evaluate(EvaluateConfig(run=run, which="last", splits=("test",), quiet=True))
    best = evaluate(EvaluateConfig(run=run, which="best_val_loss", splits=("test",), quiet=True))
    assert last["test"]["accuracy"] == pytest.approx(results["test_last"]["accuracy"])
    assert last["test"]["loss"] == pytest.approx(results["test_last"]["loss"])
    assert best["test"]["loss"] == pytest.approx(results["test"]["loss"])
    assert last["test"]["majority_rate"] == pytest.approx(results["test_majority_rate"])
    assert len(last["test"]["per_class_accuracy"]) == 3


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate(EvaluateConfig(checkpoint=tmp_path / "nope.pt", quiet=True))
    done = subprocess.run(
        [sys.executable, "-m", "bc.offline_metrics", "--checkpoint", str(tmp_path / "nope.pt")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "does not exist" in done.stderr


def test_shortcut_metrics_against_a_hand_count() -> None:
    import torch

    from bc.metrics import shortcut_metrics

    # two runs: labels 1 1 0 0 1 | 2 2; keyframes are frames 2 (1->0) and 4 (0->1)
    bins = torch.tensor([1, 1, 0, 0, 1, 2, 2])
    run_of = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    copycat = torch.tensor([1, 1, 1, 0, 0, 2, 2])  # repeats the previous label
    result = shortcut_metrics(bins, run_of, copycat)
    # frames with a previous one in their run: 1, 2, 3, 4, 6; of them 1, 3, 6 repeat it
    assert result["repeat_accuracy"] == pytest.approx(3 / 5)
    assert result["keyframes"] == 2 and result["keyframe_accuracy"] == 0.0
    assert result["steady_accuracy"] == 1.0
    perfect = shortcut_metrics(bins, run_of, bins)
    assert perfect["keyframe_accuracy"] == 1.0 and perfect["steady_accuracy"] == 1.0
    unpredicted = shortcut_metrics(bins, run_of, torch.full_like(bins, -1))
    assert unpredicted["keyframe_accuracy"] is None and unpredicted["keyframes"] == 0


@pytest.mark.parametrize("options", [{}, {"net": "tiny_lstm", "bptt": "window", "time_length": 5}])
def test_every_policy_reports_its_keyframe_steady_and_repeat_figures(data, tmp_path, options):
    summary = train(tiny_config(data, tmp_path, steps=2, **options))
    last = Path(summary["checkpoints"]["last"])
    results = evaluate(EvaluateConfig(checkpoint=last, splits=("train",), quiet=True))
    for split in ("train",):  # the small dataset's turns are in its training runs
        metrics = results[split]
        assert 0 < metrics["repeat_accuracy"] <= 1 and metrics["keyframes"] > 0
        assert 0 <= metrics["keyframe_accuracy"] <= 1 and 0 <= metrics["steady_accuracy"] <= 1
