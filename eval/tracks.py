"""The generalisation suite's tracks: which worlds a policy is flown in, defined once.

A track is a set of env overrides applied on top of the policy's own env (the env its
checkpoint records; the default env for the expert alone) and a base seed of its own. Every
track but ``own`` switches a world mixture off (``mixture none``, ``envs.mixtures``), so that
a policy trained on mixed worlds meets the track's world, not its mixture's: episode
``i`` of track ``t`` flies ``envs.seeds.eval_seed(t.seed, i)``, so every track's worlds are
fixed, disjoint from every recording seed, and different from the other tracks' and from
``eval.rollout``'s (base 0).

The definitions are versioned: :data:`SUITE_VERSION` goes up whenever a track is added,
removed or changed, and every suite result records it, so results of different releases are
compared only where they flew the same tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# bump on any change of TRACKS (names, overrides or seeds)
SUITE_VERSION = 1


@dataclass(frozen=True)
class Track:
    """One column of the suite: a name, env overrides, a base seed and what it tests."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    what: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what results files record of the track)."""
        return {"name": self.name, "overrides": dict(self.overrides), "seed": self.seed,
                "what": self.what}  # fmt: skip


_UNMIXED = {"mixture": "none"}
_TEXTURES = {**_UNMIXED, "randomize": True, "randomize_textures": True}
_UNSEEN_TEXTURES = {**_TEXTURES, "held_out_textures": True}
_OBSTACLES = {**_UNMIXED, "obstacle_density": 0.5}
_LONG = {**_UNMIXED, "n_segments": 8}
_LIGHT = {**_UNMIXED, "light": "outside"}
_NARROW = {**_UNMIXED, "corridor_width": 2.2}

TRACKS: tuple[Track, ...] = (
    Track("own", {}, 1001, "the policy's own world"),
    Track("textures", _TEXTURES, 1002, "random textures of the training family"),
    Track("unseen_textures", _UNSEEN_TEXTURES, 1003,
          "textures of the held-out family, which no training world draws"),
    Track("obstacles", _OBSTACLES, 1004, "obstacles at density 0.5"),
    Track("long", _LONG, 1005, "corridors of 8 segments, twice the default"),
    Track("light", _LIGHT, 1006, "light dimmer and harsher than any training world's"),
    Track("narrow", _NARROW, 1007, "corridors 2.2 m wide instead of 2.8 m"),
    Track("everything", {**_UNSEEN_TEXTURES, **_OBSTACLES, **_LONG, **_LIGHT, **_NARROW}, 1008,
          "all of the above at once"),
)  # fmt: skip
TRACK_NAMES = tuple(track.name for track in TRACKS)


def tracks_named(names: tuple[str, ...] | None) -> tuple[Track, ...]:
    """The tracks called ``names`` in suite order (all when None); ValueError for an unknown."""
    if names is None:
        return TRACKS
    unknown = [name for name in names if name not in TRACK_NAMES]
    if unknown:
        raise ValueError(f"unknown track {unknown[0]!r}; the tracks are {', '.join(TRACK_NAMES)}")
    return tuple(track for track in TRACKS if track.name in names)


def tracks_from_flag(text: str) -> tuple[Track, ...]:
    """The tracks of a ``--tracks a,b`` flag (all when empty); ValueError for an unknown."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    return tracks_named(names or None)
