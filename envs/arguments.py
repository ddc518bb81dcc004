"""The checks of ``CorridorEnv``'s keyword arguments: one ValueError naming the argument.

Every message reads ``NAME must be ALLOWED, got VALUE``; ``envs.options`` relies on the
argument's name coming first to show it as the command-line flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from envs.controls import CONTROLS
from envs.mixtures import MIXTURES
from envs.scene import LIGHTS
from envs.spaces import ACTION_TYPES, OBS_MODES

RENDER_MODES = ("rgb_array",)


def check_arguments(arguments: Mapping[str, Any]) -> None:
    """Raise a ValueError for the first of ``arguments`` (CorridorEnv's) out of its range."""
    render_mode = arguments["render_mode"]
    action_type = arguments["action_type"]
    n_bins = arguments["n_bins"]
    fov = arguments["fov"]
    obs_mode = arguments["obs_mode"]
    depth_range = arguments["depth_range"]
    speed = arguments["speed"]
    turn_speed = arguments["turn_speed"]
    controls = arguments["controls"]
    speed_bins = arguments["speed_bins"]
    speed_range = arguments["speed_range"]
    acceleration = arguments["acceleration"]
    max_yaw_rate = arguments["max_yaw_rate"]
    control_hz = arguments["control_hz"]
    physics_substeps = arguments["physics_substeps"]
    camera_height = arguments["camera_height"]
    agent_radius = arguments["agent_radius"]
    n_segments = arguments["n_segments"]
    segment_length = arguments["segment_length"]
    bend_angles = arguments["bend_angles"]
    corridor_width = arguments["corridor_width"]
    wall_height = arguments["wall_height"]
    wall_thickness = arguments["wall_thickness"]
    obstacle_density = arguments["obstacle_density"]
    obstacle_min_gap = arguments["obstacle_min_gap"]
    clutter_density = arguments["clutter_density"]
    randomize = arguments["randomize"]
    randomize_textures = arguments["randomize_textures"]
    held_out_textures = arguments["held_out_textures"]
    light = arguments["light"]
    mixture = arguments["mixture"]
    start_offset = arguments["start_offset"]
    start_lateral_jitter = arguments["start_lateral_jitter"]
    start_yaw_jitter = arguments["start_yaw_jitter"]
    collision_penalty = arguments["collision_penalty"]
    render_size = arguments["render_size"]

    def require(ok: bool, name: str, allowed: str, value: Any) -> None:
        if not ok:
            raise ValueError(f"{name} must be {allowed}, got {value!r}")

    require(render_mode is None or render_mode in RENDER_MODES, "render_mode",
            f"None or one of {RENDER_MODES}", render_mode)  # fmt: skip
    require(action_type in ACTION_TYPES, "action_type", f"one of {ACTION_TYPES}", action_type)
    require(isinstance(n_bins, (int, np.integer)) and n_bins >= 3 and n_bins % 2 == 1,
            "n_bins", "an odd integer >= 3", n_bins)  # fmt: skip
    require(0.0 < fov < 180.0, "fov", "in (0, 180) degrees", fov)
    require(obs_mode in OBS_MODES, "obs_mode", f"one of {OBS_MODES}", obs_mode)
    require(depth_range > 0, "depth_range", "> 0 metres", depth_range)
    require(speed > 0, "speed", "> 0 m/s", speed)
    require(turn_speed is None or turn_speed >= 0, "turn_speed", "None or >= 0 m/s",
            turn_speed)  # fmt: skip
    require(controls in CONTROLS, "controls", f"one of {', '.join(CONTROLS)}", controls)
    require(isinstance(speed_bins, (int, np.integer)) and speed_bins >= 2, "speed_bins",
            "an integer >= 2", speed_bins)  # fmt: skip
    require(len(speed_range) == 2 and 0 < speed_range[0] < speed_range[1], "speed_range",
            "(min, max) with 0 < min < max m/s", speed_range)  # fmt: skip
    require(acceleration > 0, "acceleration", "> 0 m/s^2", acceleration)
    two = controls == "yaw_speed"
    require(not two or speed_range[0] <= speed <= speed_range[1], "speed",
            f"within speed_range {tuple(speed_range)} with --controls yaw_speed (the start speed)",
            speed)  # fmt: skip
    require(not two or turn_speed is None, "turn_speed",
            "unset with --controls yaw_speed (the agent commands its speed)",
            turn_speed)  # fmt: skip
    require(max_yaw_rate > 0, "max_yaw_rate", "> 0 rad/s", max_yaw_rate)
    require(control_hz > 0, "control_hz", "> 0 Hz", control_hz)
    require(isinstance(physics_substeps, (int, np.integer)) and physics_substeps >= 1,
            "physics_substeps", "an integer >= 1", physics_substeps)  # fmt: skip
    require(0 < wall_height, "wall_height", "> 0 metres", wall_height)
    require(agent_radius > 0, "agent_radius", "> 0 metres", agent_radius)
    require(agent_radius < camera_height < wall_height - agent_radius, "camera_height",
            "between agent_radius and wall_height - agent_radius", camera_height)  # fmt: skip
    require(isinstance(n_segments, (int, np.integer)) and n_segments >= 1, "n_segments",
            "an integer >= 1", n_segments)  # fmt: skip
    require(len(segment_length) == 2 and 0 < segment_length[0] <= segment_length[1],
            "segment_length", "(min, max) with 0 < min <= max metres",
            segment_length)  # fmt: skip
    require(len(bend_angles) >= 1 and all(0 < a <= 90 for a in bend_angles), "bend_angles",
            "a non-empty list of angles in (0, 90] degrees", bend_angles)  # fmt: skip
    require(corridor_width > 2 * agent_radius + 0.2, "corridor_width",
            "> 2 * agent_radius + 0.2 metres", corridor_width)  # fmt: skip
    require(wall_thickness > 0, "wall_thickness", "> 0 metres", wall_thickness)
    require(0.0 <= obstacle_density <= 1.0, "obstacle_density", "in [0, 1]",
            obstacle_density)  # fmt: skip
    require(2 * agent_radius < obstacle_min_gap <= corridor_width - 0.6, "obstacle_min_gap",
            "in (2 * agent_radius, corridor_width - 0.6] metres",
            obstacle_min_gap)  # fmt: skip
    require(0.0 <= clutter_density <= 1.0, "clutter_density", "in [0, 1]", clutter_density)
    require(0 <= start_offset < segment_length[0] - agent_radius, "start_offset",
            "in [0, min segment length - agent_radius) metres", start_offset)  # fmt: skip
    require(0 <= start_lateral_jitter < corridor_width / 2 - agent_radius,
            "start_lateral_jitter", "in [0, corridor_width / 2 - agent_radius)",
            start_lateral_jitter)  # fmt: skip
    require(0 <= start_yaw_jitter < 90, "start_yaw_jitter", "in [0, 90) degrees",
            start_yaw_jitter)  # fmt: skip
    require(not held_out_textures or (randomize and randomize_textures), "held_out_textures",
            "used with --randomize and --randomize-textures", held_out_textures)  # fmt: skip
    require(light in LIGHTS, "light", f"one of {', '.join(LIGHTS)}", light)
    require(mixture in MIXTURES, "mixture", f"one of {', '.join(MIXTURES)}", mixture)
    require(collision_penalty >= 0, "collision_penalty", ">= 0", collision_penalty)
    require(isinstance(render_size, (int, np.integer)) and render_size >= 32, "render_size",
            "an integer >= 32", render_size)  # fmt: skip
