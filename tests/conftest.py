"""Fixtures shared by the test packages."""

from pathlib import Path

import pytest

from tests.bc.helpers import small_dataset


@pytest.fixture(scope="module")
def data(request, tmp_path_factory) -> Path:
    """One small dataset per test module (see ``small_dataset``), built on first use."""
    module = request.module.__name__.rpartition(".")[2]
    return small_dataset(tmp_path_factory.mktemp(module) / "data")
