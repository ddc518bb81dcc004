"""Command lines generated from typed dataclass configs.

Each field becomes one flag (``noise_sigma`` -> ``--noise-sigma``) with the help line given in
its metadata and the dataclass default shown; nested dataclass fields are flattened into the
same parser. Defaults live in the dataclasses alone: flags that are not given are not passed,
so ``Config()`` and an empty command line build the same config. Errors end the program with a
single ``error: ...`` line on stderr and exit code 2, the house rule for bad input.
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


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flag: str | None = None,
    choices: Sequence[Any] | None = None,
    positional: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that also describes its command-line flag."""
    metadata = {"help": help, "flag": flag, "choices": choices, "positional": positional}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one ``error: ...`` line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(message)


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def _flag_name(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _argument_for(field: dataclasses.Field, annotation: Any, default: Any) -> tuple[list, dict]:
    """The add_argument call for one field."""
    # None is only ever a default here: a flag that is given always sets a value
    base, _ = _unwrap_optional(annotation)
    help_text = field.metadata.get("help")
    if help_text is None:
        raise TypeError(f"field {field.name} has no help line: declare it with option(help=...)")
    if default is dataclasses.MISSING:
        kwargs: dict[str, Any] = {"help": help_text}
    else:
        shown = "unset" if default is None else _show(default)
        kwargs = {"help": f"{help_text} (default: {shown})"}
    if field.metadata.get("choices") is not None:
        kwargs["choices"] = list(field.metadata["choices"])
    origin = typing.get_origin(base)
    if base is bool:
        kwargs["action"] = argparse.BooleanOptionalAction
    elif origin is tuple:
        items = typing.get_args(base)
        kwargs["type"] = items[0]
        kwargs["nargs"] = "+" if len(items) == 2 and items[1] is Ellipsis else len(items)
        kwargs["metavar"] = field.name.upper()
    elif base in (int, float, str, Path):
        kwargs["type"] = base
        if base is not str:
            kwargs["metavar"] = field.name.upper()
    else:
        raise TypeError(f"field {field.name}: unsupported type {annotation!r} for a flag")
    if field.metadata.get("positional"):
        kwargs.pop("metavar", None)
        kwargs["metavar"] = field.name.upper()
        if default is not dataclasses.MISSING:
            kwargs["nargs"] = "?"
        return [field.name], kwargs
    kwargs["dest"] = field.name
    return [_flag_name(field)], kwargs


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def _fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    _target: Any = None,
    _seen: set | None = None,
) -> None:
    """Add one argument per field of dataclass ``cls`` (nested dataclasses flattened).

    A nested dataclass gets its own help section, named by its field's help line.
    """
    target = parser if _target is None else _target
    seen = set() if _seen is None else _seen
    for field, annotation in _fields(cls):
        if dataclasses.is_dataclass(annotation):
            # argparse groups do not nest: every section hangs off the parser itself
            group = parser.add_argument_group(
                field.metadata.get("help", field.name), (annotation.__doc__ or "").split("\n")[0]
            )
            add_config_arguments(parser, annotation, group, seen)
            continue
        if field.name in seen:
            raise TypeError(f"two config fields are named {field.name}: flags must be unique")
        seen.add(field.name)
        names, kwargs = _argument_for(field, annotation, _default_of(field))
        kwargs["default"] = argparse.SUPPRESS
        target.add_argument(*names, **kwargs)


def build_config(cls: type[Config], values: dict[str, Any]) -> Config:
    """Build ``cls`` from parsed flag values; fields not given keep the dataclass default."""
    kwargs: dict[str, Any] = {}
    for field, annotation in _fields(cls):
        if dataclasses.is_dataclass(annotation):
            kwargs[field.name] = build_config(annotation, values)
        elif field.name in values:
            value = values[field.name]
            if isinstance(value, list):
                value = tuple(value)
            kwargs[field.name] = value
    return cls(**kwargs)


def make_parser(prog: str, description: str | None, cls: type) -> OneLineParser:
    """A one-line-error parser with one flag per field of ``cls``."""
    parser = OneLineParser(
        prog=prog,
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, cls)
    return parser


def parse_config(
    cls: type[Config], argv: Sequence[str] | None, prog: str, description: str | None
) -> Config:
    """Parse ``argv`` into ``cls``; bad flags or values end the program with exit code 2."""
    parser = make_parser(prog, description, cls)
    values = vars(parser.parse_args(argv))
    try:
        return build_config(cls, values)
    except (ValueError, TypeError) as error:
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
