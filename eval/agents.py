"""Who flies an evaluation episode and who labels it: the agent protocols and the expert.

An :class:`Agent` decides each step from the observation; a :class:`Labeller` gives the
expert's clean label of the same state (what online agreement compares with). Both cross the
process boundary as small picklable factories that build them inside a worker, next to that
worker's env. The scripted expert plays both roles here; a trained policy is an agent of its
own in ``eval.policy_agent``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import envs
from eval.errors import EvalError
from expert.experts import ExpertConfig, expert_rng, make_expert


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


def build_agents(factory: AgentFactory, envs: Sequence[gym.Env]) -> list[Agent]:
    """One agent per env, each for its own episodes.

    A factory with ``build_group`` builds them together (a policy: one net shared by all);
    any other builds one agent per env.
    """
    build_group = getattr(factory, "build_group", None)
    if build_group is not None:
        return list(build_group(envs))
    return [factory.build(env) for env in envs]


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


def is_discrete(env: gym.Env) -> bool:
    """Whether the env takes bin indices (else commands): one, or a yaw and a speed bin."""
    return isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.MultiDiscrete))


def expert_config_dict(config: Any, action_type: str = "discrete") -> dict[str, Any]:
    """The full expert config (``ExpertConfig.to_dict``) that ``config`` stands for.

    ``config`` is an ``ExpertConfig``, its dict form (as datasets record it), a kind name
    (``"discrete"``), or None for the default expert of the env's action type. Labels do not
    depend on the kind, only on the steering law and the deadband.
    """
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
    action_type = "discrete" if is_discrete(env) else "continuous"
    return make_expert(ExpertConfig.from_dict(expert_config_dict(config, action_type)), env)


class ExpertAgent:
    """The scripted expert flying the env: the reference row."""

    name = "expert"

    def __init__(self, expert: Any):
        self.expert = expert
        self.rng = np.random.default_rng(0)

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode: the expert's noise stream of world ``seed``, as recording draws it."""
        # the expert's own noise (stochastic experts) is drawn per world, like the policy's
        self.rng = expert_rng(seed)
        self.expert.reset(env)

    def act(self, env: gym.Env, obs: np.ndarray) -> Decision:
        """The expert's action, from the privileged env state (the observation is unused)."""
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
        """The flying expert, for this worker's env."""
        return ExpertAgent(make_expert_for(env, self.config))


class ExpertLabeller:
    """The expert's clean label (``expert.label(env)``) at each visited state."""

    def __init__(self, expert: Any):
        self.expert = expert

    def reset(self, env: gym.Env) -> None:
        """Start an episode."""
        self.expert.reset(env)

    def label(self, env: gym.Env) -> tuple[int, float]:
        """(bin index, yaw command) of the expert's clean label now."""
        result = self.expert.label(env)
        return int(result.action), float(result.command)


@dataclass(frozen=True)
class ExpertLabellerFactory:
    """Builds the labelling expert from its name or config dict."""

    config: Any = None

    def build(self, env: gym.Env) -> Labeller:
        """The labeller, for this worker's env."""
        return ExpertLabeller(make_expert_for(env, self.config))


def same_expert(agent: AgentFactory, labeller: LabellerFactory) -> bool:
    """Whether the labeller is the very expert that flies (it can then reuse its ray scan)."""
    return (
        isinstance(agent, ExpertAgentFactory)
        and isinstance(labeller, ExpertLabellerFactory)
        and agent.config == labeller.config
    )
