"""The corridor world: a camera-carrying agent flies through a procedurally generated corridor."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import pybullet as pb
from gymnasium import spaces

from envs.arguments import RENDER_MODES, check_arguments
from envs.controls import Controls, approach
from envs.geometry import (
    CorridorLayout,
    generate_centreline,
    generate_clutter,
    generate_obstacles,
)
from envs.mixtures import MIXABLE, draw_world, every_world
from envs.scene import (
    SceneBodies,
    SceneBuilder,
    fixed_appearance,
    lighting,
    random_appearance,
)
from envs.spaces import image_shape, obs_channels

OUTCOMES = ("running", "collision", "goal")

_NEAR_PLANE = 0.05


class CorridorEnv(gym.Env):
    """Fly through a procedurally generated corridor without touching anything.

    ## Description
    A camera-carrying agent (a drone) flies at constant height and constant forward speed
    through a corridor of straight segments joined by left and right bends, and steers by its
    yaw rate alone. Walls, optional obstacles (pillars, boxes, half-closed doors that always
    leave a passable gap), wall-side clutter, tints, the light and (``randomize_textures``)
    the textures are drawn from the reset seed. The world is built in its own PyBullet
    client (DIRECT mode) and rendered with PyBullet's TinyRenderer, headless. It stands in
    for the Gazebo corridor of published imitation-learning experiments (drone at 1 m,
    ~0.8 m/s, camera at ~10 Hz).

    ## Action Space
    ``action_type="discrete"``: ``Discrete(n_bins)``; action ``i`` commands the yaw rate
    ``(1 - 2 i / (n_bins - 1)) * max_yaw_rate``, so with 3 bins 0 = left, 1 = straight,
    2 = right. ``action_type="continuous"``: ``Box(-1, 1, (1,), float32)``, the yaw rate as a
    fraction of ``max_yaw_rate`` (+ = left); ``step`` also takes a plain number or a 0-d
    array (a stored ``action_continuous[t]`` replays as it is) and reads it as float32, the
    Box's dtype. A value outside [-1, 1] or NaN is refused with a ValueError, never clipped
    (``gymnasium.wrappers.ClipAction`` clips). While turning the forward speed moves from
    ``speed`` towards ``turn_speed`` in proportion to the command's magnitude.

    ``controls="yaw_speed"`` (the two-control world) adds the forward speed as a second
    control: ``MultiDiscrete([n_bins, speed_bins])`` (speed bin 0 is the slowest) or
    ``Box(-1, 1, (2,), float32)`` (yaw, speed command; -1 the slowest of ``speed_range``).
    The agent starts at ``speed`` and its speed moves towards the commanded one by at most
    ``acceleration`` m/s^2. See ``envs.controls``.

    ## Observation Space
    ``Box(0, 255, (H, W, C), uint8)``: the forward camera's view. ``obs_mode="rgb"`` gives
    C = 3, ``"depth"`` C = 1 and ``"rgbd"`` C = 4, where depth is metric depth scaled to 0-255
    over ``[0, depth_range]`` metres (farther is clipped to 255).

    ## Rewards
    Per step, the progress along the centreline in metres (negative when flying backwards),
    minus ``collision_penalty`` on a collision. ``info`` holds both parts.

    ## Starting State
    The agent starts ``start_offset`` metres into the corridor, with a lateral offset drawn
    from ``U(-start_lateral_jitter, start_lateral_jitter)`` and a heading error drawn from
    ``U(-start_yaw_jitter, start_yaw_jitter)`` degrees.

    ## Episode End
    Terminated when the agent's collision sphere touches anything (outcome ``collision``) or
    the goal panel across the corridor's end (outcome ``goal``): both are found by PyBullet's
    contact queries, checked after each of ``physics_substeps`` sub-steps. Truncated by the
    ``max_episode_steps`` given at registration (1000 steps for the registered ids).

    ``info`` always holds the privileged state: ``pose`` (x, y, yaw), ``progress_m``,
    ``progress_frac``, ``lateral_offset`` (m, + left of the centreline), ``heading_error``
    (rad), ``wall_distance`` (m from the agent's centre to the nearer corridor wall, from the
    geometry), ``collision``, ``hit`` (what the agent collided with: obstacle or wall; None
    without a collision), ``outcome`` (running | collision | goal), ``reward_progress`` and
    ``reward_collision``.

    ## Arguments
    See ``__init__``: every tunable is a typed keyword argument, validated with a ValueError
    that names the argument and the allowed values.

    ## Render
    ``render_mode="rgb_array"`` returns the agent's camera view in RGB at ``render_size``
    pixels square, whatever the ``obs_mode``; the demo writes videos from it.

    ## Version History
    * v0: initial release (continuous actions as plain numbers came later: same dynamics).
    """

    metadata = {"render_modes": list(RENDER_MODES), "render_fps": 10}

    def __init__(
        self,
        render_mode: str | None = None,
        action_type: str = "discrete",
        n_bins: int = 3,
        image_size: int | Sequence[int] = 64,
        fov: float = 90.0,
        obs_mode: str = "rgb",
        depth_range: float = 10.0,
        speed: float = 0.8,
        turn_speed: float | None = None,
        controls: str = "yaw",
        speed_bins: int = 3,
        speed_range: Sequence[float] = (0.4, 1.2),
        acceleration: float = 1.0,
        max_yaw_rate: float = 0.9,
        control_hz: float = 10.0,
        physics_substeps: int = 4,
        camera_height: float = 1.0,
        agent_radius: float = 0.2,
        n_segments: int = 4,
        segment_length: Sequence[float] = (5.0, 10.0),
        bend_angles: Sequence[float] = (30.0, 45.0, 60.0, 90.0),
        corridor_width: float = 2.8,
        wall_height: float = 2.5,
        wall_thickness: float = 0.2,
        obstacle_density: float = 0.0,
        obstacle_min_gap: float = 1.2,
        clutter_density: float = 0.5,
        randomize: bool = True,
        randomize_textures: bool = False,
        held_out_textures: bool = False,
        light: str = "training",
        mixture: str = "none",
        start_offset: float = 1.0,
        start_lateral_jitter: float = 0.3,
        start_yaw_jitter: float = 10.0,
        collision_penalty: float = 10.0,
        render_size: int = 256,
    ):
        # kept for pickling: an unpickled env is rebuilt from these, then replayed
        self._init_kwargs = {k: v for k, v in locals().items() if k not in ("self", "__class__")}

        check_arguments(self._init_kwargs)
        for changes in every_world(mixture):  # every world of the mixture is a valid env
            check_arguments({**self._init_kwargs, **changes})
        self.height, self.width = image_shape(image_size)

        self.render_mode = render_mode
        self.action_type = action_type
        self.n_bins = int(n_bins)
        self.fov = float(fov)
        self.obs_mode = obs_mode
        self.depth_range = float(depth_range)
        self.speed = float(speed)
        self.turn_speed = float(speed if turn_speed is None else turn_speed)
        self.controls = Controls.of(self._init_kwargs)
        self.acceleration = float(acceleration)
        self.max_yaw_rate = float(max_yaw_rate)
        self.control_dt = 1.0 / float(control_hz)
        self.physics_substeps = int(physics_substeps)
        self.camera_height = float(camera_height)
        self.agent_radius = float(agent_radius)
        self.n_segments = int(n_segments)
        self.segment_length = (float(segment_length[0]), float(segment_length[1]))
        self.bend_angles = tuple(float(a) for a in bend_angles)
        self.corridor_width = float(corridor_width)
        self.wall_height = float(wall_height)
        self.wall_thickness = float(wall_thickness)
        self.obstacle_density = float(obstacle_density)
        self.obstacle_min_gap = float(obstacle_min_gap)
        self.clutter_density = float(clutter_density)
        self.randomize = bool(randomize)
        self.randomize_textures = bool(randomize_textures)
        self.held_out_textures = bool(held_out_textures)
        self.light = light
        self.mixture = mixture
        # the mixable arguments as given: a mixture's world changes them from these
        self._base_world = {name: self._init_kwargs[name] for name in MIXABLE}
        self.start_offset = float(start_offset)
        self.start_lateral_jitter = float(start_lateral_jitter)
        self.start_yaw_jitter = math.radians(start_yaw_jitter)
        self.collision_penalty = float(collision_penalty)
        self.render_size = int(render_size)
        self.metadata = {**self.metadata, "render_fps": float(control_hz)}

        self.action_space = self.controls.space()
        channels = obs_channels(obs_mode)
        self.observation_space = spaces.Box(0, 255, (self.height, self.width, channels), np.uint8)

        self._client = pb.connect(pb.DIRECT)
        self._far_plane = max(30.0, self.depth_range)
        self._projection = pb.computeProjectionMatrixFOV(
            self.fov, self.width / self.height, _NEAR_PLANE, self._far_plane,
            physicsClientId=self._client,
        )  # fmt: skip
        self._builder = SceneBuilder(self._client, self.wall_height, self.wall_thickness)
        self.layout: CorridorLayout | None = None
        self.bodies = SceneBodies()
        self._agent = -1
        self._light: dict[str, Any] = {}
        self.x = self.y = self.yaw = 0.0
        self.forward_speed = self.speed
        self.progress = 0.0
        self.outcome = "running"
        self._episode_rng_state: dict[str, Any] | None = None
        self._episode_actions: list[Any] = []

    @property
    def pose(self) -> np.ndarray:
        """The agent's (x, y, yaw) in the world frame."""
        return np.array([self.x, self.y, self.yaw])

    def action_to_yaw_command(self, action: Any) -> float:
        """The yaw command in [-1, 1] that ``action`` asks for (+ is left)."""
        return self.controls.commands(action)[0]

    def action_to_commands(self, action: Any) -> tuple[float, float | None]:
        """(yaw, speed) commands in [-1, 1] of ``action``; speed is None with one control."""
        return self.controls.commands(action)

    @property
    def last_commands(self) -> tuple[float, float | None] | None:
        """(yaw, speed or None) commands executed last this episode (None before a step)."""
        actions = self._episode_actions
        return self.controls.commands(actions[-1]) if actions else None

    @property
    def last_yaw_command(self) -> float | None:
        """The yaw command executed last this episode (None before the first step)."""
        commands = self.last_commands
        return None if commands is None else commands[0]

    def yaw_command_to_action(self, command: float, speed: float | None = None) -> Any:
        """The env action for a yaw command in [-1, 1]: the nearest bin, or the value itself.

        In the two-control world ``speed`` is the speed command; without it the action asks
        for the speed the agent flies at now.
        """
        if self.controls.two and speed is None:
            speed = self.controls.speed_command(self.forward_speed)
        return self.controls.action(command, speed)

    def ray_scan(self, angles: np.ndarray, max_range: float = 5.0) -> np.ndarray:
        """Distances (m) from the agent's centre to the first surface along each horizontal ray.

        ``angles`` are relative to the agent's heading (+ is left); rays that hit nothing within
        ``max_range`` report ``max_range``. This is PyBullet's ``rayTestBatch`` on the same
        collision shapes that end episodes.
        """
        angles = np.asarray(angles, dtype=np.float64) + self.yaw
        directions = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
        origin = np.array([self.x, self.y, self.camera_height])
        # start just outside the agent's own sphere, so the ray does not report the agent
        start = origin + directions * (self.agent_radius + 1e-3)
        end = origin + directions * max_range
        hits = pb.rayTestBatch(start.tolist(), end.tolist(), physicsClientId=self._client)
        # a hit's fraction runs along start -> end; a miss reports fraction 1 (max_range)
        fractions = np.array([hit[2] if hit[0] >= 0 else 1.0 for hit in hits])
        inner = self.agent_radius + 1e-3
        return inner + fractions * (max_range - inner)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._episode_rng_state = self.np_random.bit_generator.state
        self._episode_actions = []
        return self._start_episode()

    def _start_episode(self) -> tuple[np.ndarray, dict[str, Any]]:
        rng = self.np_random
        if self.mixture != "none":
            self._set_world({**self._base_world, **draw_world(self.mixture, rng)})
        centreline = generate_centreline(
            rng, self.n_segments, self.segment_length, self.bend_angles,
            self.corridor_width, self.wall_thickness,
        )  # fmt: skip
        obstacles = generate_obstacles(
            rng, centreline, self.corridor_width, self.obstacle_density, self.obstacle_min_gap
        )
        clutter = generate_clutter(rng, centreline, self.clutter_density, self.wall_height)
        self.layout = CorridorLayout(centreline, self.corridor_width, obstacles, clutter)
        if self.randomize:
            look = random_appearance(
                rng, len(clutter), self.randomize_textures, self.held_out_textures
            )
        else:
            look = fixed_appearance(len(clutter))
        look, self._light = lighting(look, self.light, rng)

        pb.resetSimulation(physicsClientId=self._client)
        self._builder.load_textures()
        self.bodies = self._builder.build(self.layout, look)
        sphere = pb.createCollisionShape(
            pb.GEOM_SPHERE, radius=self.agent_radius, physicsClientId=self._client
        )
        # a dynamic body (mass > 0): Bullet reports no contacts between two static bodies;
        # it is moved kinematically and the simulation is never stepped
        self._agent = pb.createMultiBody(
            baseMass=1.0, baseCollisionShapeIndex=sphere, baseVisualShapeIndex=-1,
            physicsClientId=self._client,
        )  # fmt: skip

        start = centreline.point_at(self.start_offset)
        heading = centreline.heading_at(self.start_offset)
        lateral = rng.uniform(-self.start_lateral_jitter, self.start_lateral_jitter)
        normal = np.array([-math.sin(heading), math.cos(heading)])
        self.x, self.y = (float(v) for v in start + lateral * normal)
        self.yaw = float(heading + rng.uniform(-self.start_yaw_jitter, self.start_yaw_jitter))
        self.forward_speed = self.speed
        self._place_agent()
        projection = centreline.project(self.x, self.y)
        self.progress = projection[0]
        self.outcome = "running"
        return self._observation(), self._info(projection, hit=None, progress_delta=0.0)

    def _set_world(self, world: dict[str, Any]) -> None:
        """Set the episode's values of the mixable arguments (a mixture's world)."""
        self.randomize_textures = bool(world["randomize_textures"])
        self.obstacle_density = float(world["obstacle_density"])
        self.n_segments = int(world["n_segments"])
        self.corridor_width = float(world["corridor_width"])
        self.clutter_density = float(world["clutter_density"])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.layout is None:
            raise RuntimeError("call reset() before step()")
        if self.outcome != "running":
            raise RuntimeError(f"episode is over (outcome {self.outcome}); call reset()")
        given, action = action, self.controls.parse(action)
        if action is None or not self.action_space.contains(action):
            raise ValueError(f"action {given!r} is outside the action space {self.action_space}"
                             f"{self.controls.hint}")  # fmt: skip
        self._episode_actions.append(np.array(action).copy())
        command, speed_command = self.controls.commands(action)
        yaw_rate = command * self.max_yaw_rate
        if speed_command is None:
            target = self.speed + (self.turn_speed - self.speed) * abs(command)
            self.forward_speed, max_change = target, 0.0
        else:
            target = self.controls.target_speed(speed_command)
            max_change = self.acceleration * self.control_dt / self.physics_substeps
        dt = self.control_dt / self.physics_substeps
        contact = None
        for _ in range(self.physics_substeps):
            self.forward_speed = approach(self.forward_speed, target, max_change)
            forward = self.forward_speed
            self.yaw = _wrap_angle(self.yaw + yaw_rate * dt)
            self.x += forward * dt * math.cos(self.yaw)
            self.y += forward * dt * math.sin(self.yaw)
            self._place_agent()
            contact = self._touching()
            if contact is not None:
                break

        previous = self.progress
        projection = self.layout.centreline.project(self.x, self.y)
        self.progress = projection[0]
        progress_delta = self.progress - previous
        collision = contact is not None and contact != self.bodies.goal
        if contact is not None:
            self.outcome = "collision" if collision else "goal"
        reward = progress_delta - (self.collision_penalty if collision else 0.0)
        # what the agent collided with: an obstacle, or a wall (the start's too)
        hit = ("obstacle" if contact in self.bodies.obstacles else "wall") if collision else None
        info = self._info(projection, hit=hit, progress_delta=progress_delta)
        return self._observation(), float(reward), self.outcome != "running", False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        rgb, _ = self._camera(self.render_size, self.render_size, with_depth=False)
        return rgb

    def close(self) -> None:
        if self._client >= 0:
            pb.disconnect(physicsClientId=self._client)
            self._client = -1

    def __getstate__(self) -> dict[str, Any]:
        # a PyBullet client cannot be pickled: keep what rebuilds the same state exactly
        return {
            "init_kwargs": self._init_kwargs,
            "episode_rng_state": self._episode_rng_state,
            "episode_actions": self._episode_actions,
            "rng_state": None if self._np_random is None else self.np_random.bit_generator.state,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(**state["init_kwargs"])
        if state["episode_rng_state"] is not None:
            self.np_random.bit_generator.state = state["episode_rng_state"]
            self._episode_rng_state = state["episode_rng_state"]
            self._start_episode()
            for action in state["episode_actions"]:
                self.step(action)
        if state["rng_state"] is not None:
            self.np_random.bit_generator.state = state["rng_state"]

    @property
    def connected(self) -> bool:
        """Whether the env still holds a live PyBullet client."""
        return self._client >= 0 and pb.isConnected(physicsClientId=self._client)

    def _place_agent(self) -> None:
        pb.resetBasePositionAndOrientation(
            self._agent, [self.x, self.y, self.camera_height], [0.0, 0.0, 0.0, 1.0],
            physicsClientId=self._client,
        )  # fmt: skip

    def _touching(self) -> int | None:
        """The body the agent's sphere touches (the goal wins over anything else), or None."""
        pb.performCollisionDetection(physicsClientId=self._client)
        touched = [
            point[2]
            for point in pb.getContactPoints(bodyA=self._agent, physicsClientId=self._client)
            if point[8] <= 0.0
        ]
        if not touched:
            return None
        return self.bodies.goal if self.bodies.goal in touched else touched[0]

    def _camera(self, width: int, height: int, with_depth: bool) -> tuple[np.ndarray, Any]:
        eye = [self.x, self.y, self.camera_height]
        target = [self.x + math.cos(self.yaw), self.y + math.sin(self.yaw), self.camera_height]
        view = pb.computeViewMatrix(eye, target, [0.0, 0.0, 1.0], physicsClientId=self._client)
        projection = self._projection
        if (width, height) != (self.width, self.height):
            projection = pb.computeProjectionMatrixFOV(
                self.fov, width / height, _NEAR_PLANE, self._far_plane,
                physicsClientId=self._client,
            )  # fmt: skip
        _, _, rgba, depth_buffer, _ = pb.getCameraImage(
            width, height, view, projection,
            renderer=pb.ER_TINY_RENDERER, flags=pb.ER_NO_SEGMENTATION_MASK,
            shadow=0, physicsClientId=self._client, **self._light,
        )  # fmt: skip
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
        depth = None
        if with_depth:
            z = np.asarray(depth_buffer, dtype=np.float32).reshape(height, width)
            far, near = self._far_plane, _NEAR_PLANE
            metres = far * near / (far - (far - near) * z)
            depth = np.clip(metres / self.depth_range * 255.0, 0, 255).round().astype(np.uint8)
        return rgb, depth

    def _observation(self) -> np.ndarray:
        rgb, depth = self._camera(self.width, self.height, with_depth=self.obs_mode != "rgb")
        if self.obs_mode == "rgb":
            return np.ascontiguousarray(rgb)
        if self.obs_mode == "depth":
            return depth[:, :, None]
        return np.concatenate([rgb, depth[:, :, None]], axis=2)

    def centreline_errors(self) -> tuple[float, float]:
        """Privileged: (lateral offset in m, + left; heading error in rad) of the current pose.

        The same values as ``info["lateral_offset"]`` and ``info["heading_error"]``.
        """
        _, lateral, segment = self.layout.centreline.project(self.x, self.y)
        heading = _wrap_angle(self.yaw - float(self.layout.centreline.headings[segment]))
        return float(lateral), float(heading)

    def _info(
        self, projection: tuple[float, float, int], hit: str | None, progress_delta: float
    ) -> dict[str, Any]:
        """Privileged state (``hit``: what the agent collided with this step, or None)."""
        collision = hit is not None
        centreline = self.layout.centreline
        s, lateral, segment = projection
        heading_error = _wrap_angle(self.yaw - float(centreline.headings[segment]))
        fraction = 1.0 if self.outcome == "goal" else min(max(s / centreline.length, 0.0), 1.0)
        return {
            "pose": self.pose,
            "progress_m": float(s),
            "progress_frac": float(fraction),
            "corridor_length_m": centreline.length,
            "lateral_offset": float(lateral),
            "heading_error": float(heading_error),
            "wall_distance": float(self.corridor_width / 2.0 - abs(lateral)),
            "speed": float(self.forward_speed),
            "collision": collision,
            "hit": hit,
            "outcome": self.outcome,
            "reward_progress": float(progress_delta),
            "reward_collision": float(-self.collision_penalty if collision else 0.0),
        }


def _wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi
