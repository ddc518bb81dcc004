"""The findings report: intervals, verdicts, markdown blocks, the shared page, the specs."""

import dataclasses
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from bc.machine import training_machine
from configflags import CommandFailed, UserError
from eval.stats import Interval, SpreadRatio
from experiments.report.build import (
    ReportConfig,
    build_report,
    evaluate,
    load_spec,
    main,
    one_class,
)
from experiments.report.findings import FINDINGS, SOME, TRANSFER_TARGET, Claim, Finding, Group
from experiments.report.markdown import finding_block, majority_plateau_cell, update_page
from experiments.report.results import GroupStats, SpecResults
from experiments.report.stats import RELATIONS, combine, compare, compare_spread
from experiments.sweep.config import SweepConfig
from experiments.sweep.runner import main as sweep
from experiments.sweep.spec import SweepSpec, Trial
from experiments.sweep.spec_sources import read_toml
from tests.experiments.helpers import InlineBackend, tiny_spec

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "experiments" / "specs"
FINDING_SPECS = sorted(p for p in SPECS.glob("*.toml") if p.stem != "example")


# -- intervals and verdicts, against values from tables and by hand ---------------------------


def _iv(low, high):
    return Interval((low + high) / 2, low, high, 3)


@pytest.mark.parametrize(
    ("a", "relation", "b", "verdict"),
    [
        (_iv(0.6, 0.7), ">", _iv(0.4, 0.5), "agrees"),
        (_iv(0.4, 0.5), ">", _iv(0.6, 0.7), "disagrees"),
        (_iv(0.45, 0.65), ">", _iv(0.4, 0.5), "inconclusive"),
        (_iv(0.50, 0.58), "~", _iv(0.52, 0.60), "agrees"),  # band 0.50..0.60: 10 points
        (_iv(0.40, 0.58), "~", _iv(0.52, 0.60), "inconclusive"),  # band of 20 points
        (_iv(0.40, 0.45), "~", _iv(0.52, 0.60), "disagrees"),
        (Interval(0.9, None, None, 1), ">", _iv(0.1, 0.2), "inconclusive"),  # one seed
        (None, ">", _iv(0.1, 0.2), "n/a"),
    ],
)
def test_the_verdict_rule(a, relation, b, verdict):
    assert compare(a, relation, b) == verdict


@pytest.mark.parametrize(
    ("verdicts", "combined"),
    [
        (["agrees", "inconclusive"], "agrees"),
        (["disagrees", "n/a"], "disagrees"),
        (["agrees", "disagrees"], "inconclusive"),
        (["inconclusive", "inconclusive"], "inconclusive"),
        (["agrees", "not run"], "agrees"),
        (["not run", "not run"], "not run"),
        (["n/a", "n/a"], "n/a"),
    ],
)
def test_verdicts_combine(verdicts, combined):
    assert combine(verdicts) == combined


def test_the_spread_rule_reads_the_f_interval_of_the_variance_ratio():
    assert compare_spread(SpreadRatio(0.3, 0.04, 56.0, 7.8, 400.0)) == "agrees"
    assert compare_spread(SpreadRatio(0.04, 0.3, 0.018, 0.0025, 0.13)) == "disagrees"
    assert compare_spread(SpreadRatio(0.1, 0.08, 1.56, 0.22, 11.2)) == "inconclusive"
    assert compare_spread(SpreadRatio(0.0, 0.0, None, None, None)) == "inconclusive"
    assert compare_spread(None) == "n/a"
    with pytest.raises(ValueError, match="relation"):
        Claim("no such relation", "A", "spread<", "B")


# -- a finding from hand-made rows -----------------------------------------------------------

HAND = Finding(
    name="hand",
    title="Hand-made finding",
    source="notes.txt, a section",
    quote="B is better than A.",
    specs=("fake",),
    groups=(
        Group("A", "fake", {"train.frames": 1}),
        Group("B", "fake", {"train.frames": 3}),
        Group("C", "fake", {"train.frames": 5}),
    ),
    claims=(
        Claim("B beats A", "B", ">", "A"),
        Claim("A equals B", "A", "~", "B"),
        Claim("C beats A", "C", ">", "A"),
    ),
)


def _row(frames, seed, val, test, successes, agreement=0.6, episodes=20):
    return {"trial": f"f{frames}-s{seed}", "values": {"train.frames": frames}, "seed": seed,
            "dataset": "d0", "val_accuracy": val, "test_accuracy": test,
            "success_rate": successes / episodes, "episodes": episodes,
            "collision_rate": 1 - successes / episodes, "agreement": agreement}  # fmt: skip


def _plateau(row, left, steps):
    """``row`` with where its training left the majority action (B's rows predate the key)."""
    return {**row, "all_actions_step": left, "steps": steps}


HAND_ROWS = [
    _plateau(_row(1, 0, 0.92, 0.90, 4, 0.5), 2358, 4744),
    _plateau(_row(1, 1, 0.93, 0.91, 6, 0.6), None, 4766),
    _plateau(_row(1, 2, 0.94, 0.92, 5, 0.7), 3085, 4738),
    _row(3, 0, 0.96, 0.95, 12), _row(3, 1, 0.97, 0.96, 14), _row(3, 2, 0.98, 0.97, 13),
    _plateau(_row(5, 0, 0.99, 0.99, 20), 480, 960),
]  # fmt: skip


def _results(rows, name="fake", total=None):
    trials = [Trial(row["trial"], row["values"], row["seed"], {}, "d0") for row in rows]
    trials += [Trial(f"missing-{i}", {}, 0, {}, "d0") for i in range((total or 0) - len(rows))]
    return SpecResults(name, Path(f"{name}.toml"), Path("sweeps") / name / "results.jsonl",
                       SweepSpec(name),
                       trials, list(rows))  # fmt: skip


def test_hand_made_rows_give_the_hand_computed_intervals_and_verdicts():
    result = evaluate(HAND, {"fake": _results(HAND_ROWS)})
    a, b = result.groups["A"], result.groups["B"]
    # A: test 0.90, 0.91, 0.92 -> 0.91 +- 4.302653 * 0.01 / sqrt(3) = 0.91 +- 0.024841
    assert (a.test.low, a.test.high) == pytest.approx((0.885159, 0.934841), abs=1e-6)
    # B: test 0.95..0.97 -> [0.935159, 0.984841]: just above A's, so the claim holds offline
    assert (b.test.low, b.test.high) == pytest.approx((0.935159, 0.984841), abs=1e-6)
    # A: success 0.20, 0.30, 0.25 -> 0.25 +- 0.124207; B: 0.60, 0.70, 0.65
    assert (a.success.low, a.success.high) == pytest.approx((0.125793, 0.374207), abs=1e-6)
    assert (a.successes, a.episodes, b.successes, b.episodes) == (15, 60, 39, 60)
    verdicts = [(c.offline, c.closed_loop, c.verdict) for c in result.claims]
    assert verdicts == [
        ("agrees", "agrees", "agrees"),
        ("disagrees", "disagrees", "disagrees"),
        ("inconclusive", "inconclusive", "inconclusive"),  # C has one seed: no interval
    ]
    assert result.verdict == "inconclusive"  # one claim agrees, one disagrees


def test_the_block_shows_the_hand_computed_figures():
    result = evaluate(HAND, {"fake": _results(HAND_ROWS)})
    block = finding_block(result, "img/hand.png", Path("experiments/specs"))
    lines = block.splitlines()
    assert lines[0] == "<!-- finding:hand:start -->" and lines[-1] == "<!-- finding:hand:end -->"
    assert "**Verdict: inconclusive** (1 agrees, 1 disagrees, 1 inconclusive)." in lines
    assert 'The notes (notes.txt, a section): "B is better than A."' in lines
    # Wilson 15/60: [0.157765, 0.372321]; 39/60: [0.523626, 0.758322] (by the formula)
    # A: one seed never left the majority action in its 4,766 steps; B's rows do not say
    assert ("| A | 3 | 93.0% [90.5, 95.5] | 91.0% [88.5, 93.5] | 25.0% [12.6, 37.4] |"
            " 15/60: 25.0% [15.8, 37.2] | 75.0% | 60.0% | 2,358-3,085 of 4,766 (2 of 3) |"
            ) in lines  # fmt: skip
    assert ("| B | 3 | 97.0% [94.5, 99.5] | 96.0% [93.5, 98.5] | 65.0% [52.6, 77.4] |"
            " 39/60: 65.0% [52.4, 75.8] | 35.0% | 60.0% | - |") in lines  # fmt: skip
    assert (
        "| B beats A: B > A | 96.0% [93.5, 98.5] vs 91.0% [88.5, 93.5]: **agrees** |"
        " 65.0% [52.6, 77.4] vs 25.0% [12.6, 37.4]: **agrees** | **agrees** |"
    ) in lines
    assert "| C | 1 | 99.0% (1 seed) | 99.0% (1 seed) | 100.0% (1 seed) |" in block
    assert block.count("| 480 of 960 (1 of 1) |") == 1
    assert "![hand: accuracy and success per configuration](img/hand.png)" in lines
    assert "- `fake` (7 of 7 trials finished): `sweeps/fake/results.jsonl`" in lines
    assert "python -m experiments.sweep" not in block, "nothing is missing"


def test_the_status_line_names_the_machines_that_trained_the_rows():
    epyc = {"cpu": "AMD EPYC", "kernels": "AVX2", "torch": "2.13.0"}
    xeon = {"cpu": "Intel Xeon", "kernels": "AVX512", "torch": "2.13.0"}

    def status(rows):
        block = finding_block(evaluate(HAND, {"fake": _results(rows)}), None, Path("specs"))
        (line,) = [line for line in block.splitlines() if line.startswith("- `fake`")]
        return line

    on_one = [dict(row, machine=epyc) for row in HAND_ROWS]
    assert status(on_one).startswith("- `fake` (7 of 7 trials finished; trained on AMD EPYC, AVX2)")
    mixed = on_one[:4] + [dict(row, machine=xeon) for row in HAND_ROWS[4:6]] + HAND_ROWS[6:]
    assert ("(7 of 7 trials finished; trained 4 on AMD EPYC, AVX2, 2 on Intel Xeon, AVX512,"
            " 1 on a machine not recorded)") in status(mixed)  # fmt: skip
    assert "trained" not in status(HAND_ROWS), "rows that record no machine say nothing of it"


def test_a_finding_without_results_says_so_and_gives_the_commands():
    result = evaluate(HAND, {"fake": _results([], total=7)})
    block = finding_block(result, None, Path("experiments/specs"))
    assert "**Not run yet.**" in block and "Verdict" not in block
    assert "- B beats A: B > A" in block
    assert "python -m experiments.sweep experiments/specs/fake.toml" in block
    assert "%" not in block and "![" not in block, "no figures for a finding that did not run"


def test_a_partly_run_finding_says_so_so_far():
    result = evaluate(HAND, {"fake": _results(HAND_ROWS[:6], total=9)})
    block = finding_block(result, None, Path("specs"))
    assert "**Verdict so far: inconclusive**" in block and "1 not run" in block
    assert "| C | 0 | not run |" in block
    assert "- `fake` (6 of 9 trials finished)" in block
    assert "python -m experiments.sweep specs/fake.toml" in block


def test_groups_on_different_datasets_are_flagged():
    rows = [dict(row, dataset="d1") if row["values"]["train.frames"] == 3 else row
            for row in HAND_ROWS]  # fmt: skip
    result = evaluate(HAND, {"fake": _results(rows)})
    assert any("B and A were trained on different datasets" in w for w in result.warnings)


def test_some_matches_any_non_empty_value():
    group = Group("g", "s", {"train.init_from": SOME, "train.freeze": []})
    assert group.matches({"train.init_from": ["a.pt:encoder"], "train.freeze": []})
    assert not group.matches({"train.init_from": [], "train.freeze": []})
    assert not group.matches({"train.init_from": ["a.pt"], "train.freeze": ["backbone"]})


# -- the shared page --------------------------------------------------------------------------

PAGE = """# Results

Text of the lead.

<!-- results:start -->
| a | b |
|---|---|
| 1 | 2 |
<!-- results:end -->

More text.
<!-- levers:start -->
levers table
<!-- levers:end -->
tail without a newline"""


def test_the_page_keeps_everything_outside_its_blocks():
    first = update_page(
        PAGE,
        {
            "summary": "<!-- finding:summary:start -->\ns1\n<!-- finding:summary:end -->",
            "x": "<!-- finding:x:start -->\nx1\n<!-- finding:x:end -->",
        },
    )
    assert first.startswith(PAGE + "\n"), "the page is kept byte for byte, blocks appended"
    assert first.count("## Findings of the notes") == 1
    assert first.index("finding:summary:start") < first.index("finding:x:start")
    # replaced in place: everything else unchanged, even text the lead adds after the blocks
    edited = first.replace("More text.", "More text, edited.") + "\nLead's later text.\n"
    second = update_page(edited, {"x": "<!-- finding:x:start -->\nx2\n<!-- finding:x:end -->"})
    assert second == edited.replace("\nx1\n", "\nx2\n")
    # a new block is appended at the end, under the heading already there
    third = update_page(second, {"y": "<!-- finding:y:start -->\ny\n<!-- finding:y:end -->"})
    assert third.startswith(second) and third.count("## Findings of the notes") == 1
    assert update_page(third, {}) == third


@pytest.mark.parametrize(
    "broken",
    [
        "<!-- finding:x:start -->\nno end",
        "<!-- finding:x:end -->",
        "<!-- finding:x:start -->\n<!-- finding:y:start -->\n<!-- finding:y:end -->",
        "<!-- finding:x:start -->a<!-- finding:x:end -->\n<!-- finding:x:start -->b"
        "<!-- finding:x:end -->",
    ],
)
def test_broken_markers_are_refused_and_nothing_is_guessed(broken):
    with pytest.raises(UserError, match="finding block"):
        update_page(broken, {"x": "<!-- finding:x:start -->\n<!-- finding:x:end -->"})


# -- the finding specs: they parse, expand and fit the findings -------------------------------


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """Every finding spec, expanded (no sweep folder: no rows)."""
    empty = tmp_path_factory.mktemp("sweeps")
    return {path.stem: load_spec(path, empty) for path in FINDING_SPECS}


def test_every_finding_spec_parses_expands_and_belongs_to_a_finding(loaded):
    named = {name for finding in FINDINGS for name in finding.specs}
    assert set(loaded) == named, "a spec without a finding, or a finding without its spec"
    for name, results in loaded.items():
        spec, raw = results.spec, read_toml(SPECS / f"{name}.toml")
        assert spec.name == name, "a spec's name is its file's stem (its sweeps/NAME folder)"
        assert len(spec.seeds) >= 3, name
        assert spec.fixed.get("eval.episodes", 0) >= 50, name
        assert "collect.runs" in spec.fixed, f"{name}: state the recorded runs, the budget's axis"
        # the rows are committed where the report reads them; the budget is stated up front
        assert spec.rows == f"experiments/rows/{name}.jsonl", name
        assert spec.budget_minutes and len(spec.budget_rule) > 40, f"{name}: give its [budget]"
        header = "".join(line for line in (SPECS / f"{name}.toml").read_text().splitlines(True)
                         if line.startswith("#"))  # fmt: skip
        finding = next(f for f in FINDINGS if name in f.specs)
        assert "Claim (notes " in header and "Budget rule (fixed before" in header, name
        notes = re.findall(r"\d{3}_[0-9a-f]{16}\.txt", finding.source)
        assert any(note in header for note in notes), f"{name} does not cite {notes}"
        assert ("GPU SPEC" in header) == (spec.gpus > 0), f"{name}: mark GPU specs at the top"
        assert "resources" in raw, f"{name}: state the trial's resources"


def test_every_group_and_claim_of_the_findings_fits_its_specs(loaded):
    names = [finding.name for finding in FINDINGS]
    assert len(set(names)) == len(names) and "summary" not in names, "block names are unique"
    for finding in FINDINGS:
        labels = [group.label for group in finding.groups]
        assert len(set(labels)) == len(labels), finding.name
        for claim in finding.claims:
            assert {claim.a, claim.b} <= set(labels) and claim.relation in RELATIONS
        for group in finding.groups:
            points = loaded[group.spec].spec.points() or [{}]
            assert any(group.matches(point) for point in points), (finding.name, group.label)
        # the groups a finding compares come from one dataset, whichever spec they are in
        if finding.name != "transfer":
            datasets = {t.dataset for name in finding.specs for t in loaded[name].trials}
            assert len(datasets) == 1, (finding.name, datasets)


def test_the_transfer_target_starts_from_the_source_specs_seed_0_trial(loaded):
    source = next(t for t in loaded["transfer_source"].trials if t.seed == 0)
    checkpoint = f"sweeps/transfer_source/trials/{source.id}/run/checkpoints/last.pt"
    inits = loaded[TRANSFER_TARGET].spec.grid["train.init_from"]
    assert inits == [[], [f"{checkpoint}:encoder"]]


def test_the_results_page_is_what_the_committed_rows_give(monkeypatch, capsys):
    """docs/results.md's findings are regenerated from experiments/rows/ on a fresh clone."""
    monkeypatch.chdir(ROOT)  # the specs name their rows files relative to the repository root
    rows = {path.relative_to(ROOT).as_posix() for path in (ROOT / "experiments").glob("rows/*")}
    specs = [*FINDING_SPECS, *sorted((ROOT / "experiments" / "studies").glob("*.toml"))]
    named = {read_toml(path).get("rows") for path in specs}
    # experiments.generalist --rows: the recipe's seeds and its variants', each named by the
    # "Generated by" line of its block in docs/results.md
    page = (ROOT / "docs" / "results.md").read_text()
    named |= set(re.findall(r"python -m experiments\.generalist [^`\n]*--rows ([^\s`]+)", page))
    assert "experiments/rows/generalist.jsonl" in named
    assert rows and rows <= named, "a rows file that no spec or study writes"
    main(ReportConfig(check=True))
    assert "docs/results.md is up to date (9 findings)" in capsys.readouterr().out


def test_the_budget_lists_every_finding_spec_with_its_rule_and_what_is_left(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    page = (ROOT / "docs" / "results.md").read_text()
    assert main(ReportConfig(budget=True)) == {}
    printed = capsys.readouterr().out
    assert (ROOT / "docs" / "results.md").read_text() == page, "--budget writes nothing"
    for path in FINDING_SPECS:
        spec = load_spec(path, None)
        line = next(line for line in printed.splitlines() if line.startswith(f"│ {spec.name} "))
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        assert cells[1] == f"{len(spec.rows)} of {len(spec.trials)}"
        assert cells[2] == f"{spec.spec.budget_minutes:g}"
        assert f"{spec.name}: {spec.spec.budget_rule[:30]}" in " ".join(printed.split())
    total = sum(load_spec(path, None).spec.budget_minutes for path in FINDING_SPECS)
    assert "│ all " in printed and f"{total:g}" in printed.split("│ all ")[1]


def test_the_report_of_unrun_sweeps_is_deterministic_and_checkable(tmp_path):
    page = tmp_path / "results.md"
    page.write_text(PAGE)
    config = ReportConfig(specs=SPECS, sweeps_dir=tmp_path / "none", out=page,
                          images=tmp_path / "img")  # fmt: skip
    with redirect_stdout(None):
        verdicts = main(config)
    assert set(verdicts.values()) == {"not run"} and len(verdicts) == len(FINDINGS)
    text = page.read_text()
    assert text.startswith(PAGE + "\n") and not (tmp_path / "img").exists()
    for finding in FINDINGS:
        assert f"<!-- finding:{finding.name}:start -->" in text
    check = dataclasses.replace(config, check=True, findings=["input_space_frames"])
    with redirect_stdout(None):
        main(check)  # unchanged: passes
    page.write_text(text.replace("Not run yet", "Not run"))
    with pytest.raises(CommandFailed, match="out of date"), redirect_stdout(None):
        main(check)
    assert page.read_text() == text.replace("Not run yet", "Not run"), "--check writes nothing"


# -- end to end: a real (tiny) sweep, reported ------------------------------------------------

TINY = Finding(
    name="tiny",
    title="Tiny sweep",
    source="none",
    quote="3 frames beat 1.",
    specs=("tiny",),
    groups=(
        Group("1 frame", "tiny", {"train.frames": 1}),
        Group("3 frames", "tiny", {"train.frames": 3}),
    ),
    claims=(Claim("3 frames beat 1", "3 frames", ">", "1 frame"),),
)


def test_a_real_tiny_sweep_is_reported(tmp_path, monkeypatch):
    specs = tmp_path / "specs"
    specs.mkdir()
    tiny_spec(specs, "train.frames = [1, 3]", seeds="[0]", name="tiny")
    monkeypatch.setattr("experiments.sweep.runner.make_backend", lambda *args: InlineBackend())
    swept = sweep(SweepConfig(spec=specs / "tiny.toml", out=tmp_path / "sweeps" / "tiny",
                              quiet=True))  # fmt: skip
    assert len(swept.rows) == 2
    page = tmp_path / "docs" / "results.md"
    config = ReportConfig(specs=specs, sweeps_dir=tmp_path / "sweeps", out=page,
                          images=tmp_path / "docs" / "img")  # fmt: skip
    page.parent.mkdir()
    page.write_text("<!-- finding:tiny:start -->\nno end marker\n")
    with pytest.raises(UserError, match="no end marker"):
        main(config, [TINY])
    assert not (tmp_path / "docs" / "img").exists(), "a broken page stops it before any write"
    page.write_text(PAGE)
    with redirect_stdout(None):
        verdicts = main(config, [TINY])
    assert verdicts == {"tiny": "inconclusive"}, "one seed per configuration: no interval"
    text = page.read_text()
    assert text.startswith(PAGE + "\n")
    for row in swept.rows:
        label = {1: "1 frame", 3: "3 frames"}[row["values"]["train.frames"]]
        present = [a for a in row["test_per_class_accuracy"] if a is not None]
        if len(present) > 1 and sum(a > 0 for a in present) == 1:
            label += " (one class)"  # one action bin on every test frame
        successes = round(row["success_rate"] * 2)
        cells = (f"| {label} | 1 | {100 * row['val_accuracy']:.1f}%"
                 f" (1 seed) | {100 * row['test_accuracy']:.1f}% (1 seed) |"
                 f" {100 * row['success_rate']:.1f}% (1 seed) | {successes}/2: ")  # fmt: skip
        assert cells in text
    machine = training_machine()  # the rows record the machine that trained them
    trained = f"trained on {machine['cpu']}, {machine['kernels']}"
    assert f"- `tiny` (2 of 2 trials finished; {trained})" in text
    image = tmp_path / "docs" / "img" / "tiny.png"
    assert "](img/tiny.png)" in text and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = (text, image.read_bytes())
    with redirect_stdout(None):
        main(config, [TINY])
        main(dataclasses.replace(config, check=True), [TINY])
    assert (page.read_text(), image.read_bytes()) == before, "the same results, the same files"
    _, blocks = build_report(config, [TINY])
    assert set(blocks) == {"summary", "tiny"}


@pytest.mark.parametrize(
    ("per_class", "flagged"),
    [([0.0, 1.0, 0.0], True), ([1.0, 0.0, 0.0], True), ([0.5, 1.0, 0.0], False),
     ([None, 1.0, 0.0], True), ([None, 1.0, None], False), (None, False)],
)  # fmt: skip
def test_a_trial_that_gives_one_action_on_every_test_frame_is_flagged(per_class, flagged):
    assert one_class({"test_per_class_accuracy": per_class}) is flagged


@pytest.mark.parametrize(
    ("lefts", "steps", "cell"),
    [([None, None], 4766, "never in 4,766 (0 of 2)"), ([700, 700], 1400, "700 of 1,400 (2 of 2)"),
     ([1234, None, 987], None, "987-1,234 (2 of 3)"), ([], None, "-")],
)  # fmt: skip
def test_the_plateau_cell_gives_the_range_the_budget_and_how_many_left(lefts, steps, cell):
    stats = GroupStats(Group("A", "fake", {}), [], all_actions_steps=lefts, steps=steps)
    assert majority_plateau_cell(stats) == cell


def test_an_unknown_finding_is_a_one_line_error():
    with pytest.raises(UserError, match="unknown finding 'nope'; choose from input_space_frames"):
        ReportConfig(findings=["nope"])


# -- a claim about spread, from hand-made rows ---------------------------------------------------

SPREAD_FINDING = Finding(
    name="spread",
    title="Hand-made spread",
    source="notes.txt",
    quote="B is unstable.",
    specs=("fake",),
    groups=(Group("A", "fake", {"train.frames": 1}), Group("B", "fake", {"train.frames": 3})),
    claims=(
        Claim("B is unstable", "B", "spread>", "A"),
        Claim("A is unstable", "A", "spread>", "B"),
    ),
)


def test_a_spread_claim_is_judged_on_the_seeds_variance_ratio():
    # A: success 0.80, 0.85, 0.90 (sd 0.05); B: 0.2, 0.9, 0.5 (sd 0.351188): variance ratio
    # 0.123333 / 0.0025 = 49.3333; F(0.975; 2, 2) = 39: interval [1.264957, 1924.0] above 1.
    # Test accuracy: A 0.90, 0.91, 0.92; B 0.90, 0.92, 0.94 (ratio 4): interval holds 1.
    rows = [
        _row(1, 0, 0.9, 0.90, 16), _row(1, 1, 0.9, 0.91, 17), _row(1, 2, 0.9, 0.92, 18),
        _row(3, 0, 0.9, 0.90, 4), _row(3, 1, 0.9, 0.92, 18), _row(3, 2, 0.9, 0.94, 10),
    ]  # fmt: skip
    result = evaluate(SPREAD_FINDING, {"fake": _results(rows)})
    b_over_a, a_over_b = result.claims
    assert (b_over_a.offline, b_over_a.closed_loop, b_over_a.verdict) == (
        "inconclusive", "agrees", "agrees")  # fmt: skip
    assert (a_over_b.offline, a_over_b.closed_loop, a_over_b.verdict) == (
        "inconclusive", "disagrees", "disagrees")  # fmt: skip
    ratio = b_over_a.closed_loop_spread
    assert ratio.ratio == pytest.approx(49.3333, rel=1e-5)
    assert (ratio.low, ratio.high) == pytest.approx((1.264957, 1924.0), rel=1e-5)
    block = finding_block(result, None, Path("experiments/specs"))
    assert (
        "| B is unstable: B spread> A | sd 2.0 vs 1.0 points, variance ratio 4 [0.103, 156]:"
        " inconclusive | sd 35.1 vs 5.0 points, variance ratio 49.3 [1.26, 1.92e+03]:"
        " **agrees** | **agrees** |"
    ) in block.splitlines()
