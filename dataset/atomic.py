"""Crash-safe files: readers see either the old file or the complete new one, never half.

A file is written to a temporary name in the same directory, flushed to disk (fsync) and
renamed over the final name (``os.replace``). Leftover temporary files (from a process killed
mid-write) are named ``.<stem>.<pid>.tmp<suffix>`` (the suffix kept for libraries that pick a
format by it) and are removed by the next collection.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dataset.format import RUNS_DIR, VIDEOS_DIR

TEMP_MARK = ".tmp"


def temp_path(final: Path) -> Path:
    """A temporary name next to ``final``, unique to this process, with the same suffix."""
    final = Path(final)
    return final.with_name(f".{final.stem}.{os.getpid()}{TEMP_MARK}{final.suffix}")


def temp_files(directory: Path) -> list[Path]:
    """Leftover temporary files of a dataset (in the dataset and its runs/ and videos/)."""
    directory = Path(directory)
    found: list[Path] = []
    for folder in (directory, directory / RUNS_DIR, directory / VIDEOS_DIR):
        if folder.is_dir():
            found += sorted(p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file())
    return found


def _fsync_directory(directory: Path) -> None:
    # makes the rename itself durable; not every platform can open a directory
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(temporary: Path, final: Path) -> None:
    """Flush ``temporary`` to disk and rename it to ``final`` atomically."""
    _fsync_file(temporary)
    os.replace(temporary, final)
    _fsync_directory(final.parent)


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so that readers never see half a file."""
    path = Path(path)
    temporary = temp_path(path)
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=False)
            handle.write("\n")
        commit_file(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
