"""Import a Minari dataset: ``python -m dataset.import_minari corridor/expert-v0 --out DIR``.

The way back from ``python -m dataset.export``: reads a Minari dataset that corridor-bc
exported (the ``minari`` extra: ``pip install -e ".[minari]"``) from Minari's datasets root
(``--data-path``, else ``$MINARI_DATASETS_PATH``, else ``~/.minari/datasets``) and writes it
as a dataset in the current format, bit for bit the frames, labels, actions and attributes
that were exported, with the same run names, seeds and splits, so that
``python -m bc.train --data DIR`` trains on it and ``python -m dataset.verify DIR`` checks it.
A Minari dataset made by another tool lacks the expert's labels and is refused (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from configflags import option, run_main
from dataset import COMPRESSIONS
from dataset.minari_io import MinariTransfer, import_minari


@dataclass(frozen=True)
class ImportConfig:
    """Which Minari dataset to import and where to write it."""

    name: str = option(help="Minari dataset id, e.g. corridor/expert-v0", positional=True)
    out: Path | None = option(None, help="dataset directory to write (new or empty)")
    data_path: Path | None = option(
        None,
        help="Minari datasets root (unset: $MINARI_DATASETS_PATH, else ~/.minari/datasets)",
    )
    overwrite: bool = option(False, help="replace a dataset in --out")
    compression: str = option(
        "gzip", choices=COMPRESSIONS, help="frame compression: gzip level 1 (any HDF5) or lzf"
    )
    quiet: bool = option(False, help="print nothing but errors")

    def __post_init__(self) -> None:
        if self.out is None:
            raise ValueError("--out is required: the dataset directory to write")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"--compression must be one of {', '.join(COMPRESSIONS)}")


def main(config: ImportConfig) -> MinariTransfer:
    """Import the Minari dataset; returns what was written."""
    result = import_minari(
        config.name,
        config.out,
        data_path=config.data_path,
        overwrite=config.overwrite,
        compression=config.compression,
    )
    if not config.quiet:
        print(f"imported Minari dataset {result.name} into {result.dataset}: "
              f"{result.episodes} runs, {result.steps:,} frames; train on it with "
              f"python -m bc.train --data {result.dataset}")  # fmt: skip
    return result


if __name__ == "__main__":
    run_main(main, ImportConfig, "python -m dataset.import_minari", __doc__)
