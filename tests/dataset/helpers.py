"""Tiny recorded datasets and the format-1 fixture (``from tests.dataset.helpers import ...``).

``fixtures/format1_discrete`` was written by corridor-bc at commit 7680b8c (format_version
1), in that commit's tree, with::

    python -m expert.collect --out format1_discrete --image-size 32 --n-segments 1 \\
        --segment-length 2 2 --val-runs 1 --test-runs 0 --max-frames 5 --quiet

(``.lock`` removed): a validation run that reached the goal (11 steps) and a training run
cut to 5 of its 11 steps by the frame budget. ``FORMAT1_CONFIG`` is the same collection,
recorded again by today's code, which writes the same runs in format 2.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from envs.options import EnvOptions
from expert import ExpertConfig
from expert.collect import main as collect
from expert.collect_config import CollectConfig

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FORMAT1 = FIXTURES / "format1_discrete"
TINY_ENV = EnvOptions(image_size=32, n_segments=1, segment_length=(4.0, 5.0))


def format1_config(out: Path, **overrides) -> CollectConfig:
    """The collection the format-1 fixture holds."""
    values = {
        "out": out,
        "env": EnvOptions(image_size=32, n_segments=1, segment_length=(2.0, 2.0)),
        "val_runs": 1,
        "test_runs": 0,
        "max_frames": 5,
        "quiet": True,
        **overrides,
    }
    return CollectConfig(**values)


def format1_copy(directory: Path) -> Path:
    """A writable copy of the format-1 fixture in ``directory``."""
    return Path(shutil.copytree(FORMAT1, directory))


def record(out: Path, kind: str = "discrete", runs: int = 2, **overrides) -> Path:
    """A tiny dataset recorded by the ``kind`` expert (validation and training runs)."""
    config = CollectConfig(
        out=out,
        runs=runs,
        test_runs=0,
        env=TINY_ENV,
        expert=ExpertConfig(kind=kind),
        quiet=True,
        **overrides,
    )
    collect(config)
    return out
