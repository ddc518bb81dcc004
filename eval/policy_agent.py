"""A trained policy as the acting agent of an evaluation episode.

The policy comes from a ``.pt`` checkpoint (``bc.policy.load_policy``) or from a file that
``python -m bc.export`` wrote (``.onnx``, ``.torchscript``: ``bc.export.runtime``); both act
through the same ``reset()`` / ``act(observation)``. A module of its own so that only
processes that fly a policy import torch and ``bc``: a spawned worker that flies the expert
starts in ~1.5 s, one that imports torch in ~3-5 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bc.export.runtime import is_exported, load_exported_policy
from bc.policy import Policy, act_batch, load_policy
from eval.agents import Agent, Decision, is_discrete
from eval.errors import EvalError


def load_any_policy(checkpoint: str | Path, device: str = "cpu") -> Any:
    """The policy of a ``.pt`` checkpoint, or of an exported ``.onnx`` / ``.torchscript`` file.

    Exported files run on the CPU only; problems with either are one-line user errors.
    """
    if is_exported(checkpoint):
        if device != "cpu":
            raise EvalError(f"{checkpoint} is an exported policy: it runs on the cpu only")
        return load_exported_policy(checkpoint)
    return load_policy(checkpoint, device=device)


class PolicyAgent:
    """A trained policy (``bc.policy.Policy``) flying the env from camera frames alone."""

    name = "policy"

    def __init__(self, policy: Any):
        self.policy = policy
        self._warmed_up = False

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode in world ``seed``: empty frame stack, zero recurrent state."""
        if not self._warmed_up:
            # A net's first call selects its kernels and allocates (several ms): done here,
            # under the worker's thread settings, it does not count as a step's latency.
            warm_up = getattr(self.policy, "warm_up", None)
            if warm_up is not None:
                warm_up()
            self._warmed_up = True
        # a sampling head draws from torch's generator: fix it per world, not per worker
        torch.manual_seed(seed)
        self.policy.reset()

    def act(self, env: gym.Env, obs: np.ndarray) -> Decision:
        """The policy's decision for this observation (and the env's extra inputs, if any)."""
        return self._decision(env, _act(self.policy, obs, env))

    @staticmethod
    def act_group(
        agents: Sequence[PolicyAgent], envs: Sequence[gym.Env], observations: Sequence[np.ndarray]
    ) -> list[Decision]:
        """The decisions of agents flying forks of one policy: one forward pass for all."""
        policies = [agent.policy for agent in agents]
        if all(isinstance(policy, Policy) for policy in policies):
            extras = [_extras_of(p, env) for p, env in zip(policies, envs, strict=True)]
            outputs = act_batch(policies, observations, extras)
        else:  # an exported policy decides one observation at a time
            outputs = [
                _act(p, obs, env) for p, obs, env in zip(policies, observations, envs, strict=True)
            ]
        return [
            agent._decision(env, output)
            for agent, env, output in zip(agents, envs, outputs, strict=True)
        ]

    @staticmethod
    def _decision(env: gym.Env, output: Any) -> Decision:
        action = int(output.action)
        yaw = float(output.yaw)
        unwrapped = env.unwrapped
        # a bin env flies the policy's bin (a regressor's comes through the expert's rule, not
        # the nearest bin); in the two-control world with the policy's speed command, or (a
        # yaw-only policy) the speed flown now. A bin outside the table is the episode tally's
        # to refuse, as a bug.
        table = unwrapped.controls.yaw_table
        command = float(table[action]) if is_discrete(env) and 0 <= action < len(table) else yaw
        env_action = unwrapped.yaw_command_to_action(command, getattr(output, "speed", None))
        probs = None if output.probs is None else np.asarray(output.probs, dtype=np.float64)
        return Decision(env_action, action, yaw, probs)


def _act(policy: Any, obs: np.ndarray, env: gym.Env) -> Any:
    """``policy.act``, given the env's extra inputs when the policy takes them."""
    extras = _extras_of(policy, env)
    return policy.act(obs) if extras is None else policy.act(obs, extras)


def _extras_of(policy: Any, env: gym.Env) -> np.ndarray | None:
    """The env's extra inputs for a policy that takes them (None otherwise)."""
    extras_for = getattr(policy, "extras_for", None)
    return None if extras_for is None else extras_for(env)


@dataclass
class PolicyAgentFactory:
    """Loads the policy from its checkpoint (or exported) file in the worker.

    ``preloaded`` lets the parent process reuse the policy it already loaded when episodes
    run in-process; it is dropped when the factory is pickled for a worker.
    """

    checkpoint: str
    device: str = "cpu"
    preloaded: Any = field(default=None, repr=False, compare=False)

    def build(self, env: gym.Env) -> Agent:
        """The policy agent, for this worker's env."""
        if self.preloaded is not None:
            return PolicyAgent(self.preloaded)
        return PolicyAgent(load_any_policy(self.checkpoint, device=self.device))

    def build_group(self, envs: Sequence[gym.Env]) -> list[Agent]:
        """One agent per env, flying forks of one loaded policy (one net in memory).

        The policy is loaded once per process and kept for the groups built later.
        """
        if self.preloaded is None:
            self.preloaded = load_any_policy(self.checkpoint, device=self.device)
        return [PolicyAgent(self.preloaded.fork()) for _ in envs]

    def __getstate__(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "device": self.device, "preloaded": None}
