"""The expert's speed law for the two-control world: slow for bends and obstacles, fast between.

The target speed is the lowest of four limits, each read from the privileged layout:

* **bends**: a bend of angle ``a`` is passed at ``fast - (a / 90 degrees) * bend_slowdown *
  (fast - slow)``, held for ``after_bend`` metres past its vertex; before it, the limit is the
  speed from which braking at ``brake`` times the env's ``acceleration`` reaches that speed at
  the vertex (``sqrt(v^2 + 2 b d)``), so that the agent slows in time and no earlier;
* **obstacles**: an obstacle is passed at ``slow + obstacle_speed * (fast - slow)``, from
  ``obstacle_margin`` metres before it to as far after, with the same braking curve ahead;
* **steering**: ``fast - turn_slowdown * |yaw command| * (fast - slow)``, so that a sharp
  correction (a learner's stray state under DAgger, a start heading error) is flown slowly;
* **the goal**: none (the goal panel is meant to be touched).

``fast`` and ``slow`` are the env's ``speed_range``. On a straight stretch, far from any bend
or obstacle, the law asks for the fastest speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from configflags import flag_name, option


@dataclass(frozen=True)
class SpeedLawConfig:
    """Tunables of the speed law (lengths in metres, fractions of the env's speed range)."""

    bend_slowdown: float = option(
        1.0, help="fraction of the speed range a 90-degree bend takes off (a 45-degree one half)"
    )
    after_bend: float = option(1.5, help="metres past a bend's vertex its speed is held")
    obstacle_speed: float = option(
        0.35, help="where in the speed range (0 slowest, 1 fastest) obstacles are passed"
    )
    obstacle_margin: float = option(
        0.8, help="metres before and after an obstacle its speed is held"
    )
    turn_slowdown: float = option(
        0.5, help="fraction of the speed range a full yaw command takes off"
    )
    brake: float = option(
        0.5, help="fraction of the env's --acceleration the braking curve before a limit uses"
    )

    def __post_init__(self) -> None:
        rules = [  # (holds, field, what it must be)
            (0 <= self.bend_slowdown <= 1, "bend_slowdown", "in [0, 1]"),
            (self.after_bend >= 0, "after_bend", ">= 0 m"),
            (0 <= self.obstacle_speed <= 1, "obstacle_speed", "in [0, 1]"),
            (self.obstacle_margin >= 0, "obstacle_margin", ">= 0 m"),
            (0 <= self.turn_slowdown <= 1, "turn_slowdown", "in [0, 1]"),
            (0 < self.brake <= 1, "brake", "in (0, 1]"),
        ]
        for holds, name, requirement in rules:
            if not holds:
                raise ValueError(
                    f"{flag_name(name)} must be {requirement}, got {getattr(self, name)}"
                )


def bend_angles(headings: np.ndarray) -> np.ndarray:
    """The turn (radians, >= 0) at each inner vertex of a centreline with these headings."""
    turns = np.diff(headings)
    return np.abs((turns + math.pi) % (2.0 * math.pi) - math.pi)


def target_speed(env, yaw_command: float, config: SpeedLawConfig) -> float:
    """The speed (m/s) the expert asks for in the env's current state.

    ``env`` is an unwrapped two-control ``CorridorEnv``; ``yaw_command`` is the steering
    law's command for the same state.
    """
    slow, fast = env.controls.speed_range
    span = fast - slow
    braking = config.brake * env.acceleration
    centreline = env.layout.centreline
    s = centreline.project(env.x, env.y)[0]

    def reachable(limit: float, distance: float) -> float:
        # the speed from which braking reaches ``limit`` within ``distance`` (>= 0) metres
        return math.sqrt(limit * limit + 2.0 * braking * max(distance, 0.0))

    target = fast - config.turn_slowdown * abs(yaw_command) * span
    vertices = centreline.cumulative[1:-1]
    for vertex, angle in zip(vertices, bend_angles(centreline.headings), strict=True):
        if vertex < s - config.after_bend:
            continue
        limit = fast - min(angle / (math.pi / 2.0), 1.0) * config.bend_slowdown * span
        target = min(target, reachable(limit, vertex - s))
    passing = slow + config.obstacle_speed * span
    for obstacle in env.layout.obstacles:
        near = obstacle.s - obstacle.size[0] - config.obstacle_margin
        far = obstacle.s + obstacle.size[0] + config.obstacle_margin
        if far < s:
            continue
        target = min(target, reachable(passing, near - s))
    return float(min(max(target, slow), fast))
