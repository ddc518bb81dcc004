"""Episodes flown side by side: one worker, several envs, one batched decision per step.

A policy's forward pass at batch 1 costs about as much as an env step, so a worker that flies
one episode at a time spends half its time in the net. An :class:`EpisodeGroupWorker` owns
``batch`` envs (one PyBullet client each) and flies a group of tasks in lockstep: every step it
asks all agents still flying for their decisions at once (a trained policy decides for all of
them in one forward pass, ``bc.policy.act_batch``), then steps each env. An episode that ends
leaves the group; the others fly on.

Groups are fixed by task order (``eval.worker_pool`` cuts them), so a record depends on the
group size, not on the number of workers or the order groups run in. A policy's outputs in a
batch may differ from batch 1's in the last float bits, so a batched evaluation can differ
from a one-at-a-time one where a decision is that close.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from eval.agents import Agent, Decision, ExpertLabeller, Labeller, build_agents, same_expert
from eval.episodes import EpisodeRecord, EpisodeTally, EpisodeTask, WorkerSetup


def decide_together(agents: Sequence[Agent], envs: Sequence, observations: list) -> list[Decision]:
    """Each agent's decision; agents that decide as a group (``act_group``) do so at once."""
    act_group = getattr(type(agents[0]), "act_group", None)
    if act_group is not None:
        return act_group(agents, envs, observations)
    return [agent.act(env, obs) for agent, env, obs in zip(agents, envs, observations, strict=True)]


class EpisodeGroupWorker:
    """Owns ``setup.batch`` envs, agents and labellers; flies groups of tasks in lockstep."""

    def __init__(self, setup: WorkerSetup):
        if setup.batch < 1:
            raise ValueError(f"batch must be >= 1, got {setup.batch}")
        self.setup = setup
        self.envs = [setup.env.make() for _ in range(setup.batch)]
        self.agents = build_agents(setup.agent, self.envs)
        self.labellers: list[Labeller] | None = None
        if setup.labeller is not None:
            if same_expert(setup.agent, setup.labeller):
                # the flying expert labels its own states, reusing act()'s ray scan
                self.labellers = [ExpertLabeller(agent.expert) for agent in self.agents]
            else:
                self.labellers = [setup.labeller.build(env) for env in self.envs]
        self.n_bins = int(self.envs[0].unwrapped.n_bins)

    def close(self) -> None:
        """Release the envs' PyBullet clients."""
        for env in self.envs:
            env.close()

    def run(self, tasks: Sequence[EpisodeTask]) -> list[EpisodeRecord]:
        """Fly ``tasks`` (at most ``batch``, without videos) side by side to their ends."""
        if not 1 <= len(tasks) <= len(self.envs):
            raise ValueError(f"a group holds 1 to {len(self.envs)} tasks, got {len(tasks)}")
        if any(task.video_path is not None for task in tasks):
            raise ValueError("episodes flown in groups record no video: fly them one at a time")
        observations: dict[int, np.ndarray] = {}
        infos: dict[int, dict] = {}
        tallies: dict[int, EpisodeTally] = {}
        for slot, task in enumerate(tasks):
            env = self.envs[slot]
            observations[slot], infos[slot] = env.reset(seed=task.seed)
            self.agents[slot].reset(env, task.seed)
            if self.labellers is not None:
                self.labellers[slot].reset(env)
            tallies[slot] = EpisodeTally(self.n_bins, self.labellers is not None)
        records: list[EpisodeRecord] = []
        while tallies:
            flying = list(tallies)
            start = time.perf_counter()
            decisions = decide_together(
                [self.agents[s] for s in flying],
                [self.envs[s] for s in flying],
                [observations[s] for s in flying],
            )
            # each episode is charged its share of the group's decision time
            latency = (time.perf_counter() - start) / len(flying)
            for slot, decision in zip(flying, decisions, strict=True):
                env, tally = self.envs[slot], tallies[slot]
                label = None if self.labellers is None else self.labellers[slot].label(env)
                tally.decided(self.agents[slot].name, decision, label, latency)
                observations[slot], reward, terminated, truncated, infos[slot] = env.step(
                    decision.env_action
                )
                outcome = tally.stepped(reward, terminated, truncated, infos[slot])
                if outcome is not None:
                    records.append(tally.record(tasks[slot], outcome, infos[slot]))
                    del tallies[slot]
        return sorted(records, key=lambda record: record.index)
