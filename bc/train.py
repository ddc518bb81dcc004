"""Behaviour cloning: ``python -m bc.train --net tiny_nfc --frames 3``.

One loop trains every registered net: feed-forward nets on frame stacks, recurrent nets on
sequence windows (``--bptt full|window|sliding``). A run lives in its own directory::

    runs/20261121-201500_tiny_nfc_f3/
      config.json          resolved TrainConfig
      metrics.jsonl        one record per epoch: train/val loss, accuracy, per-class accuracy,
                           yaw MSE, lr (and closed-loop metrics); no wall-clock fields, so
                           the same seed gives the same bytes on CPU
      timing.jsonl         wall-clock figures per epoch (samples/s, seconds)
      summary.json         final results, including test-split metrics of best_val_loss.pt
      tensorboard/         TensorBoard events
      checkpoints/         last.pt (every epoch, atomically), best_val_loss.pt,
                           best_success.pt (with --eval-every)

``main(config)`` is the importable entry point and returns the results; ``--resume RUN_DIR``
continues a run exactly where its last.pt left it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from torch import nn

from bc.augment import make_augment, unit_generator
from bc.checkpoint import (
    BEST_SUCCESS,
    BEST_VAL_LOSS,
    FORMAT,
    FORMAT_VERSION,
    LAST,
    RUN_TIME_FORMAT,
    checkpoint_dir,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from bc.config import SESSION_FIELDS, TrainConfig, config_from_dict, config_to_dict, parse_given
from bc.data import Dataset, InputNorm, SplitData, load_dataset
from bc.errors import BCError, ConfigError, TrainError
from bc.heads import Head, MetricTracker, make_head
from bc.nets import NETS, NetSpec, build_net
from bc.sampling import (
    FrameUnit,
    Unit,
    WindowUnit,
    epoch_generator,
    frame_plan,
    full_plan,
    sliding_plan,
    window_plan,
)
from bc.transfer import freeze, freeze_statistics, init_from, load_pretrained, parameter_counts

EpochCallback = Callable[[int, Path], dict[str, float]]
EVAL_CHUNK = 256  # steps per forward when validating recurrent nets (state carried over)
EVAL_FRAMES = 256  # frame stacks per forward when validating feed-forward nets


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training, with where to resume from."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an unavailable cuda is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available; use --device cpu")
    return torch.device(name)


def configure_torch(device: torch.device, threads: int) -> None:
    """Process-wide torch settings of a training run (``bc.bench`` uses them too)."""
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    # Adam's second moments of rarely active inputs decay into denormal floats, which x86
    # CPUs process 10-100x slower; flushing them to zero made the optimiser step of tiny_nfc
    # several times faster without changing what is learned.
    torch.set_flush_denormal(True)


def build_optimizer(config: TrainConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimiser of ``config`` over the trainable ``parameters``."""
    # The fused kernels do one pass over each tensor instead of one per arithmetic op: the
    # step of Adam over tiny_nfc's 5 M parameters took longer than forward and backward.
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            parameters,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            fused=True,
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(
            parameters, lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
    return torch.optim.Adadelta(
        parameters, lr=config.lr, weight_decay=config.weight_decay, foreach=True
    )


@dataclass
class Batch:
    """Normalised inputs with their labels; ``mask`` marks labelled steps of sequences."""

    inputs: torch.Tensor  # (B, T, C, H, W) float
    bins: torch.Tensor  # (B,) feed-forward, (B, T) recurrent
    yaw: torch.Tensor  # same shape as bins
    mask: torch.Tensor | None = None  # (B, T) bool, recurrent only


class Trainer:
    """The model, head, normalisation and optimiser, and how one unit is trained.

    ``bc.bench`` uses it too, so the figures it reports are those of this code path.
    """

    def __init__(
        self,
        config: TrainConfig,
        model: nn.Module,
        head: Head,
        norm: InputNorm,
        device: torch.device,
        recurrent: bool,
    ):
        self.config = config
        self.model = model
        self.head = head
        self.norm = norm
        self.device = device
        self.recurrent = recurrent
        self.frames = config.frames
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(config, self.parameters)
        self.carry: tuple[torch.Tensor, torch.Tensor] | None = None
        self.tracker = MetricTracker(head.n_bins)
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}
        self.augment = make_augment(config.augment)
        self._position = (0, 0)  # (epoch, unit) of the unit in training, keys the augmentation

    def set_position(self, epoch: int, unit: int) -> None:
        """Say which unit of which epoch trains next (the augmentation draws depend on it)."""
        self._position = (int(epoch), int(unit))

    def _normalise(
        self, frames: torch.Tensor, jitter: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Normalise a uint8 batch into a float buffer kept per batch shape.

        A fresh 5 MB tensor per step cost more in page faults than the arithmetic. Reuse is
        safe: the previous step's graph, which saved the buffer, is freed by its backward
        (and autograd's version counter would catch a graph that was not). Evaluation
        batches (no grad) are large and rare, so they get fresh memory. ``jitter``
        (``--augment color``) is applied on the 0-255 scale before the normalisation.
        """
        frames = frames.to(self.device, non_blocking=True)
        if not torch.is_grad_enabled():
            return self.norm(frames)
        shape = tuple(frames.shape)
        if shape not in self._buffers:
            self._buffers[shape] = torch.empty(shape, dtype=torch.float32, device=self.device)
        gain, offset = (None, None) if jitter is None else jitter
        return self.norm(frames, out=self._buffers[shape], gain=gain, offset=offset)

    def _sample_jitter(self, n: int, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.augment is None:
            return None
        generator = unit_generator(self.config.seed, *self._position)
        return self.augment.draw(n, channels, generator)

    def _run_jitter_of(
        self, runs: torch.Tensor, n_runs: int, channels: int
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One draw per run and epoch: a sequence keeps its look across carried windows."""
        if self.augment is None:
            return None
        generator = unit_generator(self.config.seed, self._position[0], None)
        gain, offset = self.augment.draw(n_runs, channels, generator)
        return gain[runs], offset[runs]

    def frame_batch(self, split: SplitData, targets: torch.Tensor, augment: bool = False) -> Batch:
        """Stacks of ``frames`` ending at ``targets``, labels of the target frames.

        ``augment``: apply the configured augmentation (training batches).
        """
        idx = split.stack_indices(targets, self.frames)  # (B, F)
        frames = split.gather(idx)
        jitter = self._sample_jitter(len(targets), frames.shape[-3]) if augment else None
        inputs = self._normalise(frames, jitter)
        return Batch(
            inputs, split.bins[targets].to(self.device), split.yaw[targets].to(self.device)
        )

    def window_batch(
        self, split: SplitData, unit: WindowUnit, label_every: int = 1, augment: bool = False
    ) -> Batch:
        """The windows of ``unit`` with their mask.

        With ``label_every > 1`` only every k-th step of a run counts in the loss
        (``--subsample`` for recurrent nets). ``augment``: apply the configured augmentation.
        """
        idx, mask = split.window_indices(unit.runs, unit.offsets, unit.valid, unit.length)
        if label_every > 1:
            mask &= split.positions(idx) % label_every == 0
        frames = split.gather(idx)
        jitter = None
        if augment:
            jitter = self._run_jitter_of(unit.runs, split.n_runs, frames.shape[-3])
        inputs = self._normalise(frames, jitter)
        return Batch(
            inputs,
            split.bins[idx].to(self.device),
            split.yaw[idx].to(self.device),
            mask.to(self.device),
        )

    def outputs(
        self, batch: Batch, state: Any = None, carry: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Any]:
        """Forward pass over a batch.

        Returns flat ``(outputs (M, n), bins (M,), yaw (M,))`` of the labelled samples and,
        for recurrent nets, the state after ``carry`` steps (or at the end).
        """
        if not self.recurrent:
            return self.model(batch.inputs), batch.bins, batch.yaw, None
        if carry is not None and carry < batch.inputs.shape[1]:
            first, middle = self.model(batch.inputs[:, :carry], state)
            rest, _ = self.model(batch.inputs[:, carry:], middle)
            out, state = torch.cat([first, rest], dim=1), middle
        else:
            out, state = self.model(batch.inputs, state)  # (B, T, n_outputs)
        mask = batch.mask
        return out[mask], batch.bins[mask], batch.yaw[mask], state

    def optimise(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (zero, backward, clip, step)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.step_optimizer()

    def step_optimizer(self) -> None:
        """Clip the accumulated gradients and step."""
        if self.config.clip > 0:
            nn.utils.clip_grad_norm_(self.parameters, self.config.clip)
        self.optimizer.step()

    def _loss(self, outputs: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor) -> torch.Tensor:
        loss = self.head.loss(outputs, bins, yaw)
        if not torch.isfinite(loss):
            raise TrainError(f"the training loss became {loss.item()}; lower --lr or set --clip")
        return loss

    def _track(
        self, loss: torch.Tensor, outputs: torch.Tensor, bins: torch.Tensor, yaw: torch.Tensor
    ) -> None:
        with torch.no_grad():
            self.tracker.update(
                float(loss) * bins.numel(), self.head.predict(outputs.detach()), bins, yaw
            )

    def train_unit(self, split: SplitData, unit: Unit) -> int:
        """Train on one unit (one optimiser step); returns the labelled samples it held."""
        label_every = self.config.subsample
        if isinstance(unit, FrameUnit):
            batch = self.frame_batch(split, unit.targets, augment=True)
            outputs, bins, yaw, _ = self.outputs(batch)
            loss = self._loss(outputs, bins, yaw)
            self.optimise(loss)
            self._track(loss, outputs, bins, yaw)
            return int(bins.numel())
        if isinstance(unit, WindowUnit):
            batch = self.window_batch(split, unit, label_every, augment=True)
            state = None if unit.reset else self.carry
            outputs, bins, yaw, state = self.outputs(batch, state, unit.carry)
            self.carry = _detach(state) if unit.carry is not None else None
            if bins.numel() == 0:
                return 0  # a window without labels (--subsample > --time-length)
            loss = self._loss(outputs, bins, yaw)
            self.optimise(loss)
            self._track(loss, outputs, bins, yaw)
            return int(bins.numel())
        # SequenceUnit: gradients of every window summed, one step for the whole sequence.
        self.optimizer.zero_grad(set_to_none=True)
        state, samples = None, 0
        for window in unit.windows:
            batch = self.window_batch(split, window, label_every, augment=True)
            outputs, bins, yaw, state = self.outputs(batch, state, window.carry)
            state = _detach(state)
            if bins.numel() == 0:
                continue
            loss = self._loss(outputs, bins, yaw)
            (loss / len(unit.windows)).backward()
            self._track(loss, outputs, bins, yaw)
            samples += int(bins.numel())
        self.step_optimizer()
        return samples

    @torch.no_grad()
    def evaluate(self, split: SplitData) -> dict[str, Any]:
        """Loss and accuracies over every frame of ``split``, in eval mode.

        Recurrent nets read each run from its start with the state carried step by step,
        as the policy does in the env.
        """
        self.model.eval()
        tracker = MetricTracker(self.head.n_bins)
        if self.recurrent:
            units = sliding_plan(
                split,
                torch.Generator().manual_seed(0),
                self.config.batch_size,
                EVAL_CHUNK,
                EVAL_CHUNK,
                accumulate=False,
            )
            state = None
            for unit in units:
                assert isinstance(unit, WindowUnit)
                batch = self.window_batch(split, unit)
                outputs, bins, yaw, state = self.outputs(
                    batch, None if unit.reset else state, unit.carry
                )
                loss = self.head.loss(outputs, bins, yaw, reduction="sum")
                tracker.update(float(loss), self.head.predict(outputs), bins, yaw)
        else:
            for targets in torch.arange(split.n_frames).split(EVAL_FRAMES):
                batch = self.frame_batch(split, targets)
                outputs, bins, yaw, _ = self.outputs(batch)
                loss = self.head.loss(outputs, bins, yaw, reduction="sum")
                tracker.update(float(loss), self.head.predict(outputs), bins, yaw)
        self.train_mode()
        return tracker.result()

    def train_mode(self) -> None:
        """``model.train()``, keeping fully frozen modules (batch-norm statistics) in eval."""
        self.model.train()
        freeze_statistics(self.model)


def _detach(state: Any) -> Any:
    if state is None:
        return None
    return tuple(s.detach() for s in state)


def epoch_plan(config: TrainConfig, split: SplitData, epoch: int, n_bins: int) -> list[Unit]:
    """The units of training epoch ``epoch`` (0-based), from ``(seed, epoch)`` alone."""
    generator = epoch_generator(config.seed, epoch)
    if not config.recurrent:
        balance = n_bins if config.balance else 0
        return list(frame_plan(split, generator, config.batch_size, config.subsample, balance))
    if config.bptt == "full":
        return list(full_plan(split, generator, config.batch_size))
    if config.bptt == "window":
        return list(window_plan(split, generator, config.batch_size, config.time_length))
    return list(
        sliding_plan(
            split,
            generator,
            config.batch_size,
            config.time_length,
            config.sliding_step,
            config.accumulate,
        )
    )


def _new_run_dir(config: TrainConfig) -> Path:
    if config.run_dir:
        path = Path(config.run_dir)
        if path.exists() and any(path.iterdir()):
            raise TrainError(
                f"run directory {path} already exists and is not empty; use --resume {path}"
                " to continue it or choose another --run-dir"
            )
        path.mkdir(parents=True, exist_ok=True)
        return path
    root = Path(config.out)
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


def resume_config(run_dir: str | Path, **session: Any) -> TrainConfig:
    """The config of the run in ``run_dir`` with some session fields replaced.

    Only session fields (``epochs``, ``steps``, ``device``, ...) may change on resume.
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
        flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
        raise ConfigError(
            f"{flags} cannot change when resuming; start a new run with"
            f" --init-from {checkpoint_dir(run_dir) / LAST} instead"
        )
    values.update(session, resume=str(run_dir))
    return config_from_dict(TrainConfig, values)


def _write_json(path: Path, values: Any) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    os.replace(temporary, path)


def _copy_atomic(source: Path, target: Path) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def closed_loop_callback(config: TrainConfig) -> EpochCallback:
    """Closed-loop episodes every ``--eval-every`` epochs, from the evaluator's package."""
    try:
        from eval.during_training import evaluate_checkpoint
        from eval.errors import EvalError
    except ImportError as error:
        raise TrainError(
            f"--eval-every needs eval.during_training, which cannot be imported ({error})"
        ) from None

    def callback(epoch: int, checkpoint_path: Path) -> dict[str, float]:
        if epoch % config.eval_every:
            return {}
        try:
            return evaluate_checkpoint(
                checkpoint_path, config.eval_episodes, config.seed, config.eval_workers
            )
        except EvalError as error:
            raise TrainError(f"closed-loop evaluation after epoch {epoch}: {error}") from None

    return callback


class _Recorder:
    """metrics.jsonl, timing.jsonl and TensorBoard of one run."""

    def __init__(self, run_dir: Path, config: TrainConfig, resume_step: int | None):
        self.metrics_path = run_dir / "metrics.jsonl"
        self.timing_path = run_dir / "timing.jsonl"
        if resume_step is not None:
            # Records past the checkpoint are redone identically after the resume.
            for path in (self.metrics_path, self.timing_path):
                _truncate_after(path, resume_step)
        self.writer = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = resume_step + 1 if resume_step is not None else None
            self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge)

    def last_step(self) -> int | None:
        records = _read_jsonl(self.metrics_path)
        return records[-1]["step"] if records else None

    def records(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.metrics_path)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None and value is not None and math.isfinite(value):
            self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict[str, Any], timing: dict[str, Any]) -> None:
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
        if self.writer is not None:
            self.writer.close()


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
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def _progress(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}"),
        TextColumn("{task.fields[speed]:.0f} samples/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not enabled,
    )


def _print_parameters(console: Console, model: nn.Module, net: str) -> None:
    table = Table(title=f"parameters of {net}")
    for column in ("part", "trainable", "frozen", "total"):
        table.add_column(column, justify="left" if column == "part" else "right")
    rows = parameter_counts(model)
    for part, trainable, frozen in rows:
        table.add_row(part, f"{trainable:,}", f"{frozen:,}", f"{trainable + frozen:,}")
    trainable, frozen = sum(r[1] for r in rows), sum(r[2] for r in rows)
    table.add_row("all", f"{trainable:,}", f"{frozen:,}", f"{trainable + frozen:,}", style="bold")
    console.print(table)


def _print_summary(console: Console, results: dict[str, Any]) -> None:
    table = Table(title=f"run {results['run_dir']}")
    for column in ("split", "loss", "accuracy", "yaw MSE", "samples"):
        table.add_column(column, justify="left" if column == "split" else "right")
    rows = [
        ("train (last epoch)", results["train"]),
        ("val (last epoch)", results["val"]),
        (f"val (best, epoch {results['best_epoch']})", results["best_val"]),
        ("test (best_val_loss.pt)", results["test"]),
    ]
    for name, metrics in rows:
        if metrics:
            table.add_row(
                name,
                f"{metrics['loss']:.4f}",
                f"{metrics['accuracy']:.3f}",
                f"{metrics['yaw_mse']:.4f}",
                str(metrics["samples"]),
            )
    console.print(table)
    test_rate = results.get("test_majority_rate")
    console.print(
        "majority-class rate (always the training set's most frequent action): "
        f"val {results['val_majority_rate']:.3f}"
        + ("" if test_rate is None else f", test {test_rate:.3f}")
        + "; "
        f"{results['steps']} steps in {results['train_time_s']:.1f} s of training "
        f"({results['samples_per_s']:.0f} samples/s)"
    )


def build_model(config: TrainConfig, dataset: Dataset, head: Head) -> tuple[nn.Module, NetSpec]:
    """The net of ``config`` for ``dataset``'s images and ``head``'s outputs."""
    try:
        spec = NetSpec(
            frames=config.frames,
            channels=dataset.channels,
            height=dataset.height,
            width=dataset.width,
            n_outputs=head.n_outputs,
        )
        return build_net(config.net, spec), spec
    except ValueError as error:
        raise TrainError(f"cannot build net {config.net}: {error}") from None


@dataclass
class _Best:
    """The best points so far: lowest validation loss, highest closed-loop success rate."""

    val_loss: float = math.inf
    epoch: int = 0
    val: dict[str, Any] | None = None
    success: float = -math.inf


class TrainingRun:
    """One run, new or resumed: set up from its config, then ``run()`` the epoch loop.

    Each epoch (or the stop point of ``--steps``) ends the same way: validate, write
    best_val_loss.pt when it improved, write last.pt, then ``_finish``: epoch callbacks,
    best_success.pt, and the metrics line. A record whose line is written is done; a resume
    redoes ``_finish`` for a checkpoint whose line is missing.
    """

    def __init__(self, config: TrainConfig, epoch_callback: EpochCallback | None = None):
        self.config = config
        self.console = Console(soft_wrap=True)  # log lines stay whole in files and CI logs
        self.device = resolve_device(config.device)
        configure_torch(self.device, config.threads)
        self.callbacks = [epoch_callback] if epoch_callback is not None else []
        if config.eval_every > 0:
            self.callbacks.append(closed_loop_callback(config))
        self.resume = self._read_resume() if config.resume else None

        self.dataset = load_dataset(
            config.data,
            in_ram=config.in_ram,
            max_frames=config.max_frames,
            subsample=config.subsample,
            device=self.device,
        )
        self.train_split = self.dataset.splits["train"]
        self.val_split = self.dataset.splits["val"]
        if self.train_split.n_frames == 0:
            raise TrainError("--max-frames leaves no training frames")
        if self.resume is not None and self.resume["dataset"] != self.dataset.fingerprint():
            raise TrainError(
                f"--resume {config.resume}: {config.data} does not hold the runs this run"
                " trained on"
            )
        self.head = make_head(config.head, self.dataset.n_bins, config.target)
        self.norm = (
            InputNorm.from_dict(self.resume["norm"])
            if self.resume is not None
            else InputNorm.fit(config.input_norm, self.train_split, self.dataset.channels)
        )
        self.entry = NETS[config.net]
        torch.manual_seed(config.seed)
        self.model, self.spec = build_model(config, self.dataset, self.head)
        if self.resume is None:
            if config.pretrained:
                load_pretrained(self.model, config.pretrained, config.net)
            for source in config.init_from:
                init_from(self.model, source, config.net)
        self.frozen = freeze(self.model, config.freeze) if config.freeze else []
        self.model.to(self.device)
        self.trainer = Trainer(
            config, self.model, self.head, self.norm, self.device, self.entry.recurrent
        )

        self.epoch, self.unit, self.step = 0, 0, 0
        self.best = _Best()
        if self.resume is not None:
            self.run_dir = Path(config.resume)
            self._restore(self.resume)
        else:
            self.run_dir = _new_run_dir(config)
        # On resume too: a later --resume without --epochs continues to the latest target.
        _write_json(self.run_dir / "config.json", config_to_dict(config))
        self.checkpoints = checkpoint_dir(self.run_dir)
        self.recorder = _Recorder(
            self.run_dir, config, self.step if self.resume is not None else None
        )
        for record in self.recorder.records():
            rate = record.get("eval", {}).get("success_rate")
            if rate is not None:
                self.best.success = max(self.best.success, float(rate))
        self.train_time, self.train_samples = 0.0, 0

    def _read_resume(self) -> dict[str, Any]:
        config = self.config
        payload = read_checkpoint(checkpoint_dir(config.resume) / LAST)
        saved = config_from_dict(TrainConfig, payload["config"])
        changed = [
            f.name
            for f in dataclasses.fields(TrainConfig)
            if f.name not in SESSION_FIELDS and getattr(saved, f.name) != getattr(config, f.name)
        ]
        if changed:
            flags = ", ".join("--" + name.replace("_", "-") for name in changed)
            raise ConfigError(f"--resume {config.resume}: {flags} differ from the saved run")
        if payload["step"] >= config.steps if config.steps else payload["epoch"] >= config.epochs:
            raise TrainError(
                f"--resume {config.resume}: nothing to train, the run is at epoch"
                f" {payload['epoch']} (step {payload['step']}) already; raise --epochs or"
                " --steps"
            )
        return payload

    def _restore(self, payload: dict[str, Any]) -> None:
        self.model.load_state_dict(payload["model"])
        self.trainer.optimizer.load_state_dict(payload["optimizer"])
        set_rng_state(payload["rng"])
        self.epoch, self.unit, self.step = payload["epoch"], payload["unit"], payload["step"]
        self.best.val_loss, self.best.epoch = payload["best_val_loss"], payload["best_epoch"]
        self.best.val = payload["best_val"]
        if payload["train_sums"] is not None:
            self.trainer.tracker.load_state(payload["train_sums"])
        if payload["carry"] is not None:
            self.trainer.carry = tuple(t.to(self.device) for t in payload["carry"])

    def _payload(self, record: dict[str, Any], complete: bool) -> dict[str, Any]:
        """The checkpoint of the current position (see bc.checkpoint for the keys)."""
        trainer = self.trainer
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "net": self.config.net,
            "spec": dataclasses.asdict(self.spec),
            "recurrent": self.entry.recurrent,
            "head": self.head.name,
            "target": self.head.target,
            "n_bins": self.dataset.n_bins,
            "config": config_to_dict(self.config),
            "env_kwargs": self.dataset.env_kwargs,
            "expert_config": self.dataset.manifest.get("expert"),
            "norm": self.norm.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "unit": self.unit,
            "step": self.step,
            "train_sums": None if complete else trainer.tracker.state(),
            "carry": None if complete or trainer.carry is None else list(trainer.carry),
            "best_val_loss": self.best.val_loss,
            "best_epoch": self.best.epoch,
            "best_val": self.best.val,
            "record": record,
            "dataset": self.dataset.fingerprint(),
            "versions": {"torch": str(torch.__version__)},
        }

    def _finish(self, record: dict[str, Any], timing: dict[str, Any]) -> None:
        extra: dict[str, float] = {}
        if record["complete"]:
            for callback in self.callbacks:
                extra.update(callback(record["epoch"], self.checkpoints / LAST) or {})
        if extra:
            record = {**record, "eval": {key: float(value) for key, value in extra.items()}}
            rate = extra.get("success_rate")
            if rate is not None and float(rate) > self.best.success:
                self.best.success = float(rate)
                _copy_atomic(self.checkpoints / LAST, self.checkpoints / BEST_SUCCESS)
        self.recorder.epoch(record, timing)

    def _train_epoch(self, progress: Progress) -> tuple[int, float]:
        """Train the rest of epoch ``self.epoch``; returns (samples, seconds)."""
        config, trainer = self.config, self.trainer
        plan = epoch_plan(config, self.train_split, self.epoch, self.dataset.n_bins)
        if self.unit == 0:
            trainer.tracker.reset()
            trainer.carry = None
        task = progress.add_task(
            f"epoch {self.epoch + 1}/{config.epochs if not config.steps else '?'}",
            total=len(plan),
            completed=self.unit,
            loss=0.0,
            acc=0.0,
            speed=0.0,
        )
        started, samples = time.perf_counter(), 0
        while self.unit < len(plan):
            trainer.set_position(self.epoch, self.unit)
            samples += trainer.train_unit(self.train_split, plan[self.unit])
            self.unit += 1
            self.step += 1
            sums = trainer.tracker
            if self.step % config.log_every == 0 and sums.count:
                self.recorder.scalar("train/loss_running", sums.loss_sum / sums.count, self.step)
            if config.progress:
                progress.update(
                    task,
                    completed=self.unit,
                    loss=sums.loss_sum / max(sums.count, 1),
                    acc=float(sums.correct.sum()) / max(sums.count, 1),
                    speed=samples / max(time.perf_counter() - started, 1e-9),
                )
            if config.steps and self.step >= config.steps:
                break
        progress.remove_task(task)
        complete = self.unit == len(plan)
        if complete:
            self.epoch, self.unit = self.epoch + 1, 0
        return samples, time.perf_counter() - started

    def _end_segment(self, samples: int, seconds: float) -> dict[str, Any]:
        complete = self.unit == 0
        val = self.trainer.evaluate(self.val_split)
        record = {
            "epoch": self.epoch if complete else self.epoch + 1,
            "complete": complete,
            "step": self.step,
            "lr": self.trainer.optimizer.param_groups[0]["lr"],
            "train": self.trainer.tracker.result(),
            "val": val,
        }
        improved = val["loss"] < self.best.val_loss
        if improved:
            self.best.val_loss, self.best.epoch, self.best.val = val["loss"], record["epoch"], val
        payload = self._payload(record, complete)
        if improved:
            save_checkpoint(self.checkpoints / BEST_VAL_LOSS, payload)
        save_checkpoint(self.checkpoints / LAST, payload)
        rate = samples / max(seconds, 1e-9)
        timing = {"epoch": record["epoch"], "step": self.step, "seconds": seconds}
        self._finish(record, {**timing, "samples_per_s": rate})
        self.console.print(
            f"epoch {record['epoch']} step {self.step}: train loss"
            f" {record['train']['loss']:.4f} acc {record['train']['accuracy']:.3f} | val loss"
            f" {val['loss']:.4f} acc {val['accuracy']:.3f}{' *' if improved else ''}"
            f" | {rate:.0f} samples/s"
        )
        self.console.file.flush()
        return record

    def _more_to_do(self) -> bool:
        config = self.config
        return self.step < config.steps if config.steps else self.epoch < config.epochs

    def run(self) -> dict[str, Any]:
        """Train to ``--epochs`` or ``--steps``, test best_val_loss.pt, return the results."""
        config = self.config
        self._print_start()
        record = self.resume["record"] if self.resume is not None else None
        if record is not None and self.recorder.last_step() != self.step:
            timing = {"epoch": record["epoch"], "step": self.step, "seconds": 0.0}
            self._finish(record, {**timing, "samples_per_s": 0.0})
        self.trainer.train_mode()
        try:
            with _progress(self.console, config.progress) as progress:
                while self._more_to_do():
                    samples, seconds = self._train_epoch(progress)
                    self.train_time += seconds
                    self.train_samples += samples
                    record = self._end_segment(samples, seconds)
                    if self.unit != 0:
                        break  # --steps reached in the middle of an epoch
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"interrupted in epoch {self.epoch + 1} (step {self.step}); resume with"
                f" python -m bc.train --resume {self.run_dir}"
            ) from None
        finally:
            self.recorder.close()
        assert record is not None  # a resume with nothing to do was refused in __init__
        results = self._results(record)
        _write_json(self.run_dir / "summary.json", results)
        _print_summary(self.console, results)
        return results

    def _print_start(self) -> None:
        config, dataset = self.config, self.dataset
        splits = ", ".join(
            f"{name} {split.n_runs} runs / {split.n_frames} frames"
            for name, split in dataset.splits.items()
        )
        where = "in memory" if self.train_split.in_ram else "read per batch"
        self.console.print(
            f"[bold]{config.net}[/] frames {config.frames} head {config.head} on {config.data}:"
            f" {splits} ({where}, {self.device.type}); run dir {self.run_dir}"
        )
        _print_parameters(self.console, self.model, config.net)
        if self.frozen:
            self.console.print(f"frozen: {len(self.frozen)} tensors ({', '.join(config.freeze)})")

    def _results(self, record: dict[str, Any]) -> dict[str, Any]:
        test = None
        if "test" in self.dataset.splits:
            best = read_checkpoint(self.checkpoints / BEST_VAL_LOSS, map_location=self.device)
            self.model.load_state_dict(best["model"])
            test = self.trainer.evaluate(self.dataset.splits["test"])
        for split in self.dataset.splits.values():
            close = getattr(split.source, "close", None)
            if close is not None:
                close()
        # the baseline: always predicting the training set's most frequent bin
        n_bins = self.dataset.n_bins
        majority = int(self.train_split.class_counts(n_bins).argmax())

        def majority_rate(name: str) -> float:
            counts = self.dataset.splits[name].class_counts(n_bins)
            return float(counts[majority]) / max(int(counts.sum()), 1)

        return {
            "run_dir": str(self.run_dir),
            "net": self.config.net,
            "frames": self.config.frames,
            "head": self.config.head,
            "epochs": record["epoch"],
            "steps": self.step,
            "train": record["train"],
            "val": record["val"],
            "best_val_loss": self.best.val_loss,
            "best_epoch": self.best.epoch,
            "best_val": self.best.val,
            "test": test,
            "val_majority_rate": majority_rate("val"),
            "test_majority_rate": majority_rate("test") if "test" in self.dataset.splits else None,
            "train_time_s": self.train_time,
            "samples_per_s": self.train_samples / self.train_time if self.train_time else 0.0,
            "checkpoints": {
                "last": str(self.checkpoints / LAST),
                "best_val_loss": str(self.checkpoints / BEST_VAL_LOSS),
            },
        }


def main(config: TrainConfig, epoch_callback: EpochCallback | None = None) -> dict[str, Any]:
    """Train as ``config`` says and return the results (also in ``summary.json``).

    ``epoch_callback(epoch, checkpoint_path)`` runs after each epoch's last.pt is written;
    the metrics it returns go to metrics.jsonl (under ``eval``) and TensorBoard, and a
    ``success_rate`` above the best so far copies that checkpoint to best_success.pt.
    """
    return TrainingRun(config, epoch_callback).run()


def config_from_cli(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the command line into a TrainConfig (or the resumed run's config)."""
    given = parse_given(
        TrainConfig, argv, "python -m bc.train", "Train a behaviour-cloning policy."
    )
    if given.get("resume"):
        return resume_config(given.pop("resume"), **given)
    return TrainConfig(**given)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a cluster's SIGTERM stops a run as cleanly as Ctrl-C


def cli(argv: Sequence[str] | None = None) -> int:
    """Run ``main`` from the command line; user errors are one ``error:`` line, exit 2."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        main(config_from_cli(argv))
    except BCError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as interrupted:
        print(f"error: {interrupted.message}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted before training started", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(cli())
