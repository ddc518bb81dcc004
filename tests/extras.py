"""Tests that need an optional extra: skipped without it on a laptop, failed without it in CI.

CI installs every extra (``.ci/run``), so a test that skips there for want of one hides a
broken install or a dropped dependency behind a green run. ``require_extra`` imports the
module, or, when its extra is missing, skips with the line that installs it; when the ``CI``
variable is set (GitHub Actions and GitLab CI set ``CI=true``) it fails the test instead.

A module that is installed but breaks on import is never skipped: its error propagates.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType
from typing import NoReturn

import pytest

# values of CI that mean "not in CI" (any other non-empty value means CI)
_NOT_CI = ("", "0", "false", "no", "off")


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says the tests run in CI."""
    return os.environ.get("CI", "").strip().lower() not in _NOT_CI


def install_line(extra: str) -> str:
    """The reason a test without ``extra`` gives: what it needs and how to install it."""
    return f"needs the '{extra}' extra: pip install -e '.[{extra}]'"


def missing_extra(extra: str, detail: str) -> NoReturn:
    """Skip the running test for want of ``extra``; fail it in CI, which installs every extra."""
    if in_ci():
        pytest.fail(
            f"{install_line(extra)} ({detail}); CI installs every extra, so it must be there",
            pytrace=False,
        )
    pytest.skip(install_line(extra))


def extra_installed(extra: str, *modules: str) -> bool:
    """Whether ``modules`` of ``extra`` are installed, for a test that checks both cases.

    In CI a missing one fails the test: there the case with the extra must not go untested.
    """
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing and in_ci():
        missing_extra(extra, f"not found: {', '.join(missing)}")
    return not missing


def _is_missing(error: ModuleNotFoundError, module: str) -> bool:
    # the module or one of its parent packages is absent; a missing dependency of an
    # installed module is a broken install instead, and is not skipped
    parts = module.split(".")
    return error.name in {".".join(parts[:n]) for n in range(1, len(parts) + 1)}


def require_extra(module: str, extra: str) -> ModuleType:
    """``module`` imported, or the test skipped (failed in CI) naming ``extra`` to install."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if not _is_missing(error, module):
            raise
        detail = f"import {module}: {error}"
    missing_extra(extra, detail)  # outside the except: no chained traceback in the report
