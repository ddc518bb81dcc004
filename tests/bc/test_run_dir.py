"""Where training left the majority action, read back from a hand-written metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bc.run_dir import METRICS_FILE, all_actions_step


def _write(run_dir: Path, records: list[dict]) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record) for record in records]
    (run_dir / METRICS_FILE).write_text("\n".join(lines) + "\n")
    return run_dir


def _epoch(step: int, per_action: list[float | None], complete: bool = True) -> dict:
    return {"step": step, "complete": complete, "val": {"per_class_accuracy": per_action}}


@pytest.mark.parametrize(
    ("records", "step"),
    [
        # the prior first, then every action: the step of the first epoch that recalls all
        ([_epoch(240, [0.0, 1.0, 0.0]), _epoch(480, [0.0, 1.0, 0.1]),
          _epoch(720, [0.2, 0.9, 0.1]), _epoch(960, [0.0, 1.0, 0.3])], 720),
        # a --steps stop mid-epoch does not count; the complete epoch after it does
        ([_epoch(100, [0.5, 1.0, 0.5], complete=False), _epoch(240, [0.5, 1.0, 0.5])], 240),
        # an action the validation split does not hold is not asked for
        ([_epoch(240, [None, 1.0, 0.0]), _epoch(480, [None, 0.9, 0.2])], 480),
        # one action left is no plateau left: it never got there
        ([_epoch(240, [0.0, 1.0, 0.0]), _epoch(480, [0.0, 0.8, 0.7])], None),
        ([_epoch(240, [None, 1.0, None])], None),
        ([], None),
    ],
)  # fmt: skip
def test_the_first_complete_epoch_that_recalls_every_action(tmp_path, records, step):
    assert all_actions_step(_write(tmp_path / "run", records)) == step


def test_a_run_without_metrics_has_not_left_the_plateau(tmp_path):
    assert all_actions_step(tmp_path) is None
