"""Errors that the command line reports as one line (``error: ...``) and exit code 2.

Everything a user can cause (a bad flag, a missing dataset, a checkpoint that does not fit)
raises one of these with a message that says what to do; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

from configflags import UserError


class BCError(UserError):
    """Base class of the user-facing errors of the ``bc`` package."""


class ConfigError(BCError, ValueError):
    """A configuration value is invalid or inconsistent with another one."""


class CheckpointError(BCError):
    """A checkpoint is missing, unreadable or does not fit the net it is loaded into."""


class TrainError(BCError):
    """Training cannot start or continue (run directory clash, resume mismatch, ...)."""
