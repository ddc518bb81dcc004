"""Fixtures shared by the test packages; the header line saying how missing extras end."""

from pathlib import Path

import pytest

from tests.bc.helpers import small_dataset
from tests.extras import in_ci, require_extra


def pytest_report_header(config) -> str:
    """How a test that needs a missing optional extra ends (tests/extras.py)."""
    if in_ci():
        return "optional extras: CI is set, so a test whose extra is missing fails"
    return "optional extras: a test whose extra is missing is skipped (set CI=true to fail it)"


@pytest.fixture(scope="module")
def data(request, tmp_path_factory) -> Path:
    """One small dataset per test module (see ``small_dataset``), built on first use."""
    module = request.module.__name__.rpartition(".")[2]
    return small_dataset(tmp_path_factory.mktemp(module) / "data")


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray of 2 CPUs for one test module, shut down after it (needs the ray extra)."""
    ray = require_extra("ray", "ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
