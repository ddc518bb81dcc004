"""The scripted expert's steering law: waypoint following arbitrated with obstacle avoidance.

The yaw command (a fraction of ``max_yaw_rate``, + = left) is a weighted sum of two
behaviours, as in the behaviour-arbitration expert of the original study:

* **waypoint following**: pure pursuit of a point ``lookahead`` metres ahead of the agent's
  projection on a reference path. The path is the corridor centreline, shifted sideways into
  a free gap beside each obstacle (the privileged layout says where they are), so the
  pursuit point never sits inside an obstacle;
* **obstacle avoidance**: a repeller in heading space from one fan of horizontal ray scans
  (one ``rayTestBatch`` per step): every ray that hits something near pushes the heading away
  from its direction, more strongly the nearer the hit and the closer the ray is to the
  heading. It keeps the agent off walls, door edges and corners the path cuts too finely.

Weights default to 0.9 and 0.1 (the original's arbitration); the avoidance term is not
clipped before weighting, so near an obstacle it overrides the pursuit term.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from configflags import flag_name, option
from envs.geometry import CorridorLayout


@dataclass(frozen=True)
class ControllerConfig:
    """Tunables of the steering law (lengths in metres, angles in degrees)."""

    lookahead: float = option(1.2, help="metres ahead of the agent's projection for pure pursuit")
    pursuit_gain: float = option(1.0, help="scale of the pure-pursuit curvature command")
    waypoint_weight: float = option(0.9, help="arbitration weight of waypoint following")
    avoidance_weight: float = option(0.1, help="arbitration weight of ray-scan obstacle avoidance")
    avoidance_gain: float = option(25.0, help="strength of the ray-scan repeller")
    avoidance_decay: float = option(
        0.4, help="metres of clearance over which a ray's repulsion falls by a factor e"
    )
    avoidance_width: float = option(
        30.0, help="degrees: how far from the heading a ray still repels (Gaussian width)"
    )
    n_rays: int = option(15, help="rays in the scan fan (one rayTestBatch per step)")
    ray_fov: float = option(180.0, help="degrees covered by the ray fan, centred on the heading")
    ray_range: float = option(3.0, help="metres a ray reaches; farther hits do not repel")
    gap_planning: bool = option(
        True, help="shift waypoints into the free gap beside each obstacle (privileged layout)"
    )
    gap_hold: float = option(0.6, help="metres before and after an obstacle the path holds its gap")
    gap_ramp: float = option(1.8, help="metres over which the path moves into and out of a gap")
    gap_min_width: float = option(
        0.9, help="metres: a gap this wide may be taken when it is nearer than the wider one"
    )
    gap_replan: bool = option(
        True,
        help="re-plan the gap path from the agent's own position every step (off: once per"
        " episode), so that a state off the expert's path (a learner's, under DAgger) is"
        " labelled to pass each obstacle on the side the agent is on",
    )

    def __post_init__(self) -> None:
        rules = [  # (holds, field, what it must be)
            (self.lookahead > 0, "lookahead", "> 0 m"),
            (self.pursuit_gain > 0, "pursuit_gain", "> 0"),
            (self.waypoint_weight >= 0, "waypoint_weight", ">= 0"),
            (self.avoidance_weight >= 0, "avoidance_weight", ">= 0"),
            (
                self.waypoint_weight + self.avoidance_weight > 0,
                "waypoint_weight",
                "> 0 when --avoidance-weight is 0",
            ),  # fmt: skip
            (self.avoidance_gain >= 0, "avoidance_gain", ">= 0"),
            (self.avoidance_decay > 0, "avoidance_decay", "> 0 m"),
            (self.avoidance_width > 0, "avoidance_width", "> 0 degrees"),
            (self.n_rays >= 3, "n_rays", ">= 3 (a fan needs a left, a centre and a right ray)"),
            (0 < self.ray_fov <= 360, "ray_fov", "in (0, 360] degrees"),
            (self.ray_range > 0, "ray_range", "> 0 m"),
            (self.gap_hold >= 0, "gap_hold", ">= 0 m"),
            (self.gap_ramp > 0, "gap_ramp", "> 0 m"),
            (self.gap_min_width >= 0, "gap_min_width", ">= 0 m"),
        ]
        for holds, name, requirement in rules:
            if not holds:
                raise ValueError(
                    f"{flag_name(name)} must be {requirement}, got {getattr(self, name)}"
                )


@dataclass(frozen=True)
class SteeringTerms:
    """One step of the steering law, term by term (for tests, plots and debugging)."""

    command: float
    waypoint: float
    avoidance: float
    target: tuple[float, float]
    path_lateral: float


class GapPath:
    """The reference path: the centreline shifted sideways into the free gap beside obstacles.

    ``lateral(s)`` is the offset (m, + left) at arc length ``s``: zero away from obstacles,
    the middle of the chosen gap from ``hold`` metres before to ``hold`` metres after each
    obstacle, and linear ramps of ``ramp`` metres in between (or straight from one gap to the
    next when obstacles are closer than two ramps). Of the two gaps beside an obstacle, the one
    nearer to where the agent comes from (the previous gap, or its start offset) is taken if it
    is at least ``min_gap`` wide, otherwise the wider one: crossing the corridor in front of an
    obstacle costs more room than the agent's 0.9 m turning radius leaves.

    ``start`` is where the plan begins, (arc length, lateral offset): obstacles whose ramp back
    to the centreline ends before it are behind the agent and left out, and the first one
    still ahead takes the gap nearer to the start's offset. Planned from the agent's current
    position every step, the path keeps an agent that went round the other side of an
    obstacle on that side, instead of pulling it across the obstacle's face.
    """

    def __init__(
        self,
        layout: CorridorLayout,
        agent_radius: float,
        hold: float,
        ramp: float,
        min_gap: float,
        start: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        centreline = layout.centreline
        half_width = layout.width / 2.0
        # never closer to a wall than the agent's radius plus a hand's breadth
        limit = half_width - agent_radius - 0.1
        stations: list[float] = []
        offsets: list[float] = []
        previous_end = -math.inf
        previous_segment = centreline.segment_at(start[0])
        entry = start[1]
        for obstacle in sorted(layout.obstacles, key=lambda o: o.s):
            if obstacle.s + obstacle.size[0] + hold + ramp < start[0]:
                continue  # passed, and the path is back on the centreline
            segment = centreline.segment_at(obstacle.s)
            if segment != previous_segment:
                # the pursuit law leaves every bend close to the centreline
                entry = 0.0
            edge_low = obstacle.lateral - obstacle.half_width_across
            edge_high = obstacle.lateral + obstacle.half_width_across
            gaps = [  # (width, middle) of the free gap on the left and on the right
                (half_width - edge_high, (edge_high + half_width) / 2.0),
                (edge_low + half_width, (edge_low - half_width) / 2.0),
            ]
            wide_enough = [gap for gap in gaps if gap[0] >= min_gap]
            if wide_enough:
                target = min(wide_enough, key=lambda gap: abs(gap[1] - entry))[1]
            else:
                target = max(gaps)[1]
            target = float(np.clip(target, -limit, limit))
            begin = obstacle.s - obstacle.size[0] - hold
            end = obstacle.s + obstacle.size[0] + hold
            if begin - ramp > previous_end + ramp:
                # room to come back to the centreline between the two obstacles
                if stations:
                    stations.append(previous_end + ramp)
                    offsets.append(0.0)
                stations.append(begin - ramp)
                offsets.append(0.0)
            # else: cross straight from the previous gap to this one
            begin = max(begin, previous_end + 1e-3)
            end = max(end, begin + 1e-3)
            stations += [begin, end]
            offsets += [target, target]
            previous_end, previous_segment, entry = end, segment, target
        if stations:
            stations.append(previous_end + ramp)
            offsets.append(0.0)
        self.stations = np.array(stations)
        self.offsets = np.array(offsets)

    def lateral(self, s: float) -> float:
        """Offset of the path from the centreline at arc length ``s`` (+ left)."""
        if len(self.stations) == 0:
            return 0.0
        return float(np.interp(s, self.stations, self.offsets, left=0.0, right=0.0))


class CorridorController:
    """Computes the expert's yaw command from the env's privileged state.

    Call ``reset(env)`` after every ``env.reset``; ``steer(env)`` has no side effects on the
    env (a ray scan only reads the physics world).
    """

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        half_fov = math.radians(config.ray_fov) / 2.0
        if config.ray_fov >= 360.0:
            self.ray_angles = np.linspace(-math.pi, math.pi, config.n_rays, endpoint=False)
        else:
            self.ray_angles = np.linspace(-half_fov, half_fov, config.n_rays)
        width = math.radians(config.avoidance_width)
        # how much each ray's hit turns the heading: the repeller's shape in heading space
        self._ray_shape = -self.ray_angles * np.exp(-(self.ray_angles**2) / (2.0 * width**2))
        self.path: GapPath | None = None
        self._layout: CorridorLayout | None = None

    def reset(self, env) -> None:
        """Plan the reference path for the env's current corridor."""
        env = env.unwrapped
        self._layout = env.layout
        if self.config.gap_planning:
            s, lateral, _ = env.layout.centreline.project(env.x, env.y)
            self.path = self._plan(env, s, lateral)
        else:
            self.path = None

    def _plan(self, env, s: float, lateral: float) -> GapPath:
        """The gap path from the agent's position (arc length ``s``, ``lateral`` offset) on."""
        return GapPath(
            env.layout,
            env.agent_radius,
            self.config.gap_hold,
            self.config.gap_ramp,
            self.config.gap_min_width,
            start=(s, lateral),
        )

    def steer(self, env) -> SteeringTerms:
        """The arbitrated yaw command in [-1, 1] for the env's current state."""
        env = env.unwrapped
        if env.layout is not self._layout:
            # the env was reset without telling us: plan for the corridor it holds now
            self.reset(env)
        config = self.config
        centreline = env.layout.centreline
        s, offset, _ = centreline.project(env.x, env.y)
        if config.gap_planning and config.gap_replan and env.layout.obstacles:
            self.path = self._plan(env, s, offset)
        ahead = min(s + config.lookahead, centreline.length)
        lateral = self.path.lateral(ahead) if self.path is not None else 0.0
        heading = centreline.heading_at(ahead)
        point = centreline.point_at(ahead)
        target = (
            float(point[0] - lateral * math.sin(heading)),
            float(point[1] + lateral * math.cos(heading)),
        )
        dx, dy = target[0] - env.x, target[1] - env.y
        distance = max(math.hypot(dx, dy), 1e-6)
        error = _wrap(math.atan2(dy, dx) - env.yaw)
        # pure pursuit: the arc through the target has curvature 2 sin(error) / distance
        curvature = 2.0 * math.sin(error) / distance
        # the speed the agent flies at: a constant, or state in the two-control world
        forward = env.forward_speed if env.controls.two else env.speed
        waypoint = config.pursuit_gain * curvature * forward / env.max_yaw_rate
        if abs(error) > math.pi / 2:
            # target behind: turn towards it at full rate instead of the vanishing arc
            waypoint = math.copysign(max(abs(waypoint), 1.0), error)

        avoidance = 0.0
        if config.avoidance_weight > 0 and config.avoidance_gain > 0:
            distances = env.ray_scan(self.ray_angles, config.ray_range)
            clearance = np.maximum(distances - env.agent_radius, 0.0)
            strength = np.exp(-clearance / config.avoidance_decay)
            strength[distances >= config.ray_range] = 0.0
            if s > centreline.length - config.ray_range - 1.0:
                # only a ray from near the end can reach the goal panel
                strength[self._hits_goal(env, distances)] = 0.0
            avoidance = config.avoidance_gain * float(np.dot(strength, self._ray_shape))
        command = config.waypoint_weight * waypoint + config.avoidance_weight * avoidance
        command = min(max(command, -1.0), 1.0)
        return SteeringTerms(command, float(waypoint), float(avoidance), target, float(lateral))

    def _hits_goal(self, env, distances: np.ndarray) -> np.ndarray:
        """Which rays end on the goal panel: touching it ends the episode well, so no repeller."""
        centreline = env.layout.centreline
        angles = self.ray_angles + env.yaw
        hit_x = env.x + distances * np.cos(angles)
        hit_y = env.y + distances * np.sin(angles)
        end = centreline.points[-1]
        direction = centreline.directions[-1]
        # the panel's face is the plane through the centreline's end, across its last segment
        along = (hit_x - end[0]) * direction[0] + (hit_y - end[1]) * direction[1]
        across = (hit_y - end[1]) * direction[0] - (hit_x - end[0]) * direction[1]
        return (along > -0.05) & (np.abs(across) < env.layout.width / 2.0 + 0.05)


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
