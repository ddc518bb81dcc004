"""The generalist recipe: one command from nothing to a policy for every world of the suite.

``python -m experiments.generalist --seeds 0 1 2 --out runs/generalist`` runs, each step
resumable (a rerun skips what is done and resumes what was interrupted):

1. record ``--runs`` expert runs on the generalist mixture of worlds (``--mixture generalist``:
   textures, obstacles, long and narrow corridors, each in half the worlds), shared by the
   seeds;
2. per training seed, ``bc.train`` on them (the defaults, ``--augment`` and ``--seed S``);
3. per seed, DAgger on the same mixture (its manifest's worlds): ``--iterations`` of
   ``--runs-per-iteration`` runs, fine-tuned ``--finetune-epochs`` epochs each (the measured
   better choice at obstacle density 0.5, docs/results.md);
4. the generalisation suite (``eval.suite``): the expert, BC on the mixture and every DAgger
   iteration, each row pooled over the seeds, with ``--table-into``.

``OUT/recipe.json`` and ``OUT/recipe.md`` give each recipe's expert-labelled frames and wall
time per seed (recording, training and DAgger's collection, retraining and evaluation); the
second table goes to the ``--table-into`` page too, under ``<NAME>_recipe``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json_atomic, write_text_atomic
from artifacts.markdown_block import check_page, write_block
from bc.augment import AUGMENTS
from bc.run_dir import resume_config
from configflags import UserError, option, run_main
from dataset.reader import read_manifest
from envs.options import EnvOptions
from envs.spaces import OBS_MODES
from eval.worker_pool import usable_cores
from experiments.dagger.dataset import expert_labelled_frames

TIMINGS = "timings.json"


@dataclass(frozen=True)
class GeneralistConfig:
    """The recipe's data, training, DAgger and suite settings."""

    seeds: tuple[int, ...] = option((0, 1, 2), "training seeds (one policy each)")
    runs: int = option(160, "expert runs recorded on the mixture (shared by the seeds)")
    obs_mode: str = option("rgb", "camera: rgb, depth or rgbd", choices=OBS_MODES)
    augment: str = option("color", "training augmentation (bc.train --augment)", choices=AUGMENTS)
    epochs: int | None = option(None, "BC training epochs (default: the net's recipe)")
    iterations: int = option(4, "DAgger iterations after BC (0: BC alone)")
    runs_per_iteration: int = option(40, "runs recorded per DAgger iteration")
    finetune_epochs: int = option(3, "epochs of each DAgger iteration's fine-tuning")
    dagger_episodes: int = option(100, "held-out episodes of DAgger's own evaluations")
    episodes: int = option(100, "suite episodes per track and checkpoint")
    tracks: str = option("", "comma-separated suite tracks (default: all)")
    workers: int = option(0, "worker processes (0: one per usable core)")
    out: Path = option(Path("runs/generalist"), "folder of the whole recipe")
    table_into: Path | None = option(None, "markdown page that gets the suite table")
    table_name: str = option("generalist", "block of --table-into (and NAME_recipe)")
    quiet: bool = option(False, "print only the tables")

    def __post_init__(self) -> None:
        if not self.seeds:
            raise UserError("--seeds needs at least one training seed")
        for name in ("runs", "runs_per_iteration", "finetune_epochs", "dagger_episodes",
                     "episodes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1")
        if self.iterations < 0 or self.workers < 0:
            raise UserError("--iterations and --workers must be >= 0")


class Recipe:
    """The recipe's folders and its timings file (wall time of each finished step)."""

    def __init__(self, config: GeneralistConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / TIMINGS
        self.timings: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    @property
    def data(self) -> Path:
        return self.out / "data"

    def run(self, seed: int) -> Path:
        return self.out / f"bc_s{seed}"

    def step(self, key: str, done: bool, work: Callable[[], Any]) -> None:
        """Run ``work`` unless ``done``; the first run that finishes it records its time.

        A step that resumes itself (recording, DAgger) is never ``done`` here: run again
        after it finished, it finds its work done and returns at once.
        """
        if done:
            return
        started = time.perf_counter()
        work()
        if key not in self.timings:
            self.timings[key] = time.perf_counter() - started
            write_json_atomic(self.out / TIMINGS, self.timings, indent=2)

    def collect(self) -> None:
        from expert.collect import main as collect
        from expert.collect_config import CollectConfig

        config = self.config
        env = EnvOptions(mixture="generalist", obs_mode=config.obs_mode)
        workers = config.workers or usable_cores()
        self.step("collect", False, lambda: collect(CollectConfig(
            out=self.data, runs=config.runs, env=env, workers=workers, quiet=True,
        )))  # fmt: skip

    def train(self, seed: int) -> None:
        from bc.config import TrainConfig
        from bc.train import main as train

        run = self.run(seed)
        done = (run / "summary.json").is_file()
        values = {"data": str(self.data), "seed": seed, "augment": self.config.augment,
                  "epochs": self.config.epochs, "progress": False,
                  "tensorboard": False}  # fmt: skip
        if (run / "checkpoints").is_dir():  # interrupted: resume where it stopped
            work = lambda: train(resume_config(str(run)))  # noqa: E731
        else:
            work = lambda: train(TrainConfig(run_dir=str(run), **values))  # noqa: E731
        self.step(f"train_s{seed}", done, work)

    def dagger(self, seed: int) -> list[dict[str, Any]]:
        from experiments.dagger.loop import DaggerConfig
        from experiments.dagger.loop import main as dagger

        config = self.config
        rows: list[dict[str, Any]] = []
        if config.iterations == 0:  # BC alone: the suite flies the expert and BC
            return rows

        def work() -> None:
            rows.extend(dagger(DaggerConfig(
                run=self.run(seed), iterations=config.iterations,
                runs_per_iteration=config.runs_per_iteration, retrain="finetune",
                finetune_epochs=config.finetune_epochs, episodes=config.dagger_episodes,
                workers=config.workers, quiet=True,
            )))  # fmt: skip

        self.step(f"dagger_s{seed}", False, work)
        return rows

    def suite_rows(self) -> list[str]:
        """The suite's rows: the expert, BC and each DAgger iteration, pooled over seeds."""
        seeds = self.config.seeds

        def pooled(label: str, path: Callable[[int], Path]) -> str:
            return f"{label}=" + ",".join(str(path(seed)) for seed in seeds)

        rows = ["expert", pooled("BC mixed", self.run)]
        for iteration in range(1, self.config.iterations + 1):
            rows.append(pooled(f"DAgger mixed {iteration}", self.dagger_run(iteration)))
        return rows

    def dagger_run(self, iteration: int) -> Callable[[int], Path]:
        """Where DAgger iteration ``iteration`` of a seed keeps its retrained run."""
        return lambda seed: self.run(seed) / "dagger" / f"iter_{iteration:02d}" / "run"


def recipe_table(recipe: Recipe, dagger_rows: dict[int, list[dict[str, Any]]]) -> str:
    """Markdown: each recipe's expert-labelled frames and wall time, mean over the seeds."""
    seeds = recipe.config.seeds
    timings = recipe.timings
    collect = timings.get("collect", 0.0)
    lines = [
        "| recipe | expert-labelled frames | wall time per seed |",
        "|---|---|---|",
    ]
    # BC learns from the recording's training split, whatever DAgger adds later
    bc_frames = expert_labelled_frames(read_manifest(recipe.data), 0)
    train = [timings.get(f"train_s{seed}", 0.0) for seed in seeds]
    bc_wall = collect + sum(train) / len(seeds)
    lines.append(f"| BC mixed | {bc_frames:,} | {_minutes(bc_wall)} |")
    dagger_wall = bc_wall
    for iteration in range(1, recipe.config.iterations + 1):
        at = [rows[iteration] for rows in dagger_rows.values() if len(rows) > iteration]
        dagger_wall += _mean([row["wall_s"] for row in at])
        frames = [row["expert_frames"] for row in at]
        lines.append(
            f"| DAgger mixed {iteration} | {_mean(frames):,.0f} | {_minutes(dagger_wall)} |"
        )
    config = recipe.config
    command = (
        f"python -m experiments.generalist --seeds {' '.join(map(str, seeds))}"
        f" --obs-mode {config.obs_mode} --augment {config.augment}"
        f" --iterations {config.iterations}"
    )
    lines += [
        "",
        f"Generated by `{command}`: the recording is shared by the seeds and counted"
        " once; wall time on the machine that ran it, cumulative down the table.",
    ]
    return "\n".join(lines) + "\n"


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


def main(config: GeneralistConfig) -> dict[str, Any]:
    """Run (or resume) the whole recipe; returns the suite's result and the recipe table."""
    from eval.suite import SuiteConfig
    from eval.suite import main as suite

    if config.table_into is not None:
        for name in (config.table_name, f"{config.table_name}_recipe"):
            check_page(config.table_into, name, "--table-into", UserError)
    recipe = Recipe(config)
    recipe.collect()
    dagger_rows: dict[int, list[dict[str, Any]]] = {}
    for seed in config.seeds:
        recipe.train(seed)
        dagger_rows[seed] = recipe.dagger(seed)
    result = suite(SuiteConfig(
        policies=tuple(recipe.suite_rows()), episodes=config.episodes, workers=config.workers,
        tracks=config.tracks,
        out=recipe.out / "suite", table_into=config.table_into, table_name=config.table_name,
        quiet=config.quiet,
    ))  # fmt: skip
    table = recipe_table(recipe, dagger_rows)
    write_text_atomic(recipe.out / "recipe.md", table)
    write_json_atomic(recipe.out / "recipe.json", {"timings": recipe.timings,
                      "dagger": {str(k): v for k, v in dagger_rows.items()}}, indent=2)  # fmt: skip
    if config.table_into is not None:
        write_block(config.table_into, f"{config.table_name}_recipe", table, "--table-into",
                    UserError)  # fmt: skip
    if not config.quiet:
        print(table)
    return {"suite": result, "recipe": table}


if __name__ == "__main__":
    run_main(main, GeneralistConfig, "python -m experiments.generalist", __doc__)
