"""What a trained policy's floats depend on beyond its config and seed: the machine.

The same seed trains byte-identical runs on the same machine (docs/training.md), but another
CPU may run other vector kernels (AVX2 against AVX-512, say), whose sums round differently:
from the first differing bit, the runs' trajectories part, and so do their figures. Results
rows record :func:`training_machine`, so two rows that differ can be told apart from two
that should not.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def cpu_name() -> str:
    """The CPU's model name as the OS reports it (the architecture where it does not)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def training_machine() -> dict[str, str]:
    """The CPU, the vector kernels torch dispatches to on it, and torch's version."""
    return {
        "cpu": cpu_name(),
        "kernels": torch.backends.cpu.get_cpu_capability(),
        "torch": str(torch.__version__),
    }
