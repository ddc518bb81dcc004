"""The agent's controls: yaw alone, or yaw and forward speed (the two-control world).

The one home of what an env action means. ``controls="yaw"`` is the original world: one
control, the yaw command, while the forward speed follows ``speed`` and ``turn_speed``.
``controls="yaw_speed"`` adds a second control, the forward speed: the action holds a yaw
command and a speed command, and the agent's speed moves towards the commanded one at a
bounded acceleration, so that the current speed is state (an observation a policy may be
given), not a copy of the last command.

Commands are numbers in [-1, 1]: yaw ``+1`` is full left, speed ``-1`` the slowest and ``+1``
the fastest speed of ``speed_range``. Discrete actions are bins of them: yaw bin ``i`` of
``n_bins`` is ``1 - 2 i / (n_bins - 1)`` (0 = left), speed bin ``j`` of ``speed_bins`` is
``-1 + 2 j / (speed_bins - 1)`` (0 = slowest).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from gymnasium import spaces

from envs.spaces import bin_yaw_commands, yaw_command_to_bin

TWO_CONTROLS = "yaw_speed"
CONTROLS = ("yaw", TWO_CONTROLS)


def speed_bin_commands(speed_bins: int) -> np.ndarray:
    """Speed command of each discrete speed bin: bin j is ``-1 + 2 j / (speed_bins - 1)``."""
    return -1.0 + 2.0 * np.arange(speed_bins) / (speed_bins - 1)


def speed_command_to_bin(command: Any, speed_bins: int) -> Any:
    """The speed bin(s) whose command is nearest to ``command`` (clipped to [-1, 1])."""
    commands = np.clip(np.asarray(command, dtype=np.float64), -1.0, 1.0)
    bins = np.clip(np.rint((commands + 1.0) * (speed_bins - 1) / 2.0), 0, speed_bins - 1)
    bins = bins.astype(np.int64)
    return int(bins) if bins.ndim == 0 else bins


@dataclass(frozen=True)
class Controls:
    """What an action of one env means, and how commands become actions."""

    action_type: str
    controls: str = "yaw"
    n_bins: int = 3
    speed_bins: int = 3
    speed_range: tuple[float, float] = (0.4, 1.2)
    yaw_table: np.ndarray = field(init=False, repr=False, compare=False)
    speed_table: np.ndarray = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, arguments: Mapping[str, Any]) -> Controls:
        """The controls of an env with these keyword arguments (every one of them given)."""
        low, high = arguments["speed_range"]
        return cls(
            str(arguments["action_type"]), str(arguments["controls"]), int(arguments["n_bins"]),
            int(arguments["speed_bins"]), (float(low), float(high)),
        )  # fmt: skip

    def __post_init__(self) -> None:
        object.__setattr__(self, "yaw_table", bin_yaw_commands(self.n_bins))
        object.__setattr__(self, "speed_table", speed_bin_commands(max(self.speed_bins, 2)))

    @property
    def two(self) -> bool:
        """Whether the speed is a control (the two-control world)."""
        return self.controls == TWO_CONTROLS

    @property
    def discrete(self) -> bool:
        return self.action_type == "discrete"

    @property
    def hint(self) -> str:
        """What a valid action looks like, for the message that refuses an invalid one."""
        if self.discrete:
            return " (a yaw bin and a speed bin)" if self.two else ""
        if self.two:
            return " (yaw and speed commands, each in [-1, 1]; ClipAction clips)"
        return " (one number in [-1, 1]; ClipAction clips)"

    def space(self) -> spaces.Space:
        """The env's action space."""
        if self.discrete:
            if self.two:
                return spaces.MultiDiscrete([self.n_bins, self.speed_bins])
            return spaces.Discrete(self.n_bins)
        return spaces.Box(-1.0, 1.0, (2 if self.two else 1,), np.float32)

    def parse(self, action: Any) -> Any:
        """``action`` in the form the action space holds (``None`` if it cannot be).

        A continuous action may be a plain number or a 0-d array in the one-control world (a
        stored ``action_continuous[t]`` replays as it is) and is read as float32; a discrete
        two-control action may be any pair of integers.
        """
        if self.discrete and not self.two:
            return action
        try:
            values = np.asarray(action, dtype=np.int64 if self.discrete else np.float32)
        except (TypeError, ValueError, OverflowError):
            return None
        if self.discrete:
            if np.asarray(action).dtype.kind not in "iu" or values.shape != (2,):
                return None
            return values
        size = 2 if self.two else 1
        if values.shape == (size,) or (size == 1 and values.shape == ()):
            return values.reshape(size)
        return None

    def commands(self, action: Any) -> tuple[float, float | None]:
        """(yaw command, speed command or None in the one-control world) of a valid action."""
        if self.discrete:
            if self.two:
                yaw_bin, speed_bin = int(action[0]), int(action[1])
                return float(self.yaw_table[yaw_bin]), float(self.speed_table[speed_bin])
            return float(self.yaw_table[int(action)]), None
        values = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        return float(values[0]), (float(values[1]) if self.two else None)

    def action(self, yaw: float, speed: float | None = None) -> Any:
        """The env action for commands in [-1, 1]: the nearest bins, or the values themselves.

        In the two-control world ``speed`` is needed.
        """
        if self.two and speed is None:
            raise ValueError("the two-control world needs a speed command as well as a yaw")
        if self.discrete:
            yaw_bin = yaw_command_to_bin(yaw, self.n_bins)
            if self.two:
                return np.array([yaw_bin, speed_command_to_bin(speed, self.speed_bins)])
            return yaw_bin
        values = [yaw, speed] if self.two else [yaw]
        return np.clip(np.array(values, dtype=np.float32), -1.0, 1.0)

    def target_speed(self, speed_command: float) -> float:
        """The forward speed (m/s) a speed command in [-1, 1] asks for."""
        low, high = self.speed_range
        return low + (min(max(speed_command, -1.0), 1.0) + 1.0) / 2.0 * (high - low)

    def speed_command(self, speed: float) -> float:
        """The speed command in [-1, 1] that asks for ``speed`` m/s (clipped to the range)."""
        low, high = self.speed_range
        return float(np.clip(2.0 * (speed - low) / (high - low) - 1.0, -1.0, 1.0))


def approach(current: float, target: float, max_change: float) -> float:
    """``current`` moved towards ``target`` by at most ``max_change``."""
    return current + min(max(target - current, -max_change), max_change)
