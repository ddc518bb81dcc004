"""The findings report's markdown: one block per finding, the summary, and the page update.

A block is the text between ``<!-- finding:NAME:start -->`` and ``<!-- finding:NAME:end -->``
(markers included). ``update_page`` replaces the blocks a page already holds and appends the
missing ones under "## Findings of the notes", leaving every other byte of the page as it was:
docs/results.md is shared with other generated tables. Nothing in a block depends on the time
or on the machine that writes it (the machines a block names are those its rows record), so the
same results give the same page.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from artifacts.cells import interval_cell as percent_interval
from artifacts.cells import pct
from artifacts.markdown_block import block_markers
from artifacts.markdown_table import markdown_row as _row
from configflags import UserError
from eval.stats import CONFIDENCE, Interval, SpreadRatio
from experiments.report.results import FindingResult, GroupStats
from experiments.report.stats import (
    AGREES,
    DISAGREES,
    EQUIVALENCE_MARGIN,
    INCONCLUSIVE,
    NOT_RUN,
    SPREAD,
    pooled_wilson,
)

HEADING = "## Findings of the notes"
MARKER = re.compile(r"<!-- finding:([A-Za-z0-9_.-]+):(start|end) -->")


def start_marker(name: str) -> str:
    """The line that opens block ``name``."""
    return block_markers(f"finding:{name}")[0]


def end_marker(name: str) -> str:
    """The line that closes block ``name``."""
    return block_markers(f"finding:{name}")[1]


def _percent_interval(value: float, low: float, high: float) -> str:
    return percent_interval(value, low, high, bound_digits=1, bound_sign=False)


def interval_cell(interval: Interval | None) -> str:
    """``56.0% [43.1, 68.9]`` (the mean and its 95% interval in percent)."""
    if interval is None:
        return "-"
    if not interval.defined:
        return f"{pct(interval.mean)} (1 seed)"
    assert interval.low is not None and interval.high is not None
    return _percent_interval(interval.mean, interval.low, interval.high)


def pooled_cell(stats: GroupStats) -> str:
    """``84/150: 56.0% [48.0, 63.7]``: all episodes of the group, Wilson interval."""
    if not stats.episodes:
        return "-"
    rate, low, high = pooled_wilson(stats.successes, stats.episodes)
    return f"{stats.successes}/{stats.episodes}: {_percent_interval(rate, low, high)}"


def majority_plateau_cell(stats: GroupStats) -> str:
    """``2,358-3,085 of 4,766 (4 of 6)``: when its trials left the majority action's plateau.

    The range of the steps after which validation first got every action right, of the most
    steps a trial made, and how many of the trials got there ("-": no row records it).
    """
    if not stats.all_actions_steps:
        return "-"
    left = sorted(step for step in stats.all_actions_steps if step is not None)
    if left:
        when = f"{left[0]:,}" + (f"-{left[-1]:,}" if left[-1] != left[0] else "")
        when += f" of {stats.steps:,}" if stats.steps else ""
    else:
        when = f"never in {stats.steps:,}" if stats.steps else "never"
    return f"{when} ({len(left)} of {len(stats.all_actions_steps)})"


def _verdict(verdict: str) -> str:
    return f"**{verdict}**" if verdict in (AGREES, DISAGREES) else verdict


def _comparison(a: Interval | None, b: Interval | None, verdict: str) -> str:
    if verdict == NOT_RUN:
        return "not run"
    if a is None or b is None:
        return "n/a"
    return f"{interval_cell(a)} vs {interval_cell(b)}: {_verdict(verdict)}"


def _ratio(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.3g}"


def spread_cell(ratio: SpreadRatio | None, verdict: str) -> str:
    """``sd 28.1 vs 3.9 points, variance ratio 51.1 [7.15, 365]: agrees``."""
    if verdict == NOT_RUN:
        return "not run"
    if ratio is None:
        return "n/a"
    text = f"sd {100 * ratio.a_std:.1f} vs {100 * ratio.b_std:.1f} points"
    if ratio.defined:
        assert ratio.ratio is not None and ratio.low is not None and ratio.high is not None
        bounds = f"[{_ratio(ratio.low)}, {_ratio(ratio.high)}]"
        text += f", variance ratio {_ratio(ratio.ratio)} {bounds}"
    return f"{text}: {_verdict(verdict)}"


def _counts(result: FindingResult) -> str:
    verdicts = [claim.verdict for claim in result.claims]
    parts = [f"{verdicts.count(v)} {v}" for v in (AGREES, DISAGREES, INCONCLUSIVE, NOT_RUN)
             if verdicts.count(v)]  # fmt: skip
    return ", ".join(parts)


def _commands(result: FindingResult, specs_dir: Path) -> list[str]:
    lines = []
    for spec in result.specs:
        if spec.rows and len(spec.rows) == len(spec.trials):
            continue
        command = f"python -m experiments.sweep {(specs_dir / spec.name).as_posix()}.toml"
        if spec.gpu:
            command += "  # GPU spec: run it on a GPU machine (docs/sweeps.md)"
        lines.append(command)
    return lines


def _status(result: FindingResult) -> list[str]:
    lines = []
    for spec in result.specs:
        gpu = ", GPU spec" if spec.gpu else ""
        state = f"{len(spec.rows)} of {len(spec.trials)} trials finished"
        machines = _machines(spec.rows)
        lines.append(f"- `{spec.name}` ({state}{gpu}{machines}): `{spec.results.as_posix()}`")
        if spec.stale:
            lines.append(
                f"  ({spec.stale} row(s) there are from an older version of the spec and were"
                " left out: rerun the sweep)"
            )
    return lines


def _machines(rows: Sequence[dict[str, Any]]) -> str:
    """Where the rows were trained (their ``machine``, bc.machine): floats differ by machine.

    Nothing when no row records it; "on X" when all were trained on one machine; else a
    count per machine, rows that record none included.
    """
    trained = Counter(
        f"{row['machine']['cpu']}, {row['machine']['kernels']}"
        for row in rows
        if row.get("machine")
    )
    if not trained:
        return ""
    if len(trained) == 1 and trained.total() == len(rows):
        return f"; trained on {next(iter(trained))}"
    counts = [f"{count} on {machine}" for machine, count in sorted(trained.items())]
    if trained.total() < len(rows):
        counts.append(f"{len(rows) - trained.total()} on a machine not recorded")
    return "; trained " + ", ".join(counts)


# marks a configuration with trials whose policy gave one action on every test frame
ONE_CLASS_MARK = "one class"


def finding_block(result: FindingResult, image: str | None, specs_dir: Path) -> str:
    """The markdown block of one finding: claim, verdicts, configurations, plot, status."""
    finding = result.finding
    lines = [start_marker(finding.name), f"### {finding.title}", ""]
    if result.rows:
        so_far = " so far" if any(c.verdict == NOT_RUN for c in result.claims) else ""
        lines.append(f"**Verdict{so_far}: {result.verdict}** ({_counts(result)}).")
    else:
        lines.append("**Not run yet.**")
    lines += ["", f'The notes ({finding.source}): "{finding.quote}"', ""]
    if finding.measured:
        lines += [f"Measured here: {finding.measured}", ""]
    if not result.rows:
        lines.append("Claims to test:")
        lines += [f"- {c.claim.text}: {c.claim.a} {c.claim.relation} {c.claim.b}"
                  for c in result.claims]  # fmt: skip
    else:
        lines += [
            _row(["claim", "offline: test accuracy (A vs B)", "closed loop: success (A vs B)",
                  "verdict"]),
            _row(["---"] * 4),
        ]  # fmt: skip
    for claim in result.claims if result.rows else []:
        a, b = result.groups[claim.claim.a], result.groups[claim.claim.b]
        text = f"{claim.claim.text}: {claim.claim.a} {claim.claim.relation} {claim.claim.b}"
        if claim.claim.relation == SPREAD:
            offline = spread_cell(claim.offline_spread, claim.offline)
            closed_loop = spread_cell(claim.closed_loop_spread, claim.closed_loop)
        else:
            offline = _comparison(a.test, b.test, claim.offline)
            closed_loop = _comparison(a.success, b.success, claim.closed_loop)
        lines.append(_row([text, offline, closed_loop, _verdict(claim.verdict)]))
    if result.rows:
        lines += ["", _row(["configuration", "seeds", "val accuracy", "test accuracy",
                            "success over seeds", "success, all episodes", "collisions",
                            "expert agreement", "left the majority action: step (trials)"]),
                  _row(["---"] * 9)]  # fmt: skip
        for stats in result.groups.values():
            if not stats.rows:
                lines.append(_row([stats.group.label, "0", *(["not run"] + ["-"] * 6)]))
                continue
            label = stats.group.label + (f" ({ONE_CLASS_MARK})" if stats.one_class else "")
            lines.append(_row([label, str(stats.seeds), interval_cell(stats.val),
                               interval_cell(stats.test), interval_cell(stats.success),
                               pooled_cell(stats), pct(stats.collisions),
                               pct(stats.agreement), majority_plateau_cell(stats)]))  # fmt: skip
        stuck = [s for s in result.groups.values() if s.one_class]
        if stuck:
            counts = "; ".join(f"{s.group.label}: {s.one_class} of {len(s.rows)}" for s in stuck)
            lines += ["", f"({ONE_CLASS_MARK}): trials whose flown checkpoint put every test"
                      f" frame in the same action bin ({counts}). A policy that gives one"
                      " action whatever it sees has learnt nothing from the images: a"
                      " comparison with it says more about the training budget than about the"
                      " configuration."]  # fmt: skip
    if image is not None:
        lines += ["", f"![{finding.name}: accuracy and success per configuration]({image})"]
    if result.warnings:
        lines += [""] + [f"Warning: {warning}." for warning in result.warnings]
    commands = _commands(result, specs_dir)
    if commands:
        lines += ["", "To run what is missing (from the repository root), then regenerate:", "",
                  "```bash", *commands, "python -m experiments.report", "```"]  # fmt: skip
    lines += ["", "Sweeps:", *_status(result), end_marker(finding.name)]
    return "\n".join(lines)


def summary_block(results: Sequence[FindingResult]) -> str:
    """The block that opens the findings part: how it is made, the rule, every verdict."""
    confidence = f"{100 * CONFIDENCE:.0f}%"
    lines = [
        start_marker("summary"),
        "Generated by `python -m experiments.report` from the finding specs in"
        ' `experiments/specs/` and their sweeps (docs/sweeps.md, "Finding specs"); the text'
        " between `finding:` markers is regenerated, do not edit it by hand.",
        "",
        f"Each configuration: mean over its training seeds with a {confidence} Student-t"
        " interval over the seed means (offline: accuracy on the validation run at the best"
        " validation epoch, and on the test run with the checkpoint flown in closed loop, the"
        " last one unless a spec says otherwise; closed loop: success on the held-out worlds),"
        f" and its episodes pooled over seeds with a {confidence} Wilson interval. A claim"
        " \"A > B\" agrees when A's t-interval lies entirely above B's, disagrees when entirely"
        ' below, and is inconclusive when they overlap; "A ~ B" (no clear difference) agrees'
        " when the intervals overlap and both lie inside a band of"
        f" {100 * EQUIVALENCE_MARGIN:.0f} points, disagrees when they are disjoint, and is"
        ' inconclusive otherwise; "A spread> B" (A\'s training seeds spread wider: A is the less'
        f" stable) agrees when the {confidence} F interval of the ratio of A's variance over"
        " seeds to B's lies entirely above 1, disagrees when entirely below, and is"
        " inconclusive when it holds 1."
        " A claim is judged on test accuracy and on success: it agrees"
        " when one agrees and the other does not disagree (and the other way round), and is"
        " inconclusive when both are or they contradict each other; a finding combines its"
        " claims the same way.",
        "",
        _row(["finding", "verdict", "claims", "trials"]),
        _row(["---"] * 4),
    ]
    for result in results:
        verdict = _verdict(result.verdict) if result.rows else "not run yet"
        lines.append(_row([result.finding.title, verdict, _counts(result),
                           f"{result.rows} of {result.trials}"]))  # fmt: skip
    lines.append(end_marker("summary"))
    return "\n".join(lines)


def find_blocks(text: str) -> dict[str, tuple[int, int]]:
    """Block name -> (start, end) character span, markers included; malformed markers raise."""
    spans: dict[str, tuple[int, int]] = {}
    open_name: str | None = None
    open_at = 0
    for match in MARKER.finditer(text):
        name, kind = match.group(1), match.group(2)
        if kind == "start":
            if open_name is not None:
                raise UserError(f"finding block {open_name!r} is not closed before {name!r}")
            if name in spans:
                raise UserError(f"finding block {name!r} appears twice")
            open_name, open_at = name, match.start()
        else:
            if open_name != name:
                raise UserError(f"end marker of finding block {name!r} without its start")
            spans[name] = (open_at, match.end())
            open_name = None
    if open_name is not None:
        raise UserError(f"finding block {open_name!r} has no end marker")
    return spans


def update_page(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with each block replaced in place, or appended (in order) when missing."""
    spans = find_blocks(text)
    present = sorted(((spans[name], name) for name in blocks if name in spans), reverse=True)
    for (start, end), name in present:
        text = text[:start] + blocks[name] + text[end:]
    missing = [blocks[name] for name in blocks if name not in spans]
    if not missing:
        return text
    if text and not text.endswith("\n"):
        text += "\n"
    if not any(line.strip() == HEADING for line in text.splitlines()):
        text += ("\n" if text else "") + HEADING + "\n"
    return text + "\n" + "\n\n".join(missing) + "\n"
