"""Where a sweep spec comes from: a TOML file, and the command line's short form.

Command-line values are TOML values (``3``, ``true``, ``"a b"``, ``[4, 5]``,
``{loguniform = [1e-4, 1e-2]}``); a grid axis may also be comma-separated
(``train.frames=1,3``, ``train.net=tiny_nfc,tiny_3d``: a bare word is a string). What the
command line gives is added to the file's spec, replacing the same keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from experiments.sweep.spec import SpecError, SweepSpec, spec_from_dict, split_key

if TYPE_CHECKING:
    from experiments.sweep.config import SweepConfig


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file at ``path`` as a dict (tomllib on Python >= 3.11, else tomli)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"spec file {path} not found")
    try:
        return _toml_module().loads(path.read_text())
    except UnicodeDecodeError:
        raise SpecError(f"{path} is not a text file") from None
    except ValueError as error:  # tomllib.TOMLDecodeError is a ValueError
        raise SpecError(f"{path}: bad TOML: {error}") from None


def parse_toml_value(text: str) -> Any:
    """A TOML value from the command line (``3``, ``"a"``, ``[1, 3]``, ``{choice = [1, 2]}``)."""
    return _toml_module().loads(f"v = {text}")["v"]


def _toml_module() -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10: the same parser, as a package
        try:
            import tomli as tomllib
        except ImportError:
            raise SpecError("reading TOML on Python 3.10 needs tomli: pip install tomli") from None
    return tomllib


def parse_assignment(text: str, option: str) -> tuple[str, str]:
    """``KEY=VALUE`` of a command-line option into its two parts."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip() or not value.strip():
        raise SpecError(f"{option} takes KEY=VALUE (e.g. train.frames=1,3), got {text!r}")
    return key.strip(), value.strip()


def parse_values(text: str) -> list[Any]:
    """Grid values from the command line: a TOML list, or comma-separated TOML values/words."""
    try:
        value = parse_toml_value(text)
    except (ValueError, SpecError):
        value = None
    if isinstance(value, list):
        return value
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            values.append(parse_toml_value(item))
        except ValueError:
            values.append(item)  # a bare word: a string (tiny_nfc)
    return values


def parse_scalar(text: str) -> Any:
    """One value from the command line: TOML if it parses (``3``, ``true``), else the text."""
    try:
        return parse_toml_value(text)
    except ValueError:
        return text


def resolve_spec(config: SweepConfig) -> SweepSpec:
    """The spec file (if any) with the command line's parts added, checked."""
    raw: dict[str, Any] = read_toml(config.spec) if config.spec is not None else {}
    where = str(config.spec) if config.spec is not None else "command line"
    for text in config.fixed:
        key, value = parse_assignment(text, "--set")
        section, name = split_key(key, "--set")
        raw.setdefault(section, {})[name] = parse_scalar(value)
    for text in config.grid:
        key, value = parse_assignment(text, "--grid")
        raw.setdefault("grid", {})[key] = parse_values(value)
    random_table = raw.setdefault("random", {}) if config.random or config.samples else {}
    for text in config.random:
        key, value = parse_assignment(text, "--random")
        try:
            random_table[key] = parse_toml_value(value)
        except ValueError:
            raise SpecError(f"--random {key}: {value!r} is not a TOML table") from None
    if config.samples is not None:
        random_table["samples"] = config.samples
    if config.sample_seed is not None:
        raw.setdefault("random", {})["seed"] = config.sample_seed
    if config.seeds:
        try:
            raw["seeds"] = [int(s) for s in config.seeds.replace(" ", "").split(",")]
        except ValueError:
            raise SpecError(f"--seeds takes integers like 0,1,2, got {config.seeds!r}") from None
    if config.name:
        raw["name"] = config.name
    if raw.get("random") == {}:
        del raw["random"]
    stem = config.spec.stem if config.spec is not None else "sweep"
    return spec_from_dict(raw, where, stem)
