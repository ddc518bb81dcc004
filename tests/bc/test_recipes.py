"""Training recipes: a family's own defaults, which any flag the user gives overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bc.config import TrainConfig, config_from_dict, config_to_dict
from bc.data import load_dataset
from bc.recipes import (
    BASE_DEFAULTS,
    RECIPE_MIN_STEPS,
    RECIPES,
    Recipe,
    RecipesConfig,
    min_steps_help,
    recipes_markdown,
    resolve,
)
from bc.recipes import main as recipes_main
from bc.step_engine import epoch_plan, epochs_for_min_steps
from bc.train import config_from_cli, main
from configflags import CommandFailed, build_parser
from tests.bc.helpers import tiny_config

RECIPE_VALUES = {"frames", "epochs", "batch_size", "lr", "time_length", "sliding_step", "balance",
                 "act_deadband", "act_release"}  # fmt: skip


def _recipe(config: TrainConfig) -> dict:
    return {name: getattr(config, name) for name in RECIPE_VALUES}


def test_the_default_pipeline_keeps_its_defaults():
    assert _recipe(TrainConfig()) == BASE_DEFAULTS == {
        "frames": 3, "epochs": 6, "batch_size": 32, "lr": 1e-3, "time_length": 20,
        "sliding_step": 5, "balance": False, "act_deadband": None, "act_release": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--net", "tiny_lstm"], {"frames": 1, "epochs": 60, "batch_size": 16}),
        (["--net", "tiny_lstm", "--bptt", "full"], {"frames": 1, "epochs": 60, "batch_size": 2}),
        (["--net", "tiny_lstm", "--bptt", "sliding"], {"epochs": 20, "batch_size": 16}),
        (
            ["--net", "tiny_lstm", "--bptt", "sliding", "--accumulate"],
            {"epochs": 60, "batch_size": 2, "sliding_step": 10},
        ),
        (["--net", "res18_lstm"], {"frames": 1, "epochs": 6, "batch_size": 32}),
        (["--frames", "5"], {"frames": 5, "epochs": 6}),
        (["--frames", "1"], {"frames": 1, "epochs": 15, "balance": True}),
        (["--frames", "1", "--no-balance"], {"epochs": 15, "balance": False}),
        (["--head", "regressor"], {"act_deadband": 0.3, "act_release": 0.15, "epochs": 6}),
        (["--head", "gaussian", "--act-release", "0.1"], {"act_deadband": 0.3, "act_release": 0.1}),
        (["--head", "classifier"], {"act_deadband": None, "act_release": None}),
    ],
)
def test_a_family_selected_by_its_flags_trains_with_its_recipe(flags, expected):
    config = config_from_cli(flags)
    assert {name: getattr(config, name) for name in expected} == expected


def test_a_flag_the_user_gives_wins_over_the_recipe():
    config = config_from_cli(["--net", "tiny_lstm", "--epochs", "3", "--lr", "0.01"])
    assert (config.epochs, config.lr, config.batch_size, config.frames) == (3, 0.01, 16, 1)
    assert TrainConfig(net="tiny_lstm", batch_size=8).batch_size == 8


def test_config_json_records_the_resolved_values_whatever_the_recipes_become(monkeypatch):
    saved = config_to_dict(TrainConfig(net="tiny_lstm"))
    assert saved["epochs"] == 60 and saved["batch_size"] == 16
    recurrent = [recipe for recipe in RECIPES if recipe.name == "recurrent nets"]
    monkeypatch.setattr("bc.recipes.RECIPES", tuple(recurrent))  # frames 1 only
    assert TrainConfig(net="tiny_lstm").epochs == BASE_DEFAULTS["epochs"]
    assert config_from_dict(TrainConfig, saved).epochs == 60


def test_the_help_shows_each_recipes_defaults():
    text = " ".join(build_parser(TrainConfig, "python -m bc.train", "").format_help().split())
    for recipe in RECIPES:
        for name, value in recipe.values.items():
            shown = ("on" if value else "off") if isinstance(value, bool) else f"{value:g}"
            assert f"{recipe.name}: {shown}" in text, (recipe.name, name)


def test_a_recipe_may_set_only_recipe_fields():
    with pytest.raises(ValueError, match="sets fields no recipe may set: \\['head'\\]"):
        Recipe("bad", lambda config: True, {"head": "regressor"}, "")
    assert resolve({"net": "tiny_nfc", "frames": 5}) == {
        name: value for name, value in BASE_DEFAULTS.items() if name != "frames"
    }


def test_the_recipes_epochs_are_a_floor_of_steps_and_given_epochs_are_exact():
    assert TrainConfig().min_steps == RECIPE_MIN_STEPS == 2000
    assert TrainConfig(epochs=6).min_steps == 0, "an --epochs given is exact"
    assert TrainConfig(epochs=6, min_steps=50).min_steps == 50


def test_sliding_tbptt_has_a_floor_of_steps_of_its_own():
    sliding = {"net": "tiny_lstm", "bptt": "sliding"}
    assert TrainConfig(**sliding).min_steps == 9000 > RECIPE_MIN_STEPS
    assert TrainConfig(**sliding, accumulate=True).min_steps == RECIPE_MIN_STEPS
    assert TrainConfig(net="tiny_lstm").min_steps == RECIPE_MIN_STEPS  # window
    assert TrainConfig(**sliding, epochs=3).min_steps == 0, "an --epochs given is exact"
    assert TrainConfig(**sliding, min_steps=10).min_steps == 10
    assert "tiny_lstm --bptt sliding: 9000" in min_steps_help()


def test_a_small_dataset_trains_more_epochs_to_make_the_minimum_steps(data, tmp_path):
    split = load_dataset(data).splits["train"]
    units = len(epoch_plan(tiny_config(data, tmp_path), split, 0, 3))
    minimum = 8 * units + 1  # the recipe's 6 epochs make 6 * units: 9 epochs are needed
    config = tiny_config(data, tmp_path, epochs=None, min_steps=minimum)
    assert config.epochs == 6 and epochs_for_min_steps(config, split, 3) == 9
    result = main(config)
    saved = json.loads((Path(result["run_dir"]) / "config.json").read_text())
    assert saved["epochs"] == 9 and result["epochs"] == 9
    assert result["steps"] >= minimum
    expected = 9
    # the run's own config.json trains the same again: its epochs already make the steps
    assert epochs_for_min_steps(config_from_dict(TrainConfig, saved), split, 3) == expected
    exact = main(tiny_config(data, tmp_path / "exact", epochs=1))  # --epochs given: exact
    assert exact["epochs"] == 1 and exact["steps"] == units


def test_docs_nets_md_holds_the_recipes_table_and_check_finds_a_stale_one(tmp_path, capsys):
    docs = Path(__file__).resolve().parents[2] / "docs" / "nets.md"
    assert recipes_main(RecipesConfig(docs=docs, check=True)) == recipes_markdown()
    stale = tmp_path / "nets.md"
    stale.write_text(docs.read_text().replace("`--epochs 60`", "`--epochs 50`", 1))
    with pytest.raises(CommandFailed, match="out of date: run python -m bc.recipes"):
        recipes_main(RecipesConfig(docs=stale, check=True))
    recipes_main(RecipesConfig(docs=stale))
    assert stale.read_text() == docs.read_text()
    for recipe in RECIPES:
        assert recipe.why in recipes_markdown()
