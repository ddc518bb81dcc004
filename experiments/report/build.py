"""The notes' findings regenerated: ``python -m experiments.report`` (docs/sweeps.md).

Reads the results of the finding sweeps (``experiments/specs/*.toml``, each run with
``python -m experiments.sweep SPEC``): the rows committed in the file each spec's ``rows``
names (``experiments/rows/NAME.jsonl``, rewritten by the sweep after every trial), so that a
fresh clone regenerates the page; ``--sweeps-dir`` reads the sweeps' own folders instead
(``DIR/NAME/results.jsonl``). It writes one
section per finding of the original notes into docs/results.md: the notes' claim beside our
measurement, offline (validation and test accuracy) and in closed loop (success), mean over
training seeds with a 95% t-interval and success pooled over episodes with a 95% Wilson
interval, a PNG plot, and a verdict per claim and per finding (agrees, disagrees or
inconclusive at this sample size; the rule is in ``experiments.report.stats``). A finding whose
sweeps have not run gets a section that says so and gives the commands.

Each section sits between ``<!-- finding:NAME:start -->`` and ``<!-- finding:NAME:end -->``;
only those blocks are replaced, the rest of the page is left as it is, and missing blocks are
appended under "## Findings of the notes". The blocks hold no timestamps: the same results give
the same page, which ``--check`` verifies (exit 1 when the page is out of date).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts.atomic import write_text_atomic
from configflags import CommandFailed, UserError, option
from eval.stats import spread_ratio, t_interval
from experiments.report.findings import FINDINGS, Claim, Finding, Group
from experiments.report.markdown import find_blocks, finding_block, summary_block, update_page
from experiments.report.results import ClaimResult, FindingResult, GroupStats, SpecResults
from experiments.report.stats import (
    NOT_APPLICABLE,
    NOT_RUN,
    SPREAD,
    combine,
    compare,
    compare_spread,
)
from experiments.sweep.results import RESULTS_JSONL, read_rows
from experiments.sweep.spec import spec_from_dict
from experiments.sweep.spec_sources import read_toml

EXCLUDED_SPECS = ("example",)  # specs in the folder that belong to no finding
SUMMARY = "summary"  # the block with the verdicts of all findings
BUDGET_WORKERS = 2  # a spec's [budget] minutes are for the 2-core machine, 2 trials at once


@dataclass(frozen=True)
class ReportConfig:
    """Where the finding specs, their sweeps and the page are."""

    specs: Path = option(Path("experiments/specs"), "folder of the finding specs (NAME.toml)")
    sweeps_dir: Path | None = option(
        None, "read DIR/NAME/results.jsonl instead of each spec's committed rows file"
    )
    out: Path = option(Path("docs/results.md"), "the page to update (created if missing)")
    images: Path = option(Path("docs/img/findings"), "folder for the plots (NAME.png)")
    findings: list[str] = option(
        [], "regenerate only these findings (default: all)", metavar="NAME"
    )
    check: bool = option(
        False, "write nothing; exit 1 if the page differs from what the results give"
    )
    budget: bool = option(
        False, "write nothing; print each finding spec's budget, rule and trials done"
    )

    def __post_init__(self) -> None:
        known = [finding.name for finding in FINDINGS]
        for name in self.findings:
            if name not in known:
                raise UserError(f"unknown finding {name!r}; choose from {', '.join(known)}")


def load_spec(path: Path, sweeps_dir: Path | None) -> SpecResults:
    """A spec file, expanded into its trials, with the rows its sweep has finished."""
    if not path.is_file():
        raise UserError(f"finding spec {path} not found")
    spec = spec_from_dict(read_toml(path), str(path), path.stem)
    trials = spec.trials()
    if sweeps_dir is not None:
        results = Path(sweeps_dir) / spec.name / RESULTS_JSONL
    elif spec.rows is not None:
        results = Path(spec.rows)
    else:
        results = Path(spec.out or Path("sweeps") / spec.name) / RESULTS_JSONL
    rows: list[dict[str, Any]] = []
    stale = 0
    if results.is_file():
        ids = {trial.id for trial in trials}
        for row in read_rows(results):
            if row.get("trial") in ids:
                rows.append(row)
            else:
                stale += 1
    return SpecResults(spec.name, path, results, spec, trials, rows, stale)


def _seed_means(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    """One value per seed (the mean of that seed's rows), seeds in order; None values left out."""
    by_seed: dict[int, list[float]] = {}
    for row in rows:
        if row.get(key) is not None:
            by_seed.setdefault(row["seed"], []).append(float(row[key]))
    return [sum(values) / len(values) for _, values in sorted(by_seed.items())]


def _mean(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = _seed_means(rows, key)
    return sum(values) / len(values) if values else None


def group_stats(group: Group, rows: Sequence[dict[str, Any]]) -> GroupStats:
    """Summarise the rows of one group (already selected) over their seeds."""
    rows = list(rows)
    stats = GroupStats(group, rows)
    if not rows:
        return stats
    if group.offline:
        stats.val = t_interval(_seed_means(rows, "val_accuracy"))
        stats.test = t_interval(_seed_means(rows, "test_accuracy"))
    stats.success = t_interval(_seed_means(rows, "success_rate"))
    stats.successes = sum(round(row["success_rate"] * row["episodes"]) for row in rows)
    stats.episodes = sum(row["episodes"] for row in rows)
    stats.collisions = _mean(rows, "collision_rate")
    stats.agreement = _mean(rows, "agreement")
    stats.datasets = tuple(sorted({row["dataset"] for row in rows}))
    stats.one_class = sum(one_class(row) for row in rows)
    known = [row for row in rows if "all_actions_step" in row]
    stats.all_actions_steps = [row["all_actions_step"] for row in known]
    stats.steps = max((row.get("steps") or 0 for row in known), default=0) or None
    return stats


def one_class(row: dict[str, Any]) -> bool:
    """Whether a trial's flown checkpoint answered one action on every test frame.

    Its per-action test accuracy is above 0 for one action and 0 for every other action the
    test run holds (an action it does not hold has no accuracy, ``None``): the net
    learnt the prior (the most frequent action) and nothing more.
    """
    present = [a for a in row.get("test_per_class_accuracy") or () if a is not None]
    return len(present) > 1 and sum(accuracy > 0 for accuracy in present) == 1


def judge(claim: Claim, a: GroupStats, b: GroupStats) -> ClaimResult:
    """A claim's verdicts from its two groups (``not run`` while either has no trial)."""
    if not a.rows or not b.rows:
        return ClaimResult(claim, NOT_RUN, NOT_RUN, NOT_RUN)
    if claim.relation == SPREAD:
        offline_ratio = None
        if a.group.offline and b.group.offline:
            offline_ratio = spread_ratio(
                _seed_means(a.rows, "test_accuracy"), _seed_means(b.rows, "test_accuracy")
            )
        closed_ratio = spread_ratio(
            _seed_means(a.rows, "success_rate"), _seed_means(b.rows, "success_rate")
        )
        offline, closed_loop = compare_spread(offline_ratio), compare_spread(closed_ratio)
        return ClaimResult(claim, offline, closed_loop, combine([offline, closed_loop]),
                           offline_ratio, closed_ratio)  # fmt: skip
    offline = compare(a.test, claim.relation, b.test) if a.test and b.test else NOT_APPLICABLE
    closed_loop = compare(a.success, claim.relation, b.success)
    return ClaimResult(claim, offline, closed_loop, combine([offline, closed_loop]))


def evaluate(finding: Finding, specs: dict[str, SpecResults]) -> FindingResult:
    """Group a finding's rows, judge its claims and collect its warnings."""
    groups = {
        group.label: group_stats(
            group, [row for row in specs[group.spec].rows if group.matches(row["values"])]
        )
        for group in finding.groups
    }
    claims = [judge(c, groups[c.a], groups[c.b]) for c in finding.claims]
    warnings = []
    for claim in finding.claims:
        a, b = groups[claim.a], groups[claim.b]
        comparable = a.group.offline and b.group.offline
        if comparable and a.datasets and b.datasets and a.datasets != b.datasets:
            warnings.append(
                f"{claim.a} and {claim.b} were trained on different datasets"
                f" ({', '.join(a.datasets)} against {', '.join(b.datasets)}): the specs'"
                " [collect] tables differ"
            )
    verdict = combine([claim.verdict for claim in claims])
    return FindingResult(finding, [specs[name] for name in finding.specs], groups, claims,
                         verdict, warnings)  # fmt: skip


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def build_report(
    config: ReportConfig, findings: Sequence[Finding] = FINDINGS
) -> tuple[list[FindingResult], dict[str, str]]:
    """Every finding's result and markdown block (plots are written unless ``--check``)."""
    chosen = [f for f in findings if not config.findings or f.name in config.findings]
    loaded: dict[str, SpecResults] = {}
    results, blocks = [], {}
    for finding in chosen:
        for name in finding.specs:
            if name not in loaded:
                loaded[name] = load_spec(config.specs / f"{name}.toml", config.sweeps_dir)
        result = evaluate(finding, loaded)
        image = None
        if result.rows:
            image = config.images / f"{finding.name}.png"
            if not config.check:
                from experiments.report.plots import plot_finding  # matplotlib only when needed

                plot_finding(result, image)
        link = _relative(image, config.out.parent) if image is not None else None
        results.append(result)
        blocks[finding.name] = finding_block(result, link, config.specs)
    if not config.findings:
        blocks = {SUMMARY: summary_block(results), **blocks}
    return results, blocks


def _unclaimed_specs(folder: Path, findings: Sequence[Finding]) -> list[str]:
    named = {name for finding in findings for name in finding.specs}
    return sorted(p.stem for p in folder.glob("*.toml")
                  if p.stem not in named and p.stem not in EXCLUDED_SPECS)  # fmt: skip


def print_budget(config: ReportConfig, findings: Sequence[Finding] = FINDINGS) -> float:
    """Print each finding spec's budget, rule and progress; return the total minutes left."""
    from rich.console import Console
    from rich.table import Table

    chosen = [f for f in findings if not config.findings or f.name in config.findings]
    names = list(dict.fromkeys(name for finding in chosen for name in finding.specs))
    table = Table(title="finding sweeps: budget on the 2-core machine")
    columns = ("spec", "trials done", "budget (min)", "left (min)", "measured (min)")
    for column in columns:
        table.add_column(column, overflow="fold")
    rules = []
    total = left = measured = 0.0
    for name in names:
        loaded = load_spec(config.specs / f"{name}.toml", config.sweeps_dir)
        spec, done, trials = loaded.spec, len(loaded.rows), len(loaded.trials)
        minutes = spec.budget_minutes or 0.0
        remaining = minutes * (trials - done) / trials if trials else 0.0
        total, left = total + minutes, left + remaining
        # the finished trials' wall time, shared by the budget's 2 workers
        spent = sum(float(row.get("wall_s") or 0.0) for row in loaded.rows) / 60 / BUDGET_WORKERS
        measured += spent
        table.add_row(name, f"{done} of {trials}",
                      f"{spec.budget_minutes:g}" if spec.budget_minutes else "none given",
                      f"{remaining:.0f}", f"{spent:.0f}")  # fmt: skip
        rules.append(f"{name}: {spec.budget_rule or 'no rule given'}")
    table.add_row("all", "", f"{total:g}", f"{left:.0f}", f"{measured:.0f}")
    console = Console()
    console.print(table)
    console.print(
        f"measured: the finished trials' wall time over {BUDGET_WORKERS} workers (each trial"
        " on one core; a loaded machine makes it longer)",
        highlight=False,
    )
    console.print("budget rules (each spec's [budget], fixed before its results):", markup=False)
    for rule in rules:
        console.print(f"  {rule}", highlight=False)
    return left


def main(config: ReportConfig, findings: Sequence[Finding] = FINDINGS) -> dict[str, str]:
    """Write (or, with ``--check``, verify) the findings' blocks; return each verdict."""
    if config.budget:
        print_budget(config, findings)
        return {}
    old = config.out.read_text(encoding="utf-8") if config.out.is_file() else ""
    find_blocks(old)  # broken markers stop the report before it writes anything
    results, blocks = build_report(config, findings)
    for name in _unclaimed_specs(config.specs, findings):
        print(f"note: {config.specs / name}.toml belongs to no finding; not reported")
    new = update_page(old, blocks)
    if config.check:
        if new != old:
            raise CommandFailed(
                f"{config.out} is out of date with the sweeps' results: run python -m"
                " experiments.report"
            )
        print(f"{config.out} is up to date ({len(results)} findings)")
    elif new != old:
        config.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(config.out, new)
    for result in results:
        done = f"{result.rows} of {result.trials} trials"
        print(f"{result.finding.name}: {result.verdict} ({done})")
    if not config.check:
        print(f"wrote {config.out}")
    return {result.finding.name: result.verdict for result in results}
