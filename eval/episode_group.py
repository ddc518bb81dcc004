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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from eval.agents import Agent, Decision, build_agents
from eval.episodes import EnvSpec, EpisodeRecord, EpisodeTally, EpisodeTask, Seat, WorkerSetup


def decide_together(agents: Sequence[Agent], envs: Sequence, observations: list) -> list[Decision]:
    """Each agent's decision; agents that decide as a group (``act_group``) do so at once."""
    act_group = getattr(type(agents[0]), "act_group", None)
    if act_group is not None:
        return act_group(agents, envs, observations)
    return [agent.act(env, obs) for agent, env, obs in zip(agents, envs, observations, strict=True)]


class EpisodeGroupWorker:
    """Owns ``setup.batch`` seats (env, agent, labeller); flies tasks side by side in lockstep.

    A seat is built when a task first needs it, and built again when a task brings another
    flight's env (``EpisodeTask.env``); its agent flies a fork of the worker's one policy.
    """

    def __init__(self, setup: WorkerSetup):
        if setup.batch < 1:
            raise ValueError(f"batch must be >= 1, got {setup.batch}")
        self.setup = setup
        self.seats: list[Seat | None] = [None] * setup.batch

    def _agent(self, env: Any) -> Agent:
        return build_agents(self.setup.agent, [env])[0]

    def _seat(self, slot: int, spec: EnvSpec) -> Seat:
        seat = self.seats[slot]
        if seat is None or seat.spec != spec:
            if seat is not None:
                seat.env.close()
            seat = self.seats[slot] = Seat.build(self.setup, spec, self._agent)
        return seat

    def close(self) -> None:
        """Release the envs' PyBullet clients."""
        for seat in self.seats:
            if seat is not None:
                seat.env.close()

    def run(
        self,
        tasks: Sequence[EpisodeTask],
        on_record: Callable[[EpisodeRecord], None] | None = None,
    ) -> list[EpisodeRecord]:
        """Fly ``tasks`` (without videos), ``batch`` at a time; a slot that ends takes the next.

        Tasks start in order, so which episodes fly side by side depends only on ``tasks`` and
        the batch size. Records come back in task order; ``on_record`` gets each one as its
        episode ends.
        """
        if any(task.video_path is not None for task in tasks):
            raise ValueError("episodes flown in groups record no video: fly them one at a time")
        waiting = list(reversed(list(enumerate(tasks))))
        flying: dict[int, tuple[int, EpisodeTask, EpisodeTally, Seat]] = {}
        observations: dict[int, np.ndarray] = {}
        records: dict[int, EpisodeRecord] = {}

        def start(slot: int) -> None:
            position, task = waiting.pop()
            seat = self._seat(slot, task.env or self.setup.env)
            observations[slot], _ = seat.env.reset(seed=task.seed)
            seat.agent.reset(seat.env, task.seed)
            if seat.labeller is not None:
                seat.labeller.reset(seat.env)
            tally = EpisodeTally(int(seat.env.unwrapped.n_bins), seat.labeller is not None)
            flying[slot] = (position, task, tally, seat)

        for slot in range(min(len(self.seats), len(waiting))):
            start(slot)
        while flying:
            slots = sorted(flying)
            seats = [flying[s][3] for s in slots]
            started = time.perf_counter()
            decisions = decide_together(
                [seat.agent for seat in seats],
                [seat.env for seat in seats],
                [observations[s] for s in slots],
            )
            # each episode is charged its share of the group's decision time
            latency = (time.perf_counter() - started) / len(slots)
            for slot, seat, decision in zip(slots, seats, decisions, strict=True):
                position, task, tally, _ = flying[slot]
                label = None if seat.labeller is None else seat.labeller.label(seat.env)
                tally.decided(seat.agent.name, decision, label, latency)
                observations[slot], reward, terminated, truncated, info = seat.env.step(
                    decision.env_action
                )
                outcome = tally.stepped(reward, terminated, truncated, info)
                if outcome is not None:
                    records[position] = tally.record(task, outcome, info)
                    if on_record is not None:
                        on_record(records[position])
                    del flying[slot]
                    if waiting:
                        start(slot)
        return [records[position] for position in range(len(tasks))]
