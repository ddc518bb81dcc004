"""DAgger from a trained run: ``python -m experiments.dagger --run runs/<run>``.

Each iteration ``i = 1..N``:

1. **Collect**: fly ``--runs-per-iteration`` fresh recording worlds with the current policy
   mixed with the expert: per step the expert acts with probability ``beta_i`` (the original
   notes' ``--alpha``), else the policy does; the expert labels every visited state. With the
   safety takeover on, the expert also acts while the agent is further off the centreline than
   ``--takeover-offset`` or turned further than ``--takeover-heading``, until both are back
   under ``--handback`` times those thresholds, so runs go on past the first mistake. The
   worlds are the BC dataset's, or those of ``--mixture`` (each such run's manifest entry
   names it); the held-out evaluations fly the run's own worlds either way.
2. **Aggregate**: the runs join the training split of ``OUT/data``, a copy of the BC dataset
   (hard links; the source is never changed). Their ``source`` arrays say who acted.
3. **Retrain** the policy on the whole dataset, from scratch or fine-tuned from the previous
   iteration (``--retrain``), with the BC run's own config and seed.
4. **Evaluate** it on held-out worlds (``eval.rollout``, the same worlds every iteration).

``OUT`` (default ``<run>/dagger``) keeps every iteration's data, run and evaluation
(``iter_NN/``), the table ``results.md`` and ``success.png``: success against iteration and
against expert-labelled frames. Interrupting it, even with kill -9, loses at most the unit in
flight (one recorded run, one training epoch, one evaluation); rerunning the same command
resumes. A different config into the same ``OUT`` is refused, except a larger
``--iterations`` under a constant or exponential schedule (whose betas do not depend on N): that
rerun keeps the iterations done and adds the new ones.

Beta schedules (``--beta`` = b): constant ``b``; linear ``b * (1 - (i - 1) / N)``;
exponential ``b ** i``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

import configflags
import envs
from artifacts.atomic import write_json_atomic, write_text_atomic
from artifacts.step_timings import StepTimings
from bc.checkpoint_names import BEST_SUCCESS, CHECKPOINT_NAMES, DEFAULT_CHECKPOINT, LAST
from bc.config import TrainConfig, config_from_dict, config_to_dict
from bc.policy import load_policy
from bc.run_dir import resume_config
from bc.train import main as train
from configflags import UserError, option
from dataset import read_manifest, run_name
from envs.mixtures import mixture_factors
from eval.compare_table import check_table_into, write_table_into
from eval.during_training import closed_loop_callback
from eval.rollout import RolloutConfig
from eval.rollout import main as rollout
from eval.run_files import newest_run
from eval.worker_pool import usable_cores
from experiments.dagger.dataset import (
    RUN_INDEX_STRIDE,
    add_run,
    copy_dataset,
    dagger_run_index,
    expert_labelled_frames,
    recorded_names,
    remove_temp_files,
)
from experiments.dagger.results import COLUMNS, iteration_cells, plot_success, results_markdown
from expert.experts import Takeover
from expert.recorder import RecordingJob, RunRecorder

BETA_SCHEDULES = ("constant", "linear", "exponential")
RETRAIN_MODES = ("scratch", "finetune")
# fields that change how a DAgger run is carried out, not what it computes
SESSION_FIELDS = frozenset({"workers", "quiet", "table_into", "table_name", "plot_into"})


class DaggerError(UserError):
    """A DAgger run cannot start or continue as asked."""


@dataclass(frozen=True)
class DaggerConfig:
    """Everything a DAgger run depends on; ``OUT/dagger.json`` holds it."""

    run: Path | None = option(
        None, "the trained BC run to start from (default: the newest run in --runs-dir)"
    )
    runs_dir: Path = option(Path("runs"), "where training runs live (for the default --run)")
    which: str = option(
        DEFAULT_CHECKPOINT,
        "checkpoint of each run that flies and is evaluated (best_success: each retraining flies"
        " --select-episodes selection worlds after every epoch and keeps the best epoch)",
        choices=CHECKPOINT_NAMES,
    )
    select_episodes: int = option(
        30,
        "with --which best_success: closed-loop episodes after each retraining epoch, on"
        " selection worlds apart from the held-out ones",
    )
    out: Path | None = option(None, "output folder (default: RUN/dagger)")
    iterations: int = option(5, "DAgger iterations after the BC run")
    runs_per_iteration: int = option(10, "recorded runs per iteration")
    beta: float = option(0.5, "probability that the expert acts in a step, in [0, 1]")
    beta_schedule: str = option(
        "exponential", "how beta changes over iterations (formulas above)", choices=BETA_SCHEDULES
    )
    mixture: str = option(
        "",
        "record the iterations' runs on this mixture of worlds (envs/mixtures.py) instead of"
        " the BC dataset's worlds; the held-out evaluations stay on the run's own worlds",
    )
    takeover: bool = option(
        True, "the expert takes over while the agent strays beyond the two thresholds below"
    )
    takeover_offset: float = option(
        0.7, "lateral offset from the centreline (m) beyond which the expert takes over"
    )
    takeover_heading: float = option(
        40.0, "heading error (degrees) beyond which the expert takes over"
    )
    handback: float = option(
        0.5, "the expert hands back when both are under this fraction of their thresholds"
    )
    retrain: str = option(
        "scratch",
        "retrain each iteration from scratch or fine-tune the previous iteration's policy",
        choices=RETRAIN_MODES,
    )
    finetune_epochs: int = option(5, "epochs of each fine-tuning (--retrain finetune)")
    episodes: int = option(100, "held-out episodes per evaluation")
    eval_seed: int = option(0, "base seed of the held-out worlds")
    workers: int = option(0, "parallel evaluation workers (0 = the usable cores)")
    quiet: bool = option(
        False, "no progress bars or per-run lines (bc.train still prints its summaries)"
    )
    table_into: Path | None = option(
        None,
        "also write the results table into this markdown file, between <!-- NAME:start --> and"
        " <!-- NAME:end --> (NAME: --table-name); a finished run only rewrites it",
    )
    table_name: str = option("dagger", "marker name of the table in --table-into")
    plot_into: Path | None = option(None, "also write the success plot to this PNG file")

    def __post_init__(self) -> None:
        if not 0.0 <= self.beta <= 1.0:
            raise ValueError(f"--beta must be in [0, 1], got {self.beta:g}")
        for name in ("iterations", "runs_per_iteration", "episodes", "finetune_epochs",
                     "select_episodes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{configflags.flag_name(name)} must be >= 1")
        if self.takeover_offset <= 0 or not 0 < self.takeover_heading < 180:
            raise ValueError(
                "--takeover-offset must be > 0 m and --takeover-heading in (0, 180) degrees"
            )
        if not 0.0 < self.handback <= 1.0:
            raise ValueError(f"--handback must be in (0, 1], got {self.handback:g}")
        if self.workers < 0:
            raise ValueError(f"--workers must be >= 0 (0 = the usable cores), got {self.workers}")
        if self.mixture:
            try:
                mixture_factors(self.mixture)
            except ValueError as error:
                raise ValueError(f"--{error}") from None

    def beta_at(self, iteration: int) -> float:
        """Beta of iteration ``iteration`` (1-based) under the schedule."""
        if self.beta_schedule == "constant":
            return self.beta
        if self.beta_schedule == "linear":
            return self.beta * (1.0 - (iteration - 1) / self.iterations)
        return self.beta**iteration


def _identity(config: DaggerConfig, run: Path) -> dict[str, Any]:
    # select_episodes only matters for best_success, mixture only when given (and runs from
    # before either stay resumable)
    unused = set() if config.which == "best_success" else {"select_episodes"}
    if not config.mixture:
        unused.add("mixture")
    values = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in SESSION_FIELDS | {"run", "out", "runs_dir"} | unused
    }
    return json.loads(json.dumps({**values, "run": str(run)}, default=str))


def _extends(old: dict[str, Any], identity: dict[str, Any], key: str) -> bool:
    """Whether ``identity`` only adds iterations to the run ``old`` describes."""
    return (
        key == "iterations"
        and isinstance(old.get(key), int)
        and identity[key] > old[key]
        and identity.get("beta_schedule") != "linear"  # linear betas depend on N
    )


def _check_same_config(out: Path, identity: dict[str, Any]) -> None:
    path = out / "dagger.json"
    if path.is_file():
        old = json.loads(path.read_text())
        for key in sorted(set(old) | set(identity)):
            if old.get(key) != identity.get(key) and not _extends(old, identity, key):
                raise DaggerError(
                    f"{out} holds a DAgger run with {key}={old.get(key)!r}, not"
                    f" {identity.get(key)!r}: rerun with the same flags, or choose another --out"
                )
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, identity, indent=2)


def _base_train_config(run: Path) -> TrainConfig:
    path = run / "config.json"
    if not path.is_file():
        raise DaggerError(f"{run} is not a training run (no config.json): pass --run RUN_DIR")
    if not (run / "checkpoints").is_dir():
        raise DaggerError(f"{run} has no checkpoints: train it first with python -m bc.train")
    return config_from_dict(TrainConfig, json.loads(path.read_text()))


def _check_dataset_fits(base: TrainConfig, run: Path) -> dict[str, Any]:
    """The run's dataset manifest, refused when it no longer fits the run's checkpoint."""
    manifest = read_manifest(Path(base.data))
    policy = load_policy(run / "checkpoints" / f"{LAST}", device="cpu")
    for key in ("image_size", "obs_mode", "n_bins", "action_type"):
        recorded, trained = manifest["env_kwargs"].get(key), policy.env_kwargs.get(key)
        if recorded != trained:
            raise DaggerError(
                f"dataset {base.data} was recorded with {key}={recorded!r} but run {run} was"
                f" trained with {key}={trained!r}: pass the run trained on this dataset"
            )
    return manifest


class LearnerPolicy:
    """A trained policy as the expert's mixing policy: ``(observation, rng) -> yaw command``.

    A policy with extra inputs reads them from the env the expert attached (``attach``); one
    with a speed output returns (yaw, speed) commands.
    """

    def __init__(self, checkpoint: Path) -> None:
        self.policy = load_policy(checkpoint, device="cpu")
        self.env: Any = None

    def attach(self, env: Any) -> None:
        """Fly in ``env`` (the expert calls this at every reset, before ``reset``)."""
        self.env = env

    def reset(self) -> None:
        self.policy.reset()

    def __call__(self, observation: Any, rng: Any) -> float | tuple[float, float]:
        extras = None if self.env is None else self.policy.extras_for(self.env)
        output = self.policy.act(observation, extras)
        if output.speed is not None:
            return float(output.yaw), float(output.speed)
        return float(output.yaw)


class Dagger:
    """One DAgger run: its folder, its dataset and its iterations."""

    def __init__(self, config: DaggerConfig) -> None:
        self.config = config
        self.console = Console(quiet=config.quiet)
        self.run = Path(config.run) if config.run is not None else newest_run(config.runs_dir)
        if not self.run.is_dir():
            raise DaggerError(f"run {self.run} does not exist: pass --run RUN_DIR")
        self.base = _base_train_config(self.run)
        if (
            config.which == "best_success"
            and not (self.run / "checkpoints" / BEST_SUCCESS).is_file()
        ):
            raise DaggerError(
                f"run {self.run} has no checkpoints/{BEST_SUCCESS}: train it with --eval-every 1,"
                " or pass --which last"
            )
        self.out = Path(config.out) if config.out is not None else self.run / "dagger"
        _check_same_config(self.out, _identity(config, self.run))
        _check_dataset_fits(self.base, self.run)
        self.data = self.out / "data"
        self.manifest = copy_dataset(Path(self.base.data), self.data)
        self.workers = config.workers or usable_cores()

    def iteration_dir(self, iteration: int) -> Path:
        return self.out / f"iter_{iteration:02d}"

    def policy_run(self, iteration: int) -> Path:
        return self.run if iteration == 0 else self.iteration_dir(iteration) / "run"

    def checkpoint(self, iteration: int) -> Path:
        return self.policy_run(iteration) / "checkpoints" / f"{self.config.which}.pt"

    def collect(self, iteration: int) -> None:
        """Record the iteration's runs that the manifest does not list yet."""
        config = self.config
        beta = config.beta_at(iteration)
        remove_temp_files(self.data)
        done = recorded_names(self.manifest)
        indices = [dagger_run_index(iteration, j) for j in range(config.runs_per_iteration)]
        missing = [i for i in indices if run_name(i) not in done]
        if not missing:
            return
        # the dataset's own expert, with beta as its alpha
        expert = {**self.manifest["expert"], "alpha": beta}
        job = RecordingJob(
            out=str(self.data),
            env_id=self.manifest["env_id"],
            env_kwargs=self.recording_env_kwargs(),
            expert=expert,
            seed=self.manifest["seed"],
            min_steps=1,
            max_steps=envs.MAX_EPISODE_STEPS,
            keep="all",  # a crash is recovery data up to the crash
            compression=self.manifest.get("collect", {}).get("compression", "gzip"),
            config_hash=self.manifest.get("config_hash", ""),
            video_format="mp4",
        )
        takeover = None
        if config.takeover:
            takeover = Takeover(config.takeover_offset, config.takeover_heading, config.handback)
        policy = LearnerPolicy(self.checkpoint(iteration - 1))
        recorder = RunRecorder(job, policy=policy, takeover=takeover)
        try:
            for index in missing:
                result = recorder.record(index)
                entry = result.manifest_entry("train")
                if config.mixture:  # the run's worlds are not the manifest's env_kwargs'
                    entry["mixture"] = config.mixture
                self.manifest = add_run(self.data, self.manifest, entry, iteration, beta)
                self.console.print(
                    f"  iteration {iteration}: run {index % RUN_INDEX_STRIDE + 1}/"
                    f"{config.runs_per_iteration} {result.outcome}, {result.frames} frames"
                )
        finally:
            recorder.close()

    def recording_env_kwargs(self) -> dict[str, Any]:
        """The env arguments of the iterations' recordings: the dataset's, or --mixture's."""
        env_kwargs = dict(self.manifest["env_kwargs"])
        if self.config.mixture:
            env_kwargs["mixture"] = self.config.mixture
        return env_kwargs

    def retrain(self, iteration: int) -> None:
        """Train the iteration's policy, resuming a run that a kill interrupted."""
        run_dir = self.policy_run(iteration)
        if (run_dir / "summary.json").is_file():
            return
        if (run_dir / "checkpoints" / f"{LAST}").is_file():
            # the dataset where it is now: OUT may have moved, or been named from another folder
            resumed = resume_config(run_dir, data=str(self.data), progress=not self.config.quiet)
            train(resumed, closed_loop_callback(resumed))
            return
        shutil.rmtree(run_dir, ignore_errors=True)
        values = config_to_dict(self.base)
        values.update(
            data=str(self.data),
            run_dir=str(run_dir),
            resume="",
            eval_every=0,
            progress=not self.config.quiet,
        )
        if self.config.which == "best_success":
            values.update(
                eval_every=1, eval_episodes=self.config.select_episodes, eval_workers=self.workers
            )
        if self.config.retrain == "finetune":
            values.update(
                init_from=[str(self.checkpoint(iteration - 1))],
                epochs=self.config.finetune_epochs,
                min_steps=0,  # --finetune-epochs is exact, as an --epochs given to bc.train
                steps=0,
                pretrained="",
            )
        config = config_from_dict(TrainConfig, values)
        train(config, closed_loop_callback(config))

    def evaluate(self, iteration: int) -> dict[str, Any]:
        """The iteration's closed-loop results on the held-out worlds (cached in eval.json)."""
        path = self.iteration_dir(iteration) / "eval.json"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            rollout(
                RolloutConfig(
                    run=self.policy_run(iteration),
                    which=self.config.which,
                    episodes=self.config.episodes,
                    seed=self.config.eval_seed,
                    workers=self.workers,
                    out=path,
                    quiet=True,
                )
            )
        return json.loads(path.read_text())

    def row(self, iteration: int, results: dict[str, Any], wall_s: float) -> dict[str, Any]:
        summary = results["summary"]
        return {
            "iteration": iteration,
            "beta": None if iteration == 0 else self.config.beta_at(iteration),
            "expert_frames": expert_labelled_frames(self.manifest, iteration),
            "episodes": summary["episodes"],
            "success_rate": summary["success_rate"],
            "success_ci": [summary["success_ci_low"], summary["success_ci_high"]],
            "progress_frac": summary["progress_frac"],
            "collision_rate": summary["collision_rate"],
            "agreement": summary["agreement"],
            "wall_s": wall_s,
        }

    def run_all(self) -> list[dict[str, Any]]:
        rows = []
        timings = StepTimings(self.out / "timings.json")
        for iteration in range(self.config.iterations + 1):
            key = str(iteration)
            with timings.timed(key):
                if iteration > 0:
                    self.console.print(
                        f"[bold]iteration {iteration}[/]: beta {self.config.beta_at(iteration):.3g}"
                    )
                    self.collect(iteration)
                    self.retrain(iteration)
                results = self.evaluate(iteration)
            rows.append(self.row(iteration, results, timings[key]))
            self.console.print(
                f"  success {rows[-1]['success_rate']:.1%} on {rows[-1]['episodes']} held-out"
                f" episodes, {rows[-1]['expert_frames']:,} expert-labelled frames"
            )
        return rows


def rows_table(rows: list[dict[str, Any]]) -> Table:
    """The console table of a DAgger run's iterations: results.md's columns but episodes."""
    table = Table(title="DAgger: closed-loop success per iteration")
    shown = [i for i, name in enumerate(COLUMNS) if name != "episodes"]
    for i in shown:
        table.add_column(COLUMNS[i], justify="right")
    for row in rows:
        cells = iteration_cells(row)
        table.add_row(*(cells[i] for i in shown))
    return table


def main(config: DaggerConfig) -> list[dict[str, Any]]:
    """Run (or resume) DAgger; write results.json, results.md and success.png; return the rows."""
    if config.table_into is not None:
        check_table_into(config.table_into, config.table_name)
    dagger = Dagger(config)
    rows = dagger.run_all()
    write_json_atomic(dagger.out / "results.json", rows, indent=2)
    write_text_atomic(dagger.out / "results.md", results_markdown(rows))
    plot_success(rows, dagger.out / "success.png")
    if config.table_into is not None:
        write_table_into(config.table_into, results_markdown(rows), config.table_name)
    if config.plot_into is not None:
        config.plot_into.parent.mkdir(parents=True, exist_ok=True)
        plot_success(rows, config.plot_into)
    Console().print(rows_table(rows))
    Console().print(f"results in {dagger.out} (results.md, success.png, iter_NN/)")
    return rows
