"""``python -m bc.offline_metrics``: a checkpoint's offline metrics, as bc.train reports them."""

from __future__ import annotations

import subprocess
import sys

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
