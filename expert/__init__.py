"""Scripted experts with privileged state, and dataset recording.

* ``make_expert(config, env)``: the discrete, continuous and stochastic experts, with alpha
  mixing (see ``expert.experts``);
* ``python -m expert.collect``: record a dataset (docs/dataset.md);
* ``python -m expert.verify DATASET``: check one;
* ``python -m expert.bench``: expert success rates and recording throughput;
* ``load_run`` / ``read_manifest``: read datasets, raising ``DatasetError`` (one line).
"""

import envs  # noqa: F401  (first: imports PyBullet with its banner silenced)
from expert.controller import ControllerConfig, CorridorController
from expert.dataset_io import DatasetError, load_run, read_manifest
from expert.experts import (
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
