import subprocess
import sys
from pathlib import Path

import pytest

from tests.extras import require_extra

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff_is_clean(command):
    require_extra("ruff", "test")
    # the ruff of this interpreter, found without the virtualenv's bin on PATH
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
