"""The dataset a DAgger run grows: a copy of the BC dataset plus the runs DAgger records.

The copy (``OUT/data``) hard-links the source's run files, so nothing is duplicated on disk
and the source dataset is never changed. DAgger's runs are ordinary runs of the same format,
recorded with the dataset's own seed and config hash at run indices far above the source's
(iteration ``i``, run ``j`` is index ``i * RUN_INDEX_STRIDE + j``), so ``dataset.verify``
checks them like any other run and their worlds never repeat the source's. Each new run goes
to the training split and its manifest entry says which iteration and beta recorded it; the
``source`` array of the run says who acted at each step.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path
from typing import Any

from artifacts.atomic import commit_directory, write_json_atomic
from dataset import (
    MANIFEST,
    RUNS_DIR,
    DatasetError,
    read_manifest,
    temp_files,
)

RUN_INDEX_STRIDE = 1_000_000


def dagger_run_index(iteration: int, run: int) -> int:
    """Run index of DAgger's run ``run`` of iteration ``iteration`` (>= 1)."""
    return iteration * RUN_INDEX_STRIDE + run


def copy_dataset(source: Path, target: Path) -> dict[str, Any]:
    """Make ``target`` a copy of dataset ``source`` (run files hard-linked) unless it exists.

    Built in a temporary folder and renamed, so a kill leaves either no copy or a whole one.
    Returns the target's manifest.
    """
    if (target / MANIFEST).is_file():
        return read_manifest(target)
    manifest = read_manifest(source)
    if manifest.get("complete") is False:
        raise DatasetError(f"{source}: collection incomplete; finish it with expert.collect first")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / RUNS_DIR).mkdir(parents=True)
    for entry in manifest["runs"]:
        src, dst = source / entry["file"], staging / entry["file"]
        try:
            os.link(src, dst)
        except OSError:  # another file system, or links not allowed: copy instead
            shutil.copy2(src, dst)
    manifest = copy.deepcopy(manifest)
    manifest["dagger"] = {"source": str(source), "iterations": {}}
    write_json_atomic(staging / MANIFEST, manifest)
    commit_directory(staging, target)
    return manifest


def remove_temp_files(directory: Path) -> None:
    """Delete what a killed write left behind (the run in flight is recorded again)."""
    for path in temp_files(directory):
        path.unlink(missing_ok=True)


def add_run(
    directory: Path, manifest: dict[str, Any], entry: dict[str, Any], iteration: int, beta: float
) -> dict[str, Any]:
    """Add a recorded run's entry to the training split and rewrite the manifest atomically."""
    entry = {**entry, "split": "train", "dagger_iteration": iteration, "beta": beta}
    manifest["runs"].append(entry)
    manifest["splits"]["train"].append(entry["name"])
    frames = manifest.setdefault("frames", {})
    frames["train"] = frames.get("train", 0) + entry["frames"]
    frames["total"] = sum(run["frames"] for run in manifest["runs"])
    record = manifest["dagger"]["iterations"].setdefault(str(iteration), {"beta": beta, "runs": []})
    record["runs"].append(entry["name"])
    write_json_atomic(directory / MANIFEST, manifest)
    return manifest


def recorded_names(manifest: dict[str, Any]) -> set[str]:
    """Names of the runs the manifest lists."""
    return {entry["name"] for entry in manifest["runs"]}


def expert_labelled_frames(manifest: dict[str, Any], up_to_iteration: int) -> int:
    """Training frames the expert labelled: the source's plus DAgger's up to an iteration."""
    return sum(
        entry["frames"]
        for entry in manifest["runs"]
        if entry["split"] == "train" and entry.get("dagger_iteration", 0) <= up_to_iteration
    )
