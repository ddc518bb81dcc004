"""Minari export and import: a corridor-bc dataset as a Minari dataset and back, losslessly.

Needs the ``minari`` extra (``pip install -e ".[minari]"``), imported only when called. One
run becomes one Minari episode (in manifest order), docs/ecosystem_minari.md:

* ``observations``: the T frames and the final frame, ``(T + 1, H, W, C)`` uint8, stored as
  raw arrays (``jpeg_encoding=False``: Minari 0.5.4 JPEG-encodes image observations by
  default, which is lossy);
* ``actions``: the executed action in the env's own space (``action`` bins for
  ``Corridor-v0``, ``action_continuous`` as ``(T, 1)`` for ``CorridorContinuous-v0``);
  ``rewards``, ``terminations``, ``truncations`` as recorded;
* ``infos`` (``T + 1`` entries, entry ``t`` about observation ``t``): the state (``pose``,
  ``progress``, ``lateral_offset``, ``heading_error``, the last entry the final state) and
  the step's data (``expert_action``, ``expert_continuous``, ``source``, ``action``,
  ``action_continuous``; the final observation has no step: -1 for the integer ones, NaN for
  the others);
* the episode's ``seed`` is the run's world seed; its metadata holds the run's name, split,
  outcome and attributes; the dataset's ``env_spec`` is the env id with the dataset's
  env_kwargs, and its metadata the whole manifest (``corridor_bc``).

A format-1 run has no final frame: export replays it in the env (``dataset.replay``) and
refuses a run that does not replay exactly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from artifacts.atomic import write_json_atomic
from dataset.format import (
    FINAL_FIELDS,
    FORMAT_VERSION,
    MANIFEST,
    RUNS_DIR,
    STEP_FIELDS,
    DatasetError,
    file_label,
)
from dataset.reader import check_run, read_manifest, run_file
from dataset.replay import run_with_ends
from dataset.writer import RunWriter

INSTALL_HINT = 'pip install -e ".[minari]"'
METADATA_KEY = "corridor_bc"
# info entries about the state an observation shows: info -> (per-step dataset, final dataset)
STATE_INFOS = {
    "pose": ("pose", "final_pose"),
    "progress": ("progress", "final_progress"),
    "lateral_offset": ("lateral_offset", "final_lateral_offset"),
    "heading_error": ("heading_error", "final_heading_error"),
}
# info entries about the step taken from an observation (none from the final one)
STEP_INFOS = ("expert_action", "expert_continuous", "source", "action", "action_continuous")


def import_minari_package() -> Any:
    """The ``minari`` module, or a one-line ``DatasetError`` saying how to install it."""
    try:
        import minari
    except ImportError:
        raise DatasetError(f"Minari is not installed: {INSTALL_HINT}") from None
    return minari


@contextlib.contextmanager
def datasets_root(data_path: Path | None) -> Iterator[Path]:
    """Minari's datasets root while the block runs: ``data_path``, or Minari's own default.

    Minari reads ``MINARI_DATASETS_PATH`` (else ``~/.minari/datasets``) on every call.
    """
    from minari.storage import get_dataset_path

    previous = os.environ.get("MINARI_DATASETS_PATH")
    if data_path is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(Path(data_path).resolve())
    try:
        yield get_dataset_path()
    finally:
        if data_path is not None:
            if previous is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = previous


def check_dataset_id(name: str) -> None:
    """A Minari dataset id, ``(namespace/)name-vN``, or ``DatasetError``."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(name)  # a missing -vN fails as int(None)
    except (ValueError, TypeError):
        raise DatasetError(
            f"{name!r} is not a Minari dataset id: (namespace/)name-vN, e.g. corridor/expert-v0"
        ) from None


@dataclass(frozen=True)
class MinariTransfer:
    """What an export or an import did."""

    name: str
    minari_path: Path
    dataset: Path
    episodes: int
    steps: int
    replayed: int = 0


def _pad(values: np.ndarray) -> np.ndarray:
    """One more entry for the final observation: -1 (integers) or NaN."""
    fill = -1 if np.issubdtype(values.dtype, np.integer) else np.nan
    dtype = np.int64 if fill == -1 else values.dtype
    return np.concatenate([values.astype(dtype), np.array([fill], dtype)])


def episode_buffer(run: dict[str, Any], index: int, continuous: bool) -> Any:
    """The Minari ``EpisodeBuffer`` of a run with its ends (``run_with_ends``)."""
    from minari.data_collector import EpisodeBuffer

    infos = {
        info: np.concatenate([run[step], run[final][None]])
        for info, (step, final) in STATE_INFOS.items()
    }
    infos.update({info: _pad(run[info]) for info in STEP_INFOS})
    actions = run["action_continuous"][:, None] if continuous else run["action"]
    return EpisodeBuffer(
        id=index,
        seed=int(run["attrs"]["seed"]),
        observations=np.concatenate([run["frames"], run["final_frame"][None]]),
        actions=actions,
        rewards=run["reward"],
        terminations=run["terminated"],
        truncations=run["truncated"],
        infos=infos,
    )


def export_minari(
    directory: Path,
    name: str,
    *,
    data_path: Path | None = None,
    overwrite: bool = False,
    metadata: dict[str, str | None] | None = None,
    report: Callable[[str], None] | None = None,
) -> MinariTransfer:
    """Write dataset ``directory`` as Minari dataset ``name`` (see the module docstring).

    ``metadata`` may give Minari's ``author``, ``author_email``, ``code_permalink`` and
    ``description``; ``report(run_name)`` is called after each run. Refuses (``DatasetError``)
    an incomplete dataset, an existing Minari dataset unless ``overwrite``, and a format-1 run
    that does not replay exactly; a failed export leaves no Minari dataset behind.
    """
    minari = import_minari_package()
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("complete") is False:
        raise DatasetError(f"{directory}: collection incomplete; finish it with expert.collect")
    if not manifest["runs"]:
        raise DatasetError(f"{directory / MANIFEST}: the dataset holds no runs")
    check_dataset_id(name)
    given = {key: value for key, value in (metadata or {}).items() if value}
    env = gym.make(manifest["env_id"], **manifest["env_kwargs"])
    continuous = env.unwrapped.action_type == "continuous"
    episodes: list[dict[str, Any]] = []

    def buffers() -> Iterator[Any]:
        for index, entry in enumerate(manifest["runs"]):
            run = run_with_ends(run_file(directory, entry), env)
            attrs = dict(run["attrs"])
            replayed = attrs.pop("replayed")
            episodes.append(
                {
                    f"{METADATA_KEY}/name": entry["name"],
                    f"{METADATA_KEY}/split": str(entry.get("split")),
                    f"{METADATA_KEY}/outcome": str(attrs["outcome"]),
                    f"{METADATA_KEY}/ends_replayed": bool(replayed),
                    f"{METADATA_KEY}/attrs": json.dumps(attrs),
                    "steps": len(run["reward"]),
                }
            )
            yield episode_buffer(run, index, continuous)
            if report is not None:
                report(entry["name"])

    with datasets_root(data_path) as root, contextlib.closing(env):
        target = root / name
        if target.exists():
            if not overwrite:
                raise DatasetError(
                    f"Minari dataset {name} exists at {target}: pass --overwrite to replace it"
                )
            shutil.rmtree(target)
        try:
            with warnings.catch_warnings():
                # Minari asks for optional metadata; the command's flags say how to give it
                warnings.filterwarnings("ignore", ".*is set to None", UserWarning)
                dataset = minari.create_dataset_from_buffers(
                    name,
                    buffers(),  # a generator: one run in memory at a time
                    env=env,
                    eval_env=env,
                    algorithm_name=f"corridor-bc {manifest['expert'].get('kind')} expert",
                    author=given.get("author"),
                    author_email=given.get("author_email"),
                    code_permalink=given.get("code_permalink"),
                    description=given.get("description") or _description(directory, manifest),
                    data_format="hdf5",
                    jpeg_encoding=False,
                )
            dataset.storage.update_metadata({METADATA_KEY: {"manifest": manifest}})
            steps = [episode.pop("steps") for episode in episodes]
            dataset.storage.update_episode_metadata(episodes)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    replayed = sum(episode[f"{METADATA_KEY}/ends_replayed"] for episode in episodes)
    return MinariTransfer(name, target, directory, len(episodes), sum(steps), replayed)


def _description(directory: Path, manifest: dict[str, Any]) -> str:
    frames = sum(entry["frames"] for entry in manifest["runs"])
    return (
        f"corridor-bc dataset {directory.name}: {len(manifest['runs'])} runs, {frames} steps in"
        f" {manifest['env_id']}, {manifest['expert'].get('kind')} expert, labels and privileged"
        " state in the infos (docs/ecosystem_minari.md)"
    )


def import_minari(
    name: str,
    out: Path,
    *,
    data_path: Path | None = None,
    overwrite: bool = False,
    compression: str = "gzip",
    report: Callable[[str], None] | None = None,
) -> MinariTransfer:
    """Write Minari dataset ``name`` (exported by ``export_minari``) as a dataset in ``out``.

    The runs come back as format-2 run files with their names, attributes, splits and the
    whole manifest the export carried; each is checked before it is written, and a failed
    import removes the run files it wrote. ``out`` must be new or empty, or hold a dataset
    that ``overwrite`` lets go (its manifest and run files are removed first, nothing else).
    """
    minari = import_minari_package()
    check_dataset_id(name)
    out = Path(out)
    with datasets_root(data_path) as root:
        try:
            dataset = minari.load_dataset(name)
        except FileNotFoundError:
            raise DatasetError(
                f"no Minari dataset {name} under {root} (--data-path or MINARI_DATASETS_PATH"
                " say where to look)"
            ) from None
        metadata = dataset.storage.metadata
        if METADATA_KEY not in metadata:
            raise DatasetError(
                f"Minari dataset {name} was not exported by corridor-bc (no {METADATA_KEY!r}"
                " in its metadata): its labels and privileged state are missing"
            )
        if dataset.storage.jpeg_encoding:
            raise DatasetError(f"Minari dataset {name} stores JPEG frames (lossy): not imported")
        manifest = metadata[METADATA_KEY]["manifest"]
        if len(manifest["runs"]) != dataset.total_episodes:
            raise DatasetError(
                f"Minari dataset {name} has {dataset.total_episodes} episodes, its manifest"
                f" {len(manifest['runs'])} runs"
            )
        continuous = manifest["env_kwargs"].get("action_type") == "continuous"
        _prepare_out(out, overwrite)
        indices = dataset.episode_indices
        steps = 0
        written: list[Path] = []
        try:
            for entry, episode, episode_metadata in zip(
                manifest["runs"],
                dataset.iterate_episodes(indices),
                dataset.storage.get_episode_metadata(indices),
                strict=True,
            ):
                own = episode_metadata.get(METADATA_KEY, {})
                written.append(out / RUNS_DIR / f"{entry['name']}.h5")
                steps += _write_run(out, entry, episode, own, continuous, compression)
                if report is not None:
                    report(entry["name"])
        except BaseException:
            # no half dataset: what this import wrote goes (the manifest comes last)
            for path in written:
                path.unlink(missing_ok=True)
            raise
        manifest = {
            **manifest,
            "format_version": FORMAT_VERSION,
            "minari": {"dataset_id": name, "minari_version": metadata["minari_version"]},
        }
        write_json_atomic(out / MANIFEST, manifest)
    return MinariTransfer(
        name, Path(dataset.storage.data_path).parent, out, len(manifest["runs"]), steps
    )


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DatasetError(f"--out {out} is a file, not a directory")
    if (out / MANIFEST).exists():
        if not overwrite:
            raise DatasetError(f"--out {out} holds a dataset: pass --overwrite to replace it")
        (out / MANIFEST).unlink()
        for path in (out / RUNS_DIR).glob("run_*.h5"):
            path.unlink()
    elif out.is_dir() and any(
        child.name != RUNS_DIR or any(child.iterdir()) for child in out.iterdir()
    ):
        raise DatasetError(f"--out {out} exists, is not empty and holds no dataset")
    (out / RUNS_DIR).mkdir(parents=True, exist_ok=True)


def _write_run(
    out: Path,
    entry: dict[str, Any],
    episode: Any,
    metadata: dict[str, Any],
    continuous: bool,
    compression: str,
) -> int:
    """Write one episode as the run ``entry`` names; returns its steps."""
    name = str(entry["name"])
    path = out / RUNS_DIR / f"{name}.h5"
    where = file_label(path)
    if entry.get("file", f"{RUNS_DIR}/{name}.h5") != f"{RUNS_DIR}/{name}.h5" or "/" in name:
        raise DatasetError(f"{where}: the manifest names it {entry.get('file')!r}")
    if metadata.get("name") != name or "attrs" not in metadata:
        raise DatasetError(f"{where}: its episode's metadata does not name this run")
    n_steps = len(episode)
    infos = episode.infos or {}
    missing = [info for info in (*STATE_INFOS, *STEP_INFOS) if info not in infos]
    if missing:
        raise DatasetError(f"{where}: the episode's infos lack {', '.join(missing)}")
    data = {
        "frames": episode.observations[:n_steps],
        "reward": episode.rewards,
        "terminated": episode.terminations,
        "truncated": episode.truncations,
        **{info: infos[info][:n_steps] for info in STEP_INFOS},
        **{step: infos[info][:n_steps] for info, (step, _) in STATE_INFOS.items()},
        "final_frame": episode.observations[n_steps],
        **{final: infos[info][n_steps] for info, (_, final) in STATE_INFOS.items()},
    }
    executed = data["action_continuous"] if continuous else data["action"]
    if not np.array_equal(np.reshape(episode.actions, -1), executed):
        raise DatasetError(f"{where}: the episode's actions disagree with its infos")
    for field, (dtype, _) in STEP_FIELDS.items():
        data[field] = np.asarray(data[field]).astype(dtype)
    for final, step in FINAL_FIELDS.items():
        data[final] = np.asarray(data[final]).astype(STEP_FIELDS[step][0])
    attrs = {**json.loads(metadata["attrs"]), "n_steps": n_steps, "format_version": FORMAT_VERSION}
    check_run(path, data, attrs)
    del attrs["n_steps"]
    with RunWriter(path, data["frames"].shape[1:], compression) as writer:
        for t in range(n_steps):
            writer.append(**{field: data[field][t] for field in STEP_FIELDS})
        writer.commit(attrs, {final: data[final] for final in FINAL_FIELDS})
    return n_steps
