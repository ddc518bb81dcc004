"""Scripted experts with privileged state, and dataset recording.

* ``make_expert(config, env)``: the discrete, continuous and stochastic experts, with alpha
  mixing (see ``expert.experts``);
* ``python -m expert.collect``: record a dataset (docs/dataset.md);
* ``python -m dataset.verify DATASET``: check one;
* ``python -m expert.bench``: expert success rates and recording throughput;
* ``python -m expert.demo``: fly one corridor and write a video.

The dataset format itself (writer, readers, ``DatasetError``) lives in the ``dataset`` package.
"""

import envs  # noqa: F401  (first: imports PyBullet with its banner silenced)
from expert.controller import ControllerConfig, CorridorController
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
    "Expert",
    "ExpertConfig",
    "ExpertLabel",
    "command_to_bin",
    "expert_rng",
    "make_expert",
]
