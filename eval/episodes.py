"""Closed-loop episodes, run in this process or in worker processes.

Everything a worker needs crosses the process boundary as small picklable specs: where the
env comes from (:class:`EnvSpec`), how to build the acting agent (an :class:`AgentFactory`:
a policy from its checkpoint file, or the expert) and the labeller that gives the expert's
clean label at every visited state (for online agreement). Each worker builds its own env, and
with it its own PyBullet client, once, then runs the episodes it is handed.

Episode ``i`` always flies world ``eval_seed(seed, i)``, and the policy and any agent
randomness are re-seeded from that world seed at the start of the episode, so the records do
not depend on how many workers run them or in which order; only the timing fields
(``latency_ms``) differ.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import envs
from envs.seeds import eval_seed
from eval.errors import EvalError
from eval.video import EpisodeVideo, FrameOverlay

# 'spawn' starts each worker from a fresh interpreter: no PyBullet client, torch thread pool
# or open file is inherited from the parent, on every platform
MP_CONTEXT = "spawn"


@dataclass(frozen=True)
class EnvSpec:
    """How to build the evaluation env: a registered id and CorridorEnv keyword arguments."""

    env_id: str
    kwargs: dict[str, Any]
    render_size: int | None = None

    def make(self) -> gym.Env:
        """Build the env (with ``render_mode='rgb_array'`` when videos are wanted)."""
        kwargs = {k: v for k, v in self.kwargs.items() if k not in ("render_mode", "render_size")}
        if self.render_size is not None:
            kwargs.update(render_mode="rgb_array", render_size=self.render_size)
        try:
            return gym.make(self.env_id, **kwargs)
        except (TypeError, ValueError) as error:
            raise EvalError(f"cannot build env {self.env_id}: {error}") from error


def env_spec_from_kwargs(kwargs: dict[str, Any], render_size: int | None = None) -> EnvSpec:
    """The registered id that matches ``kwargs['action_type']`` (discrete by default)."""
    action_type = kwargs.get("action_type", "discrete")
    if action_type not in envs.ENV_IDS:
        raise EvalError(f"unknown action_type {action_type!r}; expected one of {envs.ACTION_TYPES}")
    return EnvSpec(envs.ENV_IDS[action_type], dict(kwargs), render_size)


@dataclass(frozen=True)
class Decision:
    """One step of the acting agent.

    ``env_action`` goes to ``env.step``; ``action`` is the same decision as a bin index (what
    agreement compares with the expert's label), ``yaw`` as a command in [-1, 1] (+ = left),
    ``probs`` the class probabilities where the agent has them.
    """

    env_action: Any
    action: int
    yaw: float
    probs: np.ndarray | None = None


class Agent(Protocol):
    """Something that flies the env: a policy, or the expert itself."""

    name: str

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode in world ``seed`` (clears recurrent state and frame stacks)."""

    def act(self, env: gym.Env, obs: np.ndarray) -> Decision:
        """Decide the next action from the observation (the env for privileged agents)."""


class AgentFactory(Protocol):
    """A picklable recipe that builds an :class:`Agent` inside a worker."""

    def build(self, env: gym.Env) -> Agent:
        """The agent, for this worker's env."""


class Labeller(Protocol):
    """The expert's clean label at the current state, without side effects."""

    def reset(self, env: gym.Env) -> None:
        """Start an episode."""

    def label(self, env: gym.Env) -> tuple[int, float]:
        """(bin index, yaw command) the expert would choose now."""


class LabellerFactory(Protocol):
    """A picklable recipe that builds a :class:`Labeller` inside a worker."""

    def build(self, env: gym.Env) -> Labeller:
        """The labeller, for this worker's env."""


# --------------------------------------------------------------------------- policy agent
def _is_discrete(env: gym.Env) -> bool:
    return isinstance(env.action_space, gym.spaces.Discrete)


class PolicyAgent:
    """A trained policy (``bc.policy.Policy``) flying the env from camera frames alone."""

    name = "policy"

    def __init__(self, policy: Any):
        self.policy = policy

    def reset(self, env: gym.Env, seed: int) -> None:
        import torch

        # a sampling head draws from torch's generator: fix it per world, not per worker
        torch.manual_seed(seed)
        self.policy.reset()

    def act(self, env: gym.Env, obs: np.ndarray) -> Decision:
        output = self.policy.act(obs)
        action = int(output.action)
        yaw = float(output.yaw)
        if _is_discrete(env):
            env_action: Any = action
        else:
            env_action = env.unwrapped.yaw_command_to_action(yaw)
        probs = None if output.probs is None else np.asarray(output.probs, dtype=np.float64)
        return Decision(env_action, action, yaw, probs)


@dataclass
class PolicyAgentFactory:
    """Loads the policy from its checkpoint file in the worker (``bc.policy.load_policy``).

    ``preloaded`` lets the parent process reuse the policy it already loaded when episodes
    run in-process; it is dropped when the factory is pickled for a worker.
    """

    checkpoint: str
    device: str = "cpu"
    preloaded: Any = field(default=None, repr=False, compare=False)

    def build(self, env: gym.Env) -> Agent:
        if self.preloaded is not None:
            return PolicyAgent(self.preloaded)
        from bc.policy import load_policy

        return PolicyAgent(load_policy(self.checkpoint, device=self.device))

    def __getstate__(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "device": self.device, "preloaded": None}


# --------------------------------------------------------------------------- expert agent
def expert_config_dict(config: Any, action_type: str = "discrete") -> dict[str, Any]:
    """The full expert config (``ExpertConfig.to_dict``) that ``config`` stands for.

    ``config`` is an ``ExpertConfig``, its dict form (as datasets record it), a kind name
    (``"discrete"``), or None for the default expert of the env's action type. Labels do not
    depend on the kind, only on the steering law and the deadband.
    """
    try:
        from expert.experts import ExpertConfig
    except ImportError as error:
        raise EvalError(
            f"the expert package is not importable ({error}); online agreement and --expert "
            "need expert.make_expert"
        ) from error
    if config is None:
        config = "discrete" if action_type == "discrete" else "continuous"
    try:
        if isinstance(config, str):
            config = ExpertConfig(kind=config)
        elif isinstance(config, dict):
            config = ExpertConfig.from_dict(config)
    except (TypeError, ValueError) as error:
        raise EvalError(f"cannot rebuild the expert from {config!r}: {error}") from error
    return config.to_dict()


def make_expert_for(env: gym.Env, config: Any) -> Any:
    """The scripted expert for ``env`` (``expert.make_expert``); ``config`` as above."""
    from expert.experts import ExpertConfig, make_expert

    action_type = "discrete" if _is_discrete(env) else "continuous"
    return make_expert(ExpertConfig.from_dict(expert_config_dict(config, action_type)), env)


def expert_rng(world_seed: int) -> np.random.Generator:
    """The expert's noise stream for a world, as recording draws it (``expert.expert_rng``)."""
    try:
        from expert.experts import expert_rng as recording_rng
    except ImportError:
        return np.random.default_rng(world_seed)
    return recording_rng(world_seed)


class ExpertAgent:
    """The scripted expert flying the env: the reference row."""

    name = "expert"

    def __init__(self, expert: Any):
        self.expert = expert
        self.rng = np.random.default_rng(0)

    def reset(self, env: gym.Env, seed: int) -> None:
        # the expert's own noise (stochastic experts) is drawn per world, like the policy's
        self.rng = expert_rng(seed)
        self.expert.reset(env)

    def act(self, env: gym.Env, obs: np.ndarray) -> Decision:
        env_action = self.expert.act(env, self.rng)
        unwrapped = env.unwrapped
        yaw = unwrapped.action_to_yaw_command(env_action)
        action = envs.yaw_command_to_bin(yaw, unwrapped.n_bins)
        return Decision(env_action, action, yaw, None)


@dataclass(frozen=True)
class ExpertAgentFactory:
    """Builds the expert from its name or config dict (``expert.make_expert``)."""

    config: Any = None

    def build(self, env: gym.Env) -> Agent:
        return ExpertAgent(make_expert_for(env, self.config))


class ExpertLabeller:
    """The expert's clean label (``expert.label(env)``) at each visited state."""

    def __init__(self, expert: Any):
        self.expert = expert

    def reset(self, env: gym.Env) -> None:
        self.expert.reset(env)

    def label(self, env: gym.Env) -> tuple[int, float]:
        result = self.expert.label(env)
        return int(result.action), float(result.command)


@dataclass(frozen=True)
class ExpertLabellerFactory:
    """Builds the labelling expert from its name or config dict."""

    config: Any = None

    def build(self, env: gym.Env) -> Labeller:
        return ExpertLabeller(make_expert_for(env, self.config))


def _same_expert(agent: AgentFactory, labeller: LabellerFactory) -> bool:
    return (
        isinstance(agent, ExpertAgentFactory)
        and isinstance(labeller, ExpertLabellerFactory)
        and agent.config == labeller.config
    )


# --------------------------------------------------------------------------- one episode
@dataclass(frozen=True)
class EpisodeTask:
    """Episode ``index`` of an evaluation: world ``seed``, and where to write its video."""

    index: int
    seed: int
    video_path: str | None = None


@dataclass(frozen=True)
class EpisodeRecord:
    """The result of one closed-loop episode (one JSON record per episode).

    ``agreement`` is the share of visited steps where the agent's action equals the expert's
    label; ``expert_nll`` the mean negative log-probability the agent gave the expert's
    label (classifiers only); ``yaw_mse`` the mean squared difference between the agent's yaw
    command and the expert's; ``latency_ms`` the agent's mean decision time per step.
    """

    index: int
    seed: int
    outcome: str
    steps: int
    progress_m: float
    progress_frac: float
    corridor_length_m: float
    episode_return: float
    agreement: float | None
    agreed_steps: int
    expert_nll: float | None
    yaw_mse: float | None
    latency_ms: float
    video: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


TIMING_FIELDS = ("latency_ms",)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to run episodes; small and picklable."""

    env: EnvSpec
    agent: AgentFactory
    labeller: LabellerFactory | None
    torch_threads: int = 1


class EpisodeWorker:
    """Owns one env (one PyBullet client), one agent and one labeller; runs episodes."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self.env = spec.env.make()
        self.agent = spec.agent.build(self.env)
        self.labeller: Labeller | None = None
        if spec.labeller is not None:
            if _same_expert(spec.agent, spec.labeller):
                # the flying expert labels its own states: label() then reuses act()'s ray scan
                self.labeller = ExpertLabeller(self.agent.expert)
            else:
                self.labeller = spec.labeller.build(self.env)
        self.n_bins = int(self.env.unwrapped.n_bins)

    def close(self) -> None:
        """Release the env's PyBullet client."""
        self.env.close()

    def run(self, task: EpisodeTask) -> EpisodeRecord:
        """Fly one episode to its end (goal, collision or the time limit)."""
        env = self.env
        obs, info = env.reset(seed=task.seed)
        self.agent.reset(env, task.seed)
        if self.labeller is not None:
            self.labeller.reset(env)
        video = None
        if task.video_path is not None:
            fps = float(env.metadata.get("render_fps", 10))
            video = EpisodeVideo(Path(task.video_path), fps, self.n_bins)
        try:
            record = self._fly(task, obs, info, video)
        except BaseException:
            if video is not None:
                video.close(keep=False)
            raise
        if video is not None:
            video.close(keep=True)
        return record

    def _fly(
        self, task: EpisodeTask, obs: np.ndarray, info: dict[str, Any], video: EpisodeVideo | None
    ) -> EpisodeRecord:
        env = self.env
        steps = agreed = nll_steps = 0
        nll_sum = squared_error_sum = latency_sum = episode_return = 0.0
        outcome = "running"
        while True:
            start = time.perf_counter()
            decision = self.agent.act(env, obs)
            latency_sum += time.perf_counter() - start
            # the label of the same state (the env has not stepped): no side effects
            label = None if self.labeller is None else self.labeller.label(env)
            if not 0 <= decision.action < self.n_bins:
                raise RuntimeError(
                    f"{self.agent.name} chose bin {decision.action}, outside [0, {self.n_bins})"
                )
            if label is not None:
                agreed += int(decision.action == label[0])
                squared_error_sum += (decision.yaw - label[1]) ** 2
                if decision.probs is not None:
                    nll_sum -= math.log(max(float(decision.probs[label[0]]), 1e-12))
                    nll_steps += 1
            if video is not None:
                video.add(env.render(), FrameOverlay(
                    episode=task.index, step=steps, progress_m=info["progress_m"],
                    progress_frac=info["progress_frac"], action=decision.action,
                    yaw=decision.yaw, probs=decision.probs,
                    expert_action=None if label is None else label[0],
                    expert_command=None if label is None else label[1],
                    agent_name=self.agent.name,
                ))  # fmt: skip
            obs, reward, terminated, truncated, info = env.step(decision.env_action)
            steps += 1
            episode_return += float(reward)
            if terminated or truncated:
                # the env says running when only the time limit ended the episode
                outcome = info["outcome"] if terminated else "timeout"
                break
        if video is not None:
            video.add(env.render(), FrameOverlay(
                episode=task.index, step=steps, progress_m=info["progress_m"],
                progress_frac=info["progress_frac"], outcome=outcome,
                agent_name=self.agent.name,
            ))  # fmt: skip
        labelled = self.labeller is not None
        return EpisodeRecord(
            index=task.index,
            seed=task.seed,
            outcome=outcome,
            steps=steps,
            progress_m=float(info["progress_m"]),
            progress_frac=float(info["progress_frac"]),
            corridor_length_m=float(info["corridor_length_m"]),
            episode_return=episode_return,
            agreement=agreed / steps if labelled else None,
            agreed_steps=agreed,
            expert_nll=nll_sum / nll_steps if nll_steps else None,
            yaw_mse=squared_error_sum / steps if labelled else None,
            latency_ms=1000.0 * latency_sum / steps,
            video=task.video_path,
        )


# --------------------------------------------------------------------------- many episodes
_worker: EpisodeWorker | None = None


def _limit_torch_threads(threads: int) -> None:
    torch = sys.modules.get("torch")
    if torch is None:
        # the agent does not use torch (the expert): importing it would only cost start-up
        return
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        # settable only before the first inter-op parallel work; the intra-op limit is what
        # matters for one observation at a time
        pass


def _init_worker(spec: WorkerSpec) -> None:
    global _worker
    # several workers each with a full thread pool would fight over the same cores; the
    # variable covers torch imported later, the call below torch imported already
    os.environ["OMP_NUM_THREADS"] = str(spec.torch_threads)
    _worker = EpisodeWorker(spec)
    _limit_torch_threads(spec.torch_threads)


def _run_in_worker(task: EpisodeTask) -> EpisodeRecord:
    if _worker is None:
        raise RuntimeError("worker used before its initializer ran")
    return _worker.run(task)


def make_tasks(
    seed: int, episodes: int, video_dir: Path | None = None, video_episodes: int = 0,
    video_format: str = "mp4", first_world: int = 0,
) -> list[EpisodeTask]:  # fmt: skip
    """Tasks of an evaluation: episode ``i`` flies ``eval_seed(seed, first_world + i)``.

    The first ``video_episodes`` episodes get a video file in ``video_dir``.
    """
    tasks = []
    for index in range(episodes):
        video = None
        if video_dir is not None and index < video_episodes:
            video = str(Path(video_dir) / f"episode_{index:03d}.{video_format}")
        tasks.append(EpisodeTask(index, eval_seed(seed, first_world + index), video))
    return tasks


def run_episodes(
    spec: WorkerSpec,
    tasks: Sequence[EpisodeTask],
    workers: int = 1,
    on_result: Callable[[EpisodeRecord], None] | None = None,
) -> list[EpisodeRecord]:
    """Run ``tasks`` and return their records ordered by episode index.

    ``workers == 1`` runs in this process (no start-up cost, plain tracebacks), with torch
    limited to ``spec.torch_threads`` for the duration so that its numbers match a worker's;
    more workers run in a 'spawn' process pool, each worker with its own env.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(tasks) <= 1:
        records = list(_run_here(spec, tasks, on_result))
    else:
        records = _run_pool(spec, tasks, min(workers, len(tasks)), on_result)
    return sorted(records, key=lambda r: r.index)


def _run_here(
    spec: WorkerSpec,
    tasks: Sequence[EpisodeTask],
    on_result: Callable[[EpisodeRecord], None] | None,
) -> Iterator[EpisodeRecord]:
    worker = EpisodeWorker(spec)
    torch = sys.modules.get("torch")
    with contextlib.ExitStack() as stack:
        stack.callback(worker.close)
        if torch is not None:
            threads = torch.get_num_threads()
            torch.set_num_threads(spec.torch_threads)
            stack.callback(torch.set_num_threads, threads)
            # episodes re-seed torch's generator; the caller's (a trainer mid-run) must not
            # notice
            stack.enter_context(torch.random.fork_rng(devices=[]))
        for task in tasks:
            record = worker.run(task)
            if on_result is not None:
                on_result(record)
            yield record


def _run_pool(
    spec: WorkerSpec,
    tasks: Sequence[EpisodeTask],
    workers: int,
    on_result: Callable[[EpisodeRecord], None] | None,
) -> list[EpisodeRecord]:
    context = multiprocessing.get_context(MP_CONTEXT)
    records = []
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(spec,)) as pool:  # fmt: skip
        pending = {pool.submit(_run_in_worker, task) for task in tasks}
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    record = future.result()
                    records.append(record)
                    if on_result is not None:
                        on_result(record)
        except BrokenProcessPool as error:
            raise EvalError(
                f"an evaluation worker died ({error}); rerun with --workers 1 to see why"
            ) from error
        finally:
            for future in pending:
                future.cancel()
    return records
