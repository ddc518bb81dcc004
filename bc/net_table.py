"""A table of every registered net: parameters, memory of one forward, inference frames/s.

``python -m bc.net_table`` builds each net of the registry (tiny and classic families) for one
RGB frame per decision (the smallest ``--frames`` it takes) at its input size (the native
224/299 pixels of the classic nets, ``--size`` for nets without one), and measures on the
CPU, and on CUDA when there is one:

* parameters of the whole policy and of its per-frame encoder;
* memory of a batch-1 forward: on the CPU the peak of live tensor storage (parameters,
  buffers, input and every op output still referenced) seen op by op through a
  ``TorchDispatchMode``; on CUDA ``torch.cuda.max_memory_allocated`` (which also counts
  kernel workspaces);
* frames per second: batch-1 forward passes (one decision each) per second, from the median
  time of ``--repeats`` passes after ``--warmup`` untimed ones.

``--write-docs`` puts the table into ``docs/classic_nets.md`` between the marker comments
``<!-- specs:start -->`` and ``<!-- specs:end -->``.
"""

from __future__ import annotations

import datetime
import gc
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from artifacts.markdown_block import block_markers, write_block
from bc.config import check_declared_choices, check_range
from bc.errors import ConfigError
from bc.machine import cpu_name
from bc.nets import NETS, NetSpec, build_net
from configflags import option, run_main

DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "classic_nets.md"
DOCS_BLOCK = "specs"
START_MARKER, END_MARKER = block_markers(DOCS_BLOCK)
MIB = 2**20


@dataclass
class NetTableConfig:
    """What to measure and where to write it."""

    nets: list[str] = option([], "nets to measure, by registry name (default: every net)")
    repeats: int = option(5, "timed batch-1 forward passes per net and device")
    warmup: int = option(2, "untimed forward passes before the timed ones")
    size: int = option(64, "square frame size for nets without a native input size (tiny)")
    device: str = option(
        "auto",
        "auto (the CPU, plus CUDA when available), cpu or cuda",
        choices=("auto", "cpu", "cuda"),
    )
    threads: int = option(0, "torch CPU threads (0 = torch's default)")
    write_docs: bool = option(False, "write the table into --docs between its marker comments")
    docs: str = option(str(DOCS_PATH), "markdown file that --write-docs updates")

    def __post_init__(self) -> None:
        unknown = [name for name in self.nets if name not in NETS]
        if unknown:
            raise ConfigError(
                f"unknown --nets {', '.join(unknown)}; choose from: {', '.join(sorted(NETS))}"
            )
        check_range("repeats", self.repeats, low=1)
        check_range("warmup", self.warmup, low=0)
        check_range("size", self.size, low=32)
        check_range("threads", self.threads, low=0, why=" (0 = torch's default)")
        check_declared_choices(self)
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("--device cuda: no CUDA device is available; use auto or cpu")


@dataclass(frozen=True)
class DeviceMeasurement:
    """Memory and speed of one net on one device."""

    memory_bytes: int
    fps: float


@dataclass(frozen=True)
class NetMeasurement:
    """The measured size, memory and speed of one registered net (a row of the table)."""

    name: str
    frames: int
    height: int
    width: int
    parameters: int
    encoder_parameters: int | None
    cpu: DeviceMeasurement | None
    cuda: DeviceMeasurement | None


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of live tensor storage while the mode is on, checked after every op.

    Storages that exist before (parameters, the input) are counted with `track`; each op's
    outputs are counted once per storage (views and in-place results add nothing) until the
    last reference to them is gone.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def track(self, tensors: Sequence[torch.Tensor]) -> None:
        """Count already existing tensors (parameters, buffers, inputs) as live."""
        self._add(tensors)

    def _add(self, tensors: Sequence[Any]) -> None:
        for tensor in tensors:
            if not isinstance(tensor, torch.Tensor):
                continue
            storage = tensor.untyped_storage()
            ref = StorageWeakRef(storage)
            if ref.cdata not in self._live:
                self._live[ref.cdata] = (ref, storage.nbytes())
                self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)

    def _drop_freed(self) -> None:
        for key, (ref, size) in list(self._live.items()):
            if ref.expired():
                del self._live[key]
                self.current -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: D105
        output = func(*args, **(kwargs or {}))
        self._drop_freed()
        self._add(tree_leaves(output))
        return output


def _forward(net: nn.Module, x: torch.Tensor) -> None:
    net(x)  # recurrent nets return (out, state); both are dropped


def measure_memory_cpu(net: nn.Module, x: torch.Tensor) -> int:
    """Peak live tensor bytes (parameters, buffers, input, activations) of one CPU forward."""
    with torch.no_grad():
        meter = PeakTensorMemory()
        meter.track([*net.parameters(), *net.buffers(), x])
        with meter:
            _forward(net, x)
    return meter.peak


def measure_memory_cuda(net: nn.Module, x: torch.Tensor) -> int:
    """``torch.cuda.max_memory_allocated`` over one forward (weights and input included)."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        _forward(net, x)
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def measure_fps(net: nn.Module, x: torch.Tensor, repeats: int, warmup: int) -> float:
    """Batch-1 forward passes per second: 1 / the median time of ``repeats`` timed passes.

    The median, not the mean, so that a pass slowed by another process sharing the CPU does
    not move the figure.
    """
    synchronize = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            _forward(net, x)
        for _ in range(repeats):
            synchronize()
            start = time.perf_counter()
            _forward(net, x)
            synchronize()
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


def measure_net(name: str, config: NetTableConfig) -> NetMeasurement:
    """Build net ``name`` and measure it on the devices ``config`` asks for."""
    entry = NETS[name]
    frames = min(entry.frames)
    spec = NetSpec(frames=frames, channels=3, height=config.size, width=config.size)
    net = build_net(name, spec).eval()
    encoder = getattr(net, "encoder", None)
    native = getattr(encoder, "input_size", None)
    # Classic encoders resize any frame to their native size; feeding that size measures the
    # net itself, not the resize.
    height, width = (native, native) if native else (spec.height, spec.width)
    x = torch.randn(1, frames, spec.channels, height, width)  # (B, T, C, H, W)
    parameters = sum(parameter.numel() for parameter in net.parameters())
    encoder_parameters = (
        sum(parameter.numel() for parameter in encoder.parameters())
        if isinstance(encoder, nn.Module)
        else None
    )
    cpu = cuda = None
    if config.device in ("auto", "cpu"):
        memory = measure_memory_cpu(net, x)
        cpu = DeviceMeasurement(memory, measure_fps(net, x, config.repeats, config.warmup))
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        net, x = net.cuda(), x.cuda()
        memory = measure_memory_cuda(net, x)
        cuda = DeviceMeasurement(memory, measure_fps(net, x, config.repeats, config.warmup))
    del net, x
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return NetMeasurement(name, frames, height, width, parameters, encoder_parameters, cpu, cuda)


def _columns(rows: Sequence[NetMeasurement]) -> tuple[list[str], list[list[str]]]:
    with_cpu = any(row.cpu for row in rows)
    with_cuda = any(row.cuda for row in rows)
    header = ["net", "input (TxHxW)", "params", "encoder params"]
    if with_cpu:
        header += ["CPU MiB", "CPU fps"]
    if with_cuda:
        header += ["CUDA MiB", "CUDA fps"]
    cells = []
    for row in rows:
        line = [
            row.name,
            f"{row.frames}x{row.height}x{row.width}",
            f"{row.parameters:,}",
            f"{row.encoder_parameters:,}" if row.encoder_parameters is not None else "-",
        ]
        for device, present in ((row.cpu, with_cpu), (row.cuda, with_cuda)):
            if present:
                line += (
                    [f"{device.memory_bytes / MIB:,.1f}", f"{device.fps:,.1f}"]
                    if device
                    else ["-", "-"]
                )
        cells.append(line)
    return header, cells


def describe_machine(config: NetTableConfig) -> str:
    """One line on what the numbers were measured with."""
    parts = [f"torch {torch.__version__}"]
    if config.device in ("auto", "cpu"):
        threads = torch.get_num_threads()
        parts.append(f"CPU {cpu_name()}, {threads} thread{'' if threads == 1 else 's'}")
    if config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available()):
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    passes = f"median of {config.repeats} timed passes after {config.warmup} warm-up"
    line = f"{', '.join(parts)}; batch 1, {passes}"
    if hasattr(os, "getloadavg"):  # other jobs on a shared machine slow the CPU figures down
        line += f"; load average {os.getloadavg()[0]:.1f} when done"
    return line


def net_table(rows: Sequence[NetMeasurement], caption: str = "") -> Table:
    """The measurements as a rich table."""
    header, cells = _columns(rows)
    table = Table(title="registered nets", caption=caption)
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index < 2 else "right", no_wrap=index == 0)
    for line in cells:
        table.add_row(*line)
    return table


def net_table_markdown(rows: Sequence[NetMeasurement], caption: str) -> str:
    """The measurements as a markdown table preceded by the measurement conditions."""
    header, cells = _columns(rows)
    date = datetime.date.today().isoformat()
    lines = [
        f"Measured {date} by `python -m bc.net_table --write-docs`: {caption}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(line) + " |" for line in cells]
    return "\n".join(lines)


def write_docs_section(path: str | Path, markdown: str) -> None:
    """Replace what lies between the marker comments of ``path`` with ``markdown``."""
    write_block(Path(path), DOCS_BLOCK, markdown, "--docs", ConfigError)


def main(config: NetTableConfig) -> list[NetMeasurement]:
    """Measure the nets, print the table, write the docs when asked; return the rows."""
    if config.threads:
        torch.set_num_threads(config.threads)
    names = config.nets or list(NETS)
    console = Console()
    rows = []
    with console.status("measuring") as status:
        for name in names:
            status.update(f"measuring {name}")
            rows.append(measure_net(name, config))
    caption = describe_machine(config)
    console.print(net_table(rows, caption))
    if config.write_docs:
        write_docs_section(config.docs, net_table_markdown(rows, caption))
        console.print(f"wrote the table into {config.docs}")
    return rows


if __name__ == "__main__":
    run_main(main, NetTableConfig, "python -m bc.net_table", __doc__.splitlines()[0], aliases=True)
