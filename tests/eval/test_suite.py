"""The generalisation suite: its tracks, its table, its resume and its one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import eval.suite as suite
from envs.options import EnvOptions
from eval.fly import WORLD_OVERRIDES
from eval.suite import SuiteConfig
from eval.suite_bench import SuiteBenchConfig
from eval.suite_bench import main as suite_bench
from eval.tracks import SUITE_VERSION, TRACKS, tracks_named
from tests.commands import assert_exit_2_one_line, refused_flags, run_here, run_module
from tests.eval.helpers import shared_tiny_run


@pytest.fixture
def checkpoint(tmp_path, tmp_path_factory) -> Path:
    run = shutil.copytree(shared_tiny_run(tmp_path_factory), tmp_path / "run")
    return run / "checkpoints" / "last.pt"


def test_tracks_are_distinct_fair_worlds_each_with_its_own_seeds():
    names = [track.name for track in TRACKS]
    seeds = [track.seed for track in TRACKS]
    assert len(set(names)) == len(names) and len(set(seeds)) == len(seeds)
    assert 0 not in seeds, "eval.rollout's worlds (base 0) are not a track's"
    assert TRACKS[0].name == "own" and TRACKS[0].overrides == {}
    everything = next(track for track in TRACKS if track.name == "everything")
    others = {
        key: value
        for track in TRACKS
        if track.name not in ("own", "everything")
        for key, value in track.overrides.items()
    }
    assert everything.overrides == others, "everything is every other track's change at once"
    for track in TRACKS:
        assert set(track.overrides) <= set(WORLD_OVERRIDES), track.name
        assert track.what
        EnvOptions(**track.overrides)  # the env accepts the track on its default world
    assert tracks_named(("light", "own")) == (TRACKS[0], tracks_named(("light",))[0])
    with pytest.raises(ValueError, match="unknown track 'moon'"):
        tracks_named(("moon",))


def _suite(tmp_path: Path, *policies: str, **flags) -> suite.SuiteResult:
    config = SuiteConfig(policies=policies, tracks=flags.pop("tracks", "own,light"),
                         episodes=flags.pop("episodes", 3), workers=1, batch=2,
                         out=tmp_path / "suite", quiet=True, **flags)  # fmt: skip
    return suite.main(config)


def test_the_suite_flies_each_row_on_each_track_and_writes_json_markdown_and_plot(
    tmp_path, checkpoint
):
    page = tmp_path / "page.md"
    page.write_text("# results\n<!-- suite:start -->\nold\n<!-- suite:end -->\nkept\n")
    pooled = f"tiny={checkpoint},{checkpoint}"
    result = _suite(tmp_path, "expert", pooled, table_into=page)
    data = json.loads(result.json_path.read_text())
    assert data["suite_version"] == SUITE_VERSION and [r["label"] for r in data["rows"]] == [
        "expert", "tiny"]  # fmt: skip
    assert [t["name"] for t in data["tracks"]] == ["own", "light"]
    cell = data["rows"][1]["tracks"]["light"]
    assert cell["episodes"] == 6, "a row pools every checkpoint's episodes"
    assert len(cell["per_checkpoint_success"]) == 2
    # and keeps each checkpoint's own summary, in the row's order
    assert [each["episodes"] for each in cell["per_checkpoint"]] == [3, 3]
    assert sum(each["successes"] for each in cell["per_checkpoint"]) == cell["successes"]
    assert data["rows"][0]["tracks"]["own"]["success_rate"] == 1.0
    markdown = result.markdown_path.read_text()
    assert "| expert | - | 100.0% [" in markdown and "`light`: light dimmer" in markdown
    assert page.read_text().endswith(markdown + "<!-- suite:end -->\nkept\n")
    assert result.plot_path.read_bytes()[:4] == b"\x89PNG"
    from eval.suite_report import suite_table

    console = suite_table(data)  # tracks down the side, a column per policy
    assert [c.header for c in console.columns] == ["track", "expert", "tiny"]
    assert console.row_count == 2
    flights = sorted((tmp_path / "suite" / "flights").rglob("*.json"))
    assert len(flights) == 2 + 4
    record = json.loads(flights[0].read_text())
    assert record["env_kwargs"]["light"] in ("training", "outside")


def test_a_rerun_reuses_finished_flights_and_flies_only_what_changed(
    tmp_path, checkpoint, monkeypatch
):
    _suite(tmp_path, "expert", str(checkpoint))
    flown = []
    real = suite._fly_group
    monkeypatch.setattr(suite, "_fly_group", lambda fs, c, o: flown.extend(fs) or real(fs, c, o))
    _suite(tmp_path, "expert", str(checkpoint))
    assert flown == []
    _suite(tmp_path, "expert", str(checkpoint), tracks="own,light,textures")
    assert [(f.row.label, f.track.name) for f in flown] == [
        ("expert", "textures"), ("run/last", "textures")]  # fmt: skip
    flown.clear()
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"] = {k: v + 0.01 for k, v in payload["model"].items()}
    torch.save(payload, checkpoint)  # retrained: its flights are stale
    _suite(tmp_path, "expert", str(checkpoint))
    assert {f.row.label for f in flown} == {"run/last"} and len(flown) == 2


def test_a_pooled_row_finds_a_checkpoints_flights_wherever_it_sits(
    tmp_path, checkpoint, monkeypatch
):
    """Seed A flown alone, then B and A pooled: A's flights are reused, B's are flown."""
    other = checkpoint.with_name("other_seed.pt")
    payload = torch.load(checkpoint, weights_only=True)
    payload["model"] = {k: v + 0.01 for k, v in payload["model"].items()}
    torch.save(payload, other)
    _suite(tmp_path, f"p={checkpoint}")
    flown = []
    real = suite._fly_group
    monkeypatch.setattr(suite, "_fly_group", lambda fs, c, o: flown.extend(fs) or real(fs, c, o))
    _suite(tmp_path, f"p={other},{checkpoint}")
    assert {f.checkpoint for f in flown} == {other}
    flown.clear()
    _suite(tmp_path, f"p={checkpoint}")  # alone again: its own flights, not B's
    assert flown == []


def test_bad_input_is_one_line_and_exit_2(tmp_path, checkpoint, capsys):
    err = refused_flags(SuiteConfig, "python -m eval.suite", ["--tracks", "own,moon"], capsys)
    assert "unknown track 'moon'" in err and err.count("\n") == 1
    payload = torch.load(checkpoint, weights_only=True)
    payload["env_kwargs"] = {**payload["env_kwargs"], "image_size": 40}
    misfit = checkpoint.with_name("misfit.pt")
    torch.save(payload, misfit)
    common = ["--episodes", "1", "--tracks", "own", "--out", str(tmp_path / "s")]
    assert_exit_2_one_line(run_module("eval.suite", str(misfit), *common), "does not fit")
    assert_exit_2_one_line(
        run_here("eval.suite", str(tmp_path / "none.pt"), *common), "does not exist"
    )
    assert_exit_2_one_line(
        run_here("eval.suite", f"a={checkpoint}", f"a={checkpoint}", *common),
        "two rows are labelled 'a'",
    )
    assert_exit_2_one_line(  # two labels, one folder name
        run_here("eval.suite", f"a b={checkpoint}", f"a_b={checkpoint}", *common),
        "alike as a folder name",
    )


def test_the_benchmark_measures_env_only_and_closed_loop_steps_in_one_run(checkpoint):
    config = SuiteBenchConfig(checkpoint=checkpoint, tracks="own,light", episodes=2, workers=1,
                              batches=(1, 2))  # fmt: skip
    rows = suite_bench(config)
    assert [row.batch for row in rows] == [1, 2]
    # which is faster is the benchmark's figure, not the test's (a loaded host can turn a
    # 2-episode run round); that both replays step the very episodes flown, to the same ends
    # (a replayed episode that ran out of actions would stop the run), is
    rates = ("env_steps_per_s", "side_steps_per_s", "loop_steps_per_s")
    assert all(getattr(row, rate) > 0 for row in rows for rate in rates)
    steps = {(row.env_steps, row.side_steps, row.loop_steps) for row in rows}
    assert len(steps) == 1 and len(set(next(iter(steps)))) == 1


def test_an_interrupted_suite_stops_at_once_and_a_rerun_flies_only_the_rest(tmp_path, checkpoint):
    import signal
    import subprocess

    from tests.commands import module_command, module_env

    args = ["expert", str(checkpoint), "--tracks", "own", "--episodes", "4", "--workers", "2",
            "--batch", "2", "--out", str(tmp_path / "s")]  # fmt: skip
    child = subprocess.Popen(
        module_command("eval.suite", *args),
        env=module_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    for line in child.stderr:
        lines.append(line)
        if line.startswith("flew expert"):
            child.send_signal(signal.SIGTERM)  # while the policy's flight is in the air
            break
    output = "".join(lines) + child.stderr.read()
    assert child.wait(timeout=60) == 130, output
    assert output.strip().endswith("error: interrupted"), output
    rerun = run_module("eval.suite", *args)
    assert rerun.returncode == 0, rerun.stderr
    assert "reusing 1 of 2 flights" in rerun.stderr
