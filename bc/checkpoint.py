"""Checkpoints: one ``.pt`` file that rebuilds a policy or resumes a run on its own.

A checkpoint is a dict of tensors and plain python values only, so it loads with
``torch.load(weights_only=True)`` and nothing in it can run code. Keys:

=================  ================================================================
``format``         ``"corridor-bc-checkpoint"``; ``format_version`` 1
``net``, ``spec``  registry name and NetSpec fields (frames, channels, height, width,
                   n_outputs); ``recurrent``
``head``           classifier | regressor | gaussian; ``target``; ``n_bins``
``config``         the resolved training config (``config.json`` of the run)
``env_kwargs``     the dataset manifest's env_kwargs (the evaluator rebuilds the env)
``expert_config``  the dataset manifest's expert config (the evaluator's agreement
                   reference), or None
``norm``           input normalisation: mode, per-channel mean and std
``model``          the net's state dict
``optimizer``      optimiser state; ``rng``: torch (and CUDA) generator states
``epoch``          epochs completed; ``unit``: units done in the next one; ``step``:
                   optimiser steps so far
``train_sums``     training metric sums of a partial epoch; ``carry``: the sliding
                   BPTT hidden state, if a checkpoint falls between two windows
``record``         the metrics.jsonl record of this point (without closed-loop metrics)
``dataset``        run names and lengths per split (checked on resume)
=================  ================================================================

A run directory keeps ``checkpoints/last.pt`` (every epoch), ``checkpoints/best_val_loss.pt``
and, with closed-loop evaluation, ``checkpoints/best_success.pt``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import signal
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from bc.errors import CheckpointError

FORMAT = "corridor-bc-checkpoint"
FORMAT_VERSION = 1
LAST = "last.pt"
BEST_VAL_LOSS = "best_val_loss.pt"
BEST_SUCCESS = "best_success.pt"
RUN_TIME_FORMAT = "%Y%m%d-%H%M%S"


def checkpoint_dir(run_dir: str | Path) -> Path:
    """Where a run keeps its checkpoints."""
    return Path(run_dir) / "checkpoints"


PLAIN_TYPES = (str, int, float, bool, type(None), torch.Tensor)


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """Raise TypeError unless ``value`` holds only what ``weights_only`` loading accepts.

    That is tensors and plain python containers of str, int, float, bool and None.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where}: key {key!r} is a {type(key).__name__}")
            check_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_plain(item, f"{where}[{index}]")
    elif type(value) not in PLAIN_TYPES and not isinstance(value, torch.Tensor):
        # type() and not isinstance(): str subclasses such as torch's TorchVersion are
        # pickled by class and refused by weights_only loading.
        raise TypeError(f"{where} is a {type(value).__name__}, which weights_only refuses")


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (main thread, POSIX).

    Ctrl-C in the middle of ``torch.save`` surfaced as a RuntimeError from the half-written
    zip file instead of a KeyboardInterrupt; held, it arrives right after the write.
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not (
        threading.main_thread()
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically: a kill leaves either the old file or the new one."""
    check_plain(payload)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with signals_deferred():
        try:
            with open(temporary, "wb") as file:
                torch.save(payload, file)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; any problem is a one-line CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; name a .pt file in it")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as error:
        reason = " ".join(str(error).split())
        if "WeightsUnpickler error:" in reason:
            reason = reason.split("WeightsUnpickler error:")[1].split(". ")[0].strip()
        raise CheckpointError(
            f"{path} is not a readable corridor-bc checkpoint ({reason[:200]})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a corridor-bc checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {payload.get('format_version')!r};"
            f" this corridor-bc reads version {FORMAT_VERSION}"
        )
    missing = [key for key in ("net", "spec", "model", "config", "norm") if key not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    return payload


def rng_state() -> dict[str, Any]:
    """The global generator states a run depends on (dropout in some nets, init)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


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
