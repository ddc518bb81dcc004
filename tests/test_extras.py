"""``require_extra``: a missing extra skips on a laptop and fails in CI, naming the extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.extras import extra_installed, in_ci, require_extra

ROOT = Path(__file__).resolve().parents[1]
ONNX_LINE = "needs the 'onnx' extra: pip install -e '.[onnx]'"


@pytest.fixture
def without_onnx(monkeypatch):
    """``import onnx`` fails as if the onnx extra were not installed.

    Its submodules too: earlier tests of the same session may have imported them already.
    """
    for name in [name for name in sys.modules if name == "onnx" or name.startswith("onnx.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "onnx", None)


@pytest.mark.parametrize("value", [None, "", "0", "false", "False", "no", "off"])
def test_a_missing_extra_outside_ci_skips_naming_the_extra(without_onnx, monkeypatch, value):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_extra("onnx", "onnx")
    assert str(skipped.value) == ONNX_LINE


@pytest.mark.parametrize("value", ["true", "1", "yes", "TRUE"])
def test_a_missing_extra_in_ci_fails(without_onnx, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    assert in_ci()
    with pytest.raises(pytest.fail.Exception) as failed:
        require_extra("onnx.helper", "onnx")  # a submodule of a missing package: missing too
    assert str(failed.value).startswith(ONNX_LINE + " (import onnx.helper: ")
    assert "CI installs every extra" in str(failed.value)


def test_an_installed_module_is_returned_in_ci_too(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert require_extra("json", "none") is json


def test_extra_installed_tells_both_cases_apart_and_fails_in_ci_without_it(
    without_onnx, monkeypatch
):
    monkeypatch.delenv("CI", raising=False)
    assert extra_installed("onnx", "json")
    assert not extra_installed("onnx", "json", "onnx")
    monkeypatch.setenv("CI", "true")
    assert extra_installed("onnx", "json")
    with pytest.raises(pytest.fail.Exception, match=r"'\.\[onnx\]' \(not found: onnx\)"):
        extra_installed("onnx", "json", "onnx")


def test_a_broken_install_is_an_error_not_a_skip(tmp_path, monkeypatch):
    # the module is there but a dependency of it is not: no pip install of the extra is missing
    (tmp_path / "half_installed").mkdir()
    (tmp_path / "half_installed" / "__init__.py").write_text("import no_such_dependency_h4\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(BaseException) as raised:  # a skip too, to fail on it rather than skip
        require_extra("half_installed", "onnx")
    assert raised.type is ModuleNotFoundError and raised.value.name == "no_such_dependency_h4"


def _pytest_outcome(test_file: Path, ci: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci is not None:
        env["CI"] = ci
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", str(test_file)],
        cwd=test_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.stdout


def test_a_test_run_skips_or_fails_on_the_ci_variable(tmp_path):
    test_file = tmp_path / "test_needs_onnx.py"
    test_file.write_text(
        "import sys\n\n"
        "from tests.extras import require_extra\n\n"
        'sys.modules["onnx"] = None  # as if the onnx extra were not installed\n\n\n'
        "def test_needs_onnx():\n"
        '    require_extra("onnx", "onnx")\n'
    )
    laptop = _pytest_outcome(test_file, None)
    assert "1 skipped" in laptop and ONNX_LINE in laptop, laptop
    ci = _pytest_outcome(test_file, "true")
    assert "1 failed" in ci and ONNX_LINE in ci, ci
    assert "Traceback" not in ci and "During handling" not in ci, ci
