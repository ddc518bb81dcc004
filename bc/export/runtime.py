"""An exported policy (``python -m bc.export``) that acts like ``bc.policy.Policy``.

``load_exported_policy("best_val_loss.onnx").act(observation)`` stacks the episode's frames
as the net was trained (the first observation fills the stack; recurrent nets carry their
LSTM state) and runs the exported file in onnxruntime (``.onnx``, the ``onnx`` extra) or
TorchScript (``.torchscript``); everything else happens inside that file. It has the
attributes the evaluator reads from a policy (``spec``, ``n_bins``, ``head``, ``env_kwargs``,
``config``, ``expert_config``), all from the metadata embedded in the file, so
``python -m eval.rollout --checkpoint best_val_loss.onnx`` flies it as it flies the ``.pt``.

A regressor or Gaussian head of the expert's continuous command acts through the labelling
expert's deadband and hysteresis (``bc.heads.Quantiser``), which needs the bin of the step
before: the file's own ``action`` output is the nearest bin, and this runtime, like
``Policy``, turns the file's ``yaw`` into the bin instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artifacts.formats import check_format
from bc.errors import CheckpointError
from bc.export.graph import (
    EXTRAS,
    FRAMES,
    STATE_INPUTS,
    STATE_OUTPUTS,
    input_names,
    output_names,
    quiet_torch_jit,
)
from bc.extras import ExtrasHistory, env_extras, extras_spec
from bc.heads import act_thresholds, label_quantiser
from bc.nets import NetSpec
from bc.policy import PolicyOutput

FORMAT = "corridor-bc-exported-policy"
FORMAT_VERSION = 1
# key of the metadata: an ONNX metadata_props entry, a TorchScript extra file
METADATA_KEY = "corridor_bc.json"
SUFFIXES = {".onnx": "onnx", ".torchscript": "torchscript"}
# TorchScript's profiling executor runs a graph twice before it optimises it
WARM_UP_CALLS = 3
ONNX_EXTRA = "needs the 'onnx' extra: pip install -e \".[onnx]\""


def is_exported(path: str | Path) -> bool:
    """Whether ``path`` names an exported policy file (by its suffix)."""
    return Path(path).suffix in SUFFIXES


def missing_onnx_packages(*modules: str) -> list[str]:
    """The ones of ``modules`` that are not installed."""
    import importlib.util

    return [name for name in modules if importlib.util.find_spec(name) is None]


class OnnxRunner:
    """An ONNX file in an onnxruntime CPU session: ``run({name: array}) -> {name: array}``."""

    def __init__(self, path: Path, threads: int = 1):
        if missing_onnx_packages("onnxruntime"):
            raise CheckpointError(f"running {path} {ONNX_EXTRA}")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        # one decision at a time: one thread is the fastest at batch 1, and N rollout workers
        # then share N cores as the torch workers do
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own untyped errors
            reason = " ".join(str(error).split())[:200]
            raise CheckpointError(f"{path} is not a loadable ONNX model ({reason})") from None
        self.names = [output.name for output in self.session.get_outputs()]
        self.metadata_text = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.session.run(self.names, feeds), strict=True))


class TorchScriptRunner:
    """A TorchScript file on the CPU: ``run({name: array}) -> {name: array}``."""

    def __init__(self, module: Any, names_in: tuple[str, ...], names_out: tuple[str, ...]):
        self.module = module
        self.names_in, self.names_out = names_in, names_out

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            outputs = self.module(*(torch.from_numpy(feeds[name]) for name in self.names_in))
        return {name: output.numpy() for name, output in zip(self.names_out, outputs, strict=True)}


def _load_torchscript(path: Path) -> tuple[Any, str | None]:
    extra = {METADATA_KEY: ""}
    try:
        with quiet_torch_jit():
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except (RuntimeError, ValueError) as error:
        reason = " ".join(str(error).split())[:200]
        raise CheckpointError(f"{path} is not a loadable TorchScript file ({reason})") from None
    return module, extra[METADATA_KEY] or None


def _parse_metadata(path: Path, text: str | None) -> dict[str, Any]:
    if not text:
        raise CheckpointError(
            f"{path} has no corridor-bc metadata; export policies with python -m bc.export"
        )
    try:
        metadata = json.loads(text)
    except ValueError:
        raise CheckpointError(f"{path} has unreadable corridor-bc metadata") from None
    check_format(str(path), metadata, (FORMAT_VERSION,), CheckpointError, name=FORMAT,
                 kind="exported policy")  # fmt: skip
    return metadata


class ExportedPolicy:
    """An exported policy with the frame stack or LSTM state of an episode.

    ``act`` returns the ``PolicyOutput`` that ``bc.policy.Policy.act`` returns for the same
    observations, up to float rounding (onnxruntime) or exactly (TorchScript).
    """

    def __init__(self, runner: Any, metadata: dict[str, Any], path: Path):
        self.runner = runner
        self.metadata = metadata
        self.path = path
        observation = metadata["observation"]
        self.spec = NetSpec(
            frames=int(metadata["frames"]),
            channels=int(observation["channels"]),
            height=int(observation["height"]),
            width=int(observation["width"]),
            n_outputs=int(metadata["n_outputs"]),
        )
        self.net = metadata["net"]
        self.recurrent = bool(metadata["recurrent"])
        self.head = metadata["head"]
        self.n_bins = int(metadata["n_bins"])
        self.env_kwargs = dict(metadata["env_kwargs"])
        self.expert_config = metadata.get("expert_config")
        self.config = dict(metadata.get("config") or {})
        self._observation_shape = (self.spec.height, self.spec.width, self.spec.channels)
        steps = 1 if self.recurrent else self.spec.frames
        # the graph's input, oldest frame first, rolled in place step by step
        self._frames = np.zeros((1, steps, *self._observation_shape), np.uint8)
        self._started = False
        layers, hidden = metadata.get("lstm_state") or (0, 0)
        self._state_shape = (int(layers), 1, int(hidden))  # (layers, batch 1, hidden)
        self._state: dict[str, np.ndarray] = {}
        # regressing heads act through the labelling expert's rule, as Policy does
        self._quantiser = (
            None
            if self.head == "classifier"
            else label_quantiser(
                self.n_bins,
                self.config.get("target", "bin"),
                self.expert_config,
                *act_thresholds(self.config),
            )
        )
        self._previous_bin: int | None = None
        # extra inputs (bc.extras), read from the env as the .pt policy reads them
        self.extras_spec = (
            extras_spec(self.config, self.env_kwargs) if metadata.get("extras") else None
        )
        self._extras = None if self.extras_spec is None else ExtrasHistory(self.extras_spec)

    def extras_for(self, env: Any) -> np.ndarray | None:
        """The extra inputs of the env's current step (None for a policy without extras)."""
        return env_extras(self.extras_spec, env)

    def fork(self) -> ExportedPolicy:
        """The same graph (one session) with an episode state of its own."""
        policy = ExportedPolicy(self.runner, self.metadata, self.path)
        policy.reset()
        return policy

    def reset(self) -> None:
        """Forget the episode: the next observation fills the frame stack, the state is zero."""
        self._started = False
        self._previous_bin = None
        if self.recurrent:
            self._state = {name: np.zeros(self._state_shape, np.float32) for name in STATE_INPUTS}

    def warm_up(self) -> None:
        """Decide a few times on a blank frame, then reset.

        TorchScript profiles a graph's first runs and then optimises it, onnxruntime
        allocates on its first run: several milliseconds each, which a rollout calls this
        to keep out of its first steps' latency.
        """
        self.reset()
        extras = None
        if self.extras_spec is not None:
            extras = np.zeros(self.extras_spec.width, np.float32)
        for _ in range(WARM_UP_CALLS):
            self.act(np.zeros(self._observation_shape, np.uint8), extras)
        self.reset()

    def act(self, observation: np.ndarray, extras: np.ndarray | None = None) -> PolicyOutput:
        """The action for ``observation`` (uint8 ``(H, W, C)``), the next step of the episode.

        ``extras``: the step's extra inputs (:meth:`extras_for`), for a policy that takes them.
        """
        observation = np.asarray(observation)
        if observation.ndim == 2 and self.spec.channels == 1:
            observation = observation[..., None]  # depth as (H, W)
        if observation.shape != self._observation_shape or observation.dtype != np.uint8:
            raise ValueError(
                f"observation of shape {observation.shape} and dtype {observation.dtype}, but"
                f" the policy takes uint8 {self._observation_shape} (H, W, C)"
            )
        feeds: dict[str, np.ndarray] = {}
        if self._extras is not None:
            feeds[EXTRAS] = self._extras.push(extras, self._started)
        frames = self._frames
        if not self._started:
            frames[0] = observation  # the episode's first observation fills the stack
            self._started = True
        else:
            frames[0, :-1] = frames[0, 1:]  # numpy copies overlapping ranges safely
            frames[0, -1] = observation
        feeds = {FRAMES: frames, **self._state, **feeds}
        results = self.runner.run(feeds)
        if self.recurrent:
            self._state = {
                name: results[out] for name, out in zip(STATE_INPUTS, STATE_OUTPUTS, strict=True)
            }
        probs = results.get("probs")
        yaw = float(results["yaw"][0])
        action = int(results["action"][0])
        if self._quantiser is not None:
            action = self._quantiser.bin(yaw, self._previous_bin)
            self._previous_bin = action
        speed: dict[str, Any] = {}
        if "speed" in results:
            speed = {
                "speed": float(results["speed"][0]),
                "speed_action": int(results["speed_action"][0]),
            }
        return PolicyOutput(action, yaw, None if probs is None else probs[0], **speed)


def load_exported_policy(path: str | Path, threads: int = 1) -> ExportedPolicy:
    """An exported policy file (``.onnx`` or ``.torchscript``) ready to act.

    ``threads``: onnxruntime's intra-op threads (TorchScript uses torch's setting). A
    missing, foreign or unreadable file is a one-line CheckpointError.
    """
    path = Path(path)
    kind = SUFFIXES.get(path.suffix)
    if kind is None:
        known = ", ".join(SUFFIXES)
        raise CheckpointError(f"{path} is not an exported policy file (suffix one of {known})")
    if not path.is_file():
        raise CheckpointError(f"exported policy {path} does not exist")
    if kind == "onnx":
        runner: Any = OnnxRunner(path, threads)
        metadata = _parse_metadata(path, runner.metadata_text)
    else:
        module, text = _load_torchscript(path)
        metadata = _parse_metadata(path, text)
        recurrent = bool(metadata["recurrent"])
        runner = TorchScriptRunner(
            module,
            input_names(recurrent, bool(metadata.get("extras"))),
            output_names(metadata["head"], recurrent, metadata.get("speed_head")),
        )
    policy = ExportedPolicy(runner, metadata, path)
    policy.reset()
    return policy
