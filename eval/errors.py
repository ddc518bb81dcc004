"""Errors that the evaluation commands report as one line (``error: ...``) and exit code 2.

Everything a user can cause (no run found, a missing checkpoint, a checkpoint that does not
fit the requested env, markers missing from a table file) raises :class:`EvalError` with a
message that says what to do; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class EvalError(Exception):
    """A user-facing evaluation error: bad input, not a bug."""


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that the command lines print as one line instead of a traceback.

    The ``bc`` package's own user errors (a corrupt checkpoint, ...) count too when ``bc`` is
    importable; ``eval`` works without it for the expert reference row.
    """
    types: list[type[BaseException]] = [EvalError]
    try:
        from bc.errors import BCError
    except ImportError:
        pass
    else:
        types.append(BCError)
    return tuple(types)
