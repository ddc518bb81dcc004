"""Finding training runs, their checkpoints and their closed-loop evaluation files.

A run is a directory ``runs/<timestamp>_<net>_f<frames>/`` holding ``config.json``,
``metrics.jsonl`` and ``checkpoints/{last,best_val_loss,best_success}.pt``; evaluations are
written to its ``eval/`` folder as ``<checkpoint>_seed<seed>_n<episodes>[__overrides].json``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json_atomic
from artifacts.formats import check_version
from bc.checkpoint_names import CHECKPOINT_NAMES
from eval.errors import EvalError

DEFAULT_RUNS_DIR = Path("runs")
CHECKPOINTS = CHECKPOINT_NAMES
EXPERT_DIR_NAME = "expert"
RESULTS_FORMAT_VERSION = 1
# up to this many --only-episodes indices name the results file one by one
NAMED_INDICES = 10


def is_run_dir(path: Path) -> bool:
    """A training run: a directory with ``config.json`` and a ``checkpoints`` folder."""
    return (path / "config.json").is_file() and (path / "checkpoints").is_dir()


def find_runs(runs_dir: Path = DEFAULT_RUNS_DIR) -> list[Path]:
    """Training runs under ``runs_dir``, oldest first.

    Run names start with their creation time, so name order is age order; the modification
    time of ``config.json`` breaks ties between equal names in different parents.
    """
    if not runs_dir.is_dir():
        return []
    runs = [path for path in runs_dir.iterdir() if path.is_dir() and is_run_dir(path)]
    return sorted(runs, key=lambda p: (p.name, (p / "config.json").stat().st_mtime))


def newest_run(runs_dir: Path = DEFAULT_RUNS_DIR) -> Path:
    """The newest training run, or an error that says how to make one."""
    runs = find_runs(runs_dir)
    if not runs:
        raise EvalError(
            f"no training runs found in {runs_dir}/ (a run has config.json and checkpoints/); "
            "train one with `python -m bc.train`, or pass --run DIR or --checkpoint FILE"
        )
    return runs[-1]


def resolve_checkpoint(
    run: Path | None, checkpoint: Path | None, which: str, runs_dir: Path = DEFAULT_RUNS_DIR
) -> tuple[Path, Path]:
    """(checkpoint file, run directory) for the flags ``--run``, ``--checkpoint``, ``--which``.

    ``--checkpoint`` wins; a checkpoint outside a run's ``checkpoints/`` folder gets its own
    folder as run directory (where its evaluations are written).
    """
    if which not in CHECKPOINTS:
        raise EvalError(f"unknown --which {which!r}; choose one of {', '.join(CHECKPOINTS)}")
    if checkpoint is not None:
        if not checkpoint.is_file():
            raise EvalError(f"checkpoint {checkpoint} does not exist")
        parent = checkpoint.resolve().parent
        run_dir = parent.parent if parent.name == "checkpoints" else parent
        return checkpoint, run_dir
    if run is None:
        run = newest_run(runs_dir)
    elif not run.is_dir():
        raise EvalError(f"run directory {run} does not exist")
    path = run / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        present = sorted(p.stem for p in (run / "checkpoints").glob("*.pt"))
        hint = f"it has: {', '.join(present)}" if present else "it has no checkpoints"
        extra = (
            " (best_success.pt is written only when training with --eval-every N > 0)"
            if which == "best_success"
            else ""
        )
        raise EvalError(f"run {run} has no checkpoints/{which}.pt{extra}; {hint}")
    return path, run


def read_json(path: Path) -> Any:
    """Parse a JSON file, with a one-line error naming the file."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        raise EvalError(f"{path} does not exist") from error
    except (OSError, ValueError) as error:
        raise EvalError(f"cannot read {path}: {error}") from error


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a ``metrics.jsonl`` file; a torn last line (a run still writing) is skipped."""
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise EvalError(f"cannot read {path}: {error}") from error
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as error:
            if number == len(lines):
                break
            raise EvalError(f"{path}:{number} is not JSON: {error}") from error
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _json_safe(value: Any) -> Any:
    """NaN and infinities become null, so the files are strict JSON for any reader."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write strict JSON atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, _json_safe(data), indent=2, allow_nan=False)


def results_stem(
    which: str,
    seed: int,
    episodes: int,
    overrides: Mapping[str, Any],
    indices: Sequence[int] | None = None,
) -> str:
    """File stem of an evaluation: ``best_val_loss_seed0_n20__obstacle_density-0.5``.

    A chosen subset of episodes (``indices``) is named by them instead of the count
    (``last_seed0_only7-22-72``), or by their count and a digest when there are more than
    ``NAMED_INDICES``, so it never takes the place of a whole evaluation's file.
    """
    if indices is None:
        stem = f"{which}_seed{seed}_n{episodes}"
    elif len(indices) <= NAMED_INDICES:
        stem = f"{which}_seed{seed}_only{'-'.join(map(str, indices))}"
    else:
        digest = hashlib.sha1(",".join(map(str, indices)).encode()).hexdigest()[:8]
        stem = f"{which}_seed{seed}_only{len(indices)}x{digest}"
    for key in sorted(overrides):
        value = overrides[key]
        if isinstance(value, (list, tuple)):
            value = "-".join(str(v) for v in value)
        stem += f"__{key}-{str(value).lower()}"
    return stem


def eval_files(run_dir: Path) -> list[Path]:
    """Evaluation result files of a run (or of the expert folder)."""
    folder = run_dir / "eval"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def load_results(path: Path) -> dict[str, Any]:
    """An evaluation file, checked for the keys that plots and tables rely on."""
    data = read_json(path)
    if not isinstance(data, dict) or "summary" not in data or "records" not in data:
        raise EvalError(f"{path} is not an evaluation file (no summary/records)")
    check_version(str(path), data.get("format_version"), (RESULTS_FORMAT_VERSION,), EvalError,
                  "; re-run python -m eval.rollout")  # fmt: skip
    return data


def pick_results(
    run_dir: Path, which: str, seed: int | None, overrides: bool = False
) -> dict[str, Any] | None:
    """The evaluation of ``which`` in ``run_dir`` to report, or None if there is none.

    Among the files for that checkpoint (and seed, unless None) evaluated on the run's own env
    (no overrides, unless asked), the one with the most episodes wins, then the newest.
    """
    candidates = []
    for path in eval_files(run_dir):
        data = load_results(path)
        if data.get("which") != which:
            continue
        if seed is not None and data.get("seed") != seed:
            continue
        if bool(data.get("overrides")) != overrides:
            continue
        if data.get("episode_indices") is not None:
            continue  # chosen episodes flown again (--only-episodes): not the run's figure
        candidates.append((data["summary"]["episodes"], path.stat().st_mtime, data))
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[0], c[1]))[2]


def lookup(config: Mapping[str, Any], key: str) -> Any:
    """A config value by dotted path (``model.net``) or, failing that, by a unique leaf name.

    Lets ``--group-by net`` work whether the trainer writes ``{"net": ...}`` or nests it
    (``{"model": {"net": ...}}``); an ambiguous leaf name is an error that lists the paths.
    """
    node: Any = config
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            break
    else:
        return node
    found = list(_leaves(config, key.split(".")[-1], ""))
    if len(found) == 1:
        return found[0][1]
    if len(found) > 1:
        paths = ", ".join(path for path, _ in found)
        raise EvalError(f"config key {key!r} is ambiguous: {paths}; use the full dotted path")
    return None


def _leaves(node: Any, name: str, prefix: str) -> Iterable[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == name:
                yield path, value
            else:
                yield from _leaves(value, name, path)
