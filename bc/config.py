"""Training configuration: one typed dataclass, validated on creation, and the CLI built from it.

Every field is a command-line flag (``time_length`` -> ``--time-length``; the underscore
spelling of the original experiment scripts, ``--time_length``, is accepted too) whose help
line is the field's ``help`` metadata, so the dataclass is the single source of truth for
names, defaults, choices and documentation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from bc.augment import AUGMENTS
from bc.errors import ConfigError
from bc.extras import EXTRA_MODES, OUTPUT_BALANCING, SPEED_HEADS, check_inputs
from bc.heads import HEADS, check_act_thresholds
from bc.lr_schedule import LR_SCHEDULES
from bc.nets import NETS, VIEWS
from bc.recipes import default_help, min_steps_help
from bc.recipes import min_steps as recipe_min_steps
from bc.recipes import resolve as resolve_recipes
from configflags import flag_name, option

ConfigT = TypeVar("ConfigT")


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    """Raise a ConfigError naming the flag when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{flag_name(name)} must be one of {', '.join(choices)}; got {value!r}")


def check_declared_choices(config: Any) -> None:
    """Check every field of a config dataclass declared with ``option(choices=...)``.

    The command line refuses other values already; this catches configs built in Python or
    read from an older ``config.json``, from the same list.
    """
    for item in dataclasses.fields(config):
        choices = item.metadata.get("choices")
        if choices is not None:
            check_choice(item.name, getattr(config, item.name), choices)


MIN_INPUT_SIZE = 32  # the smallest --input-size a classic net is resized to


def check_range(name: str, value: float, *, low: float | None = None, why: str = "") -> None:
    """Raise a ConfigError naming the flag when ``value < low``."""
    if low is not None and value < low:
        raise ConfigError(f"{flag_name(name)} must be >= {low:g}, got {value:g}{why}")


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready copy of a config dataclass (lists copied, nothing shared)."""
    return {item.name: _copy(getattr(config, item.name)) for item in dataclasses.fields(config)}


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def config_from_dict(cls: type[ConfigT], values: dict[str, Any]) -> ConfigT:
    """Rebuild a config from ``config_to_dict`` output, rejecting unknown keys.

    Keys an older config used are renamed by the class's ``LEGACY_KEYS`` (if any); keys it
    lacks take the class's ``LEGACY_DEFAULTS`` (if any), else the defaults.
    """
    renamed = getattr(cls, "LEGACY_KEYS", {})
    values = {renamed.get(key, key): value for key, value in values.items()}
    names = {item.name for item in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
    return cls(**{**getattr(cls, "LEGACY_DEFAULTS", {}), **values})


OPTIMIZERS = ("sgd", "adam", "adadelta")
INPUT_NORMS = ("none", "shift", "scale", "imagenet")
BPTT_MODES = ("full", "window", "sliding")

# Fields that may differ when a run is resumed: they change how long or where it runs, not
# what it computes. Everything else must match the checkpoint for the resume to be exact.
# ``run_dir`` among them: a run resumes from wherever its folder is now (moved, renamed, or
# named by another relative path), which its saved ``run_dir`` need not name.
SESSION_FIELDS = frozenset(
    {
        "data",
        "epochs",
        "steps",
        "device",
        "threads",
        "progress",
        "tensorboard",
        "log_every",
        "eval_every",
        "eval_episodes",
        "eval_workers",
        "resume",
        "run_dir",
    }
)


@dataclass
class TrainConfig:
    """Everything a behaviour-cloning run depends on; ``config.json`` of a run holds it."""

    # what a key missing from an older config.json stood for (the behaviour before it existed)
    LEGACY_DEFAULTS: ClassVar[dict[str, Any]] = {
        "nll_beta": 0.0, "min_steps": 0, "augment": "none", "mirror": False,
        "lr_schedule": "constant", "view": "top_left",
    }  # fmt: skip
    # keys of an older config.json and the fields they became
    LEGACY_KEYS: ClassVar[dict[str, str]] = {"out": "runs_dir"}

    data: str = option("data/default", "dataset directory (manifest.json + runs/)", group="data")
    in_ram: str = option(
        "auto",
        "load all frames into memory (yes), read them from the HDF5 files per batch (no), or"
        " load them when they take less than half the free memory (auto)",
        choices=("auto", "yes", "no"),
        group="data",
    )
    max_frames: int = option(
        0,
        "use at most this many labelled training frames, whole runs first in manifest order"
        " (data-dependency subsets; 0 = all)",
        group="data",
    )
    subsample: int = option(
        1,
        "label only every k-th training frame of each run; the net still sees consecutive"
        " frames, as it does in the env",
        group="data",
    )
    input_norm: str = option(
        "shift",
        "input normalisation: none ([0, 1]), shift ([-0.5, 0.5]), scale (training-set"
        " mean/std per channel, kept in the checkpoint) or imagenet (for pretrained nets)",
        choices=INPUT_NORMS,
        group="data",
    )
    augment: str = option(
        "color",
        "training-frame augmentation: none; color (per-sample brightness, channel gains and"
        " offset, the same on every frame of a sample; depth is left alone); randconv (half"
        " the samples' colours through a random 3x3 convolution); or color+randconv",
        choices=AUGMENTS,
        group="data",
    )
    mirror: bool = option(
        True,
        "mirror half the training samples left to right, swapping left and right labels"
        " (bc.augment.mirror_batch); doubles the worlds the net sees",
        group="data",
    )
    balance: bool | None = option(
        None,
        "draw class-balanced training batches (sampling with replacement, weights 1/count"
        f" of the label's bin); feed-forward nets only ({default_help('balance')})",
        group="data",
    )
    net: str = option("tiny_nfc", "policy net, by registry name (see docs/nets.md)", group="net")
    view: str = option("centred", "part of the image the conv encoders read where their strides"
                       " leave pixels unread: centred, or top_left as the nets before 2026-12-07"
                       " (docs/nets.md)", choices=VIEWS, group="net")  # fmt: skip
    frames: int | None = option(
        None,
        "frames per sample for feed-forward nets (the first frames of a run are repeated);"
        f" recurrent nets take 1 ({default_help('frames')})",
        group="net",
    )
    head: str = option(
        "classifier",
        "classifier (cross-entropy over the action bins), regressor (MSE on the yaw command)"
        " or gaussian (mean and log-std, negative log-likelihood)",
        choices=tuple(HEADS),
        group="net",
    )
    target: str = option(
        "auto",
        "what the head learns: bin (the label's bin; for a regressor its yaw value) or"
        " continuous (expert_continuous; regressor and gaussian only); auto = bin for the"
        " classifier, continuous otherwise",
        choices=("auto", "bin", "continuous"),
        group="net",
    )
    nll_beta: float = option(
        1.0,
        "the Gaussian head's beta-NLL: each sample's negative log-likelihood weighted by its"
        " predicted variance to this power, held constant (0 = the plain NLL, 1 = the mean"
        " learns as under MSE)",
        group="net",
    )
    act_deadband: float | None = option(
        None, "regressing heads: |command| from which the policy turns"
        f" ({default_help('act_deadband')})", group="net",
    )  # fmt: skip
    act_release: float | None = option(
        None, "regressing heads: a turn goes on while |command| stays above this"
        f" ({default_help('act_release')})", group="net",
    )  # fmt: skip
    input_size: int | None = option(
        None,
        "classic nets: resize frames to this square size instead of the architecture's 224"
        " (299 inception); e.g. 64 to train at the recorded size on a CPU",
        group="net",
    )
    pretrained: str = option(
        "",
        "weights file handed to the net's encoder.load_pretrained(path) before training",
        group="net",
    )
    init_from: list[str] = option(
        [],
        "CKPT[:PART] to copy weights from before training, PART = encoder, lstm, head or any"
        " parameter-name prefix (whole net if omitted); PART=DEST puts it at the model's DEST"
        " (encoder=image.encoder: into an extras policy); repeatable, later ones win",
        group="net",
        metavar="CKPT[:PART[=DEST]]",
    )
    freeze: list[str] = option(
        [],
        "parameters not to train: backbone (= encoder), none, or parameter-name prefixes",
        group="net",
        metavar="PREFIX",
    )
    bptt: str = option(
        "window",
        "recurrent training: full (whole runs), window (shuffled windows of --time-length)"
        " or sliding (windows sliding by --sliding-step, hidden state carried over)",
        choices=BPTT_MODES,
        group="recurrent nets",
    )
    time_length: int | None = option(
        None,
        f"window length in steps for --bptt window and sliding ({default_help('time_length')})",
        group="recurrent nets",
    )
    sliding_step: int | None = option(
        None,
        "steps between consecutive sliding windows (1 <= step <= --time-length;"
        f" {default_help('sliding_step')})",
        group="recurrent nets",
    )
    accumulate: bool = option(
        False,
        "with --bptt sliding, accumulate the gradients of all windows of a sequence and take"
        " one optimiser step per sequence",
        group="recurrent nets",
    )
    extra_inputs: list[str] = option(
        [],
        "inputs beside the frames: previous_action (the commands executed on the step"
        " before) and speed (the speed a step begins at; two-control data); feed-forward"
        " nets (docs/nets.md, 'Extra inputs')",
        metavar="INPUT",
        group="extra inputs and outputs",
    )
    extra_mode: str = option(
        "direct",
        "how the extra inputs join the image features: direct (concatenated), prediction (an"
        " LSTM branch over their history predicts the outputs, its prediction is used) or"
        " thought (that branch's hidden state is used)",
        choices=EXTRA_MODES,
        group="extra inputs and outputs",
    )
    extra_history: int = option(
        8, "steps of extra inputs the LSTM branch reads", group="extra inputs and outputs"
    )
    extra_dropout: float = option(
        0.0,
        "share of training samples whose previous action is zeroed (a copycat fix)",
        group="extra inputs and outputs",
    )
    keyframe_weight: float = option(
        1.0,
        "loss weight of keyframes (the label differs from the previous step's) relative to"
        " steady frames (a copycat fix; 1 = none)",
        group="extra inputs and outputs",
    )
    speed_head: str = option(
        "auto",
        "the speed output: classifier (over the speed bins), regressor (the speed command) or"
        " none; auto = classifier on two-control data, none otherwise",
        choices=SPEED_HEADS,
        group="extra inputs and outputs",
    )
    speed_weight: float = option(
        1.0, "loss weight of the speed output", group="extra inputs and outputs"
    )
    balance_outputs: str = option(
        "off",
        "per-output balancing by loss weights: separate (each output by its own label's"
        " frequency), joint (by the pair of labels' frequency) or off",
        choices=OUTPUT_BALANCING,
        group="extra inputs and outputs",
    )
    optimizer: str = option("adam", "optimiser", choices=OPTIMIZERS, group="optimisation")
    lr: float | None = option(
        None,
        f"learning rate (of the first step, with --lr-schedule cosine; {default_help('lr')})",
        group="optimisation",
    )
    lr_schedule: str = option(
        "cosine",
        "learning rate over training: constant, or cosine (from --lr down to 0 over --epochs,"
        " or --steps; a resume with other --epochs follows the new length)",
        choices=LR_SCHEDULES,
        group="optimisation",
    )
    momentum: float = option(
        0.9, "momentum of sgd (ignored by adam and adadelta)", group="optimisation"
    )
    batch_size: int | None = option(
        None,
        "samples per step: frames (feed-forward), windows (window, sliding) or runs (full)"
        f" ({default_help('batch_size')})",
        group="optimisation",
    )
    weight_decay: float = option(0.0, "L2 weight decay", group="optimisation")
    clip: float = option(
        0.0, "clip the gradient norm to this value (0 = no clipping)", group="optimisation"
    )
    epochs: int | None = option(
        None, f"passes over the training set ({default_help('epochs')})", group="optimisation"
    )
    steps: int = option(
        0,
        "stop after this many optimiser steps instead of --epochs (0 = use --epochs)",
        group="optimisation",
    )
    min_steps: int | None = option(
        None,
        "train more epochs when --epochs would make fewer optimiser steps than this (small"
        " datasets); 0 = exactly --epochs (default when --epochs is not given:"
        f" {min_steps_help()}; else 0)",
        group="optimisation",
    )
    seed: int = option(0, "seed of weights init and batch order", group="optimisation")
    device: str = option(
        "auto",
        "auto (cuda if available), cpu or cuda",
        choices=("auto", "cpu", "cuda"),
        group="optimisation",
    )
    threads: int = option(
        1,
        "torch CPU threads (0 = torch's default, one per core); 1 because on a CPU shared with"
        " other jobs extra threads spin-wait for each other: steps were 4-6x slower with 2"
        " threads than with 1 on a busy 2-core machine",
        group="optimisation",
    )
    runs_dir: str = option("runs", "parent directory of new run directories", group="run")
    run_dir: str = option(
        "",
        "exact run directory (must not exist yet; default: RUNS_DIR/<time>_<net>_f<frames>)",
        group="run",
    )
    resume: str = option(
        "",
        "RUN_DIR to continue exactly from its checkpoints/last.pt (only session flags such"
        " as --epochs, --steps, --device may be given with it)",
        group="run",
        metavar="RUN_DIR",
    )
    log_every: int = option(
        10, "log the training loss to TensorBoard every this many steps", group="run"
    )
    progress: bool = option(True, "show a live progress bar", group="run")
    tensorboard: bool = option(True, "write TensorBoard events into the run directory", group="run")
    eval_every: int = option(
        0,
        "run closed-loop episodes in the env every this many epochs (0 = never); keeps"
        " checkpoints/best_success.pt",
        group="closed-loop evaluation",
    )
    eval_episodes: int = option(
        10, "episodes per closed-loop evaluation", group="closed-loop evaluation"
    )
    eval_workers: int = option(
        1, "parallel env workers for closed-loop evaluation", group="closed-loop evaluation"
    )

    def __post_init__(self) -> None:
        if self.net not in NETS:
            raise ConfigError(
                f"unknown --net {self.net!r}; choose one of: {', '.join(sorted(NETS))}"
            )
        check_declared_choices(self)
        if self.input_size is not None and not NETS[self.net].resizes:
            raise ConfigError(
                f"--input-size is for the classic nets, which resize their frames; {self.net}"
                " takes them at the recorded size"
            )
        if self.input_size is not None:
            check_range("input_size", self.input_size, low=MIN_INPUT_SIZE)
        if self.min_steps is None:
            # the recipe's epoch count is a floor of steps too; an --epochs given is exact
            self.min_steps = recipe_min_steps(config_to_dict(self)) if self.epochs is None else 0
        # Resolved here, not on use, as the target below: config.json records the values a
        # run trained with, whatever the recipes say later (bc.recipes).
        for name, value in resolve_recipes(config_to_dict(self)).items():
            setattr(self, name, value)
        check_range("frames", self.frames, low=1)
        entry = NETS[self.net]
        if self.frames not in entry.frames:
            allowed = ", ".join(map(str, entry.frames))
            why = " (recurrent nets read time as the sequence)" if entry.recurrent else ""
            raise ConfigError(
                f"net {self.net!r} takes --frames in {{{allowed}}}, got {self.frames}{why}"
            )
        # Resolved here, not on use: config.json and checkpoints record the resolved target,
        # which --resume compares field by field with the saved run, and ``config.target`` is
        # what the head learns wherever the config goes.
        if self.target == "auto":
            self.target = "bin" if self.head == "classifier" else "continuous"
        if self.head == "classifier" and self.target != "bin":
            raise ConfigError(
                "the classifier learns bins; --target continuous needs --head regressor or gaussian"
            )
        if not 0 <= self.nll_beta <= 1:
            raise ConfigError(f"--nll-beta must be in [0, 1], got {self.nll_beta:g}")
        check_act_thresholds(self.act_deadband, self.act_release, ConfigError)
        check_range("max_frames", self.max_frames, low=0, why=" (0 = all)")
        check_range("subsample", self.subsample, low=1)
        check_range("time_length", self.time_length, low=1)
        check_range("sliding_step", self.sliding_step, low=1)
        if self.bptt == "sliding" and self.sliding_step > self.time_length:
            raise ConfigError(
                f"--sliding-step {self.sliding_step} skips frames: it must be <="
                f" --time-length {self.time_length}"
            )
        if self.accumulate and not (entry.recurrent and self.bptt == "sliding"):
            raise ConfigError("--accumulate applies to recurrent nets with --bptt sliding")
        problem = check_inputs(self.extra_inputs, two_controls=True)
        if problem is not None:
            raise ConfigError(problem)
        uses_outputs = self.extra_inputs or self.speed_head not in ("auto", "none")
        weighted = self.balance_outputs != "off" or self.keyframe_weight != 1.0
        if entry.recurrent and (uses_outputs or weighted):
            raise ConfigError(
                "extra inputs, a speed head and per-output weights are built for feed-forward"
                f" nets; {self.net} is recurrent"
            )
        check_range("extra_history", self.extra_history, low=1)
        if not 0 <= self.extra_dropout < 1:
            raise ConfigError(f"--extra-dropout must be in [0, 1), got {self.extra_dropout:g}")
        if not self.keyframe_weight > 0:
            raise ConfigError(f"--keyframe-weight must be > 0, got {self.keyframe_weight:g}")
        check_range("speed_weight", self.speed_weight, low=0)
        if self.balance and entry.recurrent:
            raise ConfigError(
                "--balance draws single frames; recurrent nets train on sequences, so drop it"
            )
        if not self.lr > 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr:g}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"--momentum must be in [0, 1), got {self.momentum:g}")
        check_range("batch_size", self.batch_size, low=1)
        check_range("weight_decay", self.weight_decay, low=0)
        check_range("clip", self.clip, low=0, why=" (0 = no clipping)")
        check_range("epochs", self.epochs, low=1)
        check_range("steps", self.steps, low=0, why=" (0 = use --epochs)")
        check_range("min_steps", self.min_steps, low=0, why=" (0 = exactly --epochs)")
        check_range("threads", self.threads, low=0, why=" (0 = torch's default)")
        check_range("log_every", self.log_every, low=1)
        check_range("eval_every", self.eval_every, low=0, why=" (0 = never)")
        check_range("eval_episodes", self.eval_episodes, low=1)
        check_range("eval_workers", self.eval_workers, low=1)
        if "none" in self.freeze and len(self.freeze) > 1:
            raise ConfigError("--freeze none means train everything; do not combine it")
        # ``--freeze none`` and no --freeze are one experiment: both record [] in config.json,
        # so --resume and the run tables compare them as equal.
        self.freeze = [part for part in self.freeze if part != "none"]
        if any(not part.strip() for part in self.freeze):
            raise ConfigError("--freeze takes non-empty parameter-name prefixes")
        if any(not spec.strip() for spec in self.init_from):
            raise ConfigError("--init-from takes CKPT or CKPT:PART, got an empty value")
        # resume_config sets run_dir to the folder resumed; only another folder is a conflict
        resumed, named = (Path(p).resolve() for p in (self.resume or ".", self.run_dir or "."))
        if self.resume and self.run_dir and resumed != named:
            raise ConfigError(
                f"--resume {self.resume} already names the run; drop --run-dir {self.run_dir},"
                " which names another folder"
            )
        if not self.data:
            raise ConfigError("--data must name a dataset directory")

    @property
    def recurrent(self) -> bool:
        """Whether the configured net is recurrent (trains on sequences)."""
        return NETS[self.net].recurrent
