"""Scripted experts with privileged state, and dataset recording.

* ``make_expert(config, env)``: the discrete, continuous and stochastic experts, with alpha
  mixing (see ``expert.experts``);
* ``python -m expert.collect``: record a dataset (docs/dataset.md);
* ``python -m expert.verify DATASET``: check one;
* ``python -m expert.bench``: expert success rates and recording throughput;
* ``load_run`` / ``read_manifest``: read datasets, raising ``DatasetError`` (one line).
"""

import os
import sys


def _import_pybullet_quietly() -> None:
    """Import PyBullet before anything else, with its C-level build-time banner silenced.

    PyBullet writes "pybullet build time: ..." straight to file descriptor 2 when imported,
    which would break the commands' single ``error: ...`` line on stderr. A failing import is
    left for the real import to report.
    """
    if "pybullet" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        try:
            import pybullet  # noqa: F401
        except ImportError:
            pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_pybullet_quietly()

from expert.controller import ControllerConfig, CorridorController  # noqa: E402
from expert.dataset_io import DatasetError, load_run, read_manifest  # noqa: E402
from expert.experts import (  # noqa: E402
    EXPERT_KINDS,
    Expert,
    ExpertConfig,
    ExpertLabel,
    command_to_bin,
    expert_rng,
    make_expert,
)

__all__ = [
    "EXPERT_KINDS",
    "ControllerConfig",
    "CorridorController",
    "DatasetError",
    "Expert",
    "ExpertConfig",
    "ExpertLabel",
    "command_to_bin",
    "expert_rng",
    "load_run",
    "make_expert",
    "read_manifest",
]
