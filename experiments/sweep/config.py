"""What ``python -m experiments.sweep`` is asked to do: ``SweepConfig``, its flags and checks.

A leaf of the sweep package: the runner and the spec sources both read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from configflags import UserError, option
from experiments.sweep.backends import BACKENDS


@dataclass(frozen=True)
class SweepConfig:
    """Which sweep to run, where, and on what."""

    spec: Path | None = option(
        None, "TOML spec file (docs/sweeps.md); optional with --grid/--set/--seeds", positional=True
    )
    grid: list[str] = option(
        [], "a grid axis, KEY=V1,V2 or KEY=[V1, V2] (TOML values); repeatable", metavar="KEY=VALUES"
    )
    fixed: list[str] = option(
        [], "a fixed flag for every trial, KEY=VALUE; repeatable", flag="--set", metavar="KEY=VALUE"
    )
    random: list[str] = option(
        [],
        "a sampled flag, KEY={uniform|loguniform|randint|choice = [...]}; repeatable",
        metavar="KEY=DIST",
    )
    samples: int | None = option(None, "random samples per grid point (default: the spec's)")
    sample_seed: int | None = option(None, "seed of the random samples (default: the spec's, 0)")
    seeds: str = option("", "comma-separated seeds, e.g. 0,1,2 (default: the spec's, else 0)")
    name: str = option("", "sweep name (default: the spec's, else the spec file's stem)")
    out: Path | None = option(None, "output folder (default: the spec's out, else sweeps/NAME)")
    backend: str = option("local", "where trials run", choices=BACKENDS)
    address: str = option(
        "", "Ray cluster for --backend ray: auto, HOST:PORT or ray://HOST:PORT (default: local)"
    )
    workers: int = option(
        0, "trials at once (0: usable cores / spec cpus, or what the Ray cluster holds)"
    )
    dry_run: bool = option(False, "check the spec and list its trials; run nothing")
    quiet: bool = option(False, "no progress bar or tables; failures are still printed")
    table_into: Path | None = option(
        None, "markdown page that gets the means over seeds between the --table-name markers,"
        " once every trial has finished",
    )  # fmt: skip
    table_name: str = option(
        "", "which table of --table-into: <!-- NAME:start --> ... <!-- NAME:end -->"
        " (default: the sweep's name)",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"unknown --backend {self.backend!r}; choose one of local, ray")
        if self.workers < 0:
            raise UserError(f"--workers must be >= 0 (0 = as many as fit), got {self.workers}")
