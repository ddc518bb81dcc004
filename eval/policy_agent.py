"""A trained policy as the acting agent of an evaluation episode.

A module of its own so that only processes that fly a policy import torch and ``bc``: a
spawned worker that flies the expert starts in ~1.5 s, one that imports torch in ~3-5 s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from bc.policy import load_policy
from eval.agents import Agent, Decision, is_discrete


class PolicyAgent:
    """A trained policy (``bc.policy.Policy``) flying the env from camera frames alone."""

    name = "policy"

    def __init__(self, policy: Any):
        self.policy = policy

    def reset(self, env: gym.Env, seed: int) -> None:
        """Start an episode in world ``seed``: empty frame stack, zero recurrent state."""
        # a sampling head draws from torch's generator: fix it per world, not per worker
        torch.manual_seed(seed)
        self.policy.reset()

    def act(self, env: gym.Env, obs: np.ndarray) -> Decision:
        """The policy's decision for this observation."""
        output = self.policy.act(obs)
        action = int(output.action)
        yaw = float(output.yaw)
        if is_discrete(env):
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
        """The policy agent, for this worker's env."""
        if self.preloaded is not None:
            return PolicyAgent(self.preloaded)
        return PolicyAgent(load_policy(self.checkpoint, device=self.device))

    def __getstate__(self) -> dict[str, Any]:
        return {"checkpoint": self.checkpoint, "device": self.device, "preloaded": None}
