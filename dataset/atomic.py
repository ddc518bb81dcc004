"""A dataset's leftover temporary files: what a collection killed mid-write left behind.

Every file of a dataset is written through :mod:`artifacts.atomic` (a temporary name, fsync,
one rename), so a killed writer leaves at most its temporary file, named
``.<stem>.<pid>.tmp<suffix>``, in the dataset, its runs/ or its videos/; the next collection
(or DAgger iteration) removes them and ``dataset.verify`` reports them.
"""

from __future__ import annotations

from pathlib import Path

from artifacts.atomic import TEMP_MARK
from dataset.format import RUNS_DIR, VIDEOS_DIR


def temp_files(directory: Path) -> list[Path]:
    """Leftover temporary files of a dataset (in the dataset and its runs/ and videos/)."""
    directory = Path(directory)
    found: list[Path] = []
    for folder in (directory, directory / RUNS_DIR, directory / VIDEOS_DIR):
        if folder.is_dir():
            found += sorted(p for p in folder.glob(f".*{TEMP_MARK}*") if p.is_file())
    return found
