"""What a collection records: ``CollectConfig``, and the identity that decides resuming.

Two collections with the same identity (``CollectConfig.identity``) write the same dataset,
so a rerun into the same directory resumes; its fingerprint (``config_hash``) is stored in the
manifest and in every run file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import envs
from configflags import UserError, option
from dataset import COMPRESSIONS, FORMAT_VERSION
from dataset.previews import VIDEO_FORMATS
from envs.options import EnvOptions, recorded_env_kwargs
from expert.experts import ExpertConfig

KEEP_POLICIES = ("goal", "all")
BACKENDS = ("local", "ray")


class CollectError(UserError):
    """A collection that cannot start or go on (bad --out, another config there, ...)."""


# kept runs of the default dataset (1 validation, 1 test, 78 training runs, ~27,700 frames):
# with 10 runs the default policy reached the goal in 36-70% of held-out worlds, with 40
# (and bc.train's --mirror) in 91-95%, with 80 in 96% on each of three seeds (docs/results.md)
DEFAULT_RUNS = 80


@dataclass(frozen=True)
class CollectConfig:
    """What to record and where."""

    out: Path = option(Path("data/default"), help="dataset directory (created if missing)")
    runs: int | None = option(
        None,
        help=f"kept runs, validation and test included (unset: {DEFAULT_RUNS}, or as many as "
        "--max-frames needs)",
    )
    seed: int = option(0, help="base seed: run i flies world envs.seeds.collect_seed(seed, i)")
    workers: int = option(1, help="parallel recorders, one process and PyBullet client each")
    backend: str = option(
        "local",
        choices=BACKENDS,
        help="where recorders run: local processes, or Ray actors on a Ray cluster (needs the"
        " 'ray' extra; same content for the same seed)",
    )
    address: str = option(
        "",
        help="Ray cluster for --backend ray: auto, HOST:PORT or ray://HOST:PORT (default:"
        " start a local Ray)",
    )
    val_runs: int = option(1, help="kept runs for validation (the first kept runs)")
    test_runs: int = option(1, help="kept runs for testing (the kept runs after validation)")
    min_steps: int = option(1, help="drop runs with fewer frames")
    max_steps: int = option(envs.MAX_EPISODE_STEPS, help="drop runs with more frames")
    max_frames: int | None = option(
        None, help="training-frame budget: stop when reached, cutting the last run to fit"
    )
    keep: str = option(
        "goal", choices=KEEP_POLICIES, help="goal: keep runs that reached the goal; all: any"
    )
    compression: str = option(
        "gzip", choices=COMPRESSIONS, help="frame compression: gzip level 1 (any HDF5) or lzf"
    )
    video: bool = option(False, help="write a preview video per kept run to OUT/videos/")
    video_format: str = option("mp4", choices=VIDEO_FORMATS, help="preview format")
    overwrite: bool = option(False, help="replace a dataset with another config in --out")
    quiet: bool = option(False, help="print nothing but errors")
    env: EnvOptions = option(default_factory=EnvOptions, help="environment")
    expert: ExpertConfig = option(default_factory=ExpertConfig, help="expert")

    def __post_init__(self) -> None:
        if self.runs is not None and self.runs < 1:
            raise ValueError(f"--runs must be >= 1, got {self.runs}")
        if self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if self.backend not in BACKENDS:
            raise ValueError(
                f"--backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}"
            )
        if self.address and self.backend != "ray":
            raise ValueError("--address is the Ray cluster of --backend ray; add --backend ray")
        if self.val_runs < 0 or self.test_runs < 0:
            raise ValueError("--val-runs and --test-runs must be >= 0")
        if self.runs is not None and self.runs <= self.val_runs + self.test_runs:
            raise ValueError(
                f"--runs ({self.runs}) must exceed --val-runs + --test-runs "
                f"({self.val_runs + self.test_runs}) to leave training runs"
            )
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(
                f"need 1 <= --min-steps <= --max-steps, got {self.min_steps} and {self.max_steps}"
            )
        if self.max_steps > envs.MAX_EPISODE_STEPS:
            raise ValueError(
                f"--max-steps must be <= {envs.MAX_EPISODE_STEPS} (the env's time limit), "
                f"got {self.max_steps}"
            )
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"--max-frames must be >= 1, got {self.max_frames}")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0, got {self.seed}")

    @property
    def target_runs(self) -> int | None:
        """Kept runs to record; None: as many as the frame budget needs."""
        if self.runs is not None:
            return self.runs
        return DEFAULT_RUNS if self.max_frames is None else None

    @property
    def env_id(self) -> str:
        """The registered env id, from the expert's action type."""
        return envs.ENV_IDS[self.expert.action_type]

    def env_kwargs(self) -> dict[str, Any]:
        """Every keyword argument of the env but render_mode, resolved, JSON-ready."""
        return recorded_env_kwargs(self.env, self.expert.action_type)

    def identity(self) -> dict[str, Any]:
        """What fixes the dataset's content: a rerun with the same identity resumes."""
        return {
            "format_version": FORMAT_VERSION,
            "env_id": self.env_id,
            "env_kwargs": self.env_kwargs(),
            "expert": self.expert.to_dict(),
            "seed": self.seed,
            "collect": {
                "runs": self.target_runs,
                "val_runs": self.val_runs,
                "test_runs": self.test_runs,
                "min_steps": self.min_steps,
                "max_steps": self.max_steps,
                "max_frames": self.max_frames,
                "keep": self.keep,
                "compression": self.compression,
            },
        }


def config_hash(identity: dict[str, Any]) -> str:
    """A short fingerprint of a dataset's identity, stored in the manifest and every run."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first key path where two JSON-like values differ, with both values."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            found = first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if old != new:
        return f"{path or 'value'}: {json.dumps(old)} -> {json.dumps(new)}"
    return None
