"""The dataset directory while a collection writes it: lock, resume, manifest, finishing.

The manifest is rewritten (atomically) after every finished attempt, so an interrupted
collection leaves whole run files and a manifest that says which attempts were resolved; the
next call with the same config picks up from there.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from artifacts.atomic import write_json_atomic
from dataset import (
    FORMAT_VERSION,
    MANIFEST,
    OUTCOMES,
    RUNS_DIR,
    SPLITS,
    VIDEOS_DIR,
    DatasetError,
    cut_run,
    read_manifest,
    read_run_attrs,
    run_name,
    run_path,
    temp_files,
)
from dataset.previews import preview_path
from expert.collect_config import CollectConfig, CollectError, config_hash, first_difference
from expert.plan import Plan, RunResult, make_plan

LOCK_FILE = ".lock"


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
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10: the tomli dependency
                import tomli as tomllib

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


class DatasetDirectory:
    """The state of one dataset directory while it is being collected."""

    def __init__(self, config: CollectConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        self.identity = config.identity()
        self.fingerprint = config_hash(self.identity)
        self.results: dict[int, RunResult] = {}
        self.versions = _versions()
        self._lock: Any = None

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
            runs.append(result.manifest_entry(split, frames))
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
        cut_run(path, frames, self.config.compression, cut_by_budget=True)
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
