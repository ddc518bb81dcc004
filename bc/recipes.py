"""Training recipes: what ``bc.train --net NET`` (or ``--head``, ``--bptt``) trains with by default.

``python -m bc.recipes --docs docs/nets.md`` writes the table of the recipes, and why, into the
page between its ``<!-- recipes:start -->`` and ``<!-- recipes:end -->`` markers (``--check``:
exit 1 if the page is out of date).

A family that learns nothing on the defaults of another is no family to compare, so each one
may carry its own defaults for the fields in :data:`RECIPE_FIELDS`. A field the user leaves
unset (``None``) takes, in order, the base default, then the value of every recipe that
matches the config (later recipes win); a flag the user gives always wins. ``config.json``
records the resolved values, so a run is reproducible from it whatever the recipes become.

The values and the measurements that chose them are in docs/nets.md ("Training recipes").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts.markdown_block import block_span, check_page, write_block
from artifacts.markdown_table import markdown_table
from bc.errors import ConfigError
from bc.nets import NETS
from configflags import CommandFailed, flag_name, option, run_main

# the defaults of every family that no recipe changes
BASE_DEFAULTS: dict[str, Any] = {
    "frames": 3,
    "epochs": 6,
    "batch_size": 32,
    "lr": 1e-3,
    "time_length": 20,
    "sliding_step": 5,
    "balance": False,
    "act_deadband": None,  # None: the labelling expert's own thresholds
    "act_release": None,
}
RECIPE_FIELDS = tuple(BASE_DEFAULTS)
# a recipe's epochs make at least this many optimiser steps (``--min-steps``): 6 epochs of a
# 6-run dataset made 258 steps and a one-class policy; 40 epochs (1,720 steps) did not
RECIPE_MIN_STEPS = 2000


@dataclass(frozen=True)
class Recipe:
    """Defaults for the configs that ``applies`` to, and what they are for."""

    name: str
    applies: Callable[[Mapping[str, Any]], bool]
    values: Mapping[str, Any]
    why: str
    min_steps: int | None = None  # its own floor of steps (None: RECIPE_MIN_STEPS)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.values) - set(RECIPE_FIELDS))
        if unknown:
            raise ValueError(f"recipe {self.name!r} sets fields no recipe may set: {unknown}")


def _recurrent(config: Mapping[str, Any]) -> bool:
    entry = NETS.get(config["net"])
    return entry is not None and entry.recurrent


def _tiny_lstm(bptt: str, accumulate: bool = False) -> Callable[[Mapping[str, Any]], bool]:
    def applies(config: Mapping[str, Any]) -> bool:
        return (
            config["net"] == "tiny_lstm"
            and config.get("bptt") == bptt
            and bool(config.get("accumulate")) == accumulate
        )

    return applies


def _regressing(config: Mapping[str, Any]) -> bool:
    return config.get("head") in ("regressor", "gaussian")


def _one_frame(config: Mapping[str, Any]) -> bool:
    return config.get("frames") == 1 and not _recurrent(config)


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "--head regressor, --head gaussian",
        _regressing,
        {"act_deadband": 0.3, "act_release": 0.15},
        "a learnt command is the expert's shrunk and blurred: MSE pulls the rare turn onsets"
        " towards straight, so the expert's deadband (0.4) turned late, and the command's"
        " error (RMS about 0.08) outlives the expert's release (0.05), so turns ran on; with"
        " the expert's thresholds 3 regressors flew 91, 78 and 92% of 100 held-out worlds and"
        " 3 Gaussian heads 91, 75 and 69%; with 0.3 and 0.15 the same checkpoints flew 97, 95,"
        " 98% and 97, 98, 97%",
    ),
    Recipe(
        "recurrent nets",
        _recurrent,
        {"frames": 1},
        "a recurrent net reads time as its sequence, one frame per step",
    ),
    Recipe(
        "--frames 1",
        _one_frame,
        {"epochs": 15, "balance": True},
        "one frame cannot show whether a turn is under way, and the expert's labels carry"
        " turns on: in 6 epochs the rare turns were learnt on 8% and 38% of the test frames;"
        " class-balanced batches over 15 epochs learn them",
    ),
    Recipe(
        "tiny_lstm --bptt window",
        _tiny_lstm("window"),
        {"epochs": 60, "batch_size": 16},
        "windows tile each run once per epoch, so 6 epochs of 32 windows made 276 optimiser"
        " steps, too few to leave the majority action; an epoch costs a third of a 3-frame"
        " stack's, and 60 epochs of 16 windows make about 5,500 steps",
    ),
    Recipe(
        "tiny_lstm --bptt full",
        _tiny_lstm("full"),
        {"epochs": 60, "batch_size": 2},
        "a step of whole runs: 32 runs made 2 steps an epoch; 2 runs make 32",
    ),
    Recipe(
        "tiny_lstm --bptt sliding",
        _tiny_lstm("sliding"),
        {"epochs": 20, "batch_size": 16},
        "windows slide by 5 steps, so each frame is seen 4 times an epoch; consecutive steps"
        " see overlapping windows of one run, so sliding leaves the majority action last: on"
        " the README's data 20 epochs make 9,277-9,670 steps and 3 seeds flew 90-97%, but on"
        " 40 recorded runs they made 4,754 steps: 5 of 12 seeds never predicted every action on"
        " the validation frames, the others first did at step 2,375-3,800, and one flew as a"
        " one-class policy; a floor of 9,000 steps gives a smaller dataset the README's steps",
        min_steps=9000,
    ),
    Recipe(
        "tiny_lstm --bptt sliding --accumulate",
        _tiny_lstm("sliding", accumulate=True),
        {"epochs": 60, "batch_size": 2, "sliding_step": 10},
        "one optimiser step per group of runs: 2 runs make 32 steps an epoch; windows slide by"
        " 10 steps (each frame seen twice an epoch) to fit 60 epochs in the time budget",
    ),
)


def matching(config: Mapping[str, Any]) -> list[Recipe]:
    """The recipes that apply to ``config`` (a mapping of TrainConfig fields), in order."""
    return [recipe for recipe in RECIPES if recipe.applies(config)]


def resolve(config: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the unset (None) recipe fields of ``config``: base, then each recipe."""
    values = dict(BASE_DEFAULTS)
    for recipe in matching(config):
        values.update(recipe.values)
    return {name: values[name] for name in RECIPE_FIELDS if config.get(name) is None}


def min_steps(config: Mapping[str, Any]) -> int:
    """The floor of optimiser steps of ``config``'s recipe: the last matching one that sets it."""
    floors = [r.min_steps for r in matching(config) if r.min_steps is not None]
    return floors[-1] if floors else RECIPE_MIN_STEPS


def min_steps_help() -> str:
    """The help line's floors of steps: the base one and each recipe's own."""
    parts = [f"{RECIPE_MIN_STEPS}"]
    parts += [f"{r.name}: {r.min_steps}" for r in RECIPES if r.min_steps is not None]
    return "; ".join(parts)


def default_help(name: str) -> str:
    """The help line's default for field ``name``: the base value and each recipe's own."""
    parts = [f"default: {_shown(BASE_DEFAULTS[name])}"]
    parts += [f"{r.name}: {_shown(r.values[name])}" for r in RECIPES if name in r.values]
    return "; ".join(parts)


def _shown(value: Any) -> str:
    if value is None:
        return "the expert's"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}"


DOCS_BLOCK = "recipes"


def _flag(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"`{flag_name(name) if value else '--no-' + flag_name(name)[2:]}`"
    return f"`{flag_name(name)} {_shown(value)}`"


def recipes_markdown() -> str:
    """The recipes as a markdown table: which configs, the defaults they set, and why."""
    rows = [
        [
            f"`{recipe.name}`",
            ", ".join(
                [_flag(name, value) for name, value in recipe.values.items()]
                + ([_flag("min_steps", recipe.min_steps)] if recipe.min_steps is not None else [])
            ),
            recipe.why,
        ]
        for recipe in RECIPES
    ]
    table = markdown_table(("family", "defaults", "why"), rows)
    base = ", ".join(
        _flag(name, value) for name, value in BASE_DEFAULTS.items() if value is not None
    )
    note = (
        f"Every other family trains with {base}. Generated by `python -m bc.recipes --docs"
        " docs/nets.md` from `bc/recipes.py`."
    )
    return "\n".join(table) + "\n\n" + note + "\n"


@dataclass(frozen=True)
class RecipesConfig:
    """Where the table of the recipes goes."""

    docs: Path = option(Path("docs/nets.md"), "the page whose recipes block is rewritten")
    check: bool = option(False, "write nothing; exit 1 if the page's block is out of date")


def main(config: RecipesConfig) -> str:
    """Write (or check) the recipes block of ``config.docs``; returns the block's text."""
    text = recipes_markdown()
    if config.check:
        page = check_page(config.docs, DOCS_BLOCK, "--docs", ConfigError)
        start, end = block_span(page, DOCS_BLOCK, f"--docs {config.docs}", ConfigError)
        if page[start:end].strip() != text.strip():
            raise CommandFailed(f"{config.docs} is out of date: run python -m bc.recipes")
        print(f"{config.docs}: the recipes block is up to date")
        return text
    write_block(config.docs, DOCS_BLOCK, text, "--docs", ConfigError)
    print(f"{config.docs}: recipes block written")
    return text


if __name__ == "__main__":
    run_main(main, RecipesConfig, "python -m bc.recipes", __doc__)
