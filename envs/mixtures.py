"""World mixtures: an env whose every world is drawn from several kinds of world.

A mixture is a set of factors, each a change of some env arguments that a world takes with its
probability, drawn independently from the reset seed's generator before the world is built.
``CorridorEnv(mixture="generalist")`` records, trains and flies on such worlds with no other
change anywhere: ``expert.collect``, DAgger's recording and ``eval.rollout`` all build their
worlds through the env.

The mixtures never hold what the generalisation suite keeps for its unseen worlds (the
held-out texture family, light outside the training range): :data:`HELD_OUT` lists those
arguments, and no factor may set them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# what the generalisation suite's unseen tracks vary: no training mixture may hold them
HELD_OUT = ("held_out_textures", "light")
# the arguments a factor may change: the world's content, never what the agent is or sees
MIXABLE = ("randomize_textures", "obstacle_density", "n_segments", "corridor_width",
           "clutter_density")  # fmt: skip


@dataclass(frozen=True)
class Factor:
    """A change of env arguments that each world takes with ``probability``."""

    name: str
    changes: dict[str, Any] = field(default_factory=dict)
    probability: float = 0.5

    def __post_init__(self) -> None:
        unknown = sorted(set(self.changes) - set(MIXABLE))
        if unknown:
            raise ValueError(f"factor {self.name!r} changes arguments no mixture may: {unknown}")
        if not 0 < self.probability < 1:
            raise ValueError(f"factor {self.name!r}: probability must be in (0, 1)")


# the generalisation suite's training-side tracks, each in half the worlds, independently
_GENERALIST = (
    Factor("textures", {"randomize_textures": True}),
    Factor("obstacles", {"obstacle_density": 0.5}),
    Factor("long", {"n_segments": 8}),
    Factor("narrow", {"corridor_width": 2.2}),
)

MIXTURES: dict[str, tuple[Factor, ...]] = {
    "none": (),
    "generalist": _GENERALIST,
    # the same with obstacles in three worlds of four: more of the worlds where the generalist
    # fails most (docs/results.md), for DAgger to record on (experiments.dagger --mixture)
    "generalist_obstacles": tuple(
        replace(factor, probability=0.75) if factor.name == "obstacles" else factor
        for factor in _GENERALIST
    ),
}


def mixture_factors(name: str) -> tuple[Factor, ...]:
    """The factors of mixture ``name``; ValueError naming the mixtures for an unknown one."""
    if name not in MIXTURES:
        raise ValueError(f"mixture must be one of {', '.join(MIXTURES)}, got {name!r}")
    return MIXTURES[name]


def every_world(name: str) -> list[dict[str, Any]]:
    """The argument changes of every combination of the mixture's factors (to validate)."""
    worlds: list[dict[str, Any]] = [{}]
    for factor in mixture_factors(name):
        worlds += [{**world, **factor.changes} for world in worlds]
    return worlds


def draw_world(name: str, rng: np.random.Generator) -> dict[str, Any]:
    """The argument changes of one world of mixture ``name``: one draw per factor from ``rng``.

    Mixture ``none`` draws nothing, so the env's worlds are exactly those of no mixture.
    """
    changes: dict[str, Any] = {}
    for factor in mixture_factors(name):
        if rng.random() < factor.probability:
            changes.update(factor.changes)
    return changes
