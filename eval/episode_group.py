"""Episodes flown side by side: one worker, several envs, one batched decision per step.

A policy's forward pass at batch 1 costs about as much as an env step, so a worker that flies
one episode at a time spends half its time in the net. An :class:`EpisodeGroupWorker` owns
``batch`` envs (one PyBullet client each) and flies a group of tasks in lockstep: every step it
asks all agents still flying for their decisions at once (a trained policy decides for all of
them in one forward pass, ``bc.policy.act_batch``), then steps each env. An episode that ends
leaves the group; the others fly on.

A worker flies its share of the tasks in order, ``batch`` at a time, and a slot whose
episode ends takes the next task, so the batch stays full until the share runs out. Which
episodes fly side by side depends only on the share and the batch size. A policy's outputs
for one observation may differ with the batch around it in the last float bits, so a
batched evaluation can differ from a one-at-a-time one (or from one with another batch size
or worker count) where two actions' scores tie to within float rounding; everything else is
the same.
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
    """Owns ``setup.batch`` envs, agents and labellers; flies tasks side by side in lockstep."""

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
        """Fly ``tasks`` (without videos), ``batch`` at a time; a slot that ends takes the next.

        Tasks start in order, so which episodes fly side by side depends only on ``tasks`` and
        the batch size.
        """
        if any(task.video_path is not None for task in tasks):
            raise ValueError("episodes flown in groups record no video: fly them one at a time")
        waiting = list(reversed(tasks))
        flying: dict[int, tuple[EpisodeTask, EpisodeTally]] = {}
        observations: dict[int, np.ndarray] = {}
        records: list[EpisodeRecord] = []

        def start(slot: int) -> None:
            task, env = waiting.pop(), self.envs[slot]
            observations[slot], _ = env.reset(seed=task.seed)
            self.agents[slot].reset(env, task.seed)
            if self.labellers is not None:
                self.labellers[slot].reset(env)
            flying[slot] = (task, EpisodeTally(self.n_bins, self.labellers is not None))

        for slot in range(min(len(self.envs), len(waiting))):
            start(slot)
        while flying:
            slots = sorted(flying)
            started = time.perf_counter()
            decisions = decide_together(
                [self.agents[s] for s in slots],
                [self.envs[s] for s in slots],
                [observations[s] for s in slots],
            )
            # each episode is charged its share of the group's decision time
            latency = (time.perf_counter() - started) / len(slots)
            for slot, decision in zip(slots, decisions, strict=True):
                env, (task, tally) = self.envs[slot], flying[slot]
                label = None if self.labellers is None else self.labellers[slot].label(env)
                tally.decided(self.agents[slot].name, decision, label, latency)
                observations[slot], reward, terminated, truncated, info = env.step(
                    decision.env_action
                )
                outcome = tally.stepped(reward, terminated, truncated, info)
                if outcome is not None:
                    records.append(tally.record(task, outcome, info))
                    del flying[slot]
                    if waiting:
                        start(slot)
        return sorted(records, key=lambda record: record.index)
