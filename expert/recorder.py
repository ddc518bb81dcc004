"""Flying the expert through one world and writing the run: one ``RunRecorder`` per process."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym

import envs
from dataset import RunWriter, run_path
from dataset.format import final_state
from envs.controls import speed_command_to_bin
from envs.seeds import collect_seed
from expert.collect_config import CollectConfig
from expert.experts import (
    Decision,
    ExpertConfig,
    Policy,
    Takeover,
    expert_rng,
    make_expert,
)
from expert.plan import RunResult

PROGRESS_EVERY = 25  # steps between progress reports from a recorder


class Stopped(Exception):
    """A recorder was asked to stop in the middle of a run."""


@dataclass(frozen=True)
class RecordingJob:
    """Everything a recorder process needs (picklable)."""

    out: str
    env_id: str
    env_kwargs: dict[str, Any]
    expert: dict[str, Any]
    seed: int
    min_steps: int
    max_steps: int
    keep: str
    compression: str
    config_hash: str
    video_format: str

    @classmethod
    def from_config(cls, config: CollectConfig, fingerprint: str) -> RecordingJob:
        return cls(
            str(config.out),
            config.env_id,
            config.env_kwargs(),
            config.expert.to_dict(),
            config.seed,
            config.min_steps,
            config.max_steps,
            config.keep,
            config.compression,
            fingerprint,
            config.video_format,
        )


class RunRecorder:
    """Flies the expert in one env and writes kept runs; one per process."""

    def __init__(
        self, job: RecordingJob, policy: Policy | None = None, takeover: Takeover | None = None
    ) -> None:
        """``policy`` and ``takeover`` go to ``make_expert`` (DAgger passes its learner)."""
        self.job = job
        self.env = gym.make(job.env_id, **job.env_kwargs)
        expert_config = ExpertConfig.from_dict(job.expert)
        self.expert = make_expert(expert_config, self.env, policy, takeover)

    def close(self) -> None:
        self.env.close()

    def record(
        self,
        run_index: int,
        report: Callable[[int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> RunResult:
        """Fly world ``run_index``; write it if kept.

        ``report(frames)`` is called as it goes; when ``should_stop()`` turns true the run is
        abandoned (``Stopped``), its temporary file removed.
        """
        job = self.job
        seed = collect_seed(job.seed, run_index)
        env, unwrapped = self.env, self.env.unwrapped
        observation, info = env.reset(seed=seed)
        self.expert.reset(env)
        rng = expert_rng(seed)
        shape = observation.shape
        controls = unwrapped.controls
        path = run_path(Path(job.out), run_index)
        with RunWriter(path, shape, job.compression, two_controls=controls.two) as writer:
            while True:
                decision = self.expert.decide(unwrapped, rng, observation)
                executed_bin = envs.yaw_command_to_bin(decision.command, unwrapped.n_bins)
                step = {
                    "frames": observation,
                    "action": executed_bin,
                    "action_continuous": decision.command,
                    "expert_action": decision.label.action,
                    "expert_continuous": decision.label.command,
                    "pose": unwrapped.pose,
                    "progress": info["progress_m"],
                    "source": decision.source,
                    "lateral_offset": info["lateral_offset"],
                    "heading_error": info["heading_error"],
                }
                if controls.two:
                    step.update(speed_steps(decision, info["speed"], controls.speed_bins))
                observation, reward, terminated, truncated, info = env.step(decision.action)
                writer.append(reward=reward, terminated=terminated, truncated=truncated, **step)
                if writer.n_steps % PROGRESS_EVERY == 0:
                    if report is not None:
                        report(PROGRESS_EVERY)
                    if should_stop is not None and should_stop():
                        raise Stopped
                if terminated or truncated or writer.n_steps > job.max_steps:
                    break
            if report is not None:
                report(writer.n_steps % PROGRESS_EVERY)
            # stopped by the env's time limit, or by --max-steps (dropped whatever came next)
            outcome = info["outcome"] if info["outcome"] != "running" else "timeout"
            frames = writer.n_steps
            reason = ""
            if frames > job.max_steps:
                reason = "longer than --max-steps"
            elif job.keep == "goal" and outcome != "goal":
                reason = outcome
            elif frames < job.min_steps:
                reason = "shorter than --min-steps"
            if reason:
                return RunResult(run_index, seed, False, outcome, frames, reason,
                                 info["progress_frac"])  # fmt: skip
            final = final_state(observation, unwrapped.pose, info)
            writer.commit(
                {
                    "seed": seed,
                    "run_index": run_index,
                    "outcome": outcome,
                    "n_bins": unwrapped.n_bins,
                    "env_id": job.env_id,
                    "expert_kind": job.expert["kind"],
                    "config_hash": job.config_hash,
                    "episode_steps": frames,
                    "episode_outcome": outcome,
                    "cut_by_budget": False,
                    "progress_m": info["progress_m"],
                    "progress_frac": info["progress_frac"],
                    "corridor_length_m": info["corridor_length_m"],
                    **({"speed_bins": controls.speed_bins} if controls.two else {}),
                },
                final,
            )
        return RunResult(run_index, seed, True, outcome, frames, "", info["progress_frac"])


def speed_steps(decision: Decision, speed: float, speed_bins: int) -> dict[str, Any]:
    """A step's ``SPEED_FIELDS`` (two-control world): the speed it began at, what was flown."""
    return {
        "speed": speed,
        "speed_action": speed_command_to_bin(decision.speed_command, speed_bins),
        "speed_continuous": decision.speed_command,
        "expert_speed_action": decision.label.speed_action,
        "expert_speed_continuous": decision.label.speed_command,
    }
