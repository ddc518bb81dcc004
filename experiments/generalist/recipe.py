"""The generalist recipe: one command from nothing to a policy for every world of the suite.

``python -m experiments.generalist --seeds 0 1 2 --out runs/generalist`` runs, each step
resumable (a rerun skips what is done and resumes what was interrupted):

1. record ``--runs`` expert runs on the generalist mixture of worlds (``--mixture generalist``:
   textures, obstacles, long and narrow corridors, each in half the worlds), shared by the
   seeds, with a depth camera of 120 degrees and 60 pixels (``--obs-mode``, ``--fov``,
   ``--image-size``: the defaults are the recipe docs/results.md measured best, a wide depth
   camera and 3 DAgger iterations; ``--fov 90 --image-size 64`` is the depth recipe before it,
   ``--obs-mode rgb --iterations 4`` the colour recipe);
2. per training seed, ``bc.train`` on them (the defaults, ``--augment`` and ``--seed S``);
3. per seed, DAgger on the same mixture (its manifest's worlds; ``--dagger-mixture``
   records on another, e.g. ``generalist_obstacles``): ``--iterations`` of
   ``--runs-per-iteration`` runs, fine-tuned ``--finetune-epochs`` epochs each (the measured
   better choice at obstacle density 0.5, docs/results.md);
4. the generalisation suite (``eval.suite``, into ``OUT/suite``): the expert, BC on the
   mixture and every DAgger iteration, each row pooling the seeds run.

Each seed's results become one line (:mod:`experiments.generalist.rows`); with ``--rows FILE``
the lines are kept in that file, and a seed already in it is not run again, so seeds run in
different sessions pool into one table. The tables, made from the lines of every seed of
``--seeds``: ``OUT/generalist.md`` (the suite, each row pooled over the seeds, and
``OUT/generalist.png``) and ``OUT/recipe.md`` (each recipe's expert-labelled frames and wall
time per seed); with ``--table-into`` they go into the page's ``NAME`` and ``NAME_recipe``
blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from artifacts.atomic import write_json_atomic, write_text_atomic
from artifacts.markdown_block import check_page, write_block
from artifacts.step_timings import StepTimings
from bc.augment import AUGMENTS
from bc.machine import training_machine
from bc.nets.view import VIEWS
from bc.run_dir import resume_config
from configflags import UserError, flag_name, option
from dataset.reader import read_manifest
from envs.mixtures import MIXTURES
from envs.options import EnvOptions
from envs.spaces import OBS_MODES
from eval.suite_report import plot_suite
from eval.tracks import Track, tracks_from_flag
from eval.worker_pool import usable_cores
from experiments.dagger.dataset import expert_labelled_frames
from experiments.generalist.rows import (
    BC,
    EXPERT,
    IDENTITY_FIELDS,
    OPTIONAL_IDENTITY_FIELDS,
    RECORDING_MIXTURE,
    dagger_label,
    pooled_suite,
    read_lines,
    recipe_block,
    recipe_identity,
    seed_line,
    suite_block,
    suite_cells,
    write_lines,
)

TIMINGS = "timings.json"


@dataclass(frozen=True)
class GeneralistConfig:
    """The recipe's data, training, DAgger and suite settings."""

    seeds: tuple[int, ...] = option((0, 1, 2), "training seeds (one policy each)")
    runs: int = option(160, "expert runs recorded on the mixture (shared by the seeds)")
    obs_mode: str = option("depth", "camera: rgb, depth or rgbd", choices=OBS_MODES)
    image_size: int = option(
        60, "camera image side in pixels (60: the whole image is what the tiny net's strides"
        " read, docs/nets.md; 64: the recipe's lines before 2026-12-08)",
    )  # fmt: skip
    fov: float = option(
        120.0, "camera field of view in degrees, for the recording and so for BC, DAgger and"
        " the suite (wider: a bend's opening stays in view longer; 90: the recipe's lines"
        " before 2026-12-08)",
    )  # fmt: skip
    augment: str = option(
        "color+randconv",
        "training augmentation (bc.train --augment; it acts on colour channels only, so on"
        " nothing with --obs-mode depth)",
        choices=AUGMENTS,
    )
    epochs: int | None = option(None, "BC training epochs (default: the net's recipe)")
    view: str = option(
        "centred",
        "the part of the image the encoder reads (bc.train --view; top_left: the nets before"
        " 2026-12-07, which the lines of that time in experiments/rows/ were made with)",
        choices=VIEWS,
    )
    iterations: int = option(3, "DAgger iterations after BC (0: BC alone)")
    runs_per_iteration: int = option(40, "runs recorded per DAgger iteration")
    finetune_epochs: int = option(3, "epochs of each DAgger iteration's fine-tuning")
    dagger_mixture: str = option(
        RECORDING_MIXTURE,
        f"mixture DAgger records on (the recording's: {RECORDING_MIXTURE})",
        choices=tuple(name for name in MIXTURES if name != "none"),
    )
    dagger_episodes: int = option(100, "held-out episodes of DAgger's own evaluations")
    episodes: int = option(100, "suite episodes per track and checkpoint")
    tracks: str = option("", "comma-separated suite tracks (default: all)")
    workers: int = option(0, "worker processes (0: one per usable core)")
    out: Path = option(Path("runs/generalist"), "folder of the whole recipe")
    rows: Path | None = option(
        None, "file that keeps each seed's results (JSON lines; docs/results.md's:"
        " experiments/rows/generalist.jsonl): a seed in it is not run again, and the tables"
        " pool every seed of --seeds from it",
    )  # fmt: skip
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
        try:
            self.recording_env()
        except ValueError as error:  # the env's own complaint, under the flag's name
            raise UserError(str(error)) from None
        if self.iterations < 0 or self.workers < 0:
            raise UserError("--iterations and --workers must be >= 0")
        try:
            tracks_from_flag(self.tracks)
        except ValueError as error:
            raise UserError(f"--tracks: {error}") from None

    def recording_env(self) -> EnvOptions:
        """The worlds and camera the recipe records on."""
        return EnvOptions(mixture=RECORDING_MIXTURE, obs_mode=self.obs_mode,
                          image_size=self.image_size, fov=self.fov)  # fmt: skip


class Recipe:
    """The recipe's folders and its timings file (wall time of each finished step)."""

    def __init__(self, config: GeneralistConfig) -> None:
        self.config = config
        self.out = Path(config.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.timings = StepTimings(self.out / TIMINGS)

    @property
    def data(self) -> Path:
        return self.out / "data"

    def run(self, seed: int) -> Path:
        return self.out / f"bc_s{seed}"

    def step(self, key: str, done: bool, work: Callable[[], Any]) -> None:
        """Run ``work`` unless ``done``; its time is summed over the runs that worked on it.

        A step that resumes itself (recording, DAgger) is never ``done`` here: run again
        after it finished, it finds its work done and returns at once, and its time stays
        the one recorded (:class:`artifacts.step_timings.StepTimings`).
        """
        if done:
            return
        with self.timings.timed(key):
            work()

    def collect(self) -> None:
        from expert.collect import main as collect
        from expert.collect_config import CollectConfig

        config = self.config
        env = config.recording_env()
        workers = config.workers or usable_cores()
        self.step("collect", False, lambda: collect(CollectConfig(
            out=self.data, runs=config.runs, env=env, workers=workers, quiet=True,
        )))  # fmt: skip

    def train(self, seed: int) -> None:
        from bc.config import TrainConfig
        from bc.train import main as train

        run = self.run(seed)
        self.check_view(run)
        done = (run / "summary.json").is_file()
        values = {"data": str(self.data), "seed": seed, "augment": self.config.augment,
                  "epochs": self.config.epochs, "view": self.config.view, "progress": False,
                  "tensorboard": False}  # fmt: skip
        if (run / "checkpoints").is_dir():  # interrupted: resume where it stopped
            work = lambda: train(resume_config(str(run)))  # noqa: E731
        else:
            work = lambda: train(TrainConfig(run_dir=str(run), **values))  # noqa: E731
        self.step(f"train_s{seed}", done, work)

    def check_view(self, run: Path) -> None:
        """Refuse a seed's run trained in another view than the one asked (a stale ``--out``)."""
        if not (run / "config.json").is_file():
            return
        view = resume_config(run).view
        if view != self.config.view:
            raise UserError(
                f"{run} was trained with --view {view}, not {self.config.view}: give"
                f" --view {view}, or another --out"
            )

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
                mixture="" if config.dagger_mixture == RECORDING_MIXTURE else config.dagger_mixture,
                workers=config.workers, quiet=True,
            )))  # fmt: skip

        self.step(f"dagger_s{seed}", False, work)
        return rows

    def suite_rows(self, seeds: list[int]) -> list[str]:
        """The suite's rows: the expert, BC and each DAgger iteration, pooling ``seeds``."""

        def pooled(label: str, path: Callable[[int], Path]) -> str:
            return f"{label}=" + ",".join(str(path(seed)) for seed in seeds)

        rows = [EXPERT, pooled(BC, self.run)]
        for iteration in range(1, self.config.iterations + 1):
            rows.append(pooled(dagger_label(iteration), self.dagger_run(iteration)))
        return rows

    def dagger_run(self, iteration: int) -> Callable[[int], Path]:
        """Where DAgger iteration ``iteration`` of a seed keeps its retrained run."""
        return lambda seed: self.run(seed) / "dagger" / f"iter_{iteration:02d}" / "run"

    def seed_lines(
        self,
        seeds: list[int],
        dagger_rows: dict[int, list[dict[str, Any]]],
        suite: dict[str, Any],
        identity: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """The lines of ``seeds``, from this run's timings, DAgger's rows and the suite's data."""
        cells = suite_cells(suite, seeds)
        # BC learns from the recording's training split, whatever DAgger adds later
        bc_frames = expert_labelled_frames(read_manifest(self.data), 0)
        return [
            seed_line(
                identity,
                seed,
                machine=training_machine(),
                bc_frames=bc_frames,
                collect_s=self.timings.get("collect", 0.0),
                train_s=self.timings.get(f"train_s{seed}", 0.0),
                dagger=dagger_rows[seed],
                suite=cells[seed],
            )  # fmt: skip
            for seed in seeds
        ]


# always on the "Generated by" line; the recipe's other settings only where not the default
SHOWN_FIELDS = ("obs_mode", "augment", "iterations")


def command(config: GeneralistConfig) -> str:
    """The command line that makes the tables, as their "Generated by" line gives it.

    It names every setting of the recipe's identity that is not the default, and the tracks
    when not all of them, so that the line reproduces the tables.
    """
    parts = [f"python -m experiments.generalist --seeds {' '.join(map(str, config.seeds))}"]
    defaults = GeneralistConfig()
    names = (*IDENTITY_FIELDS, *OPTIONAL_IDENTITY_FIELDS)
    for name in (*SHOWN_FIELDS, *(f for f in names if f not in SHOWN_FIELDS), "tracks"):
        value = getattr(config, name)
        if name in SHOWN_FIELDS or value != getattr(defaults, name):
            parts.append(f"{flag_name(name)} {value}")
    if config.rows is not None:
        parts.append(f"--rows {config.rows}")
    return " ".join(parts)


def run_seeds(
    config: GeneralistConfig, seeds: list[int], identity: dict[str, Any]
) -> list[dict[str, Any]]:
    """Record (once), train, DAgger and fly the suite for ``seeds``; their lines."""
    from eval.suite import SuiteConfig
    from eval.suite import main as suite

    recipe = Recipe(config)
    recipe.collect()
    dagger_rows: dict[int, list[dict[str, Any]]] = {}
    for seed in seeds:
        recipe.train(seed)
        dagger_rows[seed] = recipe.dagger(seed)
    result = suite(SuiteConfig(
        policies=tuple(recipe.suite_rows(seeds)), episodes=config.episodes,
        workers=config.workers, tracks=config.tracks, out=recipe.out / "suite",
        quiet=config.quiet,
    ))  # fmt: skip
    return recipe.seed_lines(seeds, dagger_rows, result.data, identity)


def main(config: GeneralistConfig) -> dict[str, Any]:
    """Run (or resume) the recipe for the seeds not kept yet; returns the lines and tables."""
    if config.table_into is not None:
        for name in (config.table_name, f"{config.table_name}_recipe"):
            check_page(config.table_into, name, "--table-into", UserError)
    tracks: tuple[Track, ...] = tracks_from_flag(config.tracks)
    identity = recipe_identity(config, tracks)
    kept = read_lines(config.rows, identity) if config.rows is not None else {}
    todo = [seed for seed in config.seeds if seed not in kept]
    if todo:
        new = run_seeds(config, todo, identity)
        if config.rows is not None:
            write_lines(config.rows, new)
        kept.update((line["seed"], line) for line in new)
    elif not config.quiet:
        print(f"every seed of --seeds is in {config.rows}: nothing to run")
    lines = [kept[seed] for seed in config.seeds]
    data = pooled_suite(lines, tracks)
    generated_by = command(config)
    table = suite_block(data, generated_by)
    recipe_table = recipe_block(lines, generated_by)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "generalist.json", {"lines": lines, "table": data}, indent=1)
    write_text_atomic(out / "generalist.md", table)
    write_text_atomic(out / "recipe.md", recipe_table)
    plot_suite(data, out / "generalist.png")
    if config.table_into is not None:
        write_block(config.table_into, config.table_name, table, "--table-into", UserError)
        write_block(config.table_into, f"{config.table_name}_recipe", recipe_table,
                    "--table-into", UserError)  # fmt: skip
    if not config.quiet:
        print(table)
        print(recipe_table)
    return {"lines": lines, "suite": data, "table": table, "recipe": recipe_table}
