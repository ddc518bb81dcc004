"""A trained policy for the env: ``load_policy(checkpoint).act(observation)``.

The policy sees exactly what the net was trained on: the same input normalisation (from the
checkpoint), frame stacks whose first frames repeat the episode's first observation (the
dataset's padding rule), and for recurrent nets the LSTM state carried from step to step.
Call ``reset()`` at the start of every episode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bc.checkpoint import BEST_VAL_LOSS, checkpoint_dir, read_checkpoint
from bc.data import InputNorm
from bc.errors import CheckpointError
from bc.extras import ExtrasHistory, build_policy_net, env_extras
from bc.heads import (
    ClassifierHead,
    GaussianHead,
    Head,
    RegressorHead,
    act_thresholds,
    bin_to_yaw,
    make_head,
)
from bc.nets import NETS, NetSpec
from bc.nets.temporal import FrameStackPolicy
from bc.sparse_inputs import head_over_used_inputs


@dataclass
class PolicyOutput:
    """One decision: the action bin, its yaw command and (classifier) class probabilities.

    A policy with a speed output (the two-control world) decides its speed command and bin
    too.
    """

    action: int  # bin index in [0, n_bins)
    yaw: float  # yaw command in [-1, 1]
    probs: np.ndarray | None  # (n_bins,) for the classifier, else None
    speed: float | None = None  # speed command in [-1, 1]
    speed_action: int | None = None  # speed bin


class Policy:
    """A net, its head and normalisation, with the frame buffer or LSTM state of an episode."""

    def __init__(
        self,
        model: nn.Module,
        head: Head,
        norm: InputNorm,
        spec: NetSpec,
        net: str,
        recurrent: bool,
        env_kwargs: dict[str, Any],
        config: dict[str, Any],
        device: torch.device,
        expert_config: dict[str, Any] | None = None,
    ):
        self.model = model.eval()
        self.head_module = head
        self.norm = norm
        self.spec = spec
        self.net = net
        self.recurrent = recurrent
        self.env_kwargs = env_kwargs
        # the expert that recorded the training data: the evaluator's agreement reference
        self.expert_config = expert_config
        self.config = config
        self.n_bins = head.n_bins
        self.head = head.name
        self.device = device
        self._observation_shape = (spec.height, spec.width, spec.channels)
        # each bin's yaw command exactly as bc.heads computes it (float32), as python floats
        self._bin_yaw: list[float] = bin_to_yaw(torch.arange(self.n_bins), self.n_bins).tolist()
        # the net's input: normalised frames, oldest first, rolled in place step by step
        steps = 1 if recurrent else spec.frames
        self._stack = np.zeros((1, steps, spec.channels, spec.height, spec.width), np.float32)
        self._started = False
        # act_batch's siamese path keeps each frame's encoder features instead of the frames
        self._features: deque[torch.Tensor] | None = None
        self._state: Any = None
        # the bin acted on the step before: a regressor's turn goes on as the expert's did
        self._previous_bin: int | None = None
        # an ExtrasPolicy's outputs (yaw, speed) and extra inputs (bc.extras), with the
        # history of extras the net reads
        self.output_set = getattr(model, "output_set", None)
        self.extras_spec = getattr(model, "extras", None)
        if self.extras_spec is not None:
            self._extras = ExtrasHistory(self.extras_spec)

    def reset(self) -> None:
        """Forget the episode: empty the frame buffer, zero the LSTM state and the last bin."""
        self._started = False
        self._features = None
        self._state = None
        self._previous_bin = None

    def _frames(self, observations: Sequence[np.ndarray]) -> torch.Tensor:
        """The observations as the net's normalised ``(N, C, H, W)`` float32 frames (on the cpu).

        Normalised once, when a frame arrives, by the checkpoint's InputNorm: the map is per
        element, so a stack of normalised frames holds the values that normalising the stack
        gives, bit for bit. Copied into a contiguous ``(N, C, H, W)`` buffer, the layout the
        convolutions were trained on.
        """
        checked = []
        for observation in observations:
            observation = np.asarray(observation)
            if observation.ndim == 2 and self.spec.channels == 1:
                observation = observation[..., None]  # depth as (H, W)
            if observation.shape != self._observation_shape:
                raise ValueError(
                    f"observation of shape {observation.shape}, but the policy was trained on"
                    f" {self._observation_shape} (H, W, C)"
                )
            if observation.dtype != np.uint8:
                raise ValueError(
                    f"observation must be uint8 as the env returns it, got {observation.dtype}"
                )
            checked.append(observation)
        frames = torch.from_numpy(np.stack(checked)).permute(0, 3, 1, 2)  # (N, C, H, W) view
        return self.norm(frames, out=torch.empty(frames.shape, dtype=torch.float32))

    def _decide(self, outputs: torch.Tensor) -> PolicyOutput:
        """The head's decision for ``outputs (1, n_outputs)``, as ``Head.predict`` makes it.

        The three built-in heads are computed here on python scalars and one small array:
        ``predict`` builds batch tensors and a bin table per call, which cost as much as a
        tiny net's convolutions at batch 1. The results are the same values bit for bit.
        """
        speed: dict[str, Any] = {}
        if self.output_set is not None:
            prediction = self.output_set.predict_speed(outputs)
            if prediction is not None:
                speed = {"speed": float(prediction.yaw[0]), "speed_action": int(prediction.bins[0])}
            outputs = self.output_set.yaw_outputs(outputs)
        decision = self._decide_yaw(outputs)
        return replace(decision, **speed) if speed else decision

    def _decide_yaw(self, outputs: torch.Tensor) -> PolicyOutput:
        kind = type(self.head_module)
        if kind is ClassifierHead:
            return self._classified(_probabilities(outputs)[0])
        if kind in (RegressorHead, GaussianHead):
            # the float32 output is exact as a python float; clamping it there gives the
            # float32 clamp's value (NaN stays NaN)
            yaw = min(max(float(outputs[0, 0]), -1.0), 1.0)
            action = self.head_module.quantiser.bin(yaw, self._previous_bin)
            self._previous_bin = action
            return PolicyOutput(action, yaw, None)
        prediction = self.head_module.predict(outputs)
        probs = prediction.probs[0].cpu().numpy() if prediction.probs is not None else None
        return PolicyOutput(int(prediction.bins[0]), float(prediction.yaw[0]), probs)

    def _classified(self, probs: np.ndarray) -> PolicyOutput:
        """A classifier's decision from its class probabilities ``(n_bins,)``."""
        # numpy's argmax, like torch's, returns the first of equal maxima
        action = int(probs.argmax())
        return PolicyOutput(action, self._bin_yaw[action], probs)

    def warm_up(self) -> None:
        """Decide once on a blank frame, then reset.

        The first call of a net selects its kernels and allocates its buffers (several
        milliseconds); a rollout calls this before its first episode so that the first
        step's latency is not that. Nothing else changes: ``act`` draws no random numbers.
        """
        self.reset()
        extras = None
        if self.extras_spec is not None:
            extras = np.zeros(self.extras_spec.width, np.float32)
        self.act(np.zeros(self._observation_shape, np.uint8), extras)
        self.reset()

    def fork(self) -> Policy:
        """The same net, head and normalisation with an episode state of its own.

        Forks fly episodes side by side and decide together (:func:`act_batch`): one
        forward pass of the shared net for all of them.
        """
        return Policy(
            self.model, self.head_module, self.norm, self.spec, self.net, self.recurrent,
            self.env_kwargs, self.config, self.device, self.expert_config,
        )  # fmt: skip

    def extras_for(self, env: Any) -> np.ndarray | None:
        """The extra inputs of the env's current step (None for a policy without extras)."""
        return env_extras(self.extras_spec, env)

    def _push_extras(self, extras: np.ndarray | None) -> np.ndarray:
        """Add a step's extras to the episode's history; returns it ``(1, H, E)``."""
        return self._extras.push(extras, self._started)

    def _push_features(self, features: torch.Tensor) -> deque[torch.Tensor]:
        """Add a frame's encoder features to the episode's; returns the last ``frames`` of them.

        The episode's first frame fills them all, as the dataset pads runs.
        """
        if self._started:
            raise ValueError("this episode decides through act(): reset() before act_batch")
        if self._features is None:
            self._features = deque([features] * self.spec.frames, maxlen=self.spec.frames)
        else:
            self._features.append(features)
        return self._features

    def _push(self, observation: np.ndarray) -> np.ndarray:
        """Add ``observation`` to the episode's frame stack; returns the stack (1, F, C, H, W)."""
        if self._features is not None:
            raise ValueError("this episode decides through act_batch: reset() before act()")
        frame = self._frames([observation])[0].numpy()  # checked before the stack changes
        stack = self._stack
        if self._started:
            stack[0, :-1] = stack[0, 1:]  # numpy copies overlapping ranges safely
            stack[0, -1] = frame
        else:
            # The episode's first observation fills the stack, as the dataset pads runs.
            stack[0] = frame
            self._started = True
        return stack

    @torch.inference_mode()
    def act(self, observation: np.ndarray, extras: np.ndarray | None = None) -> PolicyOutput:
        """The action for ``observation`` (uint8 ``(H, W, C)``), the next step of the episode.

        ``extras``: the step's extra inputs (:meth:`extras_for`), for a policy that takes them.
        """
        history = None
        if self.extras_spec is not None:
            # before the frame stack: both read whether the episode has started
            history = torch.from_numpy(self._push_extras(extras).copy()).to(self.device)
        # a fresh tensor per step: the stack is the policy's, whatever the net does with it
        inputs = torch.from_numpy(self._push(observation).copy())  # (1, F, C, H, W)
        if self.device.type != "cpu":
            inputs = inputs.to(self.device)
        if history is not None:
            return self._decide(self.model(inputs, history))
        if self.recurrent:
            outputs, self._state = self.model(inputs, self._state)
            return self._decide(outputs[:, -1])  # (1, n_outputs)
        return self._decide(self.model(inputs))  # (1, n_outputs)


@torch.inference_mode()
def act_batch(
    policies: Sequence[Policy],
    observations: Sequence[np.ndarray],
    extras: Sequence[np.ndarray | None] | None = None,
) -> list[PolicyOutput]:
    """Each policy's action for its observation, from one forward pass over all of them.

    ``policies`` are forks of one policy (:meth:`Policy.fork`), each in its own episode;
    each decides as its ``act`` would, on the batch's outputs. A net's outputs for one row
    of a batch may differ from batch 1's in the last float bits (the kernels differ).
    """
    if len(policies) != len(observations):
        raise ValueError(f"{len(policies)} policies but {len(observations)} observations")
    first = policies[0]
    if any(policy.model is not first.model for policy in policies):
        raise ValueError("act_batch needs forks of one policy (Policy.fork)")
    if isinstance(first.model, FrameStackPolicy) and first.extras_spec is None:
        return _decide_all(policies, _siamese_outputs(policies, observations))
    history = None
    if first.extras_spec is not None:
        given = extras if extras is not None else [None] * len(policies)
        history = torch.from_numpy(
            np.concatenate([p._push_extras(e) for p, e in zip(policies, given, strict=True)])
        ).to(first.device)
    inputs = torch.from_numpy(
        np.concatenate(
            [policy._push(obs) for policy, obs in zip(policies, observations, strict=True)]
        )
    )  # (B, F, C, H, W)
    if first.device.type != "cpu":
        inputs = inputs.to(first.device)
    if history is not None:
        outputs = first.model(inputs, history)
    elif not first.recurrent:
        outputs = first.model(inputs)
    else:
        outputs, (hidden, cell) = first.model(inputs, _batch_state(policies))
        for row, policy in enumerate(policies):
            policy._state = (hidden[:, row : row + 1], cell[:, row : row + 1])
        outputs = outputs[:, -1]
    return _decide_all(policies, outputs)


def _siamese_outputs(
    policies: Sequence[Policy], observations: Sequence[np.ndarray]
) -> torch.Tensor:
    """A siamese frame-stack net's outputs ``(B, n_outputs)``, encoding only the new frames.

    Each frame is encoded once, when it arrives, and its features are kept for the net's next
    ``frames - 1`` steps: a step encodes B frames instead of B x frames and copies no frame
    stack. On the CPU the convolutions give the same values for an image whatever the batch
    around it, except that a batch of one image takes another kernel: a lone frame is encoded
    beside a copy of itself, so that the features are those of the whole stack's encoding.
    The head's first layer reads only the features that some row uses (most are ReLU zeros:
    :mod:`bc.sparse_inputs`), which changes its sums' order, not their terms.
    """
    first = policies[0]
    model = first.model
    frames = first._frames(observations).to(first.device)  # (B, C, H, W)
    encoded = model.encoder(frames if len(frames) > 1 else torch.cat([frames, frames]))
    encoded = encoded[: len(policies)]  # without a lone frame's copy
    rows = [
        features
        for policy, new in zip(policies, encoded, strict=True)
        for features in policy._push_features(new)
    ]
    inputs = torch.stack(rows).view(len(policies), -1)  # (B, T*F), oldest first
    return head_over_used_inputs(model.head, inputs)  # most features are ReLU zeros


def _decide_all(policies: Sequence[Policy], outputs: torch.Tensor) -> list[PolicyOutput]:
    """Each policy's decision on its row of ``outputs (B, n_outputs)``.

    A classifier's probabilities come from one softmax over the batch (row by row the same
    values); other heads decide row by row.
    """
    first = policies[0]
    if first.output_set is None and type(first.head_module) is ClassifierHead:
        probs = _probabilities(outputs)
        return [policy._classified(row) for policy, row in zip(policies, probs, strict=True)]
    return [policy._decide(outputs[row : row + 1]) for row, policy in enumerate(policies)]


def _probabilities(outputs: torch.Tensor) -> np.ndarray:
    """A classifier's class probabilities for logits ``(B, n_bins)``, as a cpu array."""
    probs = torch.softmax(outputs.float(), dim=-1)
    return (probs if probs.device.type == "cpu" else probs.cpu()).numpy()


def _batch_state(policies: Sequence[Policy]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The policies' LSTM states side by side (None when every episode has just begun)."""
    states = [policy._state for policy in policies]
    known = next((state for state in states if state is not None), None)
    if known is None:
        return None
    # a fresh episode's state is zero, as the LSTM's own default
    states = [state or (torch.zeros_like(known[0]), torch.zeros_like(known[1])) for state in states]
    return (torch.cat([s[0] for s in states], dim=1), torch.cat([s[1] for s in states], dim=1))


def load_policy(checkpoint: str | Path, device: str = "cpu") -> Policy:
    """Rebuild a policy from a checkpoint file alone.

    A run directory means its ``checkpoints/best_val_loss.pt``. A missing, unreadable or
    incompatible file is a one-line CheckpointError.
    """
    path = Path(checkpoint)
    if path.is_dir():
        path = checkpoint_dir(path) / BEST_VAL_LOSS
    payload = read_checkpoint(path, map_location="cpu")
    net = payload["net"]
    if net not in NETS:
        raise CheckpointError(
            f"{path} was trained with net {net!r}, which is not registered here"
            f" (known: {', '.join(sorted(NETS))})"
        )
    try:
        spec = NetSpec(**payload["spec"])
        head = make_head(
            payload["head"],
            int(payload["n_bins"]),
            payload["target"],
            payload.get("expert_config"),
            act=act_thresholds(payload["config"]),
        )
        model = build_policy_net(net, spec, payload["config"], payload["env_kwargs"], head)
        model.load_state_dict(payload["model"])
    except (ValueError, TypeError, KeyError, RuntimeError) as error:
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path} does not fit net {net!r}: {reason}") from None
    try:
        torch_device = torch.device(device)
        model.to(torch_device)
    except (RuntimeError, AssertionError) as error:
        raise CheckpointError(f"cannot use device {device!r}: {error}") from None
    return Policy(
        model,
        head,
        InputNorm.from_dict(payload["norm"]),
        spec,
        net,
        bool(payload["recurrent"]),
        dict(payload["env_kwargs"]),
        dict(payload["config"]),
        torch_device,
        payload.get("expert_config"),
    )
