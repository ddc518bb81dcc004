"""Command lines generated from typed dataclass configs, shared by every ``python -m`` command.

Each field becomes one flag (``noise_sigma`` -> ``--noise-sigma``) whose help line is the
field's ``option(help=...)`` with its default shown, so a command line cannot drift from its
config. Nested dataclass fields are flattened into the same parser, each under its own help
section. Defaults live in the dataclasses alone: a flag that is not given is not passed, so
``Config()`` and an empty command line build the same config, and ``parse_given`` can tell
which flags were given (``bc.train --resume`` accepts only some).

Field types: ``bool`` (``--x/--no-x``), ``int``, ``float``, ``str``, ``Path``, fixed-length
``tuple[T, T]``, ``tuple[T, ...]`` (one or more values), ``list[str]`` (one or more, repeatable),
each optionally ``| None`` (None is only ever a default). :func:`config_fields` and
:func:`coerce_value` (``configflags.schema``) give the same flags as data, to set them from a
file (a sweep spec) with the same types.

Every command runs through :func:`run_main`, so every command ends the same way:

======  =================================================================================
exit    when
======  =================================================================================
0       the command did its work
1       the work ran and found a failure (:class:`CommandFailed`: a recording crashed,
        ``dataset.verify`` found bad files)
2       bad input (:class:`UserError` or ``ValueError``): a wrong flag or value, a missing,
        corrupt or mismatched file; one ``error: ...`` line on stderr, never a traceback
130     interrupted (Ctrl-C or SIGTERM): one line; rerunning the same command resumes
======  =================================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from configflags.schema import (  # noqa: F401  (the schema is part of the package's interface)
    ConfigField,
    coerce_value,
    config_fields,
    config_value,
    flag_name,
    init_fields,
    unwrap_optional,
)

Config = TypeVar("Config")

EXIT_FAILED = 1
USAGE_ERROR = 2
EXIT_INTERRUPTED = 130
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


class UserError(Exception):
    """An error the user caused and can fix: commands print it as one line and exit 2.

    Each package's own user errors derive from it (``dataset.DatasetError``,
    ``bc.errors.BCError``, ``eval.errors.EvalError``, ...); anything else is a bug and keeps
    its traceback.
    """


class CommandFailed(Exception):
    """The command ran and found a failure: printed as one line (``details`` first), exit 1."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one ``error: ...`` line and exit code 2.

    Prefixes of long flags are not accepted (``allow_abbrev=False``): with them ``--run`` was
    read as ``--runs-dir`` by a command without ``--run``, and the error named another flag.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see --help)")


def fail(message: str, code: int = USAGE_ERROR) -> NoReturn:
    """Print ``error: message`` on one line to stderr and exit."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


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
    base = unwrap_optional(annotation)
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
    flag = meta.get("flag") or flag_name(field.name)
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
    for field, annotation in init_fields(cls):
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
    """Build ``cls`` from flag values; fields not given keep the dataclass default.

    The values are parsed flags or JSON-ready ones (:func:`coerce_value`'s): a list for a
    tuple field becomes a tuple, a string for a path field a ``Path``.
    """
    kwargs: dict[str, Any] = {}
    for field, annotation in init_fields(cls):
        if dataclasses.is_dataclass(annotation):
            kwargs[field.name] = build_config(annotation, values)
        elif field.name in values:
            kwargs[field.name] = config_value(annotation, values[field.name])
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


def _stop_on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a cluster's SIGTERM stops a command as cleanly as Ctrl-C


def run_main(
    main: Callable[[Config], Any],
    cls: type[Config],
    prog: str,
    description: str | None,
    argv: Sequence[str] | None = None,
    *,
    build: Callable[[dict[str, Any]], Config] | None = None,
    aliases: bool = False,
    usage_errors: tuple[type[BaseException], ...] = (),
    interrupted: str = "interrupted: rerun the same command to resume",
) -> Any:
    """Parse ``argv`` into ``cls``, run ``main(config)`` and return its result.

    ``build(given)`` makes the config from the flags given (default: the dataclass with those
    fields). Errors end the program as the module docstring's table says (``usage_errors``
    adds exception types that count as bad input); a
    ``KeyboardInterrupt`` that carries a message (``bc.train``'s says which epoch was kept)
    prints that message instead of ``interrupted``.
    """
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    given = parse_given(cls, argv, prog, description, aliases)
    try:
        config = build(given) if build is not None else build_config(cls, given)
    except (UserError, ValueError, TypeError, *usage_errors) as error:
        fail(str(error))
    try:
        return main(config)
    except (UserError, ValueError, *usage_errors) as error:
        fail(str(error))
    except CommandFailed as error:
        if error.details:
            print(error.details, file=sys.stderr, end="")
        fail(str(error), code=EXIT_FAILED)
    except KeyboardInterrupt as error:
        message = str(error.args[0]) if error.args else interrupted
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
