"""Export a dataset: ``python -m dataset.export DATASET --format minari --name corridor/expert-v0``.

Writes the dataset as a Minari dataset (the ``minari`` extra: ``pip install -e ".[minari]"``)
under Minari's datasets root (``--data-path``, else ``$MINARI_DATASETS_PATH``, else
``~/.minari/datasets``), where ``minari.load_dataset(NAME)`` finds it. Lossless: frames as raw
uint8 arrays (not JPEG), the final observation of every run, the executed actions, rewards,
terminations and truncations, the expert's labels, who acted and the privileged state in the
infos, the env spec with the dataset's env kwargs, the world seeds and the whole manifest
(docs/ecosystem_minari.md). ``python -m dataset.import_minari NAME --out DIR`` brings it back.

A format-1 dataset stored no final observation: each run is replayed in the env from its
seed (deterministic), every replayed frame checked against the recorded one, and a run that
does not replay exactly is refused (exit 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from configflags import option, run_main
from dataset.minari_io import MinariTransfer, export_minari

EXPORT_FORMATS = ("minari",)


def default_name(dataset: Path) -> str:
    """``corridor/<the dataset folder's name>-v0``, made a valid Minari id."""
    stem = re.sub(r"[^-_\w]+", "-", Path(dataset).resolve().name).strip("-_") or "dataset"
    return f"corridor/{stem}-v0"


@dataclass(frozen=True)
class ExportConfig:
    """Which dataset to export, to what and where."""

    dataset: Path = option(help="dataset directory (holds manifest.json)", positional=True)
    format: str = option("minari", choices=EXPORT_FORMATS, help="what to export to")
    name: str | None = option(
        None,
        help="Minari dataset id, (namespace/)name-vN (unset: corridor/<DATASET folder>-v0)",
    )
    data_path: Path | None = option(
        None,
        help="Minari datasets root (unset: $MINARI_DATASETS_PATH, else ~/.minari/datasets)",
    )
    overwrite: bool = option(False, help="replace a Minari dataset with the same id")
    author: str | None = option(None, help="Minari metadata: author")
    author_email: str | None = option(None, help="Minari metadata: author's email")
    code_permalink: str | None = option(None, help="Minari metadata: link to the code version")
    description: str | None = option(
        None, help="Minari metadata: description (unset: one made from the manifest)"
    )
    quiet: bool = option(False, help="print nothing but errors")

    def __post_init__(self) -> None:
        if not Path(self.dataset).is_dir():
            raise ValueError(f"{self.dataset} is not a directory")
        if self.format not in EXPORT_FORMATS:
            raise ValueError(f"--format must be one of {', '.join(EXPORT_FORMATS)}")
        if self.name is None:
            object.__setattr__(self, "name", default_name(self.dataset))


def main(config: ExportConfig) -> MinariTransfer:
    """Export the dataset; returns what was written."""
    metadata = {
        "author": config.author,
        "author_email": config.author_email,
        "code_permalink": config.code_permalink,
        "description": config.description,
    }
    result = export_minari(
        config.dataset,
        config.name,
        data_path=config.data_path,
        overwrite=config.overwrite,
        metadata=metadata,
    )
    if not config.quiet:
        replayed = f"; {result.replayed} format-1 runs replayed" if result.replayed else ""
        print(f"exported {config.dataset} to Minari dataset {result.name} at "
              f"{result.minari_path}: {result.episodes} episodes, {result.steps:,} steps"
              f"{replayed}")  # fmt: skip
        where = "" if config.data_path is None else f"MINARI_DATASETS_PATH={config.data_path} "
        print(f"load it with {where}python -c \"import minari; "
              f"minari.load_dataset('{result.name}')\"")  # fmt: skip
    return result


if __name__ == "__main__":
    run_main(main, ExportConfig, "python -m dataset.export", __doc__)
