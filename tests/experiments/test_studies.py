"""The studies behind docs/results.md's pipeline tables: they parse, expand and have a home."""

from pathlib import Path

import pytest

from experiments.sweep.spec import spec_from_dict
from experiments.sweep.spec_sources import read_toml

ROOT = Path(__file__).resolve().parents[2]
STUDIES = sorted((ROOT / "experiments" / "studies").glob("*.toml"))
RESULTS_PAGE = ROOT / "docs" / "results.md"
# what each study must fix itself, so that a change of a default does not change its table
EXPLICIT = (
    "collect.seed",
    "train.epochs",
    "train.lr_schedule",
    "eval.episodes",
    "eval.which",
)

# studies that measure the families' recipes (bc/recipes.py) leave these to the recipes
RECIPE_FIELDS = {
    "families": ("train.epochs",),
    "shortcut": ("train.epochs",),
    "transfer_parts": ("train.epochs",),
    "small_data": ("train.epochs",),
}


# studies whose one trial is the source checkpoint of another study's transfer case: no table
SOURCES = {"classic_source"}


def test_there_are_studies():
    assert {p.stem for p in STUDIES} >= {"levers", "runs_obstacles", "runs_textures"}


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_a_study_expands_into_three_seeds_of_100_episodes_and_names_its_table(path):
    spec = spec_from_dict(read_toml(path), str(path), path.stem)
    assert spec.name == path.stem, "a study's name is its file's stem (sweeps/NAME, its table)"
    assert spec.seeds == ((0,) if path.stem in SOURCES else (0, 1, 2))
    for key in EXPLICIT:
        if key in RECIPE_FIELDS.get(path.stem, ()):
            assert key not in spec.fixed, f"{path.stem}: {key} is each family's own"
            continue
        assert key in spec.fixed, f"{path.stem}: set {key} explicitly"
    assert spec.fixed["eval.episodes"] == 100
    if spec.fixed.get("collect.obstacle_density", 0) > 0:
        # the expert's gap path changed from once per episode to every step: say which
        assert "collect.gap_replan" in spec.fixed, f"{path.stem}: set collect.gap_replan"
    assert "train.mirror" in spec.fixed or "train.mirror" in spec.grid, path.stem
    assert "collect.runs" in spec.fixed or "collect.runs" in spec.grid, path.stem
    trials = spec.trials()
    assert len(trials) == len(spec.seeds) * len(spec.points())
    assert len({t.id for t in trials}) == len(trials)
    if path.stem in SOURCES:
        return
    text = RESULTS_PAGE.read_text()
    assert f"<!-- {spec.name}:start -->" in text and f"<!-- {spec.name}:end -->" in text
    assert f"experiments/studies/{path.name} --table-into docs/results.md" in text


def test_the_suite_command_of_the_results_page_names_the_families_default_trials():
    """docs/results.md flies the families study's README-default trials: their ids must hold."""
    path = ROOT / "experiments" / "studies" / "families.toml"
    spec = spec_from_dict(read_toml(path), str(path), path.stem)
    default = [t for t in spec.trials() if t.values == {"train.net": "tiny_nfc"}]
    assert [t.seed for t in default] == [0, 1, 2]
    command = next(
        line for line in RESULTS_PAGE.read_text().splitlines()
        if line.startswith("python -m eval.suite ")
    )  # fmt: skip
    assert [f"$S/{t.id}/run" for t in default] == command.split("=", 1)[1].split('"')[0].split(",")


def test_the_transfer_parts_study_takes_its_parts_from_shortcut_trials():
    """transfer_parts.toml names shortcut.toml's seed-0 trial folders: their ids must hold."""

    def load(name):
        path = ROOT / "experiments" / "studies" / f"{name}.toml"
        return spec_from_dict(read_toml(path), str(path), path.stem)

    sources = {
        t.id for t in load("shortcut").trials()
        if t.seed == 0 and t.values.get("train.extra_mode", "prediction") == "prediction"
        and "train.keyframe_weight" not in t.values and "train.extra_dropout" not in t.values
    }  # fmt: skip
    named = set()
    for point in load("transfer_parts").points():
        for spec in point.get("train.init_from", []):
            folder = spec.split("/run/", 1)[0]
            assert folder.startswith("sweeps/shortcut/trials/"), spec
            named.add(folder.rsplit("/", 1)[1])
    assert named and named <= sources, named - sources


def test_the_families_transferred_classic_net_starts_from_the_classic_source_trial():
    """families.toml names classic_source.toml's trial folder: its id must hold."""
    source = ROOT / "experiments" / "studies" / "classic_source.toml"
    (trial,) = spec_from_dict(read_toml(source), str(source), source.stem).trials()
    path = ROOT / "experiments" / "studies" / "families.toml"
    spec = spec_from_dict(read_toml(path), str(path), path.stem)
    inits = [case["train.init_from"] for case in spec.cases if "train.init_from" in case]
    checkpoint = f"sweeps/classic_source/trials/{trial.id}/run/checkpoints/last.pt:encoder"
    assert inits == [[checkpoint]]
