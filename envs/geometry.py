"""Corridor geometry: the centreline polyline, its walls, and procedural layouts.

Everything here is plain NumPy and independent of PyBullet, so the geometry can be checked
by hand. Angles are in radians, lengths in metres, the world is the x-y plane with z up, and
"left" is counter-clockwise (positive yaw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class Centreline:
    """A polyline through the middle of the corridor, parametrised by arc length ``s``."""

    def __init__(self, points: np.ndarray):
        points = np.asarray(points, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
            raise ValueError(f"centreline needs >= 2 points of shape (N, 2), got {points.shape}")
        self.points = points
        deltas = np.diff(points, axis=0)
        self.segment_lengths = np.linalg.norm(deltas, axis=1)
        if np.any(self.segment_lengths <= 0):
            raise ValueError("centreline has a zero-length segment")
        self.directions = deltas / self.segment_lengths[:, None]
        self.headings = np.arctan2(self.directions[:, 1], self.directions[:, 0])
        # arc length at the start of each segment, and the total at the end
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.segment_lengths)])
        self.length = float(self.cumulative[-1])

    @property
    def n_segments(self) -> int:
        return len(self.segment_lengths)

    def project(self, x: float, y: float) -> tuple[float, float, int]:
        """Closest point on the polyline: (arc length s, signed lateral offset, segment).

        The lateral offset is positive to the left of the direction of travel.
        """
        rel = np.array([x, y]) - self.points[:-1]  # (S, 2)
        along = np.clip(np.einsum("ij,ij->i", rel, self.directions), 0.0, self.segment_lengths)
        closest = self.points[:-1] + along[:, None] * self.directions
        dist = np.linalg.norm(np.array([x, y]) - closest, axis=1)
        seg = int(np.argmin(dist))
        direction = self.directions[seg]
        offset = rel[seg]
        lateral = float(direction[0] * offset[1] - direction[1] * offset[0])
        return float(self.cumulative[seg] + along[seg]), lateral, seg

    def segment_at(self, s: float) -> int:
        """Index of the segment holding arc length ``s`` (clamped to the ends)."""
        seg = int(np.searchsorted(self.cumulative, s, side="right")) - 1
        return min(max(seg, 0), self.n_segments - 1)

    def point_at(self, s: float) -> np.ndarray:
        """The (x, y) point at arc length ``s`` (clamped to the ends)."""
        s = min(max(s, 0.0), self.length)
        seg = self.segment_at(s)
        return self.points[seg] + (s - self.cumulative[seg]) * self.directions[seg]

    def heading_at(self, s: float) -> float:
        """Direction of travel (yaw) at arc length ``s``."""
        return float(self.headings[self.segment_at(s)])


def wall_polylines(centreline: Centreline, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Left and right wall lines (inner faces), offset by ``width / 2`` with mitred corners."""
    half = width / 2.0
    normals = np.stack([-centreline.directions[:, 1], centreline.directions[:, 0]], axis=1)
    offsets = np.empty_like(centreline.points)
    offsets[0] = normals[0] * half
    offsets[-1] = normals[-1] * half
    for i in range(1, len(centreline.points) - 1):
        bisector = normals[i - 1] + normals[i]
        bisector /= np.linalg.norm(bisector)
        # the mitre point lies half / cos(turn / 2) along the bisector of the two normals
        offsets[i] = bisector * half / float(np.dot(bisector, normals[i]))
    return centreline.points + offsets, centreline.points - offsets


def segment_distance(a0: np.ndarray, a1: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> float:
    """Smallest distance between line segments a0-a1 and b0-b1 in the plane."""

    def cross(u: np.ndarray, v: np.ndarray) -> float:
        return float(u[0] * v[1] - u[1] * v[0])

    da, db = a1 - a0, b1 - b0
    denominator = cross(da, db)
    if abs(denominator) > 1e-12:
        t = cross(b0 - a0, db) / denominator
        u = cross(b0 - a0, da) / denominator
        if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0:
            return 0.0

    def point_segment(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> float:
        d = s1 - s0
        t = min(max(float(np.dot(p - s0, d) / np.dot(d, d)), 0.0), 1.0)
        return float(np.linalg.norm(p - (s0 + t * d)))

    return min(
        point_segment(a0, b0, b1),
        point_segment(a1, b0, b1),
        point_segment(b0, a0, a1),
        point_segment(b1, a0, a1),
    )


@dataclass(frozen=True)
class Obstacle:
    """An obstacle inside the corridor, placed in the frame of the centreline.

    ``kind`` is ``pillar`` (cylinder of radius ``size[0]``), ``box`` (half extents
    ``size[0]`` along, ``size[1]`` across) or ``door`` (a panel from one wall, ``size[1]`` its
    half length across the corridor). ``lateral`` is the centre's offset, left positive.
    """

    kind: str
    s: float
    lateral: float
    size: tuple[float, float]

    @property
    def half_width_across(self) -> float:
        return self.size[0] if self.kind == "pillar" else self.size[1]


@dataclass(frozen=True)
class Clutter:
    """A wall-side item that never blocks the flight path (poster, radiator, door frame, lamp)."""

    kind: str
    s: float
    side: int  # +1 left wall, -1 right wall, 0 ceiling
    length: float
    z_low: float
    z_high: float


@dataclass(frozen=True)
class CorridorLayout:
    """Everything that defines one generated corridor, before it is built in PyBullet."""

    centreline: Centreline
    width: float
    obstacles: tuple[Obstacle, ...]
    clutter: tuple[Clutter, ...]


def generate_centreline(
    rng: np.random.Generator,
    n_segments: int,
    segment_length: tuple[float, float],
    bend_angles_deg: tuple[float, ...],
    width: float,
    wall_thickness: float,
    max_tries: int = 100,
) -> Centreline:
    """Random corridor: straight segments joined by left/right bends, never touching itself.

    The heading stays within +-90 degrees of the start, so the corridor cannot loop back;
    a layout whose non-neighbouring segments come closer than a corridor's width plus walls
    is drawn again from the same generator (so the result still depends on the seed alone).
    """
    clearance = width + 2.0 * wall_thickness + 0.5
    for _ in range(max_tries):
        heading = 0.0
        points = [np.zeros(2)]
        for i in range(n_segments):
            if i > 0:
                choices = [
                    sign * math.radians(angle)
                    for angle in bend_angles_deg
                    for sign in (1.0, -1.0)
                    if abs(heading + sign * math.radians(angle)) <= math.pi / 2 + 1e-9
                ]
                heading += choices[int(rng.integers(len(choices)))]
            length = float(rng.uniform(*segment_length))
            points.append(points[-1] + length * np.array([math.cos(heading), math.sin(heading)]))
        centreline = Centreline(np.array(points))
        if _keeps_clear(centreline, clearance):
            return centreline
    raise RuntimeError(
        "could not draw a corridor that keeps clear of itself; "
        "use longer segments or a narrower corridor"
    )


def _keeps_clear(centreline: Centreline, clearance: float) -> bool:
    points = centreline.points
    for i in range(centreline.n_segments):
        for j in range(i + 2, centreline.n_segments):
            if segment_distance(points[i], points[i + 1], points[j], points[j + 1]) < clearance:
                return False
    return True


def generate_obstacles(
    rng: np.random.Generator,
    centreline: Centreline,
    width: float,
    density: float,
    min_gap: float,
    spacing: float = 4.0,
    start_clearance: float = 3.0,
    end_clearance: float = 2.5,
) -> tuple[Obstacle, ...]:
    """Obstacles on straight stretches, each leaving a gap of at least ``min_gap`` on one side.

    Candidate slots lie every ``spacing`` metres, away from bends and the corridor's ends;
    each slot is filled with probability ``density``.
    """
    obstacles = []
    for seg in range(centreline.n_segments):
        start = centreline.cumulative[seg] + start_clearance
        end = centreline.cumulative[seg + 1] - end_clearance
        for s in np.arange(start, end, spacing):
            if rng.random() >= density:
                continue
            kind = ("pillar", "box", "door")[int(rng.integers(3))]
            side = 1.0 if rng.random() < 0.5 else -1.0  # the side of the blocked half
            if kind == "door":
                half_across = min(width * rng.uniform(0.4, 0.55), width - min_gap) / 2.0
                size = (0.05, half_across)
                lateral = side * (width / 2.0 - half_across)
            else:
                half = float(rng.uniform(0.15, 0.3))
                size = (half, half) if kind == "pillar" else (float(rng.uniform(0.2, 0.4)), half)
                # the free gap between the obstacle and the wall on the open side (-side)
                gap = float(rng.uniform(min_gap, max(min_gap, width - 2.0 * half)))
                lateral = side * (gap + half - width / 2.0)
            obstacles.append(Obstacle(kind, float(s), float(lateral), size))
    return tuple(obstacles)


def generate_clutter(
    rng: np.random.Generator, centreline: Centreline, density: float, wall_height: float
) -> tuple[Clutter, ...]:
    """Posters, radiators and door frames on the walls, and lamps on the ceiling."""
    items = []
    for seg in range(centreline.n_segments):
        start = centreline.cumulative[seg] + 1.0
        end = centreline.cumulative[seg + 1] - 1.0
        for s in np.arange(start, end, 2.0):
            if rng.random() < density:
                side = 1 if rng.random() < 0.5 else -1
                kind = ("poster", "radiator", "door_frame")[int(rng.integers(3))]
                if kind == "poster":
                    item = Clutter(kind, float(s), side, float(rng.uniform(0.5, 1.0)), 1.0, 1.7)
                elif kind == "radiator":
                    item = Clutter(kind, float(s), side, float(rng.uniform(0.6, 1.2)), 0.15, 0.6)
                else:
                    top = min(2.1, wall_height - 0.05)
                    item = Clutter(kind, float(s), side, 0.9, 0.0, top)
                items.append(item)
            if rng.random() < density:
                items.append(Clutter("lamp", float(s), 0, 0.6, wall_height, wall_height))
    return tuple(items)
