"""Command lines generated from config dataclasses, with one-line errors.

Each field of a config dataclass becomes one flag (``max_steps`` -> ``--max-steps``) whose help
line is the field's ``help`` metadata, so the CLI cannot drift from the config. Errors, from
argparse or from the config's ``__post_init__``, print as a single ``error: ...`` line on
stderr with exit code 2, never as a usage dump or a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from eval.errors import user_errors
from expert.cli import OneLineParser, fail  # the one-line `error: ...` exit shared by every command

ConfigT = TypeVar("ConfigT")


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    flag: str | None = None,
    choices: Sequence[Any] | None = None,
    positional: bool = False,
    metavar: str | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a command-line option with a help line."""
    metadata = {
        "help": help,
        "flag": flag,
        "choices": choices,
        "positional": positional,
        "metavar": metavar,
    }
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _describe_default(value: Any) -> str:
    if value is True:
        return "on"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) if value else "none"
    return str(value)


def build_parser(config_class: type, prog: str, description: str | None) -> OneLineParser:
    """An argument parser with one option per field of ``config_class``."""
    parser = OneLineParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    hints = typing.get_type_hints(config_class)
    for field in dataclasses.fields(config_class):
        meta = field.metadata
        annotation, _ = _unwrap_optional(hints[field.name])
        default = field.default
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        kwargs: dict[str, Any] = {"help": meta.get("help", "")}
        # None, off and empty mean "not given": the help line says what that means
        shown = not (default is None or default is False or default == () or
                     default is dataclasses.MISSING)  # fmt: skip
        if shown:
            kwargs["help"] += f" (default: {_describe_default(default)})"
        if meta.get("choices") is not None:
            kwargs["choices"] = list(meta["choices"])
        if meta.get("metavar") is not None:
            kwargs["metavar"] = meta["metavar"]

        origin = typing.get_origin(annotation)
        if annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif origin is tuple:
            item_types = typing.get_args(annotation)
            if len(item_types) == 2 and item_types[1] is Ellipsis:
                kwargs["nargs"] = "*" if meta.get("positional") else "+"
                kwargs["type"] = item_types[0]
            else:
                kwargs["nargs"] = len(item_types)
                kwargs["type"] = item_types[0]
        elif annotation in (int, float, str, Path):
            kwargs["type"] = annotation
        else:
            raise TypeError(f"no command-line conversion for field {field.name}: {annotation}")

        if meta.get("positional"):
            parser.add_argument(field.name, default=default, **kwargs)
        else:
            flag = meta.get("flag") or "--" + field.name.replace("_", "-")
            parser.add_argument(flag, dest=field.name, default=default, **kwargs)
    return parser


def parse_config(
    config_class: type[ConfigT],
    argv: Sequence[str] | None,
    prog: str,
    description: str | None = None,
) -> ConfigT:
    """Parse ``argv`` into ``config_class``; a bad value exits with a one-line error."""
    parser = build_parser(config_class, prog, description)
    namespace = vars(parser.parse_args(argv))
    for name, value in namespace.items():
        if isinstance(value, list):
            namespace[name] = tuple(value)
    try:
        return config_class(**namespace)
    except (ValueError, *user_errors()) as error:
        fail(str(error))


def run_cli(main: Callable[[ConfigT], Any], config: ConfigT) -> int:
    """Run ``main(config)``; user errors become one ``error: ...`` line and exit code 2."""
    try:
        main(config)
    except user_errors() as error:
        fail(str(error))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0
