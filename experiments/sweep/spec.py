"""Sweep specs: a TOML file (or command-line parts) turned into checked trials.

A spec fixes some flags of ``expert.collect``, ``bc.train`` and ``eval.rollout``, sweeps
others over a grid and/or random samples, and crosses every point with seeds (docs/sweeps.md
has the format). Flag names are the fields of the commands' own config dataclasses
(``CollectConfig``, ``TrainConfig``, ``RolloutConfig``), written ``section.field``
(``train.lr``, ``collect.image_size``; dashes are accepted for underscores), and every trial's
three configs are built, and so validated, before anything runs.

A trial's id is a readable slug of its swept values and seed plus a hash of all its flags and
of the training recipe values they resolve to (``bc.recipes``), so a rerun finds the trials it
already ran, and neither a changed spec nor a changed recipe reuses a stale result.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass
from typing import Any

import configflags
from bc.recipes import RECIPE_FIELDS
from configflags import ConfigField, UserError, coerce_value, config_fields
from expert.collect_config import config_hash

# section of a flag -> the command it configures
SECTIONS = {"collect": "expert.collect", "train": "bc.train", "eval": "eval.rollout"}
# flags the sweep sets itself for every trial (where the data, run and results go)
SET_BY_SWEEP = {
    "collect": {"out", "overwrite", "quiet"},
    "train": {"data", "runs_dir", "run_dir", "resume", "progress"},
    "eval": {"run", "checkpoint", "out", "quiet", "runs_dir", "expert"},
}
# flags that change how a trial runs, not what it computes: left out of the trial id
NOT_IN_ID = {
    "collect.workers",
    "collect.backend",
    "collect.address",
    "train.threads",
    "train.tensorboard",
    "train.log_every",
    "eval.workers",
}
DISTRIBUTIONS = ("uniform", "loguniform", "randint", "choice")
TOP_LEVEL_KEYS = ("name", "out", "rows", "budget", "seeds", "seed_flags", "collect", "train",
                  "eval", "cases", "grid", "random", "resources")  # fmt: skip
RANDOM_SETTINGS = ("samples", "seed")
RESOURCE_KEYS = ("cpus", "gpus")
BUDGET_KEYS = ("minutes", "rule")


class SpecError(UserError):
    """A sweep spec that cannot run: bad TOML, an unknown flag, an empty grid, a bad value."""


def config_class(section: str) -> type:
    """The config dataclass of a section's command.

    Imported on first use: a job that records a dataset needs only ``CollectConfig``, and
    importing the trainer and evaluator would cost it torch's import, seconds per job.
    """
    if section == "collect":
        from expert.collect_config import CollectConfig

        return CollectConfig
    if section == "train":
        from bc.config import TrainConfig

        return TrainConfig
    from eval.rollout import RolloutConfig

    return RolloutConfig


@functools.cache
def _fields(section: str) -> dict[str, ConfigField]:
    return config_fields(config_class(section))


def split_key(key: str, where: str) -> tuple[str, str]:
    """``train.batch-size`` -> ``("train", "batch_size")``, refusing unknown flags."""
    section, dot, name = key.partition(".")
    name = name.removeprefix("--").replace("-", "_")
    if not dot or section not in SECTIONS:
        raise SpecError(
            f"{where}: {key!r} is not a flag: write SECTION.FLAG with SECTION one of "
            f"{', '.join(SECTIONS)} (e.g. train.lr)"
        )
    command = SECTIONS[section]
    if name not in _fields(section):
        close = difflib.get_close_matches(name, _fields(section), n=1)
        hint = f" (did you mean {section}.{close[0]}?)" if close else ""
        raise SpecError(f"{where}: unknown flag {key!r}: {command} has no --{name}{hint}")
    if name in SET_BY_SWEEP[section]:
        raise SpecError(
            f"{where}: {section}.{name} is set by the sweep for every trial (each trial has its"
            " own dataset, run and results folders); drop it"
        )
    return section, name


def coerce(key: str, value: Any) -> Any:
    """``value`` checked against the type (and choices) of flag ``key``, JSON-ready.

    Ints are accepted for floats, a string for a list of strings; tuples come back as lists
    and paths as strings (what a trial's JSON holds).
    """
    section, name = split_key(key, "flag")
    return coerce_value(_fields(section)[name], value, key, SpecError)


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables to ``section.flag`` keys (a distribution's table is a value)."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and "." not in full:
            flat.update(_flatten(value, full + "."))
        else:
            flat[full] = value
    return flat


def _is_distribution(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def _check_distribution(key: str, value: Any) -> tuple[str, list[Any]]:
    if not _is_distribution(value):
        raise SpecError(
            f"random: {key} needs one of {{{', '.join(d + ' = [...]' for d in DISTRIBUTIONS)}}},"
            f" got {value!r}"
        )
    kind, bounds = next(iter(value.items()))
    if not isinstance(bounds, list) or not bounds:
        raise SpecError(f"random: {key} = {{{kind} = ...}} needs a non-empty list")
    if kind == "choice":
        return kind, bounds
    numbers = all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
    if len(bounds) != 2 or not numbers or bounds[0] > bounds[1]:
        raise SpecError(f"random: {key} = {{{kind} = [LOW, HIGH]}} needs LOW <= HIGH numbers")
    if kind == "loguniform" and bounds[0] <= 0:
        raise SpecError(f"random: {key} = {{loguniform = ...}} needs LOW > 0")
    if kind == "randint" and not all(isinstance(b, int) for b in bounds):
        raise SpecError(f"random: {key} = {{randint = ...}} needs integer bounds")
    return kind, bounds


def _draw(rng: random.Random, kind: str, bounds: list[Any]) -> Any:
    if kind == "choice":
        return bounds[rng.randrange(len(bounds))]
    low, high = bounds
    if kind == "randint":
        return rng.randint(low, high)
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.uniform(low, high)


@dataclass(frozen=True)
class Trial:
    """One collect-train-evaluate run: its swept values, seed and every flag it sets."""

    id: str
    values: dict[str, Any]  # swept flag -> value (grid and random), not the seed
    seed: int
    flags: dict[str, dict[str, Any]]  # section -> field -> JSON-ready value
    dataset: str  # the collect config's fingerprint: trials with the same one share it

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trial:
        return cls(**data)

    @property
    def label(self) -> str:
        """``train.frames=3 train.lr=0.001 seed 0``: how messages name the trial."""
        parts = [f"{key}={show_value(value)}" for key, value in self.values.items()]
        return " ".join([*parts, f"seed {self.seed}"])


def show_value(value: Any) -> str:
    """A value as tables and trial ids show it (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "x".join(show_value(v) for v in value)
    return str(value)


def _trial_id(
    values: dict[str, Any],
    seed: int,
    flags: dict[str, dict[str, Any]],
    recipe: dict[str, Any],
) -> str:
    slug = "_".join(f"{key.rpartition('.')[2]}-{show_value(v)}" for key, v in values.items())
    slug = re.sub(r"[^A-Za-z0-9.+-]+", "_", f"{slug}_seed-{seed}".strip("_"))[:80]
    identity = {
        section: {k: v for k, v in fields.items() if f"{section}.{k}" not in NOT_IN_ID}
        for section, fields in flags.items()
    }
    if recipe:
        identity["recipe"] = recipe
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:8]
    return f"{slug}-{digest}"


def _recipe_values(train_flags: dict[str, Any]) -> dict[str, Any]:
    """The recipe fields (and step floor) the trial leaves unset, as its recipe resolves them.

    A field that stays None (no recipe sets it for this trial) is left out, so that a new
    recipe field keeps the ids of the trials it does not change. Empty when the trial would
    not build: ``check_trial`` then says why in one line.
    """
    unset = [name for name in (*RECIPE_FIELDS, "min_steps") if name not in train_flags]
    try:
        train = build_config("train", train_flags, data="-", run_dir="-", progress=False)
    except (ValueError, TypeError, UserError):
        return {}
    values = {name: getattr(train, name) for name in unset}
    return {name: value for name, value in values.items() if value is not None}


def build_config(section: str, flags: dict[str, Any], **sweep_values: Any) -> Any:
    """The config dataclass of ``section`` from JSON-ready ``flags`` and the sweep's own.

    Raises what the config's validation raises (``ValueError`` or a ``UserError``).
    """
    return configflags.build_config(config_class(section), {**flags, **sweep_values})


def check_trial(trial: Trial) -> None:
    """Build the trial's three configs (raising a one-line SpecError if one is refused)."""
    placeholders = {
        "collect": {"out": "-", "quiet": True},
        "train": {"data": "-", "run_dir": "-", "progress": False},
        "eval": {"run": "-", "out": "-", "quiet": True},
    }
    for section, command in SECTIONS.items():
        try:
            build_config(section, trial.flags[section], **placeholders[section])
        except (ValueError, TypeError, UserError) as error:
            raise SpecError(f"trial {trial.label}: {command} refuses it: {error}") from None


@dataclass(frozen=True)
class SweepSpec:
    """A checked spec: fixed flags, grid, random samples, seeds and trial resources."""

    name: str
    out: str | None = None
    # the committed copy of the finished trials' result rows (JSON lines), or None
    rows: str | None = None
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)
    grid: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    # configurations given one by one ([[cases]]), each crossed with the grid
    cases: tuple[dict[str, Any], ...] = ()
    # a case's own seeds instead of ``seeds`` (its ``seeds = [...]``), None where it has none
    case_seeds: tuple[tuple[int, ...] | None, ...] = ()
    random: dict[str, tuple[str, list[Any]]] = dataclasses.field(default_factory=dict)
    samples: int = 0
    sample_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    seed_flags: tuple[str, ...] = ("train.seed",)
    cpus: float = 1.0
    gpus: float = 0.0
    # [budget]: the wall minutes the whole sweep may take on the 2-core machine, and the rule
    # that chose its size, written before its results were seen
    budget_minutes: float | None = None
    budget_rule: str = ""

    def points(self) -> list[dict[str, Any]]:
        """The swept values of each configuration: cases x grid points x random samples."""
        return [point for point, _ in self._seeded_points()]

    def _seeded_points(self) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
        """Each configuration's swept values with its seeds (its case's own, else ``seeds``)."""
        cases = self.cases or ({},)
        case_seeds = self.case_seeds or (None,) * len(cases)
        grid = [({**case, **dict(zip(self.grid, combo, strict=True))}, seeds or self.seeds)
                for case, seeds in zip(cases, case_seeds, strict=True)
                for combo in itertools.product(*self.grid.values())]  # fmt: skip
        if not self.random:
            return grid
        rng = random.Random(self.sample_seed)
        samples = [
            {key: coerce(key, _draw(rng, *dist)) for key, dist in self.random.items()}
            for _ in range(self.samples)
        ]
        return [({**point, **sample}, seeds) for point, seeds in grid for sample in samples]

    def trials(self) -> list[Trial]:
        """Every trial, configuration-major (all seeds of a point together), each checked."""
        trials = []
        for point, seeds in self._seeded_points():
            for seed in seeds:
                flat = {**self.fixed, **point, **{key: seed for key in self.seed_flags}}
                flags: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
                for key, value in flat.items():
                    section, name = split_key(key, "flag")
                    flags[section][name] = value
                collect = build_config("collect", flags["collect"], out="-", quiet=True)
                trial = Trial(_trial_id(point, seed, flags, _recipe_values(flags["train"])),
                              point, seed, flags, config_hash(collect.identity()))  # fmt: skip
                check_trial(trial)
                trials.append(trial)
        ids = [t.id for t in trials]
        if len(set(ids)) != len(ids):
            raise SpecError("two trials have the same flags: a grid or seed value is repeated")
        return trials

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON (``sweep.json`` of a sweep's folder)."""
        data = dataclasses.asdict(self)
        data["random"] = {key: {kind: bounds} for key, (kind, bounds) in self.random.items()}
        return data


def spec_from_dict(raw: dict[str, Any], where: str, default_name: str = "sweep") -> SweepSpec:
    """Check a parsed TOML spec (``where`` names it in errors) and make a SweepSpec."""
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SpecError(
            f"{where}: unknown key {unknown[0]!r}; a spec holds {', '.join(TOP_LEVEL_KEYS)}"
        )
    fixed: dict[str, Any] = {}
    for section in SECTIONS:
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise SpecError(f"{where}: [{section}] must be a table of flags")
        for key, value in _flatten(table, section + ".").items():
            fixed[key] = _coerced(key, value, f"{where} [{section}]")
    grid: dict[str, list[Any]] = {}
    if "grid" in raw:
        if not isinstance(raw["grid"], dict) or not raw["grid"]:
            raise SpecError(f"{where}: [grid] is empty: give each swept flag a list of values")
        for key, values in _flatten(raw["grid"]).items():
            key = _canonical(key, f"{where} [grid]")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{where}: grid axis {key} is empty: give it a list of values")
            grid[key] = [_coerced(key, v, f"{where} [grid]") for v in values]
    cases, case_seeds = _cases(raw.get("cases"), where)
    random_table = dict(raw.get("random", {}))
    samples = random_table.pop("samples", 0)
    sample_seed = random_table.pop("seed", 0)
    distributions = {
        _canonical(key, f"{where} [random]"): _check_distribution(key, value)
        for key, value in _flatten(random_table).items()
    }
    if distributions and (not isinstance(samples, int) or samples < 1):
        raise SpecError(f"{where}: [random] needs samples = N (N >= 1) beside its flags")
    if samples and not distributions:
        raise SpecError(f"{where}: [random] samples = {samples} but no flag to sample")
    seeds = _seeds(raw.get("seeds", [0]), where)
    seed_flags = raw.get("seed_flags", ["train.seed"])
    if isinstance(seed_flags, str):
        seed_flags = [seed_flags]
    seed_flags = [_canonical(key, f"{where} seed_flags") for key in seed_flags]
    for key in seed_flags:
        _coerced(key, 0, f"{where} seed_flags")
    swept = [*grid, *distributions, *seed_flags, *{key for case in cases for key in case}]
    for key in swept:
        if key in fixed or swept.count(key) > 1:
            raise SpecError(
                f"{where}: {key} is set twice (fixed, cases, grid, random or seed_flags)"
            )
    if not cases and not grid and not distributions and len(seeds) < 2:
        raise SpecError(
            f"{where}: nothing to sweep: give [[cases]], a [grid], a [random] table or several"
            " seeds"
        )
    resources = raw.get("resources", {})
    unknown = sorted(set(resources) - set(RESOURCE_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown resource {unknown[0]!r}; give cpus and/or gpus")
    cpus, gpus = resources.get("cpus", 1), resources.get("gpus", 0)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (cpus, gpus)):
        raise SpecError(f"{where}: [resources] cpus and gpus must be numbers")
    if cpus <= 0 or gpus < 0:
        raise SpecError(f"{where}: [resources] needs cpus > 0 and gpus >= 0")
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise SpecError(f"{where}: name must be letters, digits, '.', '_' or '-', got {name!r}")
    out, rows = raw.get("out"), raw.get("rows")
    if out is not None and not isinstance(out, str):
        raise SpecError(f"{where}: out must be a folder path")
    if rows is not None and (not isinstance(rows, str) or not rows.endswith(".jsonl")):
        raise SpecError(f"{where}: rows must be the path of a .jsonl file")
    minutes, rule = _budget(raw.get("budget", {}), where)
    return SweepSpec(name, out, rows, fixed, grid, cases, case_seeds, distributions, samples,
                     sample_seed, tuple(seeds), tuple(seed_flags), float(cpus), float(gpus),
                     minutes, rule)  # fmt: skip


def _budget(raw: Any, where: str) -> tuple[float | None, str]:
    """``[budget]``: minutes (a number > 0) and the rule that chose the sweep's size (text)."""
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: [budget] must be a table of minutes and rule")
    unknown = sorted(set(raw) - set(BUDGET_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown [budget] key {unknown[0]!r}; give minutes and rule")
    minutes, rule = raw.get("minutes"), raw.get("rule", "")
    if minutes is not None and (
        not isinstance(minutes, (int, float)) or isinstance(minutes, bool) or minutes <= 0
    ):
        raise SpecError(f"{where}: [budget] minutes must be a number > 0")
    if not isinstance(rule, str):
        raise SpecError(f"{where}: [budget] rule must be text")
    return (None if minutes is None else float(minutes)), " ".join(rule.split())


def _cases(
    raw: Any, where: str
) -> tuple[tuple[dict[str, Any], ...], tuple[tuple[int, ...] | None, ...]]:
    """``[[cases]]``: tables of flags, one configuration each (none: no cases), and their seeds.

    A case's own ``seeds = [...]`` run instead of the spec's; None where it gives none.
    """
    if raw is None:
        return (), ()
    if not isinstance(raw, list) or not raw or not all(isinstance(c, dict) for c in raw):
        raise SpecError(f"{where}: [[cases]] must be a list of tables of flags")
    cases, case_seeds = [], []
    for number, table in enumerate(raw, 1):
        table = dict(table)
        seeds = table.pop("seeds", None)
        flags = {_canonical(key, f"{where} case {number}"): value
                 for key, value in _flatten(table).items()}  # fmt: skip
        if not flags:
            raise SpecError(f"{where}: case {number} is empty: give it the flags it sets")
        cases.append({key: _coerced(key, value, f"{where} case {number}")
                      for key, value in flags.items()})  # fmt: skip
        case_seeds.append(None if seeds is None else _seeds(seeds, f"{where}: case {number}"))
    return tuple(cases), tuple(case_seeds)


def _seeds(value: Any, where: str) -> tuple[int, ...]:
    """A ``seeds = [...]`` list (the spec's or a case's), checked."""
    if not isinstance(value, list) or not value or not all(_is_seed(s) for s in value):
        raise SpecError(f"{where}: seeds must be a non-empty list of integers >= 0")
    return tuple(value)


def _is_seed(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _canonical(key: str, where: str) -> str:
    section, name = split_key(key, where)
    return f"{section}.{name}"


def _coerced(key: str, value: Any, where: str) -> Any:
    try:
        return coerce(_canonical(key, where), value)
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None
