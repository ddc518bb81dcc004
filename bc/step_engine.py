"""The step engine of behaviour cloning: a model, head and optimiser, and how a unit trains.

:class:`Trainer` trains one unit of an epoch plan (:func:`epoch_plan`) per optimiser step and
validates a split; ``bc.train`` runs it epoch by epoch, and ``bc.bench`` times the very same
code path. One engine serves every registered net: frame stacks for feed-forward nets,
windows and sequences (``--bptt``) for recurrent ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from bc.augment import (
    Look,
    make_augment,
    mirror_batch,
    mirror_draw,
    random_convolution,
    unit_generator,
)
from bc.config import TrainConfig
from bc.data import Dataset, InputNorm, SplitData
from bc.errors import ConfigError, TrainError
from bc.extras import (
    ExtrasSpec,
    build_policy_net,
    check_world,
    drop_actions,
    image_spec,
    mirror_extras,
    prepare_split,
)
from bc.heads import Head, Prediction, make_head
from bc.metrics import MetricTracker, shortcut_metrics, speed_metrics, track
from bc.nets import NetSpec, set_view
from bc.outputs import Labels, OutputSet, split_labels, without_weights
from bc.sampling import (
    FrameUnit,
    SequenceUnit,
    Unit,
    WindowUnit,
    epoch_generator,
    frame_plan,
    full_plan,
    sliding_plan,
    window_plan,
)
from bc.transfer import freeze_statistics

EVAL_CHUNK = 256  # steps per forward when validating recurrent nets (state carried over)
EVAL_FRAMES = 256  # frame stacks per forward when validating feed-forward nets


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
    labels: Labels  # (B,) feed-forward, (B, T) recurrent
    mask: torch.Tensor | None = None  # (B, T) bool, recurrent only
    extras: torch.Tensor | None = None  # (B, H, E): the extra inputs' history, oldest first


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
        # an ExtrasPolicy knows its outputs and extras (bc.extras); any other net has the head
        self.output_set: OutputSet = getattr(model, "output_set", None) or OutputSet(head)
        self.extras_spec: ExtrasSpec | None = getattr(model, "extras", None)
        self.tracker = MetricTracker(head.n_bins)
        self.speed_tracker = (
            MetricTracker(self.output_set.speed.speed_bins) if self.output_set.speed else None
        )
        self._buffers: dict[tuple[int, ...], torch.Tensor] = {}
        self.augment = make_augment(config.augment, config.seed)
        self._position = (0, 0)  # (epoch, unit) of the unit in training, keys the augmentation

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter group (the schedule's rate of a step)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def set_position(self, epoch: int, unit: int) -> None:
        """Say which unit of which epoch trains next (the augmentation draws depend on it)."""
        self._position = (int(epoch), int(unit))

    def _normalise(self, frames: torch.Tensor, look: Look | None = None) -> torch.Tensor:
        """Normalise a uint8 batch into a float buffer kept per batch shape.

        A fresh 5 MB tensor per step cost more in page faults than the arithmetic. Reuse is
        safe: the previous step's graph, which saved the buffer, is freed by its backward
        (and autograd's version counter would catch a graph that was not). Evaluation
        batches (no grad) are large and rare, so they get fresh memory. ``look``: colour
        jitter on the 0-255 scale before the normalisation, random convolution after it.
        """
        frames = frames.to(self.device, non_blocking=True)
        if not torch.is_grad_enabled():
            return self.norm(frames)
        shape = tuple(frames.shape)
        if shape not in self._buffers:
            self._buffers[shape] = torch.empty(shape, dtype=torch.float32, device=self.device)
        look = look or Look()
        out = self.norm(frames, out=self._buffers[shape], gain=look.gain, offset=look.offset)
        return out if look.kernels is None else random_convolution(out, look.kernels)

    def _look(self, n: int, channels: int, runs: torch.Tensor | None = None) -> Look | None:
        """The augmentation of ``n`` samples (``runs``: of ``n`` runs for the epoch, taken)."""
        if self.augment is None:
            return None
        epoch, unit = self._position
        if runs is None:
            return self.augment.draw(n, channels, epoch, unit)
        return self.augment.draw(n, channels, epoch, None).take(runs)

    def frame_batch(self, split: SplitData, targets: torch.Tensor, augment: bool = False) -> Batch:
        """Stacks of ``frames`` ending at ``targets``, labels of the target frames.

        ``augment``: apply the configured augmentation (training batches).
        """
        prepare_split(split, self.extras_spec, self.output_set, vars(self.config))
        idx = split.stack_indices(targets, self.frames)  # (B, F)
        frames = split.gather(idx)
        labels = split_labels(split, targets, self.output_set)
        bins, yaw = labels.bins, labels.yaw
        extras = None
        if self.extras_spec is not None:
            extras = split.extras[split.stack_indices(targets, self.extras_spec.steps)]
        look = None
        if augment:
            look = self._look(len(targets), frames.shape[-3])
            if self.config.mirror:
                flip = mirror_draw(len(targets), self.config.seed, *self._position)
                frames, bins, yaw = mirror_batch(frames, bins, yaw, flip, self.head.n_bins)
                if extras is not None:
                    extras = mirror_extras(extras, flip, self.extras_spec.names)
            if extras is not None and self.extras_spec.dropout > 0:
                generator = unit_generator(self.config.seed + 1, *self._position)
                extras = drop_actions(extras, self.extras_spec, generator)
        labels = replace(labels, bins=bins, yaw=yaw).to(self.device)
        inputs = self._normalise(frames, look)
        extras = None if extras is None else extras.to(self.device)
        return Batch(inputs, labels, extras=extras)

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
        bins, yaw = split.bins[idx], split.yaw[idx]
        look = None
        if augment:
            look = self._look(split.n_runs, frames.shape[-3], unit.runs)
            if self.config.mirror:
                # one coin per run and epoch: a sequence keeps its side across carried windows
                flip = mirror_draw(split.n_runs, self.config.seed, self._position[0], None)
                frames, bins, yaw = mirror_batch(
                    frames, bins, yaw, flip[unit.runs], self.head.n_bins
                )
        inputs = self._normalise(frames, look)
        labels = Labels(bins.to(self.device), yaw.to(self.device))
        return Batch(inputs, labels, mask.to(self.device))

    def outputs(
        self, batch: Batch, state: Any = None, carry: int | None = None
    ) -> tuple[torch.Tensor, Labels, Any]:
        """Forward pass over a batch.

        Returns flat ``(outputs (M, n), labels (M,))`` of the labelled samples and, for
        recurrent nets, the state after ``carry`` steps (or at the end).
        """
        if not self.recurrent:
            if batch.extras is not None:
                return self.model(batch.inputs, batch.extras), batch.labels, None
            return self.model(batch.inputs), batch.labels, None
        if carry is not None and carry < batch.inputs.shape[1]:
            first, middle = self.model(batch.inputs[:, :carry], state)
            rest, _ = self.model(batch.inputs[:, carry:], middle)
            out, state = torch.cat([first, rest], dim=1), middle
        else:
            out, state = self.model(batch.inputs, state)  # (B, T, n_outputs)
        return out[batch.mask], batch.labels.select(batch.mask), state

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

    def loss(self, outputs: torch.Tensor, labels: Labels) -> torch.Tensor:
        """The training loss of ``outputs`` against ``labels`` (every output, weighted)."""
        loss = self.output_set.loss(outputs, labels)
        if not torch.isfinite(loss):
            raise TrainError(f"the training loss became {loss.item()}; lower --lr or set --clip")
        return loss

    def _track(self, loss: torch.Tensor, outputs: torch.Tensor, labels: Labels) -> None:
        with torch.no_grad():
            track(self.tracker, self.speed_tracker, self.output_set, float(loss) * labels.numel(),
                  outputs.detach(), labels)  # fmt: skip

    def train_unit(self, split: SplitData, unit: Unit) -> int:
        """Train on one unit (one optimiser step); returns the labelled samples it held."""
        label_every = self.config.subsample
        if isinstance(unit, FrameUnit):
            batch = self.frame_batch(split, unit.targets, augment=True)
            outputs, labels, _ = self.outputs(batch)
            loss = self.loss(outputs, labels)
            self.optimise(loss)
            self._track(loss, outputs, labels)
            return labels.numel()
        if isinstance(unit, WindowUnit):
            batch = self.window_batch(split, unit, label_every, augment=True)
            state = None if unit.reset else self.carry
            outputs, labels, state = self.outputs(batch, state, unit.carry)
            self.carry = _detach(state) if unit.carry is not None else None
            if labels.numel() == 0:
                return 0  # a window without labels (--subsample > --time-length)
            loss = self.loss(outputs, labels)
            self.optimise(loss)
            self._track(loss, outputs, labels)
            return labels.numel()
        return self._train_sequence(split, unit, label_every)

    def _train_sequence(self, split: SplitData, unit: SequenceUnit, label_every: int) -> int:
        """One optimiser step for a whole sequence (``--accumulate``).

        The gradients of the sequence's windows are summed (each window's loss over the window
        count), each window starting from the state the previous one reached after
        ``--sliding-step`` steps, detached, as without --accumulate. The weights do not change
        within the step, which allows two savings with the same gradients:

        * each frame's image features are computed once for the sequence, though windows
          overlap when --sliding-step is shorter than --time-length (an encoder with batch
          norm sees the sequence's batch statistics instead of each window's);
        * a window's start state is the value a pass over the sequence has at that step, so
          one pass without gradients, slide by slide, finds every start state, and the
          windows then run side by side as one batch instead of one after another.
        """
        self.optimizer.zero_grad(set_to_none=True)
        windows = unit.windows
        runs, length = windows[0].runs, windows[0].length
        starts = torch.tensor([int(window.offsets[0]) for window in windows])  # runs slide together
        span = int(starts[-1]) + length
        whole = WindowUnit(runs, torch.zeros_like(runs), split.lengths[runs].clamp(max=span),
                           span, reset=True, carry=None)  # fmt: skip
        sequence = self.window_batch(split, whole, label_every, augment=True)
        features = self.model.encode(sequence.inputs)  # (B, span, F), with its graph
        with torch.no_grad():
            state, begins = None, []
            for window, start in zip(windows, starts.tolist(), strict=True):
                begins.append(state)
                if window.carry is not None:
                    _, state = self.model.read(features[:, start : start + window.carry], state)
        steps = starts[:, None] + torch.arange(length)  # (K, L): each window's steps
        stacked = features[:, steps].transpose(0, 1).flatten(0, 1)  # (K * B, L, F)
        begin = None
        if len(windows) > 1:
            begins[0] = tuple(torch.zeros_like(part) for part in begins[1])
            begin = tuple(torch.cat(parts, dim=1) for parts in zip(*begins, strict=True))
        out, _ = self.model.read(stacked, begin)
        out = out.view(len(windows), len(runs), length, -1)
        masks = sequence.mask[:, steps].transpose(0, 1)  # (K, B, L)
        labels = sequence.labels.take((slice(None), steps))  # (B, K, L)
        samples, total = 0, out.new_zeros(())
        for k, mask in enumerate(masks):
            if not mask.any():
                continue
            window_outputs = out[k][mask]
            window_labels = labels.take((slice(None), k)).select(mask)
            loss = self.loss(window_outputs, window_labels)
            total = total + loss / len(windows)
            self._track(loss, window_outputs, window_labels)
            samples += window_labels.numel()
        if samples:
            total.backward()
        self.step_optimizer()
        return samples

    @torch.no_grad()
    def evaluate(self, split: SplitData) -> dict[str, Any]:
        """Loss and accuracies over every frame of ``split``, in eval mode.

        Recurrent nets read each run from its start with the state carried step by step,
        as the policy does in the env. A regressing head is scored on the bins it would fly:
        its own thresholds (``--act-deadband``, ``--act-release``) along each run
        (``Quantiser.run_bins``), each frame's bin given the bin it chose at the run's previous
        frame, as ``bc.policy`` acts.
        """
        self.model.eval()
        tracker = MetricTracker(self.head.n_bins)
        speed_tracker = MetricTracker(self.speed_tracker.n_bins) if self.speed_tracker else None
        # the predicted bin of every frame, for the keyframe and copycat figures
        predicted = torch.full((split.n_frames,), -1, dtype=torch.int64)
        predicted_yaw = torch.zeros(split.n_frames)
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
                outputs, labels, state = self.outputs(
                    batch, None if unit.reset else state, unit.carry
                )
                prediction = self._evaluate_batch(tracker, speed_tracker, outputs, labels)
                idx, mask = split.window_indices(unit.runs, unit.offsets, unit.valid, unit.length)
                predicted[idx[mask]] = prediction.bins.detach().cpu()
                predicted_yaw[idx[mask]] = prediction.yaw.detach().float().cpu()
        else:
            for targets in torch.arange(split.n_frames).split(EVAL_FRAMES):
                batch = self.frame_batch(split, targets)
                outputs, labels, _ = self.outputs(batch)
                prediction = self._evaluate_batch(tracker, speed_tracker, outputs, labels)
                predicted[targets] = prediction.bins.detach().cpu()
                predicted_yaw[targets] = prediction.yaw.detach().float().cpu()
        self.train_mode()
        quantiser = self.head.quantiser
        if quantiser.hysteresis:
            predicted = quantiser.run_bins(predicted_yaw, split.run_of)
            tracker.recount(predicted, split.bins)
        speed = {} if speed_tracker is None else speed_metrics(speed_tracker)
        shortcut = shortcut_metrics(split.bins, split.run_of, predicted)
        return {**tracker.result(), **shortcut, **speed}

    def _evaluate_batch(
        self,
        tracker: MetricTracker,
        speed_tracker: MetricTracker | None,
        outputs: torch.Tensor,
        labels: Labels,
    ) -> Prediction:
        """Add a validation batch to the trackers; returns its yaw prediction.

        The loss is the policy's: unweighted, without an extras branch's own (auxiliary) loss.
        """
        labels = without_weights(labels)
        loss = self.output_set.loss(outputs, labels, reduction="sum", auxiliary=False)
        return track(tracker, speed_tracker, self.output_set, float(loss), outputs, labels)

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


def epochs_for_min_steps(config: TrainConfig, split: SplitData, n_bins: int) -> int:
    """``config.epochs``, raised until they make ``config.min_steps`` optimiser steps.

    Counted on the first epoch's plan (window plans vary by a unit or two between epochs).
    """
    if config.steps or not config.min_steps:
        return config.epochs
    units = max(1, len(epoch_plan(config, split, 0, n_bins)))
    return max(config.epochs, math.ceil(config.min_steps / units))


def build_head(config: TrainConfig, dataset: Dataset) -> Head:
    """The head of ``config`` for ``dataset``'s bins, acting through its expert's rule."""
    expert = dataset.manifest.get("expert")
    return make_head(config.head, dataset.n_bins, config.target, expert, config.nll_beta,
                     (config.act_deadband, config.act_release))  # fmt: skip


def build_model(config: TrainConfig, dataset: Dataset, head: Head) -> tuple[nn.Module, NetSpec]:
    """The net of ``config`` for ``dataset``'s images and ``head``'s outputs."""
    values = vars(config)
    problem = check_world(values, dataset.env_kwargs)
    if problem is not None:
        raise ConfigError(problem)
    try:
        spec = NetSpec(
            frames=config.frames,
            channels=dataset.channels,
            height=dataset.height,
            width=dataset.width,
            n_outputs=head.n_outputs,
            input_size=config.input_size,
        )
        spec = image_spec(spec, values, dataset.env_kwargs)
        model = build_policy_net(config.net, spec, values, dataset.env_kwargs, head)
        set_view(model, config.view)
        return model, spec
    except ValueError as error:
        raise TrainError(f"cannot build net {config.net}: {error}") from None
