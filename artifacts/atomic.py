"""Crash-safe files: readers see either the old file or the complete new one, never half.

A file is written to a temporary name in the same directory, flushed to disk (fsync) and
renamed over the final name (``os.replace``, atomic on one file system), and the directory is
flushed so that the rename itself survives a power cut. This module is the one place that
renames files into place: every package writes through it.

Temporary files are named ``.<stem>.<pid>.tmp<suffix>``: hidden, unique to the writing
process, and with the final suffix kept for libraries that pick a format by it (imageio,
matplotlib, h5py). A process killed mid-write leaves one behind; the folders that care
(a dataset's) find them by :data:`TEMP_MARK` and remove them.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMP_MARK = ".tmp"


def temp_path(final: Path) -> Path:
    """A temporary name next to ``final``, unique to this process, with the same suffix."""
    final = Path(final)
    return final.with_name(f".{final.stem}.{os.getpid()}{TEMP_MARK}{final.suffix}")


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
    final = Path(final)
    _fsync_file(temporary)
    os.replace(temporary, final)
    _fsync_directory(final.parent)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """A temporary path to write ``final``'s new content to; committed when the block ends.

    An exception in the block (or a kill) leaves ``final`` as it was; the temporary file is
    removed in every case but a kill.
    """
    temporary = temp_path(final)
    try:
        yield temporary
        commit_file(temporary, Path(final))
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers never see half a file."""
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers never see half a file."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(
    path: Path, data: Any, *, indent: int = 1, sort_keys: bool = False, allow_nan: bool = True
) -> None:
    """Write ``data`` as JSON (and a final newline) so that readers never see half a file."""
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    write_text_atomic(path, text + "\n")


def copy_file_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` so that readers of ``target`` never see half a copy."""
    with atomic_path(target) as temporary:
        shutil.copyfile(source, temporary)


def commit_directory(staging: Path, target: Path) -> None:
    """Rename the finished folder ``staging`` to ``target`` (which must not hold files).

    Build a folder under a staging name, then commit it: a kill leaves either no ``target``
    or a whole one.
    """
    target = Path(target)
    os.replace(staging, target)
    _fsync_directory(target.parent)
