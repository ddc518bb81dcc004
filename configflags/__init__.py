"""Command lines generated from typed dataclass configs, shared by every ``python -m`` command.

Each field becomes one flag (``noise_sigma`` -> ``--noise-sigma``) whose help line is the
field's ``option(help=...)`` with its default shown, so a command line cannot drift from its
config. Nested dataclass fields are flattened into the same parser, each under its own help
section. Defaults live in the dataclasses alone: a flag that is not given is not passed, so
``Config()`` and an empty command line build the same config, and ``parse_given`` can tell
which flags were given (``bc.train --resume`` accepts only some).

Field types: ``bool`` (``--x/--no-x``), ``int``, ``float``, ``str``, ``Path``, fixed-length
``tuple[T, T]``, ``tuple[T, ...]`` (one or more values), ``list[str]`` (one or more, repeatable),
each optionally ``| None`` (None is only ever a default). Errors end the program with one
``error: ...`` line on stderr and exit code 2, never a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

Config = TypeVar("Config")

USAGE_ERROR = 2
# the value of an optional positional argument that was not given
_NOT_GIVEN = object()


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    choices: Sequence[Any] | None = None,
    positional: bool = False,
    metavar: str | tuple[str, ...] | None = None,
    group: str | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that also describes its flag.

    ``flag`` replaces the derived name, ``group`` puts the flag under its own help heading,
    ``positional`` makes it an argument without a flag. A list default is copied per instance.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "choices": tuple(choices) if choices is not None else None,
        "positional": positional,
        "metavar": metavar,
        "group": group,
    }
    if isinstance(default, list):
        items = list(default)
        return dataclasses.field(default_factory=lambda: list(items), metadata=metadata)
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one ``error: ...`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _show_default(value: Any, help_text: str) -> str:
    """The ``(default: ...)`` suffix of a help line ("" when the help says it already)."""
    if value is dataclasses.MISSING:
        return ""
    empty = value is None or (isinstance(value, (tuple, list, str)) and len(value) == 0)
    if empty and ("default" in help_text or "unset" in help_text):
        return ""  # the help line says what leaving it out means
    if value is None:
        return " (default: unset)"
    if isinstance(value, bool):
        shown = "on" if value else "off"
    elif isinstance(value, (tuple, list)):
        shown = " ".join(str(v) for v in value) if value else "none"
    elif value == "":
        shown = "unset"
    else:
        shown = str(value)
    return f" (default: {shown})"


def _argument_for(
    field: dataclasses.Field, annotation: Any, aliases: bool
) -> tuple[list[str], dict[str, Any]]:
    """The names and keyword arguments of the ``add_argument`` call for one field."""
    meta = field.metadata
    help_text = meta.get("help")
    if not help_text:
        raise TypeError(f"field {field.name} has no help line: declare it with option(help=...)")
    base = _unwrap_optional(annotation)
    kwargs: dict[str, Any] = {
        "help": help_text + _show_default(_default_of(field), help_text),
        "default": argparse.SUPPRESS,
    }
    if meta.get("choices") is not None:
        kwargs["choices"] = list(meta["choices"])
    if meta.get("metavar") is not None:
        kwargs["metavar"] = meta["metavar"]
    positional = bool(meta.get("positional"))
    has_default = _default_of(field) is not dataclasses.MISSING
    origin, items = typing.get_origin(base), typing.get_args(base)
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is tuple and len(items) == 2 and items[1] is Ellipsis:
        kwargs.update(type=items[0], nargs="*" if positional and has_default else "+")
    elif origin is tuple and items and all(item is items[0] for item in items):
        kwargs.update(type=items[0], nargs=len(items))
    elif origin is list and items == (str,):
        kwargs.update(type=str, nargs="+", action="extend")
    elif base in (int, float, str, Path):
        kwargs["type"] = base
        if positional and has_default:
            # argparse would convert a string default such as SUPPRESS with ``type``
            kwargs.update(nargs="?", default=_NOT_GIVEN)
    else:
        raise TypeError(f"field {field.name}: unsupported type {annotation!r} for a flag")
    if positional:
        return [field.name], kwargs
    kwargs["dest"] = field.name
    flag = meta.get("flag") or "--" + field.name.replace("_", "-")
    names = [flag]
    if aliases and not meta.get("flag") and "_" in field.name:
        names.append("--" + field.name)
    return names, kwargs


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    aliases: bool = False,
    _section: Any = None,
    _seen: set[str] | None = None,
) -> None:
    """Add one argument per field of dataclass ``cls`` (nested dataclasses flattened).

    ``aliases`` also accepts ``--field_name`` beside ``--field-name`` (the spelling of the
    original experiment scripts).
    """
    seen = set() if _seen is None else _seen
    groups: dict[str, Any] = {}
    for field, annotation in _fields(cls):
        if dataclasses.is_dataclass(annotation):
            # argparse groups do not nest: every section hangs off the parser itself
            section = parser.add_argument_group(
                field.metadata.get("help", field.name), (annotation.__doc__ or "").split("\n")[0]
            )
            add_config_arguments(parser, annotation, aliases, section, seen)
            continue
        if field.name in seen:
            raise TypeError(f"two config fields are named {field.name}: flags must be unique")
        seen.add(field.name)
        target = parser if _section is None else _section
        group_name = field.metadata.get("group")
        if group_name is not None and _section is None:
            if group_name not in groups:
                groups[group_name] = parser.add_argument_group(group_name)
            target = groups[group_name]
        names, kwargs = _argument_for(field, annotation, aliases)
        target.add_argument(*names, **kwargs)


def build_parser(
    cls: type, prog: str, description: str | None = None, aliases: bool = False
) -> OneLineParser:
    """A one-line-error parser with one flag per field of ``cls``."""
    parser = OneLineParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_config_arguments(parser, cls, aliases)
    return parser


def parse_given(
    cls: type,
    argv: Sequence[str] | None,
    prog: str,
    description: str | None = None,
    aliases: bool = False,
) -> dict[str, Any]:
    """Parse ``argv`` (default: ``sys.argv[1:]``) into the values of the flags given."""
    parser = build_parser(cls, prog, description, aliases)
    values = vars(parser.parse_args(None if argv is None else list(argv)))
    return {name: value for name, value in values.items() if value is not _NOT_GIVEN}


def build_config(cls: type[Config], values: dict[str, Any]) -> Config:
    """Build ``cls`` from parsed flag values; fields not given keep the dataclass default."""
    kwargs: dict[str, Any] = {}
    for field, annotation in _fields(cls):
        if dataclasses.is_dataclass(annotation):
            kwargs[field.name] = build_config(annotation, values)
        elif field.name in values:
            value = values[field.name]
            if isinstance(value, list) and typing.get_origin(_unwrap_optional(annotation)) is tuple:
                value = tuple(value)
            kwargs[field.name] = value
    return cls(**kwargs)


def parse_config(
    cls: type[Config],
    argv: Sequence[str] | None,
    prog: str,
    description: str | None = None,
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError),
) -> Config:
    """Parse ``argv`` into ``cls``; bad flags, or ``errors`` from the config, exit with code 2."""
    values = parse_given(cls, argv, prog, description)
    try:
        return build_config(cls, values)
    except errors as error:
        fail(str(error))


def run_main(
    main: Callable[[Config], Any],
    cls: type[Config],
    prog: str,
    description: str | None,
    usage_errors: tuple[type[BaseException], ...] = (ValueError,),
    argv: Sequence[str] | None = None,
) -> Any:
    """Parse, run ``main(config)``, and turn ``usage_errors`` into ``error: ...``, exit 2."""
    config = parse_config(cls, argv, prog, description)
    try:
        return main(config)
    except usage_errors as error:
        fail(str(error))
