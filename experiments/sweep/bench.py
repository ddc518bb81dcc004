"""Sweep throughput: ``python -m experiments.sweep.bench``.

Runs one tiny sweep (a 32x32 one-segment world, one training epoch, two closed-loop episodes
per trial, one trial per seed) three times on a dataset recorded beforehand: with 1 and 2
local workers, and with ``--backend ray`` on a local Ray with 2 CPUs. It prints trials per
minute over the trial phase (first trial started to last one finished), the speed-up of 2
workers over 1, and Ray's overhead per trial against the local pool at the same concurrency
(and, apart, how long Ray takes to start). The machine's load average is printed too: on a
machine shared with other jobs the figures drop and swing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from configflags import UserError, option, run_main
from experiments.sweep.config import SweepConfig
from experiments.sweep.runner import SweepResult
from experiments.sweep.runner import main as sweep
from experiments.sweep.spec import build_config, spec_from_dict
from experiments.sweep.trial import dataset_dir
from expert.collect import main as collect
from expert.workers import import_ray

TINY_FLAGS = {
    "collect": {"runs": 3, "image_size": 32, "n_segments": 1, "segment_length": [4, 5]},
    "train": {"batch_size": 4, "tensorboard": False},
    "eval": {},
}


@dataclass(frozen=True)
class BenchConfig:
    """How big a sweep to time, and what to time it on."""

    trials: int = option(4, "trials per sweep (one per seed)")
    epochs: int = option(1, "training epochs per trial")
    episodes: int = option(2, "closed-loop episodes per trial")
    ray: bool = option(True, "also time --backend ray on a local Ray (needs the 'ray' extra)")
    out: Path | None = option(None, "working folder (default: a temporary one, removed after)")

    def __post_init__(self) -> None:
        for name in ("trials", "epochs", "episodes"):
            if getattr(self, name) < 1 + (name == "trials"):
                raise UserError(f"--{name} must be >= {1 + (name == 'trials')}")


def _spec(config: BenchConfig) -> dict[str, Any]:
    return {
        "name": "bench",
        "seeds": list(range(config.trials)),
        "collect": TINY_FLAGS["collect"],
        "train": {**TINY_FLAGS["train"], "epochs": config.epochs},
        "eval": {"episodes": config.episodes},
    }


def _timed_sweep(root: Path, spec: dict[str, Any], dataset: Path, **flags: Any) -> SweepResult:
    out = root / f"{flags.get('backend', 'local')}_{flags.get('workers', 0)}"
    shutil.copytree(dataset, dataset_dir(out, dataset.name))  # the trial phase alone is timed
    # JSON scalars and lists are TOML values: the command line's short form takes them
    fixed = [f"{section}.{key}={json.dumps(value)}"
             for section in ("collect", "train", "eval")
             for key, value in spec[section].items()]  # fmt: skip
    seeds = ",".join(map(str, spec["seeds"]))
    return sweep(SweepConfig(fixed=fixed, seeds=seeds, name=spec["name"], out=out, quiet=True,
                             **flags))  # fmt: skip


def main(config: BenchConfig) -> dict[str, float]:
    """Time the sweeps, print the table, return the figures."""
    console = Console()
    root = Path(config.out) if config.out else Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    root.mkdir(parents=True, exist_ok=True)
    spec = _spec(config)
    trials = spec_from_dict(spec, "bench").trials()
    load_before = os.getloadavg()[0]
    try:
        dataset = root / "dataset" / trials[0].dataset
        collect(build_config("collect", trials[0].flags["collect"], out=dataset, quiet=True))
        figures: dict[str, float] = {}
        rows = []
        for workers in (1, 2):
            result = _timed_sweep(root, spec, dataset, workers=workers)
            figures[f"local_{workers}_s"] = result.trials_s
            rows.append((f"local, {workers} worker{'s' * (workers > 1)}", result))
        if config.ray:
            ray = import_ray("--ray")
            started = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)  # fmt: skip
            figures["ray_start_s"] = time.perf_counter() - started
            try:
                result = _timed_sweep(root, spec, dataset, backend="ray", workers=2)
            finally:
                ray.shutdown()
            figures["ray_2_s"] = result.trials_s
            rows.append(("Ray (local), 2 at once", result))
    finally:
        if config.out is None:
            shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()[0]
    table = Table(title=f"sweep throughput: {config.trials} tiny trials per sweep")
    for column in ("backend", "trial phase", "trials/min", "vs 1 local worker"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    base = figures["local_1_s"]
    for name, result in rows:
        per_minute = 60 * len(result.rows) / result.trials_s
        table.add_row(name, f"{result.trials_s:.1f} s", f"{per_minute:.1f}",
                      f"{base / result.trials_s:.2f}x")  # fmt: skip
    console.print(table)
    figures["speedup_2"] = base / figures["local_2_s"]
    if "ray_2_s" in figures:
        overhead = (figures["ray_2_s"] - figures["local_2_s"]) / len(trials)
        figures["ray_overhead_per_trial_s"] = overhead
        console.print(
            f"Ray overhead per trial against the local pool (2 at once): {overhead:+.2f} s;"
            f" Ray start: {figures['ray_start_s']:.1f} s"
        )
    console.print(
        f"load average (1 min) before {load_before:.2f}, after {load_after:.2f}, on"
        f" {os.cpu_count()} cores: above ~0.5 per core other jobs shared the machine"
    )
    return figures


if __name__ == "__main__":
    run_main(main, BenchConfig, "python -m experiments.sweep.bench", __doc__)
