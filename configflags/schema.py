"""A config's flags as data: each field flattened to its flag, its type, and values checked.

The command line (``configflags``) and anything else that sets flags from outside it (a
sweep spec's TOML, ``experiments.sweep.spec``) read a config through :func:`config_fields`
and check a value with :func:`coerce_value`, so a new field type is taught in one place.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def flag_name(field_name: str) -> str:
    """The command-line flag of a config field: ``noise_sigma`` -> ``--noise-sigma``."""
    return "--" + field_name.replace("_", "-")


def unwrap_optional(annotation: Any) -> Any:
    """``T`` for ``T | None`` (and ``Optional[T]``); any other annotation unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def init_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of dataclass ``cls`` that its constructor takes, with resolved annotations."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


@dataclass(frozen=True)
class ConfigField:
    """One flag of a config: its dataclass field, where it sits, and its type."""

    field: dataclasses.Field
    path: str  # dotted through nested configs: "augment.jitter"; the name at the top level
    annotation: Any  # as declared, ``| None`` included

    @property
    def name(self) -> str:
        """The field's name: the flag's name too, nested configs being flattened."""
        return self.field.name

    @property
    def flag(self) -> str:
        """The command-line flag: ``option(flag=...)``, else ``--field-name``."""
        return self.field.metadata.get("flag") or flag_name(self.name)

    @property
    def type(self) -> Any:
        """The annotation without ``| None``."""
        return unwrap_optional(self.annotation)

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The values the field accepts, if ``option(choices=...)`` limits them."""
        return self.field.metadata.get("choices")


def config_fields(cls: type, _prefix: str = "") -> dict[str, ConfigField]:
    """The flags of config ``cls`` by field name, nested configs flattened (as their flags are)."""
    found: dict[str, ConfigField] = {}
    for field, annotation in init_fields(cls):
        path = _prefix + field.name
        if dataclasses.is_dataclass(annotation):
            found.update(config_fields(annotation, path + "."))
        else:
            found[field.name] = ConfigField(field, path, annotation)
    return found


def coerce_value(
    field: ConfigField, value: Any, key: str, error: type[Exception] = ValueError
) -> Any:
    """``value`` (as TOML or JSON holds it) checked against ``field``'s type and choices.

    Ints are accepted for floats, a string for a list of strings; the result is JSON-ready
    (tuples come back as lists and paths as strings; :func:`config_value` turns them back).
    A value of the wrong type is ``error("KEY takes ..., got VALUE")``, ``key`` naming it.
    """
    result = _coerce(key, field.type, value, error)
    if field.choices is not None and result not in field.choices:
        raise error(f"{key} must be one of {', '.join(map(str, field.choices))}; got {value!r}")
    return result


def _coerce(key: str, base: Any, value: Any, error: type[Exception]) -> Any:
    origin, items = typing.get_origin(base), typing.get_args(base)

    def bad(kind: str) -> Exception:
        return error(f"{key} takes {kind}, got {value!r}")

    if base is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if base in (str, Path):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if origin is list:
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad("a string or a list of strings")
        return list(values)
    if origin is tuple:
        if not isinstance(value, list):
            raise bad("a list")
        if len(items) == 2 and items[1] is Ellipsis:
            if not value:
                raise bad("a non-empty list")
            return [_coerce(key, items[0], v, error) for v in value]
        if len(value) != len(items):
            raise bad(f"a list of {len(items)} values")
        return [_coerce(key, item, v, error) for item, v in zip(items, value, strict=True)]
    raise error(f"{key} has a type that cannot be set from outside the command line ({base!r})")


def config_value(annotation: Any, value: Any) -> Any:
    """A JSON-ready ``value`` as the field of type ``annotation`` holds it (a Path, a tuple)."""
    base = unwrap_optional(annotation)
    if base is Path and isinstance(value, str):
        return Path(value)
    if typing.get_origin(base) is tuple and isinstance(value, list):
        return tuple(value)
    return value
