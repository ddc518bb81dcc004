"""The three commands chained on their defaults: collect -> train -> rollout (-> compare).

Each later command is run with no argument that names the earlier one's output: train finds
``data/default``, rollout finds the newest run under ``runs/``, compare finds the run and its
closed-loop results. Only the world is made tiny (32x32 images, one short segment), through
the collector's env flags; the checkpoint carries that env to the evaluator.
"""

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("expert.collect", "bc.train", "eval.rollout", "eval.compare")


# a renamed or removed command is a failure here, never a skip
@pytest.mark.parametrize("command", COMMANDS)
def test_command_module_exists(command):
    assert importlib.util.find_spec(command) is not None, f"python -m {command}: no such module"


def test_collect_train_rollout_chain_on_defaults(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

    def run(*argv: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", *argv],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{argv}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    started = time.perf_counter()
    run(
        "expert.collect",
        "--runs",
        "3",
        "--image-size",
        "32",
        "--n-segments",
        "1",
        "--segment-length",
        "4",
        "5",
        "--quiet",
    )
    assert (tmp_path / "data" / "default" / "manifest.json").is_file()

    run("bc.train", "--epochs", "1")
    [run_dir] = (tmp_path / "runs").iterdir()
    assert (run_dir / "checkpoints" / "best_val_loss.pt").is_file()

    rollout = run("eval.rollout", "--episodes", "2")
    results = run_dir / "eval" / "last_seed0_n2.json"
    data = json.loads(results.read_text())
    assert data["env_kwargs"]["image_size"] == 32 and data["env_kwargs"]["n_segments"] == 1
    assert len(data["records"]) == 2 and data["summary"]["episodes"] == 2
    assert "success" in rollout.stdout and str(results.relative_to(tmp_path)) in rollout.stdout

    compare = run("eval.compare")
    assert run_dir.name in compare.stdout and "success" in compare.stdout
    assert (tmp_path / "runs" / "compare" / "closed_loop.png").is_file()
    assert time.perf_counter() - started < 90
