"""python -m experiments.generalist: the whole recipe, tiny, end to end and resumed."""

import json
import re
import shlex
from pathlib import Path

import pytest

from configflags import UserError, parse_config
from eval.tracks import tracks_from_flag
from experiments.generalist import GeneralistConfig, main
from experiments.generalist.recipe import Recipe, command
from experiments.generalist.rows import (
    IDENTITY_FIELDS,
    OPTIONAL_IDENTITY_FIELDS,
    recipe_block,
    recipe_identity,
)
from tests.commands import ROOT, assert_exit_2_one_line, run_here, run_module


def _tiny(out: Path, **values) -> GeneralistConfig:
    settings = dict(seeds=(0,), runs=3, epochs=1, iterations=1, runs_per_iteration=2,
                    finetune_epochs=1, dagger_episodes=2, episodes=2, tracks="own",
                    workers=1, out=out, quiet=True)  # fmt: skip
    settings.update(values)
    return GeneralistConfig(**settings)


@pytest.fixture(scope="module")
def seed_0(tmp_path_factory) -> dict:
    """Seed 0 of the tiny recipe, its line kept in a rows file and its tables in a page."""
    where = tmp_path_factory.mktemp("seed_0")
    page = where / "results.md"
    page.write_text("<!-- gen:start -->\n<!-- gen:end -->\n<!-- gen_recipe:start -->\n"
                    "<!-- gen_recipe:end -->\n")  # fmt: skip
    out, rows = where / "recipe", where / "generalist.jsonl"
    result = main(_tiny(out, rows=rows, table_into=page, table_name="gen"))
    return {"out": out, "rows": rows, "page": page, "result": result}


def test_the_recipe_records_trains_daggers_and_flies_the_suite(seed_0):
    out, result = seed_0["out"], seed_0["result"]
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    assert manifest["env_kwargs"]["mixture"] == "generalist"
    labels = [row["label"] for row in result["suite"]["rows"]]
    assert labels == ["expert", "BC mixed", "DAgger mixed 1"]
    text = seed_0["page"].read_text()
    assert "| BC mixed |" in text and "| DAgger mixed 1 |" in text
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"collect", "train_s0", "dagger_s0"}
    # a rerun (without the kept line) finds every step done in OUT and flies nothing again
    again = main(_tiny(out))
    assert json.loads((out / "timings.json").read_text()) == timings
    assert again["suite"]["rows"] == result["suite"]["rows"]


def test_no_dagger_iterations_flies_the_expert_and_bc_alone(tmp_path):
    out = tmp_path / "recipe"
    result = main(_tiny(out, iterations=0))
    labels = [row["label"] for row in result["suite"]["rows"]]
    assert labels == ["expert", "BC mixed"]
    assert set(json.loads((out / "timings.json").read_text())) == {"collect", "train_s0"}
    # BC's expert-labelled frames: the recording's training split, counted from its manifest
    manifest = json.loads((out / "data" / "manifest.json").read_text())
    frames = sum(run["frames"] for run in manifest["runs"] if run["split"] == "train")
    assert f"| BC mixed | {frames:,} |" in result["recipe"]
    assert "--seeds 0 --obs-mode depth --augment color+randconv --iterations 0" in result["recipe"]


@pytest.mark.parametrize(("values", "message"), [
    ({"seeds": ()}, "--seeds"), ({"runs": 0}, "--runs"), ({"iterations": -1}, "--iterations"),
    ({"image_size": 16}, "--image-size"), ({"fov": 180.0}, "--fov"),
])  # fmt: skip
def test_bad_settings_are_refused(tmp_path, values, message):
    with pytest.raises(UserError, match=message):
        _tiny(tmp_path, **values)


def test_a_page_without_the_markers_exits_2_before_any_work(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("no markers\n")
    result = run_module("experiments.generalist", "--out", str(tmp_path / "out"),
                        "--table-into", str(page))  # fmt: skip
    assert_exit_2_one_line(result, "--table-into")
    assert not (tmp_path / "out" / "data").exists()


def test_kept_rows_bring_the_tables_back_and_pool_seeds_run_apart(seed_0, tmp_path):
    first, rows = seed_0["result"], seed_0["rows"]
    (line,) = [json.loads(text) for text in rows.read_text().splitlines()]
    assert line["seed"] == 0 and line["recipe"]["iterations"] == 1
    assert set(line["suite"]) == {"expert", "BC mixed", "DAgger mixed 1"}
    assert line["machine"]["torch"] and line["dagger"][0]["iteration"] == 1
    assert line["bc_check_s"] > 0  # DAgger's check of BC: its wall time only
    # the run folders gone (another machine): the kept line makes the same tables, running nothing
    hidden = seed_0["out"].with_name("elsewhere")
    seed_0["out"].rename(hidden)
    try:
        again = main(_tiny(tmp_path / "fresh", rows=rows))
    finally:
        hidden.rename(seed_0["out"])
    assert again["table"] == first["table"] and again["recipe"] == first["recipe"]
    assert not (tmp_path / "fresh" / "data").exists()
    # a second seed, run elsewhere, pools with the kept one: its line is added, not replaced
    both = main(_tiny(tmp_path / "second", rows=rows, seeds=(0, 1)))
    lines = [json.loads(text) for text in rows.read_text().splitlines()]
    assert [line["seed"] for line in lines] == [0, 1]
    assert not (tmp_path / "second" / "bc_s0").exists(), "seed 0 came from the rows"
    for label, row in zip(["expert", "BC mixed", "DAgger mixed 1"], both["suite"]["rows"],
                          strict=True):  # fmt: skip
        cell = row["tracks"]["own"]
        seeds = [1] if label == "expert" else [0, 1]
        assert cell["episodes"] == 2 * len(seeds)
        assert cell["successes"] == sum(lines[s]["suite"][label]["own"]["successes"]
                                        for s in seeds)  # fmt: skip
    assert "| BC mixed | seed 0, seed 1 |" not in both["table"]
    assert "| BC mixed | 2 |" in both["table"] and "--rows " in both["table"]
    # a recipe with other settings is another table: its seed runs, the kept lines stay
    main(_tiny(tmp_path / "other", rows=rows, iterations=0))
    assert len(rows.read_text().splitlines()) == 3


def _line(seed: int, check_s: float | None) -> dict:
    line = {"seed": seed, "collect_s": 600.0, "train_s": 1200.0, "bc_frames": 1000,
            "machine": {"cpu": "cpu", "kernels": "avx2"},
            "dagger": [{"iteration": 1, "expert_frames": 1500, "wall_s": 600.0},
                       {"iteration": 2, "expert_frames": 2000, "wall_s": 900.0}]}  # fmt: skip
    if check_s is not None:
        line["bc_check_s"] = check_s
    return line


def test_the_recipe_table_counts_daggers_check_of_bc_where_the_lines_kept_it():
    # BC: 600 + 1200 s = 30 min; the checks 60 and 180 s, 2 min on average; iterations 10, 15
    kept = recipe_block([_line(0, 60.0), _line(1, 180.0)], "cmd")
    assert "| BC mixed | 1,000 | 30 min |" in kept
    assert "| DAgger mixed 1 | 1,500 | 42 min |" in kept
    assert "| DAgger mixed 2 | 2,000 | 57 min |" in kept
    assert "including its closed-loop check of BC" in kept
    # a line made before the check was kept: the table leaves every seed's check out
    older = recipe_block([_line(0, 60.0), _line(1, None)], "cmd")
    assert "| DAgger mixed 1 | 1,500 | 40 min |" in older
    assert "check of BC" not in older


def test_a_corrupt_rows_file_exits_2_with_one_line(tmp_path):
    rows = tmp_path / "generalist.jsonl"
    rows.write_text('{"format": "corridor-bc generalist seed", "format_vers\n')
    result = run_here("experiments.generalist", "--out", str(tmp_path / "out"), "--rows", str(rows))
    assert_exit_2_one_line(result, "line 1 is not JSON")
    rows.write_text('{"something": "else"}\n')
    result = run_here("experiments.generalist", "--out", str(tmp_path / "out"), "--rows", str(rows))
    assert_exit_2_one_line(result, "line 1 is not a corridor-bc generalist seed's line")
    result = run_here("experiments.generalist", "--out", str(tmp_path / "out"),
                      "--rows", str(tmp_path))  # fmt: skip
    assert_exit_2_one_line(result, "is not a file")
    assert not (tmp_path / "out" / "data").exists()


def test_an_unknown_track_exits_2_before_any_work(tmp_path):
    result = run_here("experiments.generalist", "--out", str(tmp_path / "out"),
                      "--tracks", "own,moon")  # fmt: skip
    assert_exit_2_one_line(result, "--tracks")
    assert not (tmp_path / "out" / "data").exists()


def generalist_blocks() -> list[str]:
    """The blocks of docs/results.md that experiments.generalist generates (not _recipe)."""
    page = (ROOT / "docs" / "results.md").read_text()
    names = re.findall(r"<!-- (generalist\w*):start -->", page)
    return [name for name in names if not name.endswith("_recipe")]


def test_the_results_page_has_the_recipe_and_its_variants_blocks():
    assert {"generalist", "generalist_cheap_iterations"} <= set(generalist_blocks())


@pytest.mark.parametrize("name", generalist_blocks())
def test_the_results_page_blocks_are_what_the_committed_rows_give(tmp_path, name):
    """docs/results.md's generalist blocks come back from experiments/rows/, running nothing."""
    page = (ROOT / "docs" / "results.md").read_text()
    block = page[page.index(f"<!-- {name}:start -->") : page.index(f"<!-- {name}:end -->")]
    command = re.search(r"Generated by `(python -m experiments\.generalist [^`]+)`", block)
    assert command, f"the {name} block was not generated by the command"
    args = shlex.split(command.group(1))[3:]
    assert "--rows" in args, "the block is not made from committed rows"
    copy = tmp_path / "results.md"
    copy.write_text(page)
    result = run_here("experiments.generalist", *args, "--table-into", str(copy),
                      "--table-name", name, "--out", str(tmp_path / "out"), "--quiet",
                      cwd=ROOT)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "out" / "data").exists(), "every seed came from the rows"
    assert copy.read_text() == page


@pytest.mark.parametrize(
    "values",
    [
        {"obs_mode": "rgb", "augment": "color"},
        {"iterations": 6, "runs_per_iteration": 60, "finetune_epochs": 1, "epochs": 8,
         "runs": 80, "dagger_episodes": 50, "episodes": 20, "tracks": "own,long"},
        {"dagger_mixture": "generalist_obstacles"},
        {"view": "top_left"},
        {"image_size": 60},
        {"fov": 120.0},
    ],
)  # fmt: skip
def test_the_generated_by_line_gives_back_the_recipe(values):
    """The tables' "Generated by" command parses back to the settings that made them."""
    config = GeneralistConfig(seeds=(0, 2), rows=Path("rows.jsonl"), **values)
    args = shlex.split(command(config))[3:]
    parsed = parse_config(GeneralistConfig, args, "experiments.generalist")
    for name in (*IDENTITY_FIELDS, *OPTIONAL_IDENTITY_FIELDS, "tracks", "seeds", "rows"):
        assert getattr(parsed, name) == getattr(config, name), name


def test_dagger_mixture_reaches_dagger_and_only_a_changed_one_the_identity(tmp_path, monkeypatch):
    import experiments.dagger.loop as loop

    asked = []
    monkeypatch.setattr(loop, "main", lambda config: asked.append(config) or [])
    for mixture in ("generalist", "generalist_obstacles"):
        config = _tiny(tmp_path, dagger_mixture=mixture)
        Recipe(config).dagger(0)
        identity = recipe_identity(config, tracks_from_flag(config.tracks))
        assert identity.get("dagger_mixture") == (None if mixture == "generalist" else mixture)
    # the recording's own mixture is DAgger's default (its manifest's worlds)
    assert [config.mixture for config in asked] == ["", "generalist_obstacles"]


def test_the_view_is_in_new_lines_and_a_run_of_another_is_refused(tmp_path):
    tracks = tracks_from_flag("own")
    assert recipe_identity(_tiny(tmp_path), tracks)["view"] == "centred"
    # lines made before the view was centred have none: they are top_left's
    assert "view" not in recipe_identity(_tiny(tmp_path, view="top_left"), tracks)
    run = tmp_path / "bc_s0"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"seed": 0}))  # written before --view
    with pytest.raises(UserError, match="was trained with --view top_left, not centred"):
        Recipe(_tiny(tmp_path)).train(0)


@pytest.mark.parametrize(
    ("name", "default", "other"), [("image_size", 64, 60), ("fov", 90.0, 120.0)]
)
def test_a_camera_setting_reaches_the_recording_and_only_a_changed_one_the_identity(
    tmp_path, monkeypatch, name, default, other
):
    import expert.collect as collect

    asked = []
    monkeypatch.setattr(collect, "main", lambda config: asked.append(config))
    tracks = tracks_from_flag("own")
    for value in (default, other):
        config = _tiny(tmp_path / str(value), **{name: value})
        Recipe(config).collect()
        assert recipe_identity(config, tracks).get(name) == (None if value == default else value)
    assert [getattr(config.env, name) for config in asked] == [default, other]
