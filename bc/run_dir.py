"""A run directory: its name, ``config.json``, resume, and the metrics log.

::

    runs/20261121-201500_tiny_nfc_f3/
      config.json          resolved TrainConfig
      metrics.jsonl        one record per epoch (no wall-clock fields: the same seed gives
                           the same bytes on CPU)
      timing.jsonl         wall-clock figures per epoch (samples/s, seconds)
      summary.json         final results
      tensorboard/         TensorBoard events
      checkpoints/         see bc.checkpoint

Run names start with their start time (``RUN_TIME_FORMAT``), so they sort by it and
:func:`find_latest_run` needs no ``latest`` link.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

from artifacts.atomic import copy_file_atomic, write_json_atomic, write_text_atomic
from bc.checkpoint import LAST, checkpoint_dir, read_checkpoint
from bc.config import SESSION_FIELDS, TrainConfig, config_from_dict, config_to_dict
from bc.errors import ConfigError, TrainError
from configflags import flag_name

RUN_TIME_FORMAT = "%Y%m%d-%H%M%S"
METRICS_FILE = "metrics.jsonl"


def new_run_dir(config: TrainConfig) -> Path:
    """Create the directory of a new run: ``--run-dir``, or a fresh time-stamped name."""
    if config.run_dir:
        path = Path(config.run_dir)
        if path.exists() and any(path.iterdir()):
            raise TrainError(
                f"run directory {path} already exists and is not empty; use --resume {path}"
                " to continue it or choose another --run-dir"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    root = Path(config.runs_dir)
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{time.strftime(RUN_TIME_FORMAT)}_{config.net}_f{config.frames}"
    for attempt in range(1, 1000):
        path = root / (stem if attempt == 1 else f"{stem}_{attempt}")
        try:
            path.mkdir()  # exclusive: two runs started in the same second get two names
            return path
        except FileExistsError:
            continue
    raise TrainError(f"cannot create a run directory under {root}")


def resume_config(run_dir: str | Path, /, **session: Any) -> TrainConfig:
    """The config of the run in ``run_dir`` with some session fields replaced.

    Only session fields (``epochs``, ``steps``, ``device``, ...) may change on resume. The
    run lives in ``run_dir`` from now on: a saved ``run_dir`` (``--run-dir`` of a new run)
    becomes that folder, whether it was moved since or named by another relative path. A
    ``run_dir`` in ``session`` (``--run-dir`` given with ``--resume``; hence the positional-only
    parameter) must name the same folder, which ``TrainConfig`` checks.
    """
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise TrainError(f"--resume {run_dir}: {path} is missing; is this a run directory?")
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise TrainError(f"--resume {run_dir}: cannot read {path} ({error})") from None
    fixed = sorted(set(session) - SESSION_FIELDS)
    if fixed:
        flags = ", ".join(flag_name(name) for name in fixed)
        raise ConfigError(
            f"{flags} cannot change when resuming; start a new run with"
            f" --init-from {checkpoint_dir(run_dir) / LAST} instead"
        )
    if values.get("run_dir"):
        values["run_dir"] = str(run_dir)
    values.update(session, resume=str(run_dir))
    return config_from_dict(TrainConfig, values)


def read_resume_checkpoint(config: TrainConfig) -> dict[str, Any]:
    """The last.pt that ``config.resume`` continues, refused if it cannot be resumed exactly.

    Every field but the session fields must equal the saved run's, and there must be
    something left to do: epochs or steps to train, or else the results of the last one
    (a kill while the test split was evaluated leaves last.pt at the end, summary.json not).
    """
    payload = read_checkpoint(checkpoint_dir(config.resume) / LAST)
    saved = config_from_dict(TrainConfig, payload["config"])
    changed = [
        item.name
        for item in dataclasses.fields(TrainConfig)
        if item.name not in SESSION_FIELDS
        and getattr(saved, item.name) != getattr(config, item.name)
    ]
    if changed:
        flags = ", ".join(flag_name(name) for name in changed)
        raise ConfigError(f"--resume {config.resume}: {flags} differ from the saved run")
    trained = payload["step"] >= config.steps if config.steps else payload["epoch"] >= config.epochs
    if trained and _summary_step(Path(config.resume)) == payload["step"]:
        raise TrainError(
            f"--resume {config.resume}: nothing to train, the run is at epoch"
            f" {payload['epoch']} (step {payload['step']}) already; raise --epochs or"
            " --steps"
        )
    return payload


def _summary_step(run_dir: Path) -> int | None:
    """The step that the run's summary.json reports the results of, if it has one."""
    try:
        return json.loads((run_dir / "summary.json").read_text())["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_config(run_dir: Path, config: TrainConfig) -> None:
    """Write the run's ``config.json``.

    On resume too: a later --resume without --epochs continues to the latest target.
    """
    write_json(run_dir / "config.json", config_to_dict(config))


def write_json(path: Path, values: Any) -> None:
    """Write ``values`` as JSON atomically: a kill leaves the old file or the new one."""
    write_json_atomic(path, values, indent=2, sort_keys=True)


def copy_atomic(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` atomically (``best_success.pt`` from ``last.pt``)."""
    copy_file_atomic(source, target)


class MetricsLog:
    """metrics.jsonl, timing.jsonl and TensorBoard of one run.

    A resumed run (``resume_step`` given) first drops the records past its checkpoint: they
    are redone identically.
    """

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None):
        self.metrics_path = run_dir / METRICS_FILE
        self.timing_path = run_dir / "timing.jsonl"
        if resume_step is not None:
            for path in (self.metrics_path, self.timing_path):
                _truncate_after(path, resume_step)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def last_step(self) -> int | None:
        """The step of the last record written, or None."""
        records = self.records()
        return records[-1]["step"] if records else None

    def records(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl."""
        return _read_jsonl(self.metrics_path)

    def trained(self) -> tuple[float, int]:
        """Seconds and samples of the training that timing.jsonl records.

        None for a new run; for a resumed one, its epochs before the checkpoint (the file is
        truncated there), so that its summary gives the whole training's time, not the last
        session's.
        """
        timings = _read_jsonl(self.timing_path)
        seconds = sum(float(timing["seconds"]) for timing in timings)
        samples = sum(float(t["seconds"]) * float(t["samples_per_s"]) for t in timings)
        return seconds, round(samples)

    def scalar(self, tag: str, value: float, step: int) -> None:
        """One TensorBoard scalar (none for a missing or non-finite value)."""
        if self.writer is not None and value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict[str, Any], timing: dict[str, Any]) -> None:
        """Log the record of an epoch (or a --steps stop) and its timing."""
        step = record["step"]
        for split in ("train", "val"):
            metrics = record[split]
            for key in ("loss", "accuracy", "yaw_mse"):
                self.scalar(f"{split}/{key}", metrics[key], step)
            for index, value in enumerate(metrics["per_class_accuracy"]):
                if value is not None:
                    self.scalar(f"{split}/accuracy_class_{index}", value, step)
        self.scalar("lr", record["lr"], step)
        for key, value in record.get("eval", {}).items():
            self.scalar(f"eval/{key}", float(value), step)
        self.scalar("speed/samples_per_s", timing["samples_per_s"], step)
        with open(self.metrics_path, "a") as file:
            file.write(json.dumps(record, sort_keys=True) + "\n")
        with open(self.timing_path, "a") as file:
            file.write(json.dumps(timing, sort_keys=True) + "\n")
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def all_actions_step(run_dir: str | Path) -> int | None:
    """The step after which validation first recalled every action, from metrics.jsonl.

    On an expert that mostly flies straight, a net first learns the prior, the majority action
    on every frame, and only later the turns: this is the step of the first complete epoch
    whose validation pass got some frames of every action it holds right, i.e. when training
    left that plateau. None: it never did (or the run has no such record yet).
    """
    for record in _read_jsonl(Path(run_dir) / METRICS_FILE):
        per_action = (record.get("val") or {}).get("per_class_accuracy") or ()
        recalled = [accuracy for accuracy in per_action if accuracy is not None]
        if record.get("complete", True) and len(recalled) > 1 and min(recalled) > 0:
            return int(record["step"])
    return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by a kill: it and anything after it is redone
    return records


def _truncate_after(path: Path, step: int) -> None:
    records = [r for r in _read_jsonl(path) if r["step"] <= step]
    write_text_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def run_start_time(run_dir: Path) -> float:
    """When a run started: from its name (``YYYYmmdd-HHMMSS_...``) or else its mtime."""
    try:
        return time.mktime(time.strptime(run_dir.name[:15], RUN_TIME_FORMAT))
    except ValueError:
        return run_dir.stat().st_mtime


def find_latest_run(root: str | Path = "runs") -> Path | None:
    """The most recently started run under ``root`` that has a ``checkpoints/last.pt``.

    Run names start with their start time, so among ``bc.train``'s own runs this is the
    last by name; a run directory named by hand counts from its modification time.
    """
    root = Path(root)
    if not root.is_dir():
        return None
    runs = [d for d in root.iterdir() if (checkpoint_dir(d) / LAST).is_file()]
    if not runs:
        return None
    return max(runs, key=lambda d: (run_start_time(d), d.name))
