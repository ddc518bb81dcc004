"""What the findings report measures: a spec's rows, a configuration's statistics, verdicts.

A leaf of the report package: the builder makes these, the markdown and the plots read them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eval.stats import Interval, SpreadRatio
from experiments.report.findings import Claim, Finding, Group
from experiments.sweep.spec import SweepSpec, Trial


@dataclass
class SpecResults:
    """One spec of a finding: its trials and the finished rows of its sweep."""

    name: str
    path: Path
    results: Path  # the rows file read: the committed rows, or a sweep's results.jsonl
    spec: SweepSpec
    trials: list[Trial]
    rows: list[dict[str, Any]]
    stale: int = 0  # rows of trials the spec no longer makes (it changed since the sweep)

    @property
    def gpu(self) -> bool:
        return self.spec.gpus > 0


@dataclass
class GroupStats:
    """A configuration's trials, summarised over seeds."""

    group: Group
    rows: list[dict[str, Any]]
    val: Interval | None = None
    test: Interval | None = None
    success: Interval | None = None
    successes: int = 0
    episodes: int = 0
    collisions: float | None = None
    agreement: float | None = None
    datasets: tuple[str, ...] = ()
    one_class: int = 0  # trials whose flown checkpoint gave one action on every test frame
    # per trial whose row has it, the step where training left the majority action (None:
    # never), and the most steps any of them trained
    all_actions_steps: list[int | None] = field(default_factory=list)
    steps: int | None = None

    @property
    def seeds(self) -> int:
        return len({row["seed"] for row in self.rows})


@dataclass
class ClaimResult:
    """A claim's verdicts: offline (test accuracy), closed loop (success) and combined."""

    claim: Claim
    offline: str
    closed_loop: str
    verdict: str
    # a spread claim's ratios of variances (test accuracy, success); None for other claims
    offline_spread: SpreadRatio | None = None
    closed_loop_spread: SpreadRatio | None = None


@dataclass
class FindingResult:
    """Everything a finding's section shows."""

    finding: Finding
    specs: list[SpecResults]
    groups: dict[str, GroupStats]
    claims: list[ClaimResult]
    verdict: str
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(len(spec.rows) for spec in self.specs)

    @property
    def trials(self) -> int:
        return sum(len(spec.trials) for spec in self.specs)
