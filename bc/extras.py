"""Extra inputs beside the images, and the second output (the self-driving notes).

One home for what a policy may be given besides its camera frames and how it reads it:

* ``previous_action``: the yaw command the agent executed on the step before (and, in the
  two-control world, the speed command), as numbers in [-1, 1]. At the first step of an
  episode nothing was executed: straight, at the start speed.
* ``speed``: the forward speed the step begins at, as a position in the env's speed range
  (-1 the slowest, +1 the fastest; the two-control world only).

A step's extras are one float32 vector; a policy reads the last ``history`` of them, oldest
first, padded at an episode's start by repeating its first vector (the frame stacks' rule).
The three ways of feeding them (``--extra-mode``) are in :class:`ExtrasPolicy`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from bc.heads import Head
from bc.metrics import previous_labels
from bc.nets import NetSpec, build_net
from bc.outputs import OutputSet, SpeedHead, keyframe_weights, output_weights
from envs.controls import Controls
from envs.options import full_env_kwargs

EXTRA_INPUTS = ("previous_action", "speed")
EXTRA_MODES = ("direct", "prediction", "thought")
SPEED_HEADS = ("auto", "none", "classifier", "regressor")
OUTPUT_BALANCING = ("off", "separate", "joint")
# features of the image part that the extras join (the image net's own output size)
IMAGE_FEATURES = 128
# the LSTM branch over the extras' history (prediction and thought modes)
BRANCH_SIZE = 32
HEAD_HIDDEN = 256


def env_controls(env_kwargs: Mapping[str, Any]) -> Controls:
    """The controls of the env a dataset or checkpoint was made in (``envs.controls``)."""
    return Controls.of(full_env_kwargs(env_kwargs))


def feature_names(inputs: Sequence[str], two_controls: bool) -> list[str]:
    """The entries of a step's extras vector, in order."""
    names: list[str] = []
    if "previous_action" in inputs:
        names += ["previous_yaw", "previous_speed"] if two_controls else ["previous_yaw"]
    if "speed" in inputs:
        names.append("speed")
    return names


def check_inputs(inputs: Sequence[str], two_controls: bool) -> str | None:
    """Why ``inputs`` cannot be given in this world (None: they can)."""
    unknown = [name for name in inputs if name not in EXTRA_INPUTS]
    if unknown:
        return f"unknown --extra-inputs {', '.join(unknown)}; choose from {', '.join(EXTRA_INPUTS)}"
    if "speed" in inputs and not two_controls:
        return (
            "--extra-inputs speed needs a dataset of the two-control world (--controls"
            " yaw_speed): in this one the speed is not the agent's to choose"
        )
    return None


def run_extras(
    inputs: Sequence[str],
    controls: Controls,
    executed_yaw: np.ndarray,
    executed_speed: np.ndarray | None,
    speed: np.ndarray | None,
    start_speed: float,
) -> np.ndarray:
    """``(T, E)`` float32 extras of a recorded run's steps, from what it executed.

    ``executed_yaw`` and ``executed_speed`` are the run's executed commands (``T``), ``speed``
    the speed each step began at (two controls; else None).
    """
    steps = len(executed_yaw)
    columns: list[np.ndarray] = []
    if "previous_action" in inputs:
        columns.append(np.concatenate([[0.0], executed_yaw[:-1]]))
        if controls.two:
            start = controls.speed_command(start_speed)
            columns.append(np.concatenate([[start], executed_speed[:-1]]))
    if "speed" in inputs:
        columns.append(np.array([controls.speed_command(v) for v in speed]))
    if not columns:
        return np.zeros((steps, 0), np.float32)
    return np.stack(columns, axis=1).astype(np.float32)


def step_extras(
    inputs: Sequence[str],
    controls: Controls,
    previous: tuple[float, float | None] | None,
    speed: float,
    start_speed: float,
) -> np.ndarray:
    """``(E,)`` float32 extras of one step in the env: the same numbers as :func:`run_extras`.

    ``previous`` is the (yaw, speed) commands executed on the step before (None at the first
    step), ``speed`` the agent's speed now.
    """
    values: list[float] = []
    if "previous_action" in inputs:
        yaw, speed_command = previous if previous is not None else (0.0, None)
        values.append(yaw)
        if controls.two:
            if speed_command is None:
                speed_command = controls.speed_command(start_speed)
            values.append(speed_command)
    if "speed" in inputs:
        values.append(controls.speed_command(speed))
    return np.asarray(values, np.float32)


def mirror_extras(extras: torch.Tensor, flip: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """Extras of mirrored samples: the previous yaw changes sign, speeds do not."""
    if "previous_yaw" not in names or not bool(flip.any()):
        return extras
    column = list(names).index("previous_yaw")
    extras = extras.clone()
    extras[flip, ..., column] = -extras[flip, ..., column]
    return extras


class ExtrasPolicy(nn.Module):
    """An image net, extra inputs beside it, and one head per output.

    The image net (any feed-forward net of the registry, built with ``IMAGE_FEATURES``
    outputs) gives image features; the extras join them, then each output (yaw, and speed in
    the two-control world) has its own two-layer head. ``mode`` says how the extras join:

    * ``direct``: the current step's extras, concatenated with the image features;
    * ``prediction``: an LSTM branch reads the extras' history and predicts the outputs
      itself (trained on the same labels, an auxiliary loss); its prediction is what is
      concatenated. The notes' model did this and learnt to repeat the last action;
    * ``thought``: the same branch, but its hidden state (the notes' "thought vector") is
      concatenated instead of its prediction.

    ``forward(x, extras)`` takes frames ``(B, T, C, H, W)`` and extras ``(B, H, E)`` and
    returns ``(B, sum(outputs))``: the heads' outputs side by side, then, in prediction mode,
    the branch's own prediction (``sum(outputs)`` more).
    """

    def __init__(
        self,
        image: nn.Module,
        n_extras: int,
        mode: str,
        outputs: Sequence[int],
        classifiers: Sequence[bool],
    ) -> None:
        super().__init__()
        if mode not in EXTRA_MODES:
            raise ValueError(f"extra mode must be one of {', '.join(EXTRA_MODES)}, got {mode!r}")
        self.image = image
        self.mode = mode
        self.outputs = tuple(int(n) for n in outputs)
        self.classifiers = tuple(bool(c) for c in classifiers)
        joined = 0
        if n_extras and mode == "direct":
            joined = n_extras
        elif n_extras:
            self.branch = nn.LSTM(n_extras, BRANCH_SIZE, batch_first=True)
            if mode == "prediction":
                self.branch_head = nn.Linear(BRANCH_SIZE, sum(self.outputs))
                joined = sum(self.outputs)
            else:
                joined = BRANCH_SIZE
        self.n_extras = n_extras
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(IMAGE_FEATURES + joined, HEAD_HIDDEN),
                nn.ReLU(inplace=True),
                nn.Linear(HEAD_HIDDEN, n),
            )
            for n in self.outputs
        )

    def forward(self, x: torch.Tensor, extras: torch.Tensor | None = None) -> torch.Tensor:
        features = torch.relu(self.image(x))  # (B, IMAGE_FEATURES)
        joined = [features]
        branch = None
        if self.n_extras:
            if extras is None:
                raise ValueError("this policy takes extra inputs; pass extras (B, H, E)")
            if self.mode == "direct":
                joined.append(extras[:, -1])
            else:
                hidden, _ = self.branch(extras)
                thought = hidden[:, -1]  # (B, BRANCH_SIZE)
                if self.mode == "prediction":
                    branch = self.branch_head(thought)
                    joined.append(_as_prediction(branch, self.outputs, self.classifiers))
                else:
                    joined.append(thought)
        z = torch.cat(joined, dim=-1)
        out = torch.cat([head(z) for head in self.heads], dim=-1)
        return out if branch is None else torch.cat([out, branch], dim=-1)


def _as_prediction(
    values: torch.Tensor, outputs: Sequence[int], classifiers: Sequence[bool]
) -> torch.Tensor:
    """The branch's outputs as a prediction: probabilities for classifier parts."""
    parts, start = [], 0
    for n, classifier in zip(outputs, classifiers, strict=True):
        part = values[:, start : start + n]
        parts.append(torch.softmax(part, dim=-1) if classifier else part)
        start += n
    return torch.cat(parts, dim=-1)


@dataclass(frozen=True)
class ExtrasSpec:
    """What a policy is given besides its frames, and how many steps of it it reads."""

    inputs: tuple[str, ...]
    mode: str
    history: int
    controls: Controls
    start_speed: float
    dropout: float = 0.0

    @property
    def names(self) -> list[str]:
        return feature_names(self.inputs, self.controls.two)

    @property
    def width(self) -> int:
        """Entries of one step's extras vector."""
        return len(self.names)

    @property
    def steps(self) -> int:
        """Steps of extras the net reads: the current one (direct) or the history."""
        return 1 if self.mode == "direct" else self.history


def extras_spec(config: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> ExtrasSpec:
    """The extras of a training config (``TrainConfig`` fields) for data of ``env_kwargs``."""
    return ExtrasSpec(
        tuple(config.get("extra_inputs") or ()),
        str(config.get("extra_mode", "direct")),
        int(config.get("extra_history", 8)),
        env_controls(env_kwargs),
        float(full_env_kwargs(env_kwargs)["speed"]),
        float(config.get("extra_dropout", 0.0)),
    )


def speed_head_kind(config: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> str:
    """``none``, ``classifier`` or ``regressor``: ``auto`` is a classifier with two controls."""
    kind = str(config.get("speed_head", "auto"))
    if kind == "auto":
        return "classifier" if env_controls(env_kwargs).two else "none"
    return kind


def output_set(config: Mapping[str, Any], env_kwargs: Mapping[str, Any], head: Head) -> OutputSet:
    """The outputs of a policy: ``head`` for the yaw, a speed head with two controls."""
    kind = speed_head_kind(config, env_kwargs)
    speed = None if kind == "none" else SpeedHead(kind, env_controls(env_kwargs).speed_bins)
    spec = extras_spec(config, env_kwargs)
    auxiliary = bool(spec.width) and spec.mode == "prediction"
    return OutputSet(head, speed, float(config.get("speed_weight", 1.0)), auxiliary)


def needs_wrapper(config: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> bool:
    """Whether the policy has extras or a second output (an :class:`ExtrasPolicy`)."""
    return bool(config.get("extra_inputs")) or speed_head_kind(config, env_kwargs) != "none"


def check_world(config: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> str | None:
    """Why ``config``'s extras or speed head cannot train on data of ``env_kwargs`` (or None)."""
    two = env_controls(env_kwargs).two
    problem = check_inputs(tuple(config.get("extra_inputs") or ()), two)
    if problem is None and speed_head_kind(config, env_kwargs) != "none" and not two:
        problem = (
            f"--speed-head {config.get('speed_head')} needs a dataset of the two-control world"
            " (--controls yaw_speed); this one has the yaw alone"
        )
    return problem


def build_extras_policy(
    image: nn.Module, config: Mapping[str, Any], env_kwargs: Mapping[str, Any], head: Head
) -> ExtrasPolicy:
    """The :class:`ExtrasPolicy` of ``config`` around ``image`` (built with IMAGE_FEATURES)."""
    outputs = output_set(config, env_kwargs, head)
    spec = extras_spec(config, env_kwargs)
    model = ExtrasPolicy(
        image, spec.width, spec.mode, outputs.head_outputs, outputs.head_classifiers
    )
    model.output_set = outputs
    model.extras = spec
    return model


def prepare_split(
    split: Any, spec: ExtrasSpec | None, outputs: OutputSet, config: Mapping[str, Any]
) -> None:
    """Set ``split.extras`` (``(N, E)``; none without ``spec``) and ``split.weights`` once.

    ``split.weights`` is ``(N, 2)``, or None when every sample weighs the same.
    """
    if split.prepared:
        return
    split.prepared = True
    if spec is not None:
        columns = []
        for begin, length in zip(split.begins.tolist(), split.lengths.tolist(), strict=True):
            end = begin + length
            speeds = [
                None if values is None else values[begin:end].numpy()
                for values in (split.executed_speed, split.speed_now)
            ]
            columns.append(
                run_extras(
                    spec.inputs,
                    spec.controls,
                    split.executed_yaw[begin:end].numpy(),
                    speeds[0],
                    speeds[1],
                    spec.start_speed,
                )  # fmt: skip
            )
        split.extras = torch.from_numpy(np.concatenate(columns))
    speed_bins = split.speed_bins if outputs.speed is not None else None
    n_speed_bins = outputs.speed.speed_bins if outputs.speed is not None else 1
    weights = output_weights(
        str(config.get("balance_outputs", "off")), split.bins, outputs.yaw.n_bins,
        speed_bins, n_speed_bins,
    )  # fmt: skip
    previous = previous_labels(split.bins, split.run_of)
    keyframe = (previous >= 0) & (split.bins != previous)
    split.weights = keyframe_weights(weights, keyframe, float(config.get("keyframe_weight", 1.0)))


def drop_actions(
    extras: torch.Tensor, spec: ExtrasSpec, generator: torch.Generator
) -> torch.Tensor:
    """Zero the previous action in a share ``spec.dropout`` of the samples (training only).

    Dropout of the action input, a fix for the copycat shortcut from the literature: a net
    that cannot always see the previous action has to read the images too.
    """
    columns = [i for i, name in enumerate(spec.names) if name.startswith("previous_")]
    if not columns:
        return extras
    dropped = torch.rand(extras.shape[0], generator=generator) < spec.dropout
    extras = extras.clone()
    extras[dropped.nonzero().squeeze(1)[:, None], :, torch.tensor(columns)[None, :]] = 0.0
    return extras


def build_policy_net(
    net: str, spec: NetSpec, config: Mapping[str, Any], env_kwargs: Mapping[str, Any], head: Head
) -> nn.Module:
    """Net ``net`` for ``spec``; wrapped in an :class:`ExtrasPolicy` when the config needs one.

    The wrapper's image net is built with ``IMAGE_FEATURES`` outputs (``spec.n_outputs``
    says so: a checkpoint records the spec it was built from).
    """
    if not needs_wrapper(config, env_kwargs):
        return build_net(net, spec)
    return build_extras_policy(build_net(net, spec), config, env_kwargs, head)


def image_spec(spec: NetSpec, config: Mapping[str, Any], env_kwargs: Mapping[str, Any]) -> NetSpec:
    """``spec`` as the net is built: ``IMAGE_FEATURES`` outputs inside an ExtrasPolicy."""
    if not needs_wrapper(config, env_kwargs):
        return spec
    return replace(spec, n_outputs=IMAGE_FEATURES)


def env_extras(spec: ExtrasSpec | None, env: Any) -> np.ndarray | None:
    """The extra inputs of ``env``'s current step for a policy of ``spec`` (None: no extras).

    Read from the env as it flies: the commands it executed last (the policy's own, or
    whoever flew the step), its speed now and its start speed.
    """
    if spec is None:
        return None
    unwrapped = env.unwrapped
    return step_extras(spec.inputs, spec.controls, unwrapped.last_commands,
                       unwrapped.forward_speed, unwrapped.speed)  # fmt: skip


class ExtrasHistory:
    """The last ``spec.steps`` extras vectors of an episode, oldest first, as the net reads them.

    The first vector of an episode fills every slot (the frame stacks' padding rule).
    """

    def __init__(self, spec: ExtrasSpec) -> None:
        self.values = np.zeros((1, spec.steps, spec.width), np.float32)

    def push(self, extras: np.ndarray | None, started: bool) -> np.ndarray:
        """Add a step's extras (``started``: not the episode's first); returns ``(1, H, E)``."""
        if extras is None:
            raise ValueError(
                "this policy takes extra inputs: pass act(observation, extras) with"
                " policy.extras_for(env)"
            )
        if started:
            self.values[0, :-1] = self.values[0, 1:]
            self.values[0, -1] = extras
        else:
            self.values[0] = extras
        return self.values
