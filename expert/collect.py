"""Record expert demonstrations: ``python -m expert.collect --runs 10``.

Writes a dataset in the format of docs/dataset.md (default ``data/default``, which
``python -m bc.train`` reads with no arguments). Run ``i`` always flies world
``envs.seeds.collect_seed(seed, i)`` with the expert's noise drawn from a generator seeded by
that world seed, so the dataset's content does not depend on ``--workers`` or on
interruptions.

Which runs are kept: a run is an attempt at one world. It is dropped when its outcome is not
kept (``--keep goal``, the default, keeps only runs that reached the goal, as the original
study did) or its length is outside ``[--min-steps, --max-steps]``; its index is then used up
and the next index tried. Kept runs, in index order, fill the splits: the first ``--val-runs``
are validation, the next ``--test-runs`` test, the rest training, until ``--runs`` runs are
kept or the training frames reach ``--max-frames`` (the last training run is cut to meet the
budget exactly). Collections with the same seed therefore share their validation and test
runs, and a smaller budget's training runs are a prefix of a larger one's.

Resuming: the manifest is rewritten (atomically) after every finished run, and run files are
published atomically; rerunning the same command keeps finished runs and records the missing
ones. A different config into the same ``--out`` is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import fcntl
import hashlib
import importlib.metadata
import inspect
import json
import math
import multiprocessing
import os
import platform
import queue
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np

import envs
from configflags import fail, option, run_main
from envs.corridor_env import OBS_MODES, CorridorEnv
from envs.seeds import collect_seed
from expert.dataset_io import (
    COMPRESSIONS,
    FORMAT_VERSION,
    MANIFEST,
    OUTCOMES,
    RUNS_DIR,
    SPLITS,
    VIDEOS_DIR,
    DatasetError,
    RunWriter,
    load_run,
    read_manifest,
    read_run_attrs,
    run_name,
    run_path,
    temp_files,
    temp_path,
    write_json_atomic,
)
from expert.experts import ExpertConfig, expert_rng, make_expert

KEEP_POLICIES = ("goal", "all")
VIDEO_FORMATS = ("mp4", "gif")
LOCK_FILE = ".lock"
PREVIEW_SIZE = 256
# give up when more than half of at least this many attempts were dropped
DROP_GUARD_ATTEMPTS = 20
PROGRESS_EVERY = 25  # steps between progress reports from a recorder


class CollectError(Exception):
    """A collection that cannot start or go on (bad --out, another config there, ...)."""


class Stopped(Exception):
    """A recorder was asked to stop in the middle of a run."""


class RecordingError(RuntimeError):
    """A recorder failed (a bug or a dead process); ``details`` holds its traceback."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True)
class EnvOptions:
    """Env keyword arguments passed through to ``envs.CorridorEnv`` (see docs/env.md)."""

    image_size: int = option(64, help="camera image side in pixels (>= 32)")
    obs_mode: str = option("rgb", choices=OBS_MODES, help="camera channels: rgb, depth or rgbd")
    n_bins: int = option(3, help="discrete yaw bins (odd, >= 3)")
    fov: float = option(90.0, help="camera field of view in degrees")
    depth_range: float = option(10.0, help="metres mapped to depth 255")
    speed: float = option(0.8, help="forward speed in m/s")
    turn_speed: float | None = option(None, help="forward speed at full yaw in m/s (unset: speed)")
    max_yaw_rate: float = option(0.9, help="yaw rate of command 1 in rad/s")
    control_hz: float = option(10.0, help="control steps (frames) per second")
    physics_substeps: int = option(4, help="collision checks per control step")
    camera_height: float = option(1.0, help="flight and camera height in metres")
    agent_radius: float = option(0.2, help="radius of the agent's collision sphere in metres")
    n_segments: int = option(4, help="straight corridor segments per world")
    segment_length: tuple[float, float] = option((5.0, 10.0), help="min and max segment length (m)")
    bend_angles: tuple[float, ...] = option(
        (30.0, 45.0, 60.0, 90.0), help="bend angles to draw from, degrees"
    )
    corridor_width: float = option(2.8, help="corridor width in metres")
    wall_height: float = option(2.5, help="wall height in metres")
    wall_thickness: float = option(0.2, help="wall thickness in metres")
    obstacle_density: float = option(0.0, help="obstacles per candidate slot, 0..1 (1 densest)")
    obstacle_min_gap: float = option(1.2, help="free gap an obstacle leaves on one side (m)")
    clutter_density: float = option(0.5, help="wall-side clutter per slot, 0..1")
    randomize: bool = option(True, help="random tints and light per world")
    randomize_textures: bool = option(
        False,
        help="random wall, floor and ceiling textures per world too (needs far more than 10 "
        "runs to learn; docs/env.md)",
    )
    start_offset: float = option(1.0, help="metres into the corridor the agent starts")
    start_lateral_jitter: float = option(0.3, help="max start offset from the centreline (m)")
    start_yaw_jitter: float = option(10.0, help="max start heading error in degrees")
    collision_penalty: float = option(10.0, help="reward subtracted on a collision")

    def __post_init__(self) -> None:
        # the env is the one authority on its arguments: build one (cheap, nothing is loaded
        # before reset) and report its complaint under the flag's name
        try:
            CorridorEnv(**dataclasses.asdict(self)).close()
        except ValueError as error:
            message = str(error)
            name = message.split(" ", 1)[0]
            if name in {f.name for f in dataclasses.fields(self)}:
                message = "--" + name.replace("_", "-") + message[len(name) :]
            raise ValueError(message) from None


@dataclass(frozen=True)
class CollectConfig:
    """What to record and where."""

    out: Path = option(Path("data/default"), help="dataset directory (created if missing)")
    runs: int | None = option(
        None,
        help="kept runs, validation and test included (unset: 10, or as many as "
        "--max-frames needs)",
    )
    seed: int = option(0, help="base seed: run i flies world envs.seeds.collect_seed(seed, i)")
    workers: int = option(1, help="parallel recorders, one process and PyBullet client each")
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
        return 10 if self.max_frames is None else None

    @property
    def env_id(self) -> str:
        """The registered env id, from the expert's action type."""
        return envs.ENV_IDS[self.expert.action_type]

    def env_kwargs(self) -> dict[str, Any]:
        """Every keyword argument of the env but render_mode, resolved, JSON-ready."""
        return resolve_env_kwargs(self.env, self.expert.action_type)

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


def resolve_env_kwargs(options: EnvOptions, action_type: str) -> dict[str, Any]:
    """The env's full keyword arguments: its defaults, overridden by ``options``."""
    parameters = inspect.signature(CorridorEnv.__init__).parameters
    kwargs = {
        name: parameter.default
        for name, parameter in parameters.items()
        if name not in ("self", "render_mode")
    }
    kwargs.update(dataclasses.asdict(options))
    kwargs["action_type"] = action_type
    return json.loads(json.dumps(kwargs))  # tuples -> lists, like the manifest will hold


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


@dataclass(frozen=True)
class RunResult:
    """One attempt, as the planner sees it."""

    run_index: int
    seed: int
    kept: bool
    outcome: str
    frames: int
    reason: str = ""
    progress_frac: float = 0.0


@dataclass(frozen=True)
class RecordSpec:
    """Everything a recorder process needs (picklable)."""

    out: str
    env_id: str
    env_kwargs: dict[str, Any]
    expert: dict[str, Any]
    seed: int
    min_steps: int
    max_steps: int
    keep: str
    compression: str
    config_hash: str
    video_format: str

    @classmethod
    def from_config(cls, config: CollectConfig, fingerprint: str) -> RecordSpec:
        return cls(
            str(config.out),
            config.env_id,
            config.env_kwargs(),
            config.expert.to_dict(),
            config.seed,
            config.min_steps,
            config.max_steps,
            config.keep,
            config.compression,
            fingerprint,
            config.video_format,
        )


class Recorder:
    """Flies the expert in one env and writes kept runs; one per process."""

    def __init__(self, spec: RecordSpec) -> None:
        self.spec = spec
        self.env = gym.make(spec.env_id, **spec.env_kwargs)
        self.expert = make_expert(ExpertConfig.from_dict(spec.expert), self.env)

    def close(self) -> None:
        self.env.close()

    def record(
        self,
        run_index: int,
        report: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RunResult:
        """Fly world ``run_index``; write it if kept.

        ``report(frames)`` is called as it goes; when ``should_stop()`` turns true the run is
        abandoned (``Stopped``), its temporary file removed.
        """
        spec = self.spec
        seed = collect_seed(spec.seed, run_index)
        env, unwrapped = self.env, self.env.unwrapped
        observation, info = env.reset(seed=seed)
        self.expert.reset(env)
        rng = expert_rng(seed)
        shape = observation.shape
        with RunWriter(run_path(Path(spec.out), run_index), shape, spec.compression) as writer:
            while True:
                decision = self.expert.decide(unwrapped, rng, observation)
                executed_bin = envs.yaw_command_to_bin(decision.command, unwrapped.n_bins)
                step = {
                    "frames": observation,
                    "action": executed_bin,
                    "action_continuous": decision.command,
                    "expert_action": decision.label.action,
                    "expert_continuous": decision.label.command,
                    "pose": unwrapped.pose,
                    "progress": info["progress_m"],
                    "source": decision.source,
                    "lateral_offset": info["lateral_offset"],
                    "heading_error": info["heading_error"],
                }
                observation, reward, terminated, truncated, info = env.step(decision.action)
                writer.append(reward=reward, **step)
                if writer.n_steps % PROGRESS_EVERY == 0:
                    if report is not None:
                        report(PROGRESS_EVERY)
                    if should_stop is not None and should_stop():
                        raise Stopped
                if terminated or truncated or writer.n_steps > spec.max_steps:
                    break
            if report is not None:
                report(writer.n_steps % PROGRESS_EVERY)
            # stopped by the env's time limit, or by --max-steps (dropped whatever came next)
            outcome = info["outcome"] if info["outcome"] != "running" else "timeout"
            frames = writer.n_steps
            reason = ""
            if frames > spec.max_steps:
                reason = "longer than --max-steps"
            elif spec.keep == "goal" and outcome != "goal":
                reason = outcome
            elif frames < spec.min_steps:
                reason = "shorter than --min-steps"
            if reason:
                return RunResult(run_index, seed, False, outcome, frames, reason,
                                 info["progress_frac"])  # fmt: skip
            writer.commit(
                {
                    "format_version": FORMAT_VERSION,
                    "seed": seed,
                    "run_index": run_index,
                    "outcome": outcome,
                    "n_bins": unwrapped.n_bins,
                    "env_id": spec.env_id,
                    "expert_kind": spec.expert["kind"],
                    "config_hash": spec.config_hash,
                    "episode_steps": frames,
                    "episode_outcome": outcome,
                    "cut_by_budget": False,
                    "progress_m": info["progress_m"],
                    "progress_frac": info["progress_frac"],
                    "corridor_length_m": info["corridor_length_m"],
                }
            )
        return RunResult(run_index, seed, True, outcome, frames, "", info["progress_frac"])


def write_preview(run_file: Path, video_file: Path, video_format: str, fps: float) -> None:
    """A preview video of one run file: its frames enlarged, with a steering bar underneath.

    The bar shows the executed yaw command (red) and the expert's label (green), left is left.
    """
    data = load_run(run_file)
    frames = data["frames"]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    frames = frames[..., :3]
    height, width = frames.shape[1:3]
    scale = max(1, math.ceil(PREVIEW_SIZE / min(height, width)))
    frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    bar = np.full((len(frames), 12, frames.shape[2], 3), 30, dtype=np.uint8)
    for t in range(len(frames)):
        for value, colour, rows in (
            (data["expert_continuous"][t], (40, 220, 60), slice(0, 6)),
            (data["action_continuous"][t], (230, 50, 40), slice(6, 12)),
        ):
            centre = int(round((1.0 - float(value)) / 2.0 * (bar.shape[2] - 1)))
            bar[t, rows, max(0, centre - 3) : centre + 4] = colour
    frames = np.concatenate([frames, bar], axis=1)
    # H.264 wants even sides
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    video_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = temp_path(video_file)
    try:
        if video_format == "gif":
            imageio.mimsave(temporary, list(frames), format="GIF", duration=1000 / fps, loop=0)
        else:
            writer = imageio.get_writer(
                temporary, format="FFMPEG", mode="I", fps=fps, macro_block_size=1,
                output_params=["-f", "mp4"],
            )  # fmt: skip
            with writer:
                for frame in frames:
                    writer.append_data(frame)
        os.replace(temporary, video_file)
    finally:
        temporary.unlink(missing_ok=True)


def preview_path(out: Path, run_index: int, video_format: str) -> Path:
    """Where the preview of run ``run_index`` goes."""
    return Path(out) / VIDEOS_DIR / f"{run_name(run_index)}.{video_format}"


@dataclass
class Plan:
    """The final dataset as far as the resolved attempts decide it."""

    entries: list[tuple[RunResult, str, int]]  # (result, split, frames kept)
    next_index: int  # first attempt not resolved yet
    done: bool
    train_frames: int
    attempts: int


def make_plan(
    results: dict[int, RunResult],
    target_runs: int | None,
    val_runs: int,
    test_runs: int,
    max_frames: int | None,
) -> Plan:
    """Walk the attempts in index order while they are resolved and assign splits.

    Depends on the set of results alone, not on the order they arrived in, which is what makes
    a dataset independent of the number of workers.
    """
    entries: list[tuple[RunResult, str, int]] = []
    train_frames = dropped = 0
    index = 0
    while index in results:
        result = results[index]
        index += 1
        if not result.kept:
            dropped += 1
            if index >= DROP_GUARD_ATTEMPTS and dropped * 2 > index:
                raise CollectError(
                    f"{dropped} of the first {index} runs were dropped (last: "
                    f"{result.reason}); widen --min-steps/--max-steps, use --keep all or "
                    "lower the expert noise"
                )
            continue
        if len(entries) < val_runs:
            split = "val"
        elif len(entries) < val_runs + test_runs:
            split = "test"
        else:
            split = "train"
        frames = result.frames
        if split == "train" and max_frames is not None:
            frames = min(frames, max_frames - train_frames)
            train_frames += frames
        elif split == "train":
            train_frames += frames
        entries.append((result, split, frames))
        if (target_runs is not None and len(entries) >= target_runs) or (
            max_frames is not None and train_frames >= max_frames
        ):
            return Plan(entries, index, True, train_frames, index)
    return Plan(entries, index, False, train_frames, index)


@dataclass(frozen=True)
class CollectResult:
    """What ``main`` returns."""

    out: Path
    manifest: dict[str, Any]
    frames: int
    kept: int
    dropped: int
    recorded_frames: int
    elapsed_s: float

    @property
    def frames_per_s(self) -> float:
        """Frames recorded by this call per second of wall time (adopted runs excluded)."""
        return self.recorded_frames / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _versions() -> dict[str, str]:
    def version(package: str) -> str:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    project = version("corridor-bc")
    if project == "not installed":
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        if pyproject.is_file():
            import tomllib

            project = tomllib.loads(pyproject.read_text())["project"]["version"]
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pybullet": version("pybullet"),
        "gymnasium": gym.__version__,
        "h5py": version("h5py"),
        "torch": version("torch"),
        "corridor-bc": project,
    }


class Collection:
    """The state of one dataset directory while it is being collected."""

    def __init__(self, config: CollectConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        self.identity = config.identity()
        self.fingerprint = config_hash(self.identity)
        self.results: dict[int, RunResult] = {}
        self.versions = _versions()
        self._lock: Any = None

    # -------------------------------------------------------------- directory and resume
    def open(self) -> None:
        """Check --out, take its lock, and load what an earlier call left there."""
        out = self.out
        if out.exists() and not out.is_dir():
            raise CollectError(f"--out {out} is a file, not a directory")
        manifest_file = out / MANIFEST
        if out.is_dir() and not manifest_file.exists() and not _is_empty_dataset_dir(out):
            raise CollectError(
                f"--out {out} exists, is not empty and holds no {MANIFEST}; "
                "choose a new or empty directory"
            )
        try:
            (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)
            self._lock = open(out / LOCK_FILE, "w")  # noqa: SIM115 - held until close()
        except OSError as error:
            raise CollectError(f"cannot write to --out {out}: {error.strerror}") from None
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectError(f"another collection is writing to {out}; wait for it") from None
        for leftover in temp_files(out):
            leftover.unlink(missing_ok=True)
        if manifest_file.exists():
            self._resume()
        self._adopt_orphans()
        self.write_manifest(complete=False)

    def close(self) -> None:
        """Release the directory's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _resume(self) -> None:
        try:
            manifest = read_manifest(self.out)
        except DatasetError as error:
            if not self.config.overwrite:
                raise CollectError(f"{error}; use --overwrite to replace it") from None
            self._clear()
            return
        if manifest.get("config_hash") != self.fingerprint:
            if not self.config.overwrite:
                old = {k: manifest.get(k) for k in self.identity}
                difference = first_difference(old, self.identity) or "config_hash"
                raise CollectError(
                    f"{self.out} holds a dataset with another config ({difference}); "
                    "use --overwrite to replace it or choose another --out"
                )
            self._clear()
            return
        for entry in manifest["runs"]:
            result = self._result_from_file(run_path(self.out, entry["run_index"]))
            if result is not None:
                self.results[result.run_index] = result
        for entry in manifest.get("dropped", []):
            self.results[entry["run_index"]] = RunResult(
                entry["run_index"], entry["seed"], False, entry["outcome"], entry["frames"],
                entry["reason"], entry.get("progress_frac", 0.0),
            )  # fmt: skip

    def _clear(self) -> None:
        """Remove this package's files from --out (for --overwrite); nothing else."""
        (self.out / MANIFEST).unlink(missing_ok=True)
        for path in (self.out / RUNS_DIR).glob("run_*.h5"):
            path.unlink()
        videos = self.out / VIDEOS_DIR
        if videos.is_dir():
            for path in videos.glob("run_*.*"):
                path.unlink()
        self.results.clear()

    def _result_from_file(self, path: Path) -> RunResult | None:
        """A finished run from its file, or None (and the file removed) if it is not one."""
        try:
            attrs = read_run_attrs(path)
            if attrs.get("config_hash") == self.fingerprint:
                return RunResult(
                    int(attrs["run_index"]), int(attrs["seed"]), True,
                    str(attrs["episode_outcome"]), int(attrs["episode_steps"]), "",
                    float(attrs["progress_frac"]),
                )  # fmt: skip
        except (DatasetError, KeyError, ValueError):
            pass
        path.unlink(missing_ok=True)
        return None

    def _adopt_orphans(self) -> None:
        # a run published just before a kill, before the manifest listed it
        for path in sorted((self.out / RUNS_DIR).glob("run_*.h5")):
            try:
                index = int(path.stem.split("_")[1])
            except (IndexError, ValueError):
                continue
            if index not in self.results:
                result = self._result_from_file(path)
                if result is not None:
                    self.results[index] = result

    # -------------------------------------------------------------- planning
    def plan(self) -> Plan:
        config = self.config
        return make_plan(
            self.results, config.target_runs, config.val_runs, config.test_runs,
            config.max_frames,
        )  # fmt: skip

    def enough_in_flight(self, plan: Plan, in_flight: int) -> bool:
        """Whether the runs in flight may already finish the dataset (if all are kept)."""
        config = self.config
        beyond = [r for i, r in self.results.items() if i >= plan.next_index and r.kept]
        kept = [r.frames for r in self.results.values() if r.kept]
        mean_frames = float(np.mean(kept)) if kept else float(config.max_steps)
        if config.target_runs is not None:
            if len(plan.entries) + len(beyond) + in_flight >= config.target_runs:
                return True
        if config.max_frames is not None:
            missing_val_test = max(0, config.val_runs + config.test_runs - len(plan.entries))
            needed = config.max_frames - plan.train_frames + missing_val_test * mean_frames
            if sum(r.frames for r in beyond) + in_flight * mean_frames >= needed:
                return True
        return False

    def next_indices(self, plan: Plan, in_flight: set[int]) -> Iterator[int]:
        index = plan.next_index
        while True:
            if index not in self.results and index not in in_flight:
                yield index
            index += 1

    # -------------------------------------------------------------- manifest
    def manifest(self, plan: Plan, complete: bool) -> dict[str, Any]:
        splits_of = {r.run_index: (split, frames) for r, split, frames in plan.entries}
        runs = []
        # while incomplete, kept runs beyond the resolved prefix are listed without a split
        kept = sorted(
            (r for r in self.results.values() if r.kept),
            key=lambda r: r.run_index,
        )
        if complete:
            kept = [r for r in kept if r.run_index in splits_of]
        for result in kept:
            split, frames = splits_of.get(result.run_index, (None, result.frames))
            runs.append(
                {
                    "name": run_name(result.run_index),
                    "file": f"{RUNS_DIR}/{run_name(result.run_index)}.h5",
                    "seed": result.seed,
                    "split": split,
                    "frames": frames,
                    "outcome": result.outcome if frames == result.frames else "timeout",
                    "run_index": result.run_index,
                    "episode_steps": result.frames,
                    "episode_outcome": result.outcome,
                    "progress_frac": round(result.progress_frac, 6),
                }
            )
        resolved = [self.results[i] for i in range(plan.attempts)]
        dropped_results = sorted(
            (r for r in self.results.values() if not r.kept),
            key=lambda r: r.run_index,
        )
        if complete:
            dropped_results = [r for r in dropped_results if r.run_index < plan.attempts]
        outcomes = {o: sum(r.outcome == o for r in resolved) for o in OUTCOMES}
        frames = {s: sum(f for _, split, f in plan.entries if split == s) for s in SPLITS}
        return {
            "format_version": FORMAT_VERSION,
            "env_id": self.identity["env_id"],
            "env_kwargs": self.identity["env_kwargs"],
            "expert": self.identity["expert"],
            "seed": self.config.seed,
            "collect": self.identity["collect"],
            "config_hash": self.fingerprint,
            "complete": complete,
            "runs": runs,
            "splits": {
                s: [run_name(r.run_index) for r, split, _ in plan.entries if split == s]
                for s in SPLITS
            },  # fmt: skip
            "frames": {**frames, "total": sum(frames.values())},
            "dropped": [
                {
                    "run_index": r.run_index,
                    "seed": r.seed,
                    "frames": r.frames,
                    "outcome": r.outcome,
                    "reason": r.reason,
                    "progress_frac": round(r.progress_frac, 6),
                }
                for r in dropped_results
            ],  # fmt: skip
            "expert_success": {
                "attempts": len(resolved),
                **outcomes,
                "success_rate": outcomes["goal"] / len(resolved) if resolved else None,
            },
            "versions": self.versions,
        }

    def write_manifest(self, complete: bool, plan: Plan | None = None) -> dict[str, Any]:
        manifest = self.manifest(plan or self.plan(), complete)
        write_json_atomic(self.out / MANIFEST, manifest)
        return manifest

    # -------------------------------------------------------------- finishing
    def finalize(self, plan: Plan, previews: Callable[[list[int]], None] | None) -> dict:
        """Cut the budget's last run, delete extras, make previews, mark complete."""
        final = {r.run_index for r, _, _ in plan.entries}
        for result, _, frames in plan.entries:
            if frames < result.frames:
                self._cut(result.run_index, frames)
        for path in (self.out / RUNS_DIR).glob("run_*.h5"):
            if int(path.stem.split("_")[1]) not in final:
                path.unlink()
        videos = self.out / VIDEOS_DIR
        if videos.is_dir():
            for path in videos.glob("run_*.*"):
                if int(path.stem.split("_")[1]) not in final:
                    path.unlink()
        if previews is not None:
            missing = [
                i for i in sorted(final)
                if not preview_path(self.out, i, self.config.video_format).exists()
            ]  # fmt: skip
            previews(missing)
        return self.write_manifest(complete=True, plan=plan)

    def _cut(self, run_index: int, frames: int) -> None:
        path = run_path(self.out, run_index)
        attrs = read_run_attrs(path)
        if attrs["n_steps"] == frames:
            return  # cut before an interruption
        data = load_run(path)
        attrs = data.pop("attrs")
        with RunWriter(path, data["frames"].shape[1:], self.config.compression) as writer:
            for t in range(frames):
                writer.append(**{name: values[t] for name, values in data.items()})
            attrs.update(outcome="timeout", cut_by_budget=True)
            attrs.pop("n_steps")
            writer.commit(attrs)
        preview = preview_path(self.out, run_index, self.config.video_format)
        preview.unlink(missing_ok=True)


def _is_empty_dataset_dir(path: Path) -> bool:
    """Empty, or only what an interrupted start leaves: runs/, the lock, temp files."""
    for child in path.iterdir():
        if child.name == RUNS_DIR and child.is_dir():
            if any(not p.name.startswith(".") for p in child.iterdir()):
                return False
        elif child.name != LOCK_FILE and not child.name.startswith("."):
            return False
    return True


# ------------------------------------------------------------------ recorder processes
_RECORDER: Recorder | None = None


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when the collecting process dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)


def _worker_main(spec: RecordSpec, tasks: Any, events: Any, stop: Any, parent: int) -> None:
    _die_with_parent(parent)
    # Ctrl-C reaches the whole process group: the collecting process decides what stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    recorder = Recorder(spec)
    try:
        while True:
            task = tasks.get()
            if task is None:
                return
            kind, index = task
            try:
                if kind == "record":
                    result = recorder.record(
                        index, lambda n, i=index: events.put(("progress", i, n)), stop.is_set
                    )
                    events.put(("done", index, result))
                else:
                    fps = spec.env_kwargs["control_hz"]
                    write_preview(
                        run_path(Path(spec.out), index),
                        preview_path(Path(spec.out), index, spec.video_format),
                        spec.video_format,
                        fps,
                    )
                    events.put(("preview", index, None))
            except Stopped:
                return
            except Exception as error:  # noqa: BLE001 - reported to and raised by the parent
                events.put(("error", index, (f"{type(error).__name__}: {error}",
                                             traceback.format_exc())))  # fmt: skip
                return
    finally:
        recorder.close()


class WorkerPool:
    """Recorder processes ('spawn': a fresh interpreter and PyBullet client each)."""

    def __init__(self, workers: int, spec: RecordSpec) -> None:
        context = multiprocessing.get_context("spawn")
        self.tasks = context.Queue()
        self.events = context.Queue()
        self.stop = context.Event()
        self.processes = [
            context.Process(
                target=_worker_main,
                args=(spec, self.tasks, self.events, self.stop, os.getpid()),
                daemon=True,
                name=f"expert-recorder-{i}",
            )
            for i in range(workers)
        ]
        for process in self.processes:
            process.start()

    def submit(self, kind: str, index: int) -> None:
        self.tasks.put((kind, index))

    def next_event(self, timeout: float) -> tuple | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            dead = [p for p in self.processes if not p.is_alive()]
            if dead:
                raise RecordingError(
                    f"recorder process {dead[0].name} died (exit code {dead[0].exitcode})"
                ) from None
            return None

    def close(self) -> None:
        """Stop the workers: a run in flight is abandoned (its temporary file removed).

        Workers leave on their own so that their exit handlers run (the env removes its
        texture directory then); one that does not within seconds is killed.
        """
        self.stop.set()
        for _ in self.processes:
            self.tasks.put(None)
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        self.tasks.close()
        self.events.close()


# ------------------------------------------------------------------ the collection loop
class _Display:
    """Rich progress: kept runs, frames, frames/s, expert success; silent when quiet."""

    def __init__(self, quiet: bool, total: int | None, label: str) -> None:
        self.progress = None
        self.frames = 0
        self.start = time.perf_counter()
        if quiet:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} " + label),
            TextColumn("{task.fields[frames]:,} frames"),
            TextColumn("{task.fields[rate]:,.0f} frames/s"),
            TextColumn("expert success {task.fields[success]}"),
            TextColumn("dropped {task.fields[dropped]}"),
            TimeElapsedColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(
            "collect", total=total, frames=0, rate=0.0, success="-", dropped=0
        )
        self.progress.start()

    def add_frames(self, count: int) -> None:
        self.frames += count
        self.refresh()

    def refresh(self, completed: int | None = None, results: dict | None = None) -> None:
        if self.progress is None:
            return
        fields: dict[str, Any] = {
            "frames": self.frames,
            "rate": self.frames / max(time.perf_counter() - self.start, 1e-9),
        }
        if results is not None:
            finished = list(results.values())
            goals = sum(r.outcome == "goal" for r in finished)
            fields["success"] = f"{goals / len(finished):.0%}" if finished else "-"
            fields["dropped"] = sum(not r.kept for r in finished)
        if completed is not None:
            fields["completed"] = completed
        self.progress.update(self.task, **fields)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _progress_total(config: CollectConfig) -> tuple[int | None, str]:
    if config.target_runs is not None:
        return config.target_runs, "runs"
    return config.max_frames, "training frames"


def _completed(plan: Plan, config: CollectConfig) -> int:
    return len(plan.entries) if config.target_runs is not None else plan.train_frames


def main(config: CollectConfig) -> CollectResult:
    """Record (or resume) the dataset described by ``config``; returns what it holds."""
    start = time.perf_counter()
    collection = Collection(config)
    try:
        collection.open()
        spec = RecordSpec.from_config(config, collection.fingerprint)
        plan, recorded_frames = _record(collection, spec)

        def previews(indices: list[int]) -> None:
            _make_previews(config, spec, indices)

        manifest = collection.finalize(plan, previews if config.video else None)
    finally:
        collection.close()
    result = CollectResult(
        Path(config.out),
        manifest,
        manifest["frames"]["total"],
        len(manifest["runs"]),
        len(manifest["dropped"]),
        recorded_frames,
        time.perf_counter() - start,
    )
    if not config.quiet:
        print_summary(result)
    return result


def _record(collection: Collection, spec: RecordSpec) -> tuple[Plan, int]:
    """Record attempts until the plan is done; returns it and the frames recorded."""
    config = collection.config
    total, label = _progress_total(config)
    display = _Display(config.quiet, total, label)
    recorded_frames = 0
    pool: WorkerPool | None = None
    recorder: Recorder | None = None
    try:
        # one worker records in this process: no start-up cost, same content
        if config.workers > 1:
            pool = WorkerPool(config.workers, spec)
        else:
            recorder = Recorder(spec)
        in_flight: set[int] = set()
        while True:
            plan = collection.plan()
            display.refresh(_completed(plan, config), collection.results)
            if plan.done:
                return plan, recorded_frames
            indices = collection.next_indices(plan, in_flight)
            while len(in_flight) < config.workers and not (
                in_flight and collection.enough_in_flight(plan, len(in_flight))
            ):
                index = next(indices)
                in_flight.add(index)
                if pool is not None:
                    pool.submit("record", index)
            if recorder is not None:
                (index,) = in_flight
                events = [("done", index, recorder.record(index, display.add_frames))]
            else:
                event = pool.next_event(timeout=0.2)
                events = [] if event is None else [event]
            for kind, index, payload in events:
                if kind == "progress":
                    display.add_frames(payload)
                elif kind == "error":
                    raise RecordingError(f"recording run {index} failed: {payload[0]}", payload[1])
                elif kind == "done":
                    in_flight.discard(index)
                    collection.results[index] = payload
                    recorded_frames += payload.frames
                    collection.write_manifest(complete=False)
    finally:
        display.stop()
        if pool is not None:
            # runs still in flight lie beyond the dataset (or we were interrupted): stop them
            pool.close()
        if recorder is not None:
            recorder.close()
        for leftover in temp_files(config.out):
            leftover.unlink(missing_ok=True)


def _make_previews(config: CollectConfig, spec: RecordSpec, indices: list[int]) -> None:
    """Previews of the given runs, in parallel when there are several workers."""
    if not indices:
        return
    fps = spec.env_kwargs["control_hz"]
    if config.workers == 1 or len(indices) == 1:
        for index in indices:
            write_preview(
                run_path(config.out, index),
                preview_path(config.out, index, config.video_format),
                config.video_format,
                fps,
            )
        return
    pool = WorkerPool(min(config.workers, len(indices)), spec)
    try:
        for index in indices:
            pool.submit("preview", index)
        pending = set(indices)
        while pending:
            event = pool.next_event(timeout=0.5)
            if event is None:
                continue
            kind, index, payload = event
            if kind == "error":
                raise RecordingError(f"preview of run {index} failed: {payload[0]}", payload[1])
            pending.discard(index)
    finally:
        pool.close()


def print_summary(result: CollectResult) -> None:
    """A table of the dataset by split, and the collection's figures."""
    from rich.console import Console
    from rich.table import Table

    manifest = result.manifest
    table = Table(title=f"{result.out}: {result.kept} runs, {result.frames:,} frames")
    for column in ("split", "runs", "frames", "goal", "collision", "timeout"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in SPLITS:
        entries = [e for e in manifest["runs"] if e["split"] == split]
        table.add_row(
            split,
            str(len(entries)),
            f"{sum(e['frames'] for e in entries):,}",
            *(str(sum(e["outcome"] == o for e in entries)) for o in OUTCOMES),
        )
    console = Console()
    console.print(table)
    success = manifest["expert_success"]
    rate = success["success_rate"]
    reasons: dict[str, int] = {}
    for entry in manifest["dropped"]:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    dropped = ", ".join(f"{n} {reason}" for reason, n in reasons.items()) or "none"
    console.print(
        f"attempts {success['attempts']}, expert success "
        f"{'-' if rate is None else f'{rate:.1%}'}, dropped: {dropped}\n"
        f"recorded {result.recorded_frames:,} frames in {result.elapsed_s:.1f} s "
        f"({result.frames_per_s:,.0f} frames/s)"
    )


def cli(argv: list[str] | None = None) -> CollectResult:
    """The command line: usage errors exit 2, failed recordings and bad files exit 1."""
    try:
        return run_main(
            main, CollectConfig, "python -m expert.collect", __doc__,
            usage_errors=(ValueError, CollectError), argv=argv,
        )  # fmt: skip
    except RecordingError as error:
        print(error.details, file=sys.stderr, end="")
        fail(str(error), code=1)
    except DatasetError as error:
        fail(str(error), code=1)
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    cli()
