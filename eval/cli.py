"""How the eval commands parse and run: ``configflags`` parsers plus eval's user errors.

A bad value, from argparse or from the config's ``__post_init__``, and any of eval's user
errors while running print as one ``error: ...`` line on stderr with exit code 2, never as a
usage dump or a traceback; Ctrl-C prints one line and exits with 130.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import configflags
from configflags import fail
from eval.errors import user_errors

ConfigT = TypeVar("ConfigT")


def parse_config(
    config_class: type[ConfigT],
    argv: Sequence[str] | None,
    prog: str,
    description: str | None = None,
) -> ConfigT:
    """Parse ``argv`` into ``config_class``; a bad value exits with a one-line error."""
    return configflags.parse_config(
        config_class, argv, prog, description, errors=(ValueError, TypeError, *user_errors())
    )


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
