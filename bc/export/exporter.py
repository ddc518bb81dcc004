"""``python -m bc.export --run RUN --format onnx|torchscript``: a trained policy as one model file.

Writes ``RUN/export/<which>.onnx`` (or ``.torchscript``) and, beside it, the same file name
plus ``.json``: what a deploying program needs to feed the model and read its answer (input
and output names, shapes and dtypes, frame count, normalisation, the yaw command of every
action bin, head, net, source checkpoint). The model file embeds that JSON too, so it is
self-contained: ``python -m eval.rollout --checkpoint RUN/export/best_val_loss.onnx`` flies
it like the checkpoint.

The model takes the env's uint8 observations, stacked oldest first, as ``frames (B, T, H, W,
C)`` and does the normalisation, the net and the head's decision inside
(``bc.export.graph``); only the frame stack (or the LSTM state) is kept by the caller. ONNX
needs the ``onnx`` extra (``pip install -e ".[onnx]"``: onnx to write, onnxruntime to run);
TorchScript needs nothing but torch. After writing, the file is run on random frames and
compared with the PyTorch policy (``--no-verify`` skips that).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from artifacts.atomic import write_json_atomic
from bc.checkpoint import (
    BEST_SUCCESS,
    BEST_VAL_LOSS,
    DEFAULT_CHECKPOINT,
    LAST,
    checkpoint_dir,
)
from bc.errors import CheckpointError, ConfigError
from bc.export.graph import (
    STATE_OUTPUTS,
    example_inputs,
    export_module,
    lstm_state_shape,
    policy_input_names,
    policy_output_names,
    quiet_torch_jit,
    speed_head_of,
    write_onnx,
    write_torchscript,
)
from bc.export.runtime import (
    FORMAT,
    FORMAT_VERSION,
    METADATA_KEY,
    ONNX_EXTRA,
    OnnxRunner,
    missing_onnx_packages,
)
from bc.policy import Policy, load_policy
from bc.run_dir import find_latest_run
from configflags import CommandFailed, option
from envs.spaces import bin_yaw_commands

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript"}
CHECKPOINT_FILES = {"best_val_loss": BEST_VAL_LOSS, "best_success": BEST_SUCCESS, "last": LAST}
# torch's TorchScript-based ONNX exporter writes opsets up to 20; Round needs 11, and 13 is
# the first with today's Softmax semantics
OPSETS = (13, 20)
DEFAULT_OPSET = 17
# how far the exported file may stray from PyTorch on --verify (float32 rounding only)
VERIFY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ExportConfig:
    """Which checkpoint to export, to what, and where."""

    run: Path | None = option(None, "run directory (default: the newest run in --runs-dir)")
    format: str = option("onnx", "model file format", choices=tuple(FORMATS))
    which: str = option(
        DEFAULT_CHECKPOINT, "checkpoint of the run", choices=tuple(CHECKPOINT_FILES)
    )
    checkpoint: Path | None = option(None, "checkpoint file to export (instead of RUN, --which)")
    out: Path | None = option(
        None,
        "model file to write (suffix .onnx or .torchscript, as --format), or an existing"
        " folder (default: <run>/export/<checkpoint>.<suffix>)",
    )
    opset: int = option(DEFAULT_OPSET, f"ONNX opset version, {OPSETS[0]}..{OPSETS[1]}")
    verify: bool = option(True, "run the written file on random frames, compare with PyTorch")
    runs_dir: Path = option(Path("runs"), "where runs live (for the default RUN)")
    quiet: bool = option(False, "print nothing")

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown --format {self.format!r}; choose {' or '.join(FORMATS)}")
        if self.which not in CHECKPOINT_FILES:
            raise ConfigError(
                f"unknown --which {self.which!r}; choose one of {', '.join(CHECKPOINT_FILES)}"
            )
        if not OPSETS[0] <= self.opset <= OPSETS[1]:
            raise ConfigError(f"--opset must be in [{OPSETS[0]}, {OPSETS[1]}], got {self.opset}")
        if self.run is not None and self.checkpoint is not None:
            raise ConfigError("give RUN or --checkpoint, not both")

    @property
    def suffix(self) -> str:
        """The model file's suffix."""
        return FORMATS[self.format]


@dataclass
class ExportResult:
    """What ``main`` wrote: the model file, its JSON, and the verification's largest error."""

    model: Path
    metadata_file: Path
    metadata: dict[str, Any]
    max_abs_error: float | None


def resolve_checkpoint(config: ExportConfig) -> tuple[Path, Path]:
    """(checkpoint file, run directory) for RUN, ``--checkpoint`` and ``--which``."""
    if config.checkpoint is not None:
        path = config.checkpoint
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        parent = path.resolve().parent
        return path, parent.parent if parent.name == "checkpoints" else parent
    run = config.run
    if run is None:
        run = find_latest_run(config.runs_dir)
        if run is None:
            raise CheckpointError(
                f"no run found in {config.runs_dir}/; give RUN, --checkpoint FILE or --runs-dir"
            )
    if not run.is_dir():
        raise CheckpointError(f"run directory {run} does not exist")
    path = checkpoint_dir(run) / CHECKPOINT_FILES[config.which]
    if not path.is_file():
        present = sorted(p.stem for p in checkpoint_dir(run).glob("*.pt"))
        has = f"it has: {', '.join(present)}" if present else "it has no checkpoints"
        raise CheckpointError(f"run {run} has no checkpoints/{path.name}; {has}")
    return path, run


def output_path(config: ExportConfig, checkpoint: Path, run_dir: Path) -> Path:
    """Where the model file goes (``--out``, or the run's ``export/`` folder)."""
    name = checkpoint.stem + config.suffix
    if config.out is None:
        return run_dir / "export" / name
    if config.out.is_dir():
        return config.out / name
    if config.out.suffix != config.suffix:
        raise ConfigError(
            f"--out {config.out} must end in {config.suffix} for --format {config.format}"
            " (or name an existing folder)"
        )
    return config.out


def _tensor_spec(name: str, shape: list[Any], dtype: str, meaning: str) -> dict[str, Any]:
    return {"name": name, "shape": shape, "dtype": dtype, "meaning": meaning}


def describe_io(policy: Policy) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The JSON description of the graph's inputs and outputs (``"batch"``: any size)."""
    spec = policy.spec
    steps = 1 if policy.recurrent else spec.frames
    image = [spec.height, spec.width, spec.channels]
    inputs = [
        _tensor_spec(
            "frames",
            ["batch", steps, *image],
            "uint8",
            "the env's observations (H, W, C), the most recent ones oldest first; at an"
            " episode's first step its first observation fills every slot"
            if not policy.recurrent
            else "the env's observation (H, W, C) of this step",
        )
    ]
    width = spec.n_outputs if policy.output_set is None else policy.output_set.n_outputs
    outputs = [_tensor_spec("outputs", ["batch", width], "float32", "the net's raw outputs")]
    if policy.head == "classifier":
        outputs.append(
            _tensor_spec("probs", ["batch", policy.n_bins], "float32", "softmax over the bins")
        )
    outputs += [
        _tensor_spec("action", ["batch"], "int64", "the chosen action bin"),
        _tensor_spec("yaw", ["batch"], "float32", "the yaw command in [-1, 1] (+ is left)"),
    ]
    extras = policy.extras_spec
    if extras is not None:
        inputs.append(_tensor_spec(
            "extras", ["batch", extras.steps, extras.width], "float32",
            f"extra inputs ({', '.join(extras.names)}) of the last {extras.steps} steps, oldest"
            " first; at an episode's first step its first vector fills every slot (bc.extras)",
        ))  # fmt: skip
    speed_head = speed_head_of(policy)
    if speed_head is not None:
        speed_bins = policy.output_set.speed.speed_bins
        if speed_head == "classifier":
            outputs.append(_tensor_spec("speed_probs", ["batch", speed_bins], "float32",
                                        "softmax over the speed bins"))  # fmt: skip
        outputs += [
            _tensor_spec("speed_action", ["batch"], "int64", "the chosen speed bin (0 slowest)"),
            _tensor_spec("speed", ["batch"], "float32", "the speed command in [-1, 1]"),
        ]
    if policy.recurrent:
        layers, _, hidden = lstm_state_shape(policy)
        for name, out in zip(("h", "c"), STATE_OUTPUTS, strict=True):
            inputs.append(
                _tensor_spec(
                    name,
                    [layers, "batch", hidden],
                    "float32",
                    f"LSTM {name} state: zeros at an episode's start, then the last {out}",
                )
            )
            outputs.append(
                _tensor_spec(out, [layers, "batch", hidden], "float32", f"next LSTM {name}")
            )
    return inputs, outputs


def export_metadata(
    policy: Policy, model_format: str, opset: int, source: str, model_file: Path
) -> dict[str, Any]:
    """Everything a deploying program needs to know about the exported file."""
    inputs, outputs = describe_io(policy)
    spec = policy.spec
    norm = policy.norm
    metadata: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "file": model_file.name,
        "model_format": model_format,
        "opset": opset if model_format == "onnx" else None,
        "net": policy.net,
        "frames": spec.frames,
        "recurrent": policy.recurrent,
        "head": policy.head,
        "target": policy.head_module.target,
        "n_outputs": spec.n_outputs,
        "n_bins": policy.n_bins,
        "bins": [float(v) for v in bin_yaw_commands(policy.n_bins)],
        "observation": {
            "height": spec.height,
            "width": spec.width,
            "channels": spec.channels,
            "dtype": "uint8",
            "obs_mode": policy.env_kwargs.get("obs_mode", "rgb"),
        },
        "normalisation": {
            "mode": norm.mode,
            "mean": [float(v) for v in norm.mean],
            "std": [float(v) for v in norm.std],
            "formula": "(x / 255 - mean[c]) / std[c], inside the model",
        },
        "inputs": inputs,
        "outputs": outputs,
        "lstm_state": list(lstm_state_shape(policy)[::2]) if policy.recurrent else None,
        "extras": None
        if policy.extras_spec is None
        else {"names": policy.extras_spec.names, "steps": policy.extras_spec.steps},
        "speed_head": speed_head_of(policy),
        "source_checkpoint": source,
        "env_kwargs": policy.env_kwargs,
        "expert_config": policy.expert_config,
        "config": policy.config,
        "versions": {"torch": str(torch.__version__)},
    }
    return json.loads(json.dumps(metadata))  # plain JSON types only (tuples become lists)


def write_model(
    policy: Policy, path: Path, model_format: str, opset: int = DEFAULT_OPSET, source: str = ""
) -> dict[str, Any]:
    """Write ``policy`` as a ``model_format`` file at ``path`` with its metadata embedded.

    Returns the metadata. ``source`` names the checkpoint it came from.
    """
    metadata = export_metadata(policy, model_format, opset, source, path)
    text = json.dumps(metadata, indent=2) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    if model_format == "onnx":
        write_onnx(policy, path, opset, {METADATA_KEY: text})
    else:
        write_torchscript(policy, path, {METADATA_KEY: text})
    return metadata


def verify(policy: Policy, path: Path, metadata: dict[str, Any]) -> float:
    """Run the written file on random frames (batch 4) and return its largest deviation.

    Raises CommandFailed if an output strays past ``VERIFY_TOLERANCE`` or an action differs.
    """
    inputs = example_inputs(policy, batch=4, seed=1)
    with torch.inference_mode():
        expected = [t.numpy() for t in export_module(policy)(*inputs)]
    feeds = dict(zip(policy_input_names(policy), (t.numpy() for t in inputs), strict=True))
    names = policy_output_names(policy)
    if metadata["model_format"] == "onnx":
        results = OnnxRunner(path).run(feeds)
        got = [results[name] for name in names]
    else:
        with quiet_torch_jit():
            module = torch.jit.load(str(path), map_location="cpu")
        with torch.inference_mode():
            got = [t.numpy() for t in module(*(torch.from_numpy(v) for v in feeds.values()))]
    worst = 0.0
    for name, want, have in zip(names, expected, got, strict=True):
        if have.shape != want.shape or have.dtype != want.dtype:
            raise CommandFailed(
                f"{path}: output {name} is {have.dtype}{list(have.shape)}, PyTorch gives"
                f" {want.dtype}{list(want.shape)}"
            )
        error = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
        limit = 0.0 if name == "action" else VERIFY_TOLERANCE
        if not error <= limit:
            raise CommandFailed(f"{path}: output {name} differs from PyTorch by {error:.3g}")
        worst = max(worst, error)
    return worst


def main(config: ExportConfig) -> ExportResult:
    """Export the checkpoint; returns the files written and the verification's result."""
    if config.format == "onnx":
        missing = missing_onnx_packages("onnx", *(("onnxruntime",) if config.verify else ()))
        if missing:
            raise ConfigError(
                f"--format onnx {ONNX_EXTRA} ({', '.join(missing)} missing);"
                " or use --format torchscript"
            )
    checkpoint, run_dir = resolve_checkpoint(config)
    path = output_path(config, checkpoint, run_dir)
    policy = load_policy(checkpoint, device="cpu")
    source = str(checkpoint.resolve())
    metadata = write_model(policy, path, config.format, config.opset, source)
    error = None
    if config.verify:
        try:
            error = verify(policy, path, metadata)
        except CommandFailed as failure:
            path.unlink(missing_ok=True)
            raise CommandFailed(f"{failure}; removed it (--no-verify keeps such a file)") from None
    metadata_file = path.with_name(path.name + ".json")
    write_json_atomic(metadata_file, metadata, indent=2)
    if not config.quiet:
        size = path.stat().st_size / 1e6
        check = "" if error is None else f", max deviation from PyTorch {error:.2g}"
        print(f"wrote {path} ({size:.1f} MB{check}) and {metadata_file.name}")
    return ExportResult(path, metadata_file, metadata, error)
