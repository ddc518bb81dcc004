"""``python -m bc.bench --runtimes``: batch-1 latency in PyTorch eager, TorchScript, onnxruntime.

For one net (default ``tiny_nfc``, 3 frames, 64x64, untrained weights: latency does not
depend on them) it times, call by call and interleaved so that other jobs on the machine
slow every column alike:

* **model call**: the net alone on a normalised float stack (eager: the net's own time), or
  the whole exported graph on a uint8 stack, normalisation and decision included
  (TorchScript, onnxruntime);
* **act**: one env observation to a decision, ``Policy.act`` (eager) or
  ``bc.export.runtime.ExportedPolicy.act``: frame stacking, conversions, the model, the head.

``act / net`` divides each act time by the eager net's own time: what a rollout step costs
beyond the net. onnxruntime is left out, with a note, when the ``onnx`` extra is missing.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.table import Table

from bc.data import InputNorm
from bc.export.exporter import write_model
from bc.export.graph import example_inputs, input_names
from bc.export.runtime import ONNX_EXTRA, load_exported_policy, missing_onnx_packages
from bc.heads import make_head
from bc.nets import NETS, NetSpec, build_net
from bc.policy import Policy

N_BINS = 3
WARMUP_CALLS = 10


def untrained_policy(net: str, frames: int, size: int, seed: int) -> Policy:
    """A policy of net ``net`` with freshly initialised weights, RGB ``size`` x ``size``."""
    spec = NetSpec(frames=frames, channels=3, height=size, width=size, n_outputs=N_BINS)
    torch.manual_seed(seed)
    model = build_net(net, spec)
    norm = InputNorm("shift", [0.5] * 3, [1.0] * 3)
    head = make_head("classifier", N_BINS, "bin")
    config = {"net": net, "frames": frames}
    env_kwargs = {"image_size": size, "obs_mode": "rgb", "n_bins": N_BINS}
    return Policy(
        model, head, norm, spec, net, NETS[net].recurrent, env_kwargs, config, torch.device("cpu")
    )


def _timers(policy: Policy, folder: Path, threads: int, seed: int) -> tuple[dict, list[str]]:
    """``{runtime: (model_call, act)}`` callables, and notes on runtimes left out."""
    rng = np.random.default_rng(seed)
    spec = policy.spec
    observations = rng.integers(0, 256, (16, spec.height, spec.width, spec.channels), np.uint8)
    inputs = example_inputs(policy, batch=1, seed=seed)
    feeds = dict(zip(input_names(policy.recurrent), (t.numpy() for t in inputs), strict=True))
    steps = 1 if policy.recurrent else spec.frames
    stack = torch.rand(1, steps, spec.channels, spec.height, spec.width)

    def eager_net(index: int) -> Any:
        with torch.inference_mode():
            return policy.model(stack) if not policy.recurrent else policy.model(stack, None)

    def acting(agent: Any) -> Callable[[int], Any]:
        agent.reset()
        return lambda index: agent.act(observations[index % len(observations)])

    timers: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]] = {
        "PyTorch eager": (eager_net, acting(policy))
    }
    notes = []
    write_model(policy, folder / "policy.torchscript", "torchscript")
    scripted = load_exported_policy(folder / "policy.torchscript")
    timers["TorchScript"] = (lambda index: scripted.runner.run(feeds), acting(scripted))
    if missing_onnx_packages("onnx", "onnxruntime"):
        notes.append(f"onnxruntime left out: it {ONNX_EXTRA}")
    else:
        write_model(policy, folder / "policy.onnx", "onnx")
        onnx = load_exported_policy(folder / "policy.onnx", threads=threads)
        timers["onnxruntime"] = (lambda index: onnx.runner.run(feeds), acting(onnx))
    return timers, notes


def bench_runtimes(
    net: str, frames: int, size: int, calls: int, threads: int, seed: int = 0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Time every runtime of ``net``; returns one row per runtime and notes."""
    policy = untrained_policy(net, frames, size, seed)
    with tempfile.TemporaryDirectory(prefix="bc-bench-export-") as folder:
        timers, notes = _timers(policy, Path(folder), threads, seed)
        samples: dict[tuple[str, int], list[float]] = {
            (name, kind): [] for name in timers for kind in (0, 1)
        }
        for index in range(WARMUP_CALLS + calls):
            for name, pair in timers.items():
                for kind, call in enumerate(pair):
                    started = time.perf_counter()
                    call(index)
                    if index >= WARMUP_CALLS:
                        samples[name, kind].append((time.perf_counter() - started) * 1000.0)
    net_ms = statistics.median(samples["PyTorch eager", 0])
    rows = []
    for name in timers:
        act = sorted(samples[name, 1])
        rows.append(
            {
                "runtime": name,
                "net": net,
                "frames": frames,
                "size": size,
                "model_ms": statistics.median(samples[name, 0]),
                "act_ms": statistics.median(act),
                "act_p90_ms": act[int(0.9 * (len(act) - 1))],
                "act_over_net": statistics.median(act) / net_ms,
            }
        )
    return rows, notes


def runtimes_table(rows: list[dict[str, Any]], threads: int) -> Table:
    """The rich table of ``bench_runtimes``' rows."""
    first = rows[0]
    table = Table(
        title=f"batch-1 latency: {first['net']}, {first['frames']} frames,"
        f" {first['size']}x{first['size']}, {threads} thread(s)",
        caption="model call: eager = the net alone; exported = uint8 frames to decision."
        " act: one observation to a decision (Policy.act / ExportedPolicy.act)",
    )
    for column in ("runtime", "model call ms (p50)", "act ms (p50)", "act p90", "act / net"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    for row in rows:
        table.add_row(
            row["runtime"],
            f"{row['model_ms']:.3f}",
            f"{row['act_ms']:.3f}",
            f"{row['act_p90_ms']:.3f}",
            f"{row['act_over_net']:.2f}x",
        )
    return table
