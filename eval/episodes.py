"""One closed-loop episode: the env, the agent, the labeller and what the episode records.

Everything a worker needs crosses the process boundary as a small picklable
:class:`WorkerSetup`: where the env comes from (:class:`EnvSpec`), how to build the acting agent
(an ``eval.agents.AgentFactory``: a policy from its checkpoint file, or the expert) and the
labeller that gives the expert's clean label at every visited state (for online agreement).
An :class:`EpisodeWorker` builds its env, and with it its own PyBullet client, once, then flies
the episodes it is handed (``eval.worker_pool.run_episodes`` hands them out).

Episode ``i`` always flies world ``eval_seed(seed, i)``, and the policy and any agent
randomness are re-seeded from that world seed at the start of the episode, so the records do
not depend on how many workers run them or in which order; only the timing fields
(``latency_ms``) differ.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import envs
from envs.options import PRESENTATION_KWARGS
from envs.seeds import eval_seed
from eval.agents import (
    AgentFactory,
    Decision,
    ExpertLabeller,
    Labeller,
    LabellerFactory,
    same_expert,
)
from eval.errors import EvalError
from eval.video import EpisodeVideo, FrameOverlay


@dataclass(frozen=True)
class EnvSpec:
    """How to build the evaluation env: a registered id and CorridorEnv keyword arguments."""

    env_id: str
    kwargs: dict[str, Any]
    render_size: int | None = None

    def make(self) -> gym.Env:
        """Build the env (with ``render_mode='rgb_array'`` when videos are wanted)."""
        kwargs = {k: v for k, v in self.kwargs.items() if k not in PRESENTATION_KWARGS}
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
class EpisodeTask:
    """Episode ``index`` of an evaluation: world ``seed``, and where to write its video."""

    index: int
    seed: int
    video_path: str | None = None
    # the world of another flight flown in the same call (eval.fly.fly_together); None: the
    # setup's env
    env: EnvSpec | None = None


@dataclass(frozen=True)
class EpisodeRecord:
    """The result of one closed-loop episode (one JSON record per episode).

    ``agreement`` is the share of visited steps where the agent's action equals the expert's
    label; ``expert_nll`` the mean negative log-probability the agent gave the expert's
    label (classifiers only); ``yaw_mse`` the mean squared difference between the agent's yaw
    command and the expert's; ``latency_ms`` the agent's mean decision time per step;
    ``speed_mean``, ``speed_min`` and ``speed_max`` the forward speed (m/s) after each step;
    ``hit`` what a collision was with (``obstacle`` or ``wall``; None for other outcomes).
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
    speed_mean: float | None = None
    speed_min: float | None = None
    speed_max: float | None = None
    hit: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


TIMING_FIELDS = ("latency_ms",)


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker builds once and then runs episodes with; small and picklable."""

    env: EnvSpec
    agent: AgentFactory
    labeller: LabellerFactory | None
    torch_threads: int = 1
    # episodes flown side by side by one worker (eval.episode_group); 1 = one at a time
    batch: int = 1


@dataclass
class Seat:
    """One env with the agent that flies it and the labeller that labels it."""

    spec: EnvSpec
    env: gym.Env
    agent: Any
    labeller: Labeller | None

    @classmethod
    def build(cls, setup: WorkerSetup, spec: EnvSpec, agent_for: Any) -> Seat:
        """The env of ``spec``, its agent (``agent_for(env)``) and the setup's labeller."""
        env = spec.make()
        agent = agent_for(env)
        labeller: Labeller | None = None
        if setup.labeller is not None:
            if same_expert(setup.agent, setup.labeller):
                # the flying expert labels its own states: label() then reuses act()'s ray scan
                labeller = ExpertLabeller(agent.expert)
            else:
                labeller = setup.labeller.build(env)
        return cls(spec, env, agent, labeller)


class EpisodeWorker:
    """Owns one env (one PyBullet client), one agent and one labeller; runs episodes.

    A task with an env of its own (another flight's world) gets a new env, agent and labeller.
    """

    def __init__(self, setup: WorkerSetup):
        self.setup = setup
        self.seat = Seat.build(setup, setup.env, setup.agent.build)
        self.n_bins = int(self.seat.env.unwrapped.n_bins)

    @property
    def env(self) -> gym.Env:
        return self.seat.env

    @property
    def agent(self) -> Any:
        return self.seat.agent

    @property
    def labeller(self) -> Labeller | None:
        return self.seat.labeller

    def close(self) -> None:
        """Release the env's PyBullet client."""
        self.seat.env.close()

    def run(self, task: EpisodeTask) -> EpisodeRecord:
        """Fly one episode to its end (goal, collision or the time limit)."""
        spec = task.env or self.setup.env
        if spec != self.seat.spec:
            self.seat.env.close()
            self.seat = Seat.build(self.setup, spec, self.setup.agent.build)
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
        tally = EpisodeTally(self.n_bins, self.labeller is not None)
        while True:
            start = time.perf_counter()
            decision = self.agent.act(env, obs)
            latency = time.perf_counter() - start
            # the label of the same state (the env has not stepped): no side effects
            label = None if self.labeller is None else self.labeller.label(env)
            tally.decided(self.agent.name, decision, label, latency)
            if video is not None:
                video.add(env.render(), FrameOverlay(
                    episode=task.index, step=tally.steps, progress_m=info["progress_m"],
                    progress_frac=info["progress_frac"], action=decision.action,
                    yaw=decision.yaw, probs=decision.probs,
                    expert_action=None if label is None else label[0],
                    expert_command=None if label is None else label[1],
                    agent_name=self.agent.name,
                ))  # fmt: skip
            obs, reward, terminated, truncated, info = env.step(decision.env_action)
            outcome = tally.stepped(reward, terminated, truncated, info)
            if outcome is not None:
                break
        if video is not None:
            video.add(env.render(), FrameOverlay(
                episode=task.index, step=tally.steps, progress_m=info["progress_m"],
                progress_frac=info["progress_frac"], outcome=outcome,
                agent_name=self.agent.name,
            ))  # fmt: skip
        return tally.record(task, outcome, info)


class EpisodeTally:
    """What one episode adds up step by step, and the record it ends with."""

    def __init__(self, n_bins: int, labelled: bool):
        self.n_bins = n_bins
        self.labelled = labelled
        self.steps = self.agreed = self.nll_steps = 0
        self.nll_sum = self.squared_error_sum = self.latency_sum = self.episode_return = 0.0
        self.speed_sum, self.speed_min, self.speed_max = 0.0, math.inf, -math.inf

    def decided(
        self, agent: str, decision: Decision, label: tuple[int, float] | None, latency: float
    ) -> None:
        """Count a decision (``latency`` seconds) against the expert's ``label`` of its state."""
        if not 0 <= decision.action < self.n_bins:
            raise RuntimeError(f"{agent} chose bin {decision.action}, outside [0, {self.n_bins})")
        self.latency_sum += latency
        if label is not None:
            self.agreed += int(decision.action == label[0])
            self.squared_error_sum += (decision.yaw - label[1]) ** 2
            if decision.probs is not None:
                self.nll_sum -= math.log(max(float(decision.probs[label[0]]), 1e-12))
                self.nll_steps += 1

    def stepped(
        self, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]
    ) -> str | None:
        """Count an env step; the episode's outcome if it ended, else None."""
        self.steps += 1
        self.episode_return += float(reward)
        speed = float(info["speed"])
        self.speed_sum += speed
        self.speed_min, self.speed_max = min(self.speed_min, speed), max(self.speed_max, speed)
        if terminated:
            return str(info["outcome"])
        # the env says running when only the time limit ended the episode
        return "timeout" if truncated else None

    def record(self, task: EpisodeTask, outcome: str, info: dict[str, Any]) -> EpisodeRecord:
        """The episode's record, from the last step's ``info``."""
        steps = self.steps
        return EpisodeRecord(
            index=task.index,
            seed=task.seed,
            outcome=outcome,
            steps=steps,
            progress_m=float(info["progress_m"]),
            progress_frac=float(info["progress_frac"]),
            corridor_length_m=float(info["corridor_length_m"]),
            episode_return=self.episode_return,
            agreement=self.agreed / steps if self.labelled else None,
            agreed_steps=self.agreed,
            expert_nll=self.nll_sum / self.nll_steps if self.nll_steps else None,
            yaw_mse=self.squared_error_sum / steps if self.labelled else None,
            latency_ms=1000.0 * self.latency_sum / steps,
            video=task.video_path,
            speed_mean=self.speed_sum / steps,
            speed_min=self.speed_min,
            speed_max=self.speed_max,
            hit=info.get("hit"),
        )


def make_tasks(
    seed: int, episodes: int, video_dir: Path | None = None, video_episodes: int = 0,
    video_format: str = "mp4", first_world: int = 0, indices: Sequence[int] | None = None,
) -> list[EpisodeTask]:  # fmt: skip
    """Tasks of an evaluation: episode ``i`` flies ``eval_seed(seed, first_world + i)``.

    ``indices`` replaces ``range(episodes)``: only those episodes are flown, each in the world
    it has in the whole sequence (re-flying chosen episodes of an earlier evaluation). The
    first ``video_episodes`` tasks get a video file in ``video_dir``.
    """
    chosen = range(episodes) if indices is None else indices
    tasks = []
    for position, index in enumerate(chosen):
        video = None
        if video_dir is not None and position < video_episodes:
            video = str(Path(video_dir) / f"episode_{index:03d}.{video_format}")
        tasks.append(EpisodeTask(index, eval_seed(seed, first_world + index), video))
    return tasks
