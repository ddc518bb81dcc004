"""Behaviour cloning: ``python -m bc.train --net tiny_nfc --frames 3``.

One loop trains every registered net (the step engine is ``bc.step_engine``): feed-forward nets
on frame stacks, recurrent nets on sequence windows (``--bptt full|window|sliding``). A run
lives in its own directory (``bc.run_dir``): config.json, metrics.jsonl, timing.jsonl,
summary.json, tensorboard/ and checkpoints/ (last.pt every epoch, best_val_loss.pt, and
best_success.pt with --eval-every).

``main(config, epoch_callback)`` is the importable entry point and returns the results;
``--resume RUN_DIR`` continues a run exactly where its last.pt left it. Closed-loop
evaluation (``--eval-every``) lives in ``eval``, above bc: it comes in as the epoch callback,
which this module's ``__main__`` block, the command line's composition root, builds with
``eval.during_training.closed_loop_callback``.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
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

import configflags
from bc.checkpoint import (
    BEST_SUCCESS,
    BEST_VAL_LOSS,
    LAST,
    build_checkpoint,
    checkpoint_dir,
    read_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from bc.config import TrainConfig
from bc.data import InputNorm, load_dataset
from bc.errors import TrainError
from bc.lr_schedule import scheduled_lr, training_progress
from bc.metrics import METRIC_COLUMNS, metric_cells
from bc.run_dir import (
    MetricsLog,
    copy_atomic,
    new_run_dir,
    read_resume_checkpoint,
    resume_config,
    write_config,
    write_json,
)
from bc.step_engine import (
    Trainer,
    build_head,
    build_model,
    configure_torch,
    epoch_plan,
    epochs_for_min_steps,
    resolve_device,
)
from bc.transfer import freeze, init_from, load_pretrained, parameter_table

# ``callback(epoch, checkpoint_path) -> metrics`` after each complete epoch's last.pt
EpochCallback = Callable[[int, Path], dict[str, float]]
PROG = "python -m bc.train"
DESCRIPTION = "Train a behaviour-cloning policy."


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; its message says which epoch was kept and how to resume.

    ``configflags.run_main`` prints a KeyboardInterrupt's message as the one error line.
    """


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


def _print_summary(console: Console, results: dict[str, Any]) -> None:
    table = Table(title=f"run {results['run_dir']}")
    for column in ("split", *METRIC_COLUMNS):
        table.add_column(column, justify="left" if column == "split" else "right")
    rows = [
        ("train (last epoch)", results["train"]),
        ("val (last epoch)", results["val"]),
        (f"val (best, epoch {results['best_epoch']})", results["best_val"]),
        ("test (last.pt)", results.get("test_last")),
        ("test (best_val_loss.pt)", results["test"]),
    ]
    for name, metrics in rows:
        if metrics:
            table.add_row(name, *metric_cells(metrics))
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
    best_val_loss.pt when it improved, write last.pt, then ``_finish``: the epoch callback,
    best_success.pt, and the metrics line. A record whose line is written is done; a resume
    redoes ``_finish`` for a checkpoint whose line is missing.
    """

    def __init__(self, config: TrainConfig, epoch_callback: EpochCallback | None = None):
        if config.eval_every > 0 and epoch_callback is None:
            raise TrainError(
                f"--eval-every {config.eval_every} needs the closed-loop evaluator: pass"
                " epoch_callback=eval.during_training.closed_loop_callback(config) to"
                " bc.train.main, or train with python -m bc.train"
            )
        self.config = config
        self.console = Console(soft_wrap=True)  # log lines stay whole in files and CI logs
        self.device = resolve_device(config.device)
        configure_torch(self.device, config.threads)
        self.epoch_callback = epoch_callback
        self.resume = read_resume_checkpoint(config) if config.resume else None

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
        if self.resume is None:  # a resumed run's config.json holds the epochs it trains
            epochs = epochs_for_min_steps(config, self.train_split, self.dataset.n_bins)
            if epochs != config.epochs:
                self.console.print(
                    f"training {epochs} epochs to make --min-steps {config.min_steps}"
                )
                config = self.config = replace(config, epochs=epochs)
        self.head = build_head(config, self.dataset)
        self.norm = (
            InputNorm.from_dict(self.resume["norm"])
            if self.resume is not None
            else InputNorm.fit(config.input_norm, self.train_split, self.dataset.channels)
        )
        torch.manual_seed(config.seed)
        self.model, self.spec = build_model(config, self.dataset, self.head)
        if self.resume is None:
            if config.pretrained:
                load_pretrained(self.model, config.pretrained, config.net)
            for source in config.init_from:
                init_from(self.model, source, config.net, config.view)
        self.frozen = freeze(self.model, config.freeze) if config.freeze else []
        self.model.to(self.device)
        self.trainer = Trainer(
            config, self.model, self.head, self.norm, self.device, config.recurrent
        )

        self.epoch, self.unit, self.step = 0, 0, 0
        self.best = _Best()
        if self.resume is not None:
            self.run_dir = Path(config.resume)
            self._restore(self.resume)
        else:
            self.run_dir = new_run_dir(config)
        write_config(self.run_dir, config)
        self.checkpoints = checkpoint_dir(self.run_dir)
        self.metrics_log = MetricsLog(
            self.run_dir, config.tensorboard, self.step if self.resume is not None else None
        )
        for record in self.metrics_log.records():
            rate = record.get("eval", {}).get("success_rate")
            if rate is not None:
                self.best.success = max(self.best.success, float(rate))
        self.train_time, self.train_samples = self.metrics_log.trained()

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

    def _checkpoint(self, record: dict[str, Any], complete: bool) -> dict[str, Any]:
        """The checkpoint of the current position."""
        trainer = self.trainer
        return build_checkpoint(
            config=self.config,
            spec=self.spec,
            head=self.head,
            norm=self.norm,
            dataset=self.dataset,
            model=self.model,
            optimizer=trainer.optimizer,
            epoch=self.epoch,
            unit=self.unit,
            step=self.step,
            train_sums=None if complete else trainer.tracker.state(),
            carry=None if complete else trainer.carry,
            best_val_loss=self.best.val_loss,
            best_epoch=self.best.epoch,
            best_val=self.best.val,
            record=record,
        )

    def _finish(self, record: dict[str, Any], timing: dict[str, Any]) -> None:
        extra: dict[str, float] = {}
        if record["complete"] and self.epoch_callback is not None:
            extra = self.epoch_callback(record["epoch"], self.checkpoints / LAST) or {}
        if extra:
            record = {**record, "eval": {key: float(value) for key, value in extra.items()}}
            rate = extra.get("success_rate")
            if rate is not None and float(rate) > self.best.success:
                self.best.success = float(rate)
                copy_atomic(self.checkpoints / LAST, self.checkpoints / BEST_SUCCESS)
        self.metrics_log.epoch(record, timing)

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
            progress_now = training_progress(
                self.epoch, self.unit, len(plan), config.epochs, self.step, config.steps
            )
            trainer.set_lr(scheduled_lr(config.lr_schedule, config.lr, progress_now))
            samples += trainer.train_unit(self.train_split, plan[self.unit])
            self.unit += 1
            self.step += 1
            sums = trainer.tracker
            if self.step % config.log_every == 0 and sums.count:
                self.metrics_log.scalar("train/loss_running", sums.loss_sum / sums.count, self.step)
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
        payload = self._checkpoint(record, complete)
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
        """Train to ``--epochs`` or ``--steps``, test last.pt and best_val_loss.pt; the results."""
        config = self.config
        self._print_start()
        record = self.resume["record"] if self.resume is not None else None
        if record is not None and self.metrics_log.last_step() != self.step:
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
                f" python -m bc.train --resume {shlex.quote(str(self.run_dir))}"
            ) from None
        finally:
            self.metrics_log.close()
        # a resume with nothing to train has its checkpoint's record; one with nothing to do
        # at all was refused in __init__
        assert record is not None
        results = self._results(record)
        write_json(self.run_dir / "summary.json", results)
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
        self.console.print(parameter_table(self.model, config.net))
        if self.frozen:
            self.console.print(f"frozen: {len(self.frozen)} tensors ({', '.join(config.freeze)})")

    def _results(self, record: dict[str, Any]) -> dict[str, Any]:
        test = test_last = None
        if "test" in self.dataset.splits:
            # the model holds the last epoch's weights (last.pt) until best_val_loss.pt loads
            test_last = self.trainer.evaluate(self.dataset.splits["test"])
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
            "test_last": test_last,
            "val_majority_rate": majority_rate("val"),
            "test_majority_rate": majority_rate("test") if "test" in self.dataset.splits else None,
            "train_frames": self.train_split.n_frames,
            "train_time_s": self.train_time,
            "samples_per_s": self.train_samples / self.train_time if self.train_time else 0.0,
            "checkpoints": {
                "last": str(self.checkpoints / LAST),
                "best_val_loss": str(self.checkpoints / BEST_VAL_LOSS),
            },
        }


def main(config: TrainConfig, epoch_callback: EpochCallback | None = None) -> dict[str, Any]:
    """Train as ``config`` says and return the results (also in ``summary.json``).

    ``epoch_callback(epoch, checkpoint_path)`` runs after each complete epoch's last.pt is
    written; the metrics it returns go to metrics.jsonl (under ``eval``) and TensorBoard, and
    a ``success_rate`` above the best so far copies that checkpoint to best_success.pt.

    ``config.eval_every > 0`` needs that callback (bc does not import the evaluator, which
    sits above it): pass ``eval.during_training.closed_loop_callback(config)``, as
    ``python -m bc.train`` does; without one, a TrainError says so before anything starts.
    """
    return TrainingRun(config, epoch_callback).run()


def config_from_flags(given: dict[str, Any]) -> TrainConfig:
    """The config of the flags given: a new run's, or with ``resume`` the resumed run's."""
    if given.get("resume"):
        session = dict(given)
        return resume_config(session.pop("resume"), **session)
    return TrainConfig(**given)


def config_from_cli(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse the command line into a TrainConfig (or the resumed run's config)."""
    return config_from_flags(
        configflags.parse_given(TrainConfig, argv, PROG, DESCRIPTION, aliases=True)
    )


def cli(
    argv: Sequence[str] | None = None,
    epoch_callback_factory: Callable[[TrainConfig], EpochCallback | None] | None = None,
) -> dict[str, Any]:
    """Run ``main`` from the command line and return its results.

    ``epoch_callback_factory(config)`` makes the run's epoch callback (None for none). Errors
    end the program as ``configflags.run_main`` says: one line, exit 2 for a user error, 130
    for Ctrl-C or SIGTERM with which epoch was kept.
    """

    def train(config: TrainConfig) -> dict[str, Any]:
        callback = epoch_callback_factory(config) if epoch_callback_factory else None
        return main(config, callback)

    return configflags.run_main(
        train,
        TrainConfig,
        PROG,
        DESCRIPTION,
        argv,
        build=config_from_flags,
        aliases=True,
        interrupted="interrupted before training started",
    )


if __name__ == "__main__":
    # The composition root: the only place where bc meets eval, the package above it.
    from eval.during_training import closed_loop_callback

    cli(epoch_callback_factory=closed_loop_callback)
