"""The graph of an exported policy: the env's camera frames in, the decision out.

:func:`export_module` wraps a policy (``bc.policy.Policy``) so that everything between the
stacked observations and the action runs inside the exported file, for any net of the
registry:

* input ``frames``: uint8 ``(B, T, H, W, C)``, observations exactly as the env returns them,
  the ``T`` most recent ones of each episode, oldest first (``T`` is the net's frame count;
  1 for recurrent nets);
* the training normalisation ``(x / 255 - mean_c) / std_c`` (from the checkpoint);
* the net;
* the head's decision, as ``Policy.act`` makes it: outputs ``outputs`` (the net's raw
  ``(B, n_outputs)``: logits, a yaw value, or mean and log-std), ``probs`` (classifier
  only, ``(B, n_bins)`` softmax), ``action`` (int64 bin per sample) and ``yaw`` (float32
  command in [-1, 1] per sample).

Recurrent nets take the LSTM state as inputs ``h``, ``c`` (``(layers, B, hidden)``, zeros at
an episode's start) and return the next one as ``h_out``, ``c_out``: one call is one step.
A policy with extra inputs (``bc.extras``) takes them as input ``extras`` (float32
``(B, H, E)``, the last ``H`` steps' vectors, oldest first); one with a speed output (the
two-control world) also returns ``speed_probs`` (classifier), ``speed_action`` and ``speed``.
The batch size is free; everything else is fixed by the checkpoint.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from artifacts.atomic import atomic_path
from bc.heads import bin_to_yaw
from envs.controls import speed_bin_commands

if TYPE_CHECKING:
    from bc.policy import Policy


def speed_bin_table(speed_bins: int) -> torch.Tensor:
    """Speed command of each speed bin (``envs.controls``' table), float32."""
    return torch.as_tensor(speed_bin_commands(speed_bins), dtype=torch.float32)


FRAMES = "frames"
EXTRAS = "extras"
STATE_INPUTS = ("h", "c")
STATE_OUTPUTS = ("h_out", "c_out")
# the speed output's decision, per kind of speed head
SPEED_OUTPUTS = {
    "classifier": ("speed_probs", "speed_action", "speed"),
    "regressor": ("speed_action", "speed"),
}


def output_names(head: str, recurrent: bool, speed_head: str | None = None) -> tuple[str, ...]:
    """Names of the exported graph's outputs, in order."""
    probs = ("probs",) if head == "classifier" else ()
    names = ("outputs", *probs, "action", "yaw", *SPEED_OUTPUTS.get(speed_head or "", ()))
    return names + STATE_OUTPUTS if recurrent else names


def input_names(recurrent: bool, extras: bool = False) -> tuple[str, ...]:
    """Names of the exported graph's inputs, in order."""
    names = (FRAMES, *STATE_INPUTS) if recurrent else (FRAMES,)
    return (*names, EXTRAS) if extras else names


def speed_head_of(policy: Policy) -> str | None:
    """The kind of the policy's speed head (None: it has none)."""
    outputs = policy.output_set
    return None if outputs is None or outputs.speed is None else outputs.speed.kind


def policy_input_names(policy: Policy) -> tuple[str, ...]:
    """:func:`input_names` of ``policy``."""
    return input_names(policy.recurrent, policy.extras_spec is not None)


def policy_output_names(policy: Policy) -> tuple[str, ...]:
    """:func:`output_names` of ``policy``."""
    return output_names(policy.head, policy.recurrent, speed_head_of(policy))


class ExportModule(nn.Module):
    """A policy net with its normalisation and decision: ``frames (B, T, H, W, C) uint8``."""

    def __init__(self, policy: Policy):
        super().__init__()
        if policy.head not in ("classifier", "regressor", "gaussian"):
            raise ValueError(f"cannot export head {policy.head!r}: its decision is not known here")
        self.net = policy.model
        self.head = policy.head
        self.n_bins = policy.n_bins
        outputs = policy.output_set
        self.yaw_outputs = outputs.sizes[0] if outputs is not None else None
        self.speed_head = speed_head_of(policy)
        if self.speed_head is not None:
            self.speed_bins = outputs.speed.speed_bins
            self.register_buffer("speed_table", speed_bin_table(self.speed_bins))
        # the very float32 factors InputNorm (and Policy.act) multiply and add with
        scale, shift = policy.norm._affine(torch.device("cpu"))
        self.register_buffer("scale", scale.clone())  # (C, 1, 1)
        self.register_buffer("shift", shift.clone())
        self.register_buffer("bin_yaw", bin_to_yaw(torch.arange(self.n_bins), self.n_bins))

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, T, H, W, C)`` -> normalised float32 ``(B, T, C, H, W)``."""
        # contiguous, as Policy.act feeds the net: a channels-last input would make the
        # convolutions pick other kernels, whose sums round differently
        x = frames.permute(0, 1, 4, 2, 3).contiguous().to(torch.float32)
        return x * self.scale + self.shift

    def decide(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(outputs[, probs], action, yaw[, speed...])`` for the net's ``(B, n_outputs)``."""
        return (outputs, *self._decide_yaw(outputs), *self._decide_speed(outputs))

    def _decide_yaw(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.yaw_outputs is not None:
            outputs = outputs[:, : self.yaw_outputs]
        if self.head == "classifier":
            probs = torch.softmax(outputs.float(), dim=-1)
            action = probs.argmax(dim=-1)
            return probs, action, self.bin_yaw[action]
        yaw = outputs[:, 0].float().clamp(-1.0, 1.0)
        # envs.spaces.yaw_command_to_bin, in float64 as it computes: round half to even
        position = (1.0 - yaw.to(torch.float64)) * (self.n_bins - 1) / 2.0
        action = position.round().clamp(0, self.n_bins - 1).to(torch.int64)
        return action, yaw

    def _decide_speed(self, outputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The speed head's decision, as ``bc.outputs.SpeedHead.predict`` makes it."""
        if self.speed_head is None:
            return ()
        speed = outputs[:, self.yaw_outputs : self.yaw_outputs + (
            self.speed_bins if self.speed_head == "classifier" else 1
        )]  # fmt: skip
        if self.speed_head == "classifier":
            probs = torch.softmax(speed.float(), dim=-1)
            action = probs.argmax(dim=-1)
            return probs, action, self.speed_table[action]
        command = speed[:, 0].float().clamp(-1.0, 1.0)
        # envs.controls.speed_command_to_bin, in float64: round half to even
        position = (command.to(torch.float64) + 1.0) * (self.speed_bins - 1) / 2.0
        action = position.round().clamp(0, self.speed_bins - 1).to(torch.int64)
        return action, command


class FrameStackExport(ExportModule):
    """Feed-forward nets: ``forward(frames) -> (outputs[, probs], action, yaw)``."""

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decide(self.net(self.normalise(frames)))  # (B, n_outputs) -> decision


class ExtrasExport(ExportModule):
    """Policies with extra inputs: ``forward(frames, extras) -> (outputs, ..., speed...)``."""

    def forward(self, frames: torch.Tensor, extras: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.decide(self.net(self.normalise(frames), extras))


class RecurrentExport(ExportModule):
    """LSTM nets, one step: ``forward(frames, h, c) -> (..., h_out, c_out)``."""

    def forward(
        self, frames: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        outputs, (h_out, c_out) = self.net(self.normalise(frames), (h, c))  # (B, 1, n_outputs)
        return (*self.decide(outputs[:, -1]), h_out, c_out)


def export_module(policy: Policy) -> ExportModule:
    """The exportable graph of ``policy`` (in eval mode, sharing the policy's weights)."""
    if policy.recurrent:
        module: ExportModule = RecurrentExport(policy)
    elif policy.extras_spec is not None:
        module = ExtrasExport(policy)
    else:
        module = FrameStackExport(policy)
    return module.eval()


def lstm_state_shape(policy: Policy, batch: int = 1) -> tuple[int, int, int]:
    """``(layers, batch, hidden)`` of a recurrent policy's LSTM state."""
    lstm = policy.model.lstm
    return (lstm.num_layers, batch, lstm.hidden_size)


def example_inputs(policy: Policy, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Random inputs of the exported graph: uint8 frames (and zero LSTM state)."""
    spec = policy.spec
    frames = 1 if policy.recurrent else spec.frames
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, frames, spec.height, spec.width, spec.channels)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    if policy.extras_spec is not None:
        steps, width = policy.extras_spec.steps, policy.extras_spec.width
        extras = torch.rand((batch, steps, width), generator=generator) * 2.0 - 1.0
        return images, extras
    if not policy.recurrent:
        return (images,)
    state = torch.zeros(lstm_state_shape(policy, batch))
    return images, state, state.clone()


@contextlib.contextmanager
def quiet_torch_jit() -> Iterator[None]:
    """Silence what torch says about tracing and exporting that is known and harmless.

    Tracing warns about every python bool taken from a shape (the frame-count checks, the
    classic nets' resize test): those shapes are fixed by the checkpoint, so the constants it
    records are right. torch 2.13 marks the TorchScript-based ONNX exporter and
    ``torch.jit`` deprecated (in favour of ``torch.export``); both still work.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        yield


def write_onnx(policy: Policy, path: Path, opset: int, metadata: dict[str, str]) -> None:
    """Export ``policy``'s graph to ONNX at ``path``, with ``metadata`` as metadata_props.

    Uses torch's TorchScript-based exporter (``dynamo=False``): it needs the ``onnx`` package
    only, where the dynamo exporter also needs ``onnxscript``, and it exports the LSTM as
    one ONNX ``LSTM`` op with the batch axis free.
    """
    import onnx  # the 'onnx' extra; the caller has checked it is installed

    module = export_module(policy)
    names_in = policy_input_names(policy)
    names_out = policy_output_names(policy)
    batch_axes: dict[str, dict[int, str]] = {
        name: {0: "batch"} for name in names_in if name in (FRAMES, EXTRAS)
    }
    for name in names_out:
        batch_axes[name] = {1 if name in STATE_OUTPUTS else 0: "batch"}
    for name in STATE_INPUTS if policy.recurrent else ():
        batch_axes[name] = {1: "batch"}
    with atomic_path(path) as temporary:
        with quiet_torch_jit(), torch.no_grad():
            torch.onnx.export(
                module,
                example_inputs(policy),
                str(temporary),
                dynamo=False,
                input_names=list(names_in),
                output_names=list(names_out),
                dynamic_axes=batch_axes,
                opset_version=opset,
                do_constant_folding=True,
            )
        model = onnx.load(str(temporary))
        for key, value in metadata.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name = "corridor-bc"
        onnx.checker.check_model(model)
        onnx.save(model, str(temporary))


def write_torchscript(policy: Policy, path: Path, extra_files: dict[str, str]) -> None:
    """Trace ``policy``'s graph and save it as TorchScript at ``path`` with ``extra_files``."""
    module = export_module(policy)
    with atomic_path(path) as temporary, quiet_torch_jit(), torch.no_grad():
        traced = torch.jit.trace(module, example_inputs(policy), check_trace=False)
        torch.jit.save(traced, str(temporary), _extra_files=extra_files)
