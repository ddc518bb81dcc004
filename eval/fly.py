"""Flying a policy (or the expert) on held-out worlds: the one path every evaluation takes.

``eval.rollout`` (the command), ``eval.during_training`` (the trainer's epoch callback),
``eval.bench`` (throughput) and, through ``eval.rollout``, ``experiments.dagger`` all fly the
same way, in two steps:

1. :func:`load_pilot` loads what flies: the policy of a ``.pt`` checkpoint or of a file that
   ``python -m bc.export`` wrote, or the scripted expert (in a checkpoint's env when one is
   given). The env is the checkpoint's own, plus the overrides; an override, or a net, that
   does not fit that env is refused (:func:`check_compatible`, one-line ``EvalError``).
2. :func:`fly` builds the workers' setup (env, agent and the labeller that agreement is
   measured against) and the episode tasks, runs them and returns the records and their
   summary. It is the only place that builds a :class:`~eval.episodes.WorkerSetup`.

They are two steps because a caller may need the loaded env before flying: ``eval.rollout``
names its results file and video folder after the overrides that change the checkpoint's
env, and ``eval.bench`` flies the same pilot once per worker count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from envs.options import full_env_kwargs
from envs.spaces import image_shape, obs_channels
from eval.agents import (
    AgentFactory,
    ExpertAgentFactory,
    ExpertLabellerFactory,
    expert_config_dict,
)
from eval.episodes import (
    EnvSpec,
    EpisodeRecord,
    EpisodeTask,
    WorkerSetup,
    env_spec_from_kwargs,
    make_tasks,
)
from eval.errors import EvalError
from eval.policy_agent import PolicyAgentFactory, load_any_policy
from eval.stats import summarize
from eval.worker_pool import run_episodes, usable_cores
from expert.experts import EXPERT_KINDS

# world indices from here on are kept for model selection during training
MAX_EPISODES = 1_000_000
# env arguments an evaluation may change freely: the world, not what the net sees or outputs
WORLD_OVERRIDES = ("obstacle_density", "clutter_density", "randomize", "randomize_textures",
                   "held_out_textures", "light", "mixture", "n_segments", "segment_length",
                   "corridor_width")  # fmt: skip
# env arguments that fix the net's input and output: a checkpoint only fits its own values
STRUCTURAL_OVERRIDES = ("image_size", "obs_mode", "n_bins", "controls")


def _normalised(name: str, value: Any) -> Any:
    if name == "image_size":
        return image_shape(value)
    if name == "segment_length":
        return tuple(float(v) for v in value)
    return value


def _show(name: str, value: Any) -> str:
    if name == "image_size" and value[0] == value[1]:
        return str(value[0])
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value)
    return str(value)


def check_compatible(
    trained_kwargs: dict[str, Any],
    requested_kwargs: dict[str, Any],
    checkpoint: Path,
    policy: Any = None,
) -> None:
    """Refuse an env the checkpoint was not made for, saying what differs (one line).

    Compares what fixes the net's input and output: image size, observation mode, action
    bins and controls of the env the checkpoint was trained on against the requested env,
    and, where the policy exposes them, the net's own input shape (``spec``) and bin count
    (``n_bins``).
    """
    trained = full_env_kwargs(trained_kwargs)
    requested = full_env_kwargs(requested_kwargs)
    differences = []
    for name in STRUCTURAL_OVERRIDES:
        was, now = _normalised(name, trained[name]), _normalised(name, requested[name])
        if was != now:
            differences.append(f"{name} {_show(name, was)} (checkpoint) != {_show(name, now)}")
    spec = getattr(policy, "spec", None)
    if spec is not None and not differences:
        height, width = image_shape(requested["image_size"])
        channels = obs_channels(requested["obs_mode"])
        net_input = (int(spec.height), int(spec.width), int(spec.channels))
        if net_input != (height, width, channels):
            differences.append(
                f"the net takes {'x'.join(map(str, net_input))} (H x W x C) observations but "
                f"the env gives {height}x{width}x{channels}"
            )
    n_bins = getattr(policy, "n_bins", None)
    if n_bins is not None and not differences and int(n_bins) != int(requested["n_bins"]):
        differences.append(
            f"the net predicts {n_bins} action bins but the env has n_bins {requested['n_bins']}"
        )
    if differences:
        raise EvalError(
            f"checkpoint {checkpoint} does not fit the requested env: {'; '.join(differences)}; "
            "drop the override or evaluate a checkpoint trained for that env"
        )


def load_policy_on_cpu(checkpoint: Path) -> Any:
    """The policy of a ``.pt`` checkpoint or exported file on CPU: one observation at a time."""
    return load_any_policy(str(checkpoint), device="cpu")


def policy_metadata(policy: Any) -> dict[str, Any]:
    """What the results file says about the policy (net, frames, head, training seed)."""
    config = dict(getattr(policy, "config", {}) or {})
    return {
        "net": config.get("net"),
        "frames": config.get("frames"),
        "head": getattr(policy, "head", config.get("head")),
        "n_bins": getattr(policy, "n_bins", None),
        "train_seed": config.get("seed"),
        "config": config,
    }


def labeller_config(policy: Any | None) -> Any:
    """The expert whose labels agreement is measured against.

    The dataset's expert when the checkpoint records it (``Policy.expert_config``), so that
    agreement is measured against the labels the policy was trained on; else the default
    expert, whose labels are those of every expert kind with the default steering law. Data
    that no scripted expert recorded (``dataset.synthetic``'s) also falls back to the default.
    """
    config = getattr(policy, "expert_config", None) if policy is not None else None
    if isinstance(config, dict) and config.get("kind") in EXPERT_KINDS:
        return config
    return None


@dataclass(frozen=True)
class Pilot:
    """What flies, loaded, and the env it flies in.

    ``policy`` is the checkpoint's policy (loaded for the expert too when a checkpoint gives
    its env, as the source of the labeller's expert); ``trained_kwargs`` the env kwargs the
    checkpoint records (empty for the expert alone); ``env_kwargs`` those plus
    ``overrides``.
    """

    checkpoint: Path | None
    policy: Any = field(repr=False)
    expert: bool
    trained_kwargs: dict[str, Any]
    env_kwargs: dict[str, Any]
    overrides: dict[str, Any]

    @property
    def name(self) -> str:
        """``expert``, or the checkpoint file's stem (``last``, ``best_success``, ...)."""
        if self.expert or self.checkpoint is None:
            return "expert"
        return self.checkpoint.stem

    @property
    def action_type(self) -> str:
        """The env's action type (discrete unless the env kwargs say otherwise)."""
        return self.env_kwargs.get("action_type", "discrete")

    @property
    def changed_overrides(self) -> dict[str, Any]:
        """The overrides that actually change the checkpoint's env (these name results files)."""
        defaults = full_env_kwargs(self.trained_kwargs)
        return {
            name: value
            for name, value in self.overrides.items()
            if _normalised(name, value) != _normalised(name, defaults[name])
        }

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The flying policy's :func:`policy_metadata`; None when the expert flies."""
        if self.expert or self.policy is None:
            return None
        return policy_metadata(self.policy)


def load_pilot(
    checkpoint: Path | None,
    *,
    expert: bool = False,
    env_overrides: Mapping[str, Any] | None = None,
) -> Pilot:
    """Load what flies: ``checkpoint``'s policy, or the expert (``expert=True``).

    ``checkpoint`` is a ``.pt`` or an exported ``.onnx`` / ``.torchscript`` file; with
    ``expert`` it only gives the env (and the dataset's expert for the labels), and None means
    the default env. A policy is refused, as a one-line EvalError, when ``env_overrides`` or
    the env it records do not fit its net; the expert flies any env.
    """
    if checkpoint is None and not expert:
        raise ValueError("a policy flies from its checkpoint: pass one, or expert=True")
    overrides = dict(env_overrides or {})
    policy = None if checkpoint is None else load_policy_on_cpu(checkpoint)
    trained = {} if policy is None else dict(policy.env_kwargs)
    requested = {**trained, **overrides}
    if policy is not None and not expert:
        check_compatible(trained, requested, checkpoint, policy)
    return Pilot(checkpoint, policy, expert, trained, requested, overrides)


@dataclass(frozen=True)
class HeldOutWorlds:
    """Which worlds are flown: episode ``i`` flies ``eval_seed(seed, first_world + i)``.

    ``indices`` replaces ``range(episodes)``: only those episodes fly, each in the world it
    has in the whole sequence.
    """

    seed: int = 0
    episodes: int = 1
    indices: tuple[int, ...] | None = None
    first_world: int = 0

    def __post_init__(self) -> None:
        if self.seed < 0 or self.episodes < 1 or self.first_world < 0:
            raise ValueError(f"needs seed >= 0, episodes >= 1 and first_world >= 0: {self}")


@dataclass(frozen=True)
class Videos:
    """Videos of the first ``count`` episodes, ``folder/episode_III.FORMAT``, ``size`` pixels."""

    folder: Path
    count: int
    format: str = "mp4"
    size: int = 256


@dataclass
class Flight:
    """What :func:`fly` did: the setup it built, the tasks, the records and their summary."""

    pilot: Pilot
    env_spec: EnvSpec
    agent: AgentFactory
    labeller: ExpertLabellerFactory
    tasks: list[EpisodeTask]
    workers: int
    records: list[EpisodeRecord]
    summary: dict[str, Any]
    # wall clock of the episodes alone, worker start-up included (what eval.bench reports)
    seconds: float

    @property
    def seeds(self) -> list[int]:
        """The world seed of each task, in task order."""
        return [task.seed for task in self.tasks]


def _labeller(pilot: Pilot) -> ExpertLabellerFactory:
    return ExpertLabellerFactory(
        expert_config_dict(labeller_config(pilot.policy), pilot.action_type)
    )


def worker_setup(
    pilot: Pilot, *, render_size: int | None = None, agreement: bool = True, batch: int = 1
) -> WorkerSetup:
    """What every worker builds to fly ``pilot``: its env, its agent and the labeller.

    The labeller is the dataset's expert when the checkpoint records it, else the default
    expert of the env's action type (None without ``agreement``).
    """
    action_type = pilot.action_type
    env_spec = env_spec_from_kwargs(pilot.env_kwargs, render_size)
    if pilot.expert:
        agent: AgentFactory = ExpertAgentFactory(expert_config_dict(None, action_type))
    else:
        agent = PolicyAgentFactory(str(pilot.checkpoint), preloaded=pilot.policy)
    labeller = _labeller(pilot) if agreement else None
    return WorkerSetup(env=env_spec, agent=agent, labeller=labeller, batch=batch)


def fly(
    pilot: Pilot,
    worlds: HeldOutWorlds,
    *,
    workers: int = 1,
    videos: Videos | None = None,
    on_result: Callable[[EpisodeRecord], None] | None = None,
    batch: int = 1,
    agreement: bool = True,
) -> Flight:
    """Fly ``pilot`` through ``worlds`` with ``workers`` workers (0 = the usable cores).

    The labeller is the dataset's expert when the checkpoint records it, else the default
    expert of the env's action type, as a full expert config either way; ``agreement=False``
    flies without it (no agreement, expert NLL or yaw error in the records, and no expert ray
    scan per step). ``batch`` episodes fly side by side in each worker, the policy deciding
    for all of them in one forward pass (``eval.episode_group``; no videos). ``on_result`` is
    called with each record as it comes in (a progress bar). Records come back in episode
    order, whatever the worker count.
    """
    return fly_together([pilot], [worlds], workers=workers, videos=videos,
                        on_result=on_result, batch=batch, agreement=agreement)[0]  # fmt: skip


def fly_together(
    pilots: Sequence[Pilot],
    worlds: Sequence[HeldOutWorlds],
    *,
    workers: int = 1,
    videos: Videos | None = None,
    on_result: Callable[[EpisodeRecord], None] | None = None,
    batch: int = 1,
    agreement: bool = True,
) -> list[Flight]:
    """Fly each pilot through its worlds in one call: one :class:`Flight` per pilot.

    The pilots fly the same thing (one checkpoint, or the expert) in different envs (the
    tracks of ``eval.suite``): one pool of workers flies every flight's episodes, so a batch
    stays full across flights and the workers start once. Otherwise as :func:`fly`.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = the usable cores), got {workers}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if batch > 1 and videos is not None and videos.count > 0:
        raise ValueError("videos are recorded one episode at a time: fly them with batch 1")
    if len(pilots) != len(worlds) or not pilots:
        raise ValueError("fly_together needs one HeldOutWorlds per pilot, and a pilot")
    first = pilots[0]
    if any((p.checkpoint, p.expert) != (first.checkpoint, first.expert) for p in pilots):
        raise ValueError("fly_together flies one checkpoint (or the expert) in several envs")
    setups = [
        worker_setup(
            pilot,
            render_size=None if videos is None else videos.size,
            agreement=agreement,
            batch=batch,
        )
        for pilot in pilots
    ]
    flights_tasks = []
    for setup, world in zip(setups, worlds, strict=True):
        tasks = make_tasks(
            world.seed,
            world.episodes,
            None if videos is None else videos.folder,
            0 if videos is None else videos.count,
            "mp4" if videos is None else videos.format,
            first_world=world.first_world,
            indices=world.indices,
        )
        # each task carries its flight's env: one pool flies them all
        flights_tasks.append([replace(task, env=setup.env) for task in tasks])
    used = workers or usable_cores()
    started = time.perf_counter()
    records = run_episodes(setups[0], [t for tasks in flights_tasks for t in tasks], used,
                           on_result=on_result)  # fmt: skip
    seconds = time.perf_counter() - started
    flights, offset = [], 0
    for pilot, setup, tasks in zip(pilots, setups, flights_tasks, strict=True):
        own = sorted(records[offset : offset + len(tasks)], key=lambda record: record.index)
        offset += len(tasks)
        summary = summarize([record.to_dict() for record in own])
        flights.append(Flight(pilot, setup.env, setup.agent, _labeller(pilot), tasks, used, own,
                              summary, seconds))  # fmt: skip
    return flights
