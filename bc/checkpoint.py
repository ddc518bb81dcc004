"""Checkpoints: one ``.pt`` file that rebuilds a policy or resumes a run on its own.

A checkpoint is a dict of tensors and plain python values only, so it loads with
``torch.load(weights_only=True)`` and nothing in it can run code. :func:`build_checkpoint`
is the one place that writes its keys:

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
``best_val_loss``  the lowest validation loss so far, ``best_epoch`` its epoch and
                   ``best_val`` its validation metrics (a resume keeps selecting)
``record``         the metrics.jsonl record of this point (without closed-loop metrics)
``dataset``        run names and lengths per split (checked on resume)
``versions``       library versions that wrote it (``torch``)
=================  ================================================================

A run directory keeps ``checkpoints/last.pt`` (every epoch), ``checkpoints/best_val_loss.pt``
and, with closed-loop evaluation, ``checkpoints/best_success.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pickle
import signal
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from artifacts.atomic import atomic_path
from artifacts.formats import check_format
from bc.checkpoint_names import (  # noqa: F401  (re-exported: the file names' old home)
    BEST_SUCCESS,
    BEST_VAL_LOSS,
    DEFAULT_CHECKPOINT,
    LAST,
)
from bc.config import config_to_dict
from bc.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

    from bc.config import TrainConfig
    from bc.data import Dataset, InputNorm
    from bc.heads import Head
    from bc.nets import NetSpec

FORMAT = "corridor-bc-checkpoint"
FORMAT_VERSION = 1
# what read_checkpoint needs before anything else reads the file
REQUIRED_KEYS = ("net", "spec", "model", "config", "norm")


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
    with signals_deferred(), atomic_path(path) as temporary, open(temporary, "wb") as file:
        torch.save(payload, file)


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
    check_format(str(path), payload, (FORMAT_VERSION,), CheckpointError, name=FORMAT,
                 kind="checkpoint")  # fmt: skip
    missing = [key for key in REQUIRED_KEYS if key not in payload]
    if missing:
        raise CheckpointError(f"{path} lacks {', '.join(missing)}")
    return payload


def build_checkpoint(
    *,
    config: TrainConfig,
    spec: NetSpec,
    head: Head,
    norm: InputNorm,
    dataset: Dataset,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    unit: int,
    step: int,
    train_sums: dict[str, Any] | None,
    carry: tuple[torch.Tensor, ...] | None,
    best_val_loss: float,
    best_epoch: int,
    best_val: dict[str, Any] | None,
    record: dict[str, Any],
) -> dict[str, Any]:
    """The checkpoint of a training position, with every key of the module docstring's table.

    ``train_sums`` and ``carry`` are None at the end of an epoch; the global RNG states are
    read here, so call it at the position it describes.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "net": config.net,
        "spec": dataclasses.asdict(spec),
        "recurrent": config.recurrent,
        "head": head.name,
        "target": head.target,
        "n_bins": dataset.n_bins,
        "config": config_to_dict(config),
        "env_kwargs": dataset.env_kwargs,
        "expert_config": dataset.manifest.get("expert"),
        "norm": norm.to_dict(),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
        "epoch": epoch,
        "unit": unit,
        "step": step,
        "train_sums": train_sums,
        "carry": None if carry is None else list(carry),
        "best_val_loss": best_val_loss,
        "best_epoch": best_epoch,
        "best_val": best_val,
        "record": record,
        "dataset": dataset.fingerprint(),
        "versions": {"torch": str(torch.__version__)},
    }


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
