"""Learning-rate schedules: hand-computed rates, and training that follows them."""

from __future__ import annotations

import math

import pytest

from bc.config import TrainConfig, config_from_dict
from bc.errors import ConfigError
from bc.lr_schedule import scheduled_lr, training_progress
from bc.train import main
from tests.bc.helpers import read_metrics, tiny_config


def test_cosine_falls_from_the_base_rate_to_zero_through_half() -> None:
    assert scheduled_lr("cosine", 1e-3, 0.0) == pytest.approx(1e-3)
    assert scheduled_lr("cosine", 1e-3, 0.5) == pytest.approx(5e-4)
    assert scheduled_lr("cosine", 1e-3, 0.25) == pytest.approx(1e-3 * (2 + math.sqrt(2)) / 4)
    assert scheduled_lr("cosine", 1e-3, 1.0) == pytest.approx(0.0, abs=1e-15)


def test_constant_keeps_the_base_rate() -> None:
    assert [scheduled_lr("constant", 0.01, p) for p in (0.0, 0.7, 1.0)] == [0.01, 0.01, 0.01]


def test_progress_counts_epochs_or_steps() -> None:
    assert training_progress(0, 0, 10, 4, step=0, steps=0) == 0.0
    assert training_progress(1, 5, 10, 4, step=15, steps=0) == pytest.approx(1.5 / 4)
    assert training_progress(3, 9, 10, 4, step=39, steps=0) == pytest.approx(3.9 / 4)
    assert training_progress(0, 3, 10, 4, step=3, steps=12) == pytest.approx(0.25)


def test_unknown_schedule_is_a_flag_error() -> None:
    with pytest.raises(ConfigError, match="--lr-schedule must be one of constant, cosine"):
        TrainConfig(lr_schedule="step")


def test_an_older_config_without_a_schedule_trained_at_a_constant_rate() -> None:
    assert config_from_dict(TrainConfig, {"lr": 0.01}).lr_schedule == "constant"


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_training_steps_at_the_scheduled_rate(data, tmp_path, schedule) -> None:
    epochs, lr = 3, 2e-3
    results = main(tiny_config(data, tmp_path, epochs=epochs, lr=lr, lr_schedule=schedule))
    records = read_metrics(results["run_dir"])
    per_epoch = records[0]["step"]
    for record in records:  # the rate of the epoch's last step, computed by hand
        last_step = record["step"] - 1
        expected = lr
        if schedule == "cosine":
            expected = lr * 0.5 * (1 + math.cos(math.pi * last_step / (epochs * per_epoch)))
        assert record["lr"] == pytest.approx(expected)
    if schedule == "cosine":
        assert records[-1]["lr"] < 0.05 * lr
