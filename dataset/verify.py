"""Check a dataset: ``python -m dataset.verify DATASET``.

Reads the manifest and every run file in full (frames decompressed) and checks that each is
readable, its arrays have consistent lengths, dtypes and shapes, labels and commands are in
range, and the manifest agrees with the files (seeds, frame counts, outcomes, splits, config
fingerprint, image shape). Format-1 datasets (no final observations or end flags) are checked
as format 1; a format-2 run's end flags must agree with its outcome. Names every bad file on
its own line; exit code 1 if anything is bad, 0 if all is well, 2 for bad usage (no such
directory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from configflags import EXIT_FAILED, option, run_main
from dataset import (
    MANIFEST,
    RUNS_DIR,
    SPLITS,
    DatasetError,
    check_frame_shape,
    load_run,
    read_manifest,
    recorded_env,
    temp_files,
)
from envs.seeds import collect_seed


@dataclass(frozen=True)
class VerifyConfig:
    """Which dataset to check."""

    dataset: Path = option(help="dataset directory (holds manifest.json)", positional=True)
    quiet: bool = option(False, help="print only problems")

    def __post_init__(self) -> None:
        if not Path(self.dataset).is_dir():
            raise ValueError(f"{self.dataset} is not a directory")


@dataclass
class VerifyReport:
    """What ``main`` found: problems as ``(file, message)``, and what was checked."""

    dataset: Path
    problems: list[tuple[str, str]] = field(default_factory=list)
    runs_checked: int = 0
    frames_checked: int = 0
    format_versions: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, where: str, message: str) -> None:
        self.problems.append((where, message))


def check_dataset(directory: Path) -> VerifyReport:
    """Check everything; never raises for a bad dataset, lists problems instead."""
    directory = Path(directory)
    report = VerifyReport(directory)
    try:
        manifest = read_manifest(directory)
    except DatasetError as error:
        report.add(MANIFEST, _strip(str(error), directory))
        return report
    if manifest.get("complete") is False:
        report.add(MANIFEST, "collection incomplete: rerun the same expert.collect command")
    try:
        env = recorded_env(manifest, directory / MANIFEST)
    except DatasetError as error:
        report.add(MANIFEST, _strip(str(error), directory))
        return report

    names = [entry["name"] for entry in manifest["runs"]]
    if len(set(names)) != len(names):
        report.add(MANIFEST, "a run is listed twice")
    listed_splits = manifest["splits"]
    if not isinstance(listed_splits, dict) or set(listed_splits) != set(SPLITS):
        report.add(MANIFEST, f"splits must have exactly the keys {', '.join(SPLITS)}")
        listed_splits = {s: [] for s in SPLITS}
    for split in SPLITS:
        by_entry = sorted(e["name"] for e in manifest["runs"] if e["split"] == split)
        if sorted(listed_splits[split]) != by_entry:
            report.add(MANIFEST, f"splits[{split!r}] disagrees with the runs' split fields")
    collect = manifest.get("collect", {})
    for split, key in (("val", "val_runs"), ("test", "test_runs")):
        if (
            key in collect
            and len(listed_splits[split]) != collect[key]
            and manifest.get("complete")
        ):
            report.add(MANIFEST, f"{len(listed_splits[split])} {split} runs, collect.{key} says "
                       f"{collect[key]}")  # fmt: skip

    total = 0
    for entry in manifest["runs"]:
        where = entry["file"]
        try:
            run = load_run(directory / entry["file"])
        except DatasetError as error:
            report.add(where, _strip(str(error), directory, where))
            continue
        attrs = run["attrs"]
        report.runs_checked += 1
        report.frames_checked += int(attrs["n_steps"])
        report.format_versions.add(int(attrs["format_version"]))
        total += int(attrs["n_steps"])
        expected = {
            "n_steps": entry["frames"],
            "seed": entry["seed"],
            "outcome": entry["outcome"],
            "n_bins": env.n_bins,
        }
        if "run_index" in entry:
            expected["run_index"] = entry["run_index"]
        if "config_hash" in manifest:
            expected["config_hash"] = manifest["config_hash"]
        for key, value in expected.items():
            if attrs.get(key) != value:
                report.add(where, f"{key} is {attrs.get(key)!r}, the manifest says {value!r}")
        if "run_index" in entry and entry["seed"] != collect_seed(
            manifest["seed"], entry["run_index"]
        ):
            report.add(where, "seed is not collect_seed(manifest seed, run_index)")
        try:
            check_frame_shape(directory / entry["file"], run["frames"], env.frame_shape)
        except DatasetError as error:
            report.add(where, _strip(str(error), directory, where))
    frames = manifest.get("frames", {})
    if "total" in frames and frames["total"] != sum(e["frames"] for e in manifest["runs"]):
        report.add(MANIFEST, "frames.total disagrees with the runs' frame counts")

    listed = {Path(e["file"]).name for e in manifest["runs"]}
    runs_dir = directory / RUNS_DIR
    if runs_dir.is_dir():
        for path in sorted(runs_dir.glob("*.h5")):
            if path.name not in listed and not path.name.startswith("."):
                report.add(f"{RUNS_DIR}/{path.name}", "run file not listed in the manifest")
    for path in temp_files(directory):
        report.add(str(path.relative_to(directory)), "leftover temporary file (a killed write); "
                   "rerun expert.collect to clean it")  # fmt: skip
    return report


def _strip(message: str, directory: Path, where: str | None = None) -> str:
    """The message without the file name the report already shows."""
    for prefix in (f"{where}: " if where else None, f"{directory / MANIFEST}: "):
        if prefix and message.startswith(prefix):
            return message[len(prefix) :]
    return message


def main(config: VerifyConfig) -> VerifyReport:
    """Check the dataset, print one line per problem and a verdict; returns the report."""
    report = check_dataset(config.dataset)
    for where, message in report.problems:
        print(f"bad {config.dataset / where}: {message}")
    if report.ok:
        if not config.quiet:
            versions = " and ".join(str(v) for v in sorted(report.format_versions)) or "-"
            print(f"ok {config.dataset}: {report.runs_checked} runs, "
                  f"{report.frames_checked:,} frames, format {versions}")  # fmt: skip
    else:
        files = len({where for where, _ in report.problems})
        print(f"{config.dataset}: {len(report.problems)} problems in {files} files")
    return report


if __name__ == "__main__":
    outcome = run_main(main, VerifyConfig, "python -m dataset.verify", __doc__)
    raise SystemExit(0 if outcome.ok else EXIT_FAILED)
