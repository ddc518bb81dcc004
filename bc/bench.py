"""``python -m bc.bench``: how close training gets to the model's own speed, per net.

For every net it reports

* **end-to-end** training samples/s: ``Trainer.train_unit`` on the units of a real epoch
  plan, i.e. gathering the frame stacks or windows from the dataset, normalising, forward,
  backward, optimiser step and metric bookkeeping, as ``bc.train`` runs them;
* the **model-only ceiling**: the same forward, backward and optimiser step on the same
  units, each batch gathered and normalised before the clock starts, and the ratio of the
  two (batch sizes vary, windows are padded, so only the same units compare fairly);
* **batch-1 inference latency** of ``Policy.act`` on a uint8 observation (median and p90).

Both are timed unit by unit, alternating, over ``--rounds`` blocks of ``--steps`` units; the
fastest block of each counts, so a machine shared with other jobs disturbs the ratio as little
as possible. Without ``--data`` the
bench writes a synthetic dataset (``dataset.synthetic``) into a temporary directory.

``--runtimes`` measures deployment instead (``bc.export.bench``): batch-1 latency of one net
(default ``tiny_nfc``, ``--frames 3``, ``--size 64``) in PyTorch eager, TorchScript and
onnxruntime side by side, the net's own time against a whole ``act`` step, no training.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from artifacts.atomic import write_json_atomic
from bc.config import MIN_INPUT_SIZE, TrainConfig, check_range
from bc.data import InputNorm, load_dataset
from bc.errors import ConfigError
from bc.nets import NETS
from bc.policy import Policy
from bc.sampling import FrameUnit, Unit, WindowUnit
from bc.step_engine import Trainer, build_head, build_model, configure_torch, epoch_plan
from configflags import option, run_main
from dataset.synthetic import make_synthetic_dataset

WARMUP_UNITS = 2


@dataclass
class BenchConfig:
    """What to measure and how long."""

    nets: list[str] = option([], "nets to measure (default: every registered net not marked slow)")
    frames: int = option(3, "frames for nets that accept it (others get their first allowed)")
    size: int = option(64, "image size of the synthetic dataset")
    input_size: int | None = option(
        None, "classic nets: resize frames to this size, as bc.train --input-size (others: ignored)"
    )
    batch_size: int = option(32, "training batch size")
    steps: int = option(20, "training steps per timed block")
    rounds: int = option(3, "timed blocks of each kind; the fastest counts")
    latency_steps: int = option(100, "Policy.act calls timed for the latency")
    runs: int = option(4, "runs of the synthetic dataset")
    run_frames: int = option(250, "frames per run of the synthetic dataset")
    data: str = option("", "use this dataset instead of a synthetic one")
    threads: int = option(1, "torch CPU threads (0 = torch's default), as bc.train --threads")
    seed: int = option(0, "seed of weights and batch order")
    json: str = option("", "also write the results to this JSON file")
    runtimes: bool = option(
        False,
        "measure batch-1 latency in PyTorch eager, TorchScript and onnxruntime instead"
        " (default net tiny_nfc; uses --nets, --frames, --size, --latency-steps, --threads)",
    )

    def __post_init__(self) -> None:
        unknown = [name for name in self.nets if name not in NETS]
        if unknown:
            raise ConfigError(
                f"unknown --nets {', '.join(unknown)}; choose from: {', '.join(sorted(NETS))}"
            )
        check_range("frames", self.frames, low=1)
        check_range("size", self.size, low=32)
        if self.input_size is not None:
            check_range("input_size", self.input_size, low=MIN_INPUT_SIZE)
        for name in ("batch_size", "steps", "rounds", "latency_steps", "runs", "run_frames"):
            check_range(name, getattr(self, name), low=1)
        check_range("threads", self.threads, low=0)
        if self.runs < 2:
            raise ConfigError("--runs must be >= 2 (train and val)")


def _frames_for(net: str, wanted: int) -> int:
    allowed = NETS[net].frames
    return wanted if wanted in allowed else allowed[0]


def _best_rate(samples: Sequence[int], seconds: Sequence[float]) -> float:
    return max(n / s for n, s in zip(samples, seconds, strict=True) if s > 0)


def bench_net(net: str, frames: int, data: Path, config: BenchConfig) -> dict[str, Any]:
    """Measure one net on the dataset at ``data``."""
    train_config = TrainConfig(
        data=str(data),
        net=net,
        frames=frames,
        input_size=config.input_size if NETS[net].resizes else None,
        batch_size=config.batch_size,
        seed=config.seed,
        in_ram="yes",
        progress=False,
        tensorboard=False,
        device="cpu",
    )
    dataset = load_dataset(data, in_ram="yes", splits=("train", "val"))
    split = dataset.splits["train"]
    head = build_head(train_config, dataset)
    norm = InputNorm.fit(train_config.input_norm, split, dataset.channels)
    torch.manual_seed(config.seed)
    model, spec = build_model(train_config, dataset, head)
    trainer = Trainer(train_config, model, head, norm, torch.device("cpu"), NETS[net].recurrent)
    trainer.train_mode()

    units: list[Unit] = []
    epoch = 0
    while len(units) < config.steps * config.rounds + WARMUP_UNITS:
        units.extend(epoch_plan(train_config, split, epoch, dataset.n_bins))
        epoch += 1

    def model_only(unit: Unit) -> tuple[int, float]:
        # The unit's batch is gathered and normalised before the clock starts.
        if isinstance(unit, FrameUnit):
            batch = trainer.frame_batch(split, unit.targets)
        else:
            assert isinstance(unit, WindowUnit)  # the bench trains with --bptt window
            batch = trainer.window_batch(split, unit)
        started = time.perf_counter()
        outputs, labels, _ = trainer.outputs(batch)
        trainer.optimise(trainer.loss(outputs, labels))
        return labels.numel(), time.perf_counter() - started

    for unit in units[:WARMUP_UNITS]:  # allocator, oneDNN kernel selection
        trainer.train_unit(split, unit)
        model_only(unit)
    e2e_samples, e2e_seconds, top_samples, top_seconds = [], [], [], []
    for round_index in range(config.rounds):
        start = WARMUP_UNITS + round_index * config.steps
        totals = [0, 0.0, 0, 0.0]
        # Unit by unit, end to end then model only, so that other jobs on the machine slow
        # both measurements alike.
        for unit in units[start : start + config.steps]:
            started = time.perf_counter()
            totals[0] += trainer.train_unit(split, unit)
            totals[1] += time.perf_counter() - started
            samples, seconds = model_only(unit)
            totals[2] += samples
            totals[3] += seconds
        e2e_samples.append(int(totals[0]))
        e2e_seconds.append(totals[1])
        top_samples.append(int(totals[2]))
        top_seconds.append(totals[3])
    e2e = _best_rate(e2e_samples, e2e_seconds)
    ceiling = _best_rate(top_samples, top_seconds)

    policy = Policy(
        model, head, norm, spec, net, trainer.recurrent, dataset.env_kwargs, {}, torch.device("cpu")
    )
    observations = split.gather(torch.arange(min(split.n_frames, 16))).permute(0, 2, 3, 1).numpy()
    policy.reset()
    for observation in observations[:5]:
        policy.act(observation)
    latencies = []
    for index in range(config.latency_steps):
        observation = np.ascontiguousarray(observations[index % len(observations)])
        started = time.perf_counter()
        policy.act(observation)
        latencies.append((time.perf_counter() - started) * 1000.0)
    latencies.sort()
    return {
        "net": net,
        "frames": frames,
        "input_size": train_config.input_size,  # None: the frames' own size
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples_per_s": e2e,
        "ceiling_samples_per_s": ceiling,
        "ratio": e2e / ceiling,
        "latency_ms": statistics.median(latencies),
        "latency_p90_ms": latencies[int(0.9 * (len(latencies) - 1))],
    }


def main(config: BenchConfig) -> list[dict[str, Any]]:
    """Measure every net of ``config`` and return one result dict per net (per runtime)."""
    configure_torch(torch.device("cpu"), config.threads)
    if config.runtimes:
        return main_runtimes(config)
    nets = config.nets or [name for name, entry in NETS.items() if not entry.slow]
    # A table wider than the 80 columns rich assumes when the output is not a terminal.
    console = Console(width=None if sys.stdout.isatty() else 120)
    with tempfile.TemporaryDirectory(prefix="bc-bench-") as temporary:
        data = (
            Path(config.data)
            if config.data
            else make_synthetic_dataset(
                Path(temporary) / "data",
                runs=config.runs,
                frames=config.run_frames,
                size=config.size,
                splits=(config.runs - 1, 1, 0),
                seed=config.seed,
            )
        )
        results = []
        for net in nets:
            frames = _frames_for(net, config.frames)
            console.print(f"measuring {net} (frames {frames}) ...")
            results.append(bench_net(net, frames, data, config))
    table = Table(
        title=f"training and inference speed at {config.size}x{config.size}"
        + (f" (classic nets at {config.input_size})" if config.input_size else "")
        + f", batch {config.batch_size}, {torch.get_num_threads()} threads"
    )
    for column in (
        "net",
        "frames",
        "parameters",
        "samples/s",
        "model-only samples/s",
        "ratio",
        "latency ms (p50)",
        "p90",
    ):
        table.add_column(column, justify="left" if column == "net" else "right")
    for row in results:
        table.add_row(
            row["net"],
            str(row["frames"]),
            f"{row['parameters']:,}",
            f"{row['samples_per_s']:.0f}",
            f"{row['ceiling_samples_per_s']:.0f}",
            f"{row['ratio']:.1%}",
            f"{row['latency_ms']:.2f}",
            f"{row['latency_p90_ms']:.2f}",
        )
    console.print(table)
    if config.json:
        write_json_atomic(Path(config.json), results, indent=2)
    return results


def main_runtimes(config: BenchConfig) -> list[dict[str, Any]]:
    """``--runtimes``: the latency table of each net, one row per runtime."""
    from bc.export.bench import bench_runtimes, runtimes_table

    console = Console(width=None if sys.stdout.isatty() else 120)
    results = []
    for net in config.nets or ["tiny_nfc"]:
        frames = _frames_for(net, config.frames)
        console.print(f"measuring {net} (frames {frames}) ...")
        rows, notes = bench_runtimes(
            net, frames, config.size, config.latency_steps, config.threads, config.seed
        )
        console.print(runtimes_table(rows, torch.get_num_threads()))
        for note in notes:
            console.print(note)
        results.extend(rows)
    if config.json:
        write_json_atomic(Path(config.json), results, indent=2)
    return results


if __name__ == "__main__":
    run_main(
        main,
        BenchConfig,
        "python -m bc.bench",
        "Training and inference speed per net.",
        aliases=True,
    )
