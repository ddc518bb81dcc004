"""The evaluation commands' user errors: one line (``error: ...``) and exit code 2.

Everything a user can cause (no run found, a missing checkpoint, a checkpoint that does not
fit the requested env, markers missing from a table file) raises :class:`EvalError` with a
message that says what to do; ``configflags.run_main`` prints it as one line. Anything else
is a bug and keeps its traceback.
"""

from __future__ import annotations

from configflags import UserError


class EvalError(UserError):
    """A user-facing evaluation error: bad input, not a bug."""
