"""Builds a `CorridorLayout` as PyBullet bodies in one physics client.

Walls, obstacles, the start wall and the goal panel have collision shapes; floor, ceiling and
wall-side clutter are visual only, so they can never block the flight path and the collision
broadphase stays small. Walls get mesh faces with UVs in metres, so textures tile instead of
stretching over a long wall.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pybullet as pb

from envs.geometry import CorridorLayout, wall_polylines
from envs.textures import HELD_OUT_TEXTURES, TRAINING_TEXTURES, texture_files

TEXTURE_TILE_M = 1.25  # metres covered by one repetition of a texture


@dataclass
class Appearance:
    """Colours, textures and light of one world; drawn from the reset seed or fixed."""

    wall_rgba: tuple[float, float, float, float] = (0.82, 0.80, 0.76, 1.0)
    floor_rgba: tuple[float, float, float, float] = (0.45, 0.42, 0.40, 1.0)
    ceiling_rgba: tuple[float, float, float, float] = (0.92, 0.92, 0.92, 1.0)
    obstacle_rgba: tuple[float, float, float, float] = (0.85, 0.45, 0.15, 1.0)
    wall_texture: int = 0
    floor_texture: int = 1
    ceiling_texture: int = 6
    obstacle_texture: int = 4
    light_direction: tuple[float, float, float] = (0.3, 0.2, 1.0)
    light_color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    light_ambient: float = 0.6
    clutter_rgba: list[tuple[float, float, float, float]] = field(default_factory=list)


def random_appearance(
    rng: np.random.Generator, n_clutter: int, textures: bool, held_out: bool = False
) -> Appearance:
    """Tints and light drawn from ``rng``, and the textures too if ``textures``.

    The texture indices are drawn either way, so a world has the same layout, tints and light
    with and without texture randomisation. Textures come from the training family, or with
    ``held_out`` from the held-out family (``envs.textures``) in place of the drawn ones.
    """
    n_textures = len(TRAINING_TEXTURES)

    def tint(low: float, high: float) -> tuple[float, float, float, float]:
        r, g, b = rng.uniform(low, high, 3)
        return (float(r), float(g), float(b), 1.0)

    direction = rng.normal(0, 1, 3)
    direction[2] = abs(direction[2]) + 0.5  # light from above
    fixed = Appearance()
    wall_rgba, floor_rgba = tint(0.35, 1.0), tint(0.2, 0.7)
    ceiling_rgba, obstacle_rgba = tint(0.6, 1.0), tint(0.2, 1.0)
    drawn = [int(i) for i in rng.integers(n_textures, size=4)]
    if not textures:
        drawn = [fixed.wall_texture, fixed.floor_texture, fixed.ceiling_texture,
                 fixed.obstacle_texture]  # fmt: skip
    elif held_out:
        drawn = [HELD_OUT_TEXTURES[i] for i in rng.integers(len(HELD_OUT_TEXTURES), size=4)]
    return Appearance(
        wall_rgba=wall_rgba,
        floor_rgba=floor_rgba,
        ceiling_rgba=ceiling_rgba,
        obstacle_rgba=obstacle_rgba,
        wall_texture=drawn[0],
        floor_texture=drawn[1],
        ceiling_texture=drawn[2],
        obstacle_texture=drawn[3],
        light_direction=tuple(float(v) for v in direction / np.linalg.norm(direction)),
        light_color=tuple(float(v) for v in rng.uniform(0.75, 1.0, 3)),
        light_ambient=float(rng.uniform(0.45, 0.75)),
        clutter_rgba=[tint(0.1, 1.0) for _ in range(n_clutter)],
    )


# the light a world is lit with: "training" is what fixed and randomised worlds have always
# drawn (ambient 0.45-0.75, colour 0.75-1); "outside" is dimmer and harsher than any of them
LIGHTS = ("training", "outside")
TRAINING_DIFFUSE, TRAINING_SPECULAR = 0.55, 0.05
OUTSIDE_AMBIENT, OUTSIDE_COLOUR = (0.15, 0.3), (0.5, 0.7)
OUTSIDE_DIFFUSE, OUTSIDE_SPECULAR = 0.9, 0.35


def lighting(
    look: Appearance, light: str, rng: np.random.Generator
) -> tuple[Appearance, dict[str, Any]]:
    """The world's appearance and PyBullet's light arguments for it.

    ``light="outside"`` replaces the appearance's ambient level and colour with ones drawn
    from ``rng`` below the training range, and strengthens the directional light, so that the
    shading is darker and starker than any training world's.
    """
    diffuse, specular = TRAINING_DIFFUSE, TRAINING_SPECULAR
    if light == "outside":
        look = dataclasses.replace(
            look,
            light_color=tuple(float(v) for v in rng.uniform(*OUTSIDE_COLOUR, 3)),
            light_ambient=float(rng.uniform(*OUTSIDE_AMBIENT)),
        )
        diffuse, specular = OUTSIDE_DIFFUSE, OUTSIDE_SPECULAR
    elif light != "training":
        raise ValueError(f"light must be one of {', '.join(LIGHTS)}, got {light!r}")
    return look, {
        "lightDirection": list(look.light_direction),
        "lightColor": list(look.light_color),
        "lightAmbientCoeff": look.light_ambient,
        "lightDiffuseCoeff": diffuse,
        "lightSpecularCoeff": specular,
    }


def fixed_appearance(n_clutter: int) -> Appearance:
    """The appearance used when randomisation is off."""
    palette = [(0.2, 0.3, 0.7, 1.0), (0.7, 0.2, 0.2, 1.0), (0.3, 0.6, 0.3, 1.0)]
    return Appearance(clutter_rgba=[palette[i % len(palette)] for i in range(n_clutter)])


@dataclass
class SceneBodies:
    """Body ids of a built scene, by role."""

    walls: list[int] = field(default_factory=list)
    obstacles: list[int] = field(default_factory=list)
    visual_only: list[int] = field(default_factory=list)
    start_wall: int = -1
    goal: int = -1


def _quaternion_yaw(yaw: float) -> list[float]:
    return [0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)]


class SceneBuilder:
    """Creates the bodies of a layout in client ``client``; textures are loaded per reset."""

    def __init__(self, client: int, wall_height: float, wall_thickness: float):
        self.client = client
        self.wall_height = wall_height
        self.wall_thickness = wall_thickness
        self.textures: list[int] = []

    def load_textures(self) -> None:
        """(Re)load the texture bank; needed after every ``resetSimulation``."""
        self.textures = [
            pb.loadTexture(str(path), physicsClientId=self.client) for path in texture_files()
        ]

    def build(self, layout: CorridorLayout, look: Appearance) -> SceneBodies:
        bodies = SceneBodies()
        centreline = layout.centreline
        height = self.wall_height
        left, right = wall_polylines(centreline, layout.width)
        for side, line in ((1, left), (-1, right)):
            for a, b in zip(line[:-1], line[1:], strict=True):
                body = self._wall(a, b, side, look.wall_rgba, look.wall_texture)
                bodies.walls.append(body)
        # closing walls: behind the start, and the goal panel across the end
        bodies.start_wall = self._wall(right[0], left[0], 1, look.wall_rgba, look.wall_texture)
        bodies.goal = self._wall(left[-1], right[-1], 1, (0.1, 0.85, 0.2, 1.0), 6)

        # floor and ceiling cover just the corridor, one quad per segment between the mitred
        # wall lines: a single quad over the whole bounding box costs TinyRenderer twice the
        # raster time of everything else in view
        for i in range(centreline.n_segments):
            corners = [left[i], left[i + 1], right[i + 1], right[i]]
            bodies.visual_only.append(
                self._floor_quad(corners, 0.0, +1, look.floor_rgba, look.floor_texture)
            )
            bodies.visual_only.append(
                self._floor_quad(corners, height, -1, look.ceiling_rgba, look.ceiling_texture)
            )
        for obstacle in layout.obstacles:
            bodies.obstacles.append(self._obstacle(layout, obstacle, look))
        for item, rgba in zip(layout.clutter, look.clutter_rgba, strict=False):
            bodies.visual_only.append(self._clutter(layout, item, rgba))
        return bodies

    def _body(
        self,
        position: np.ndarray | list[float],
        yaw: float,
        visual: int,
        collision: int = -1,
        texture: int | None = None,
    ) -> int:
        body = pb.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=collision,
            baseVisualShapeIndex=visual,
            basePosition=[float(v) for v in position],
            baseOrientation=_quaternion_yaw(yaw),
            physicsClientId=self.client,
        )
        if texture is not None:
            pb.changeVisualShape(
                body, -1, textureUniqueId=self.textures[texture], physicsClientId=self.client
            )
        return body

    def _face_mesh(
        self,
        half_length: float,
        y: float,
        z_low: float,
        z_high: float,
        rgba: tuple[float, ...],
    ) -> int:
        """A vertical rectangle in the body's x-z plane at ``y``, facing +y, tiled in metres."""
        vertices = [
            [-half_length, y, z_low],
            [half_length, y, z_low],
            [half_length, y, z_high],
            [-half_length, y, z_high],
        ]
        u = 2.0 * half_length / TEXTURE_TILE_M
        v = (z_high - z_low) / TEXTURE_TILE_M
        return pb.createVisualShape(
            pb.GEOM_MESH,
            vertices=vertices,
            # counter-clockwise seen from +y: TinyRenderer culls faces seen from behind
            indices=[0, 2, 1, 0, 3, 2],
            uvs=[[0, 0], [u, 0], [u, v], [0, v]],
            normals=[[0, 1, 0]] * 4,
            rgbaColor=list(rgba),
            physicsClientId=self.client,
        )

    def _wall(
        self, a: np.ndarray, b: np.ndarray, side: int, rgba: tuple[float, ...], texture: int
    ) -> int:
        """A wall whose inner face runs from a to b.

        ``side`` +1: the corridor lies to the right when walking from a to b (a left wall);
        -1: to the left.
        """
        direction = b - a
        length = float(np.linalg.norm(direction))
        yaw = math.atan2(direction[1], direction[0])
        # the body frame's +y must point into the corridor
        if side == 1:
            yaw += math.pi
        half_t = self.wall_thickness / 2.0
        height = self.wall_height
        collision = pb.createCollisionShape(
            pb.GEOM_BOX,
            halfExtents=[length / 2.0, half_t, height / 2.0],
            physicsClientId=self.client,
        )
        visual = self._face_mesh(length / 2.0, half_t, -height / 2.0, height / 2.0, rgba)
        inward = np.array([-math.sin(yaw), math.cos(yaw)])
        centre = (a + b) / 2.0 - inward * half_t
        return self._body([centre[0], centre[1], height / 2.0], yaw, visual, collision, texture)

    def _floor_quad(
        self,
        corners: list[np.ndarray],
        z: float,
        facing: int,
        rgba: tuple[float, ...],
        texture: int,
    ) -> int:
        """A horizontal quad through four (x, y) corners, seen from above (+1) or below (-1)."""
        vertices = [[float(x), float(y), z] for x, y in corners]
        # pick the winding that faces ``facing``, whatever order the corners come in
        (x0, y0, _), (x1, y1, _), (x2, y2, _) = vertices[:3]
        upward = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0) > 0
        indices = [0, 1, 2, 0, 2, 3] if upward == (facing > 0) else [0, 2, 1, 0, 3, 2]
        uvs = [[x / TEXTURE_TILE_M, y / TEXTURE_TILE_M] for x, y, _ in vertices]
        visual = pb.createVisualShape(
            pb.GEOM_MESH,
            vertices=vertices,
            indices=indices,
            uvs=uvs,
            normals=[[0, 0, facing]] * 4,
            rgbaColor=list(rgba),
            physicsClientId=self.client,
        )
        return self._body([0.0, 0.0, 0.0], 0.0, visual, texture=texture)

    def _obstacle(self, layout: CorridorLayout, obstacle, look: Appearance) -> int:
        centreline = layout.centreline
        seg = centreline.segment_at(obstacle.s)
        yaw = float(centreline.headings[seg])
        normal = np.array([-math.sin(yaw), math.cos(yaw)])
        centre = centreline.point_at(obstacle.s) + obstacle.lateral * normal
        client = self.client
        if obstacle.kind == "pillar":
            height = self.wall_height
            shape = dict(shapeType=pb.GEOM_CYLINDER, radius=obstacle.size[0])
            collision = pb.createCollisionShape(**shape, height=height, physicsClientId=client)
            visual = pb.createVisualShape(
                **shape, length=height, rgbaColor=list(look.obstacle_rgba), physicsClientId=client
            )
        else:
            height = 1.6 if obstacle.kind == "box" else self.wall_height
            half = [obstacle.size[0], obstacle.size[1], height / 2.0]
            rgba = look.obstacle_rgba if obstacle.kind == "box" else look.wall_rgba
            collision = pb.createCollisionShape(
                pb.GEOM_BOX, halfExtents=half, physicsClientId=client
            )
            visual = pb.createVisualShape(
                pb.GEOM_BOX, halfExtents=half, rgbaColor=list(rgba), physicsClientId=client
            )
        return self._body(
            [centre[0], centre[1], height / 2.0], yaw, visual, collision, look.obstacle_texture
        )

    def _clutter(self, layout: CorridorLayout, item, rgba: tuple[float, ...]) -> int:
        centreline = layout.centreline
        seg = centreline.segment_at(item.s)
        yaw = float(centreline.headings[seg])
        normal = np.array([-math.sin(yaw), math.cos(yaw)])
        point = centreline.point_at(item.s)
        half_width = layout.width / 2.0
        if item.kind == "lamp":
            half = item.length / 2.0
            corners = [
                point + offset
                for offset in ([-half, -half], [half, -half], [half, half], [-half, half])
            ]
            return self._floor_quad(corners, item.z_low - 0.01, -1, (1.0, 1.0, 0.9, 1.0), 6)
        # a panel just off the wall, facing into the corridor
        depth = 0.1 if item.kind == "radiator" else 0.01
        centre = point + item.side * normal * (half_width - depth)
        face_yaw = yaw + (math.pi if item.side == 1 else 0.0)
        visual = self._face_mesh(item.length / 2.0, 0.0, item.z_low, item.z_high, rgba)
        texture = {"poster": 2, "radiator": 2, "door_frame": 5}[item.kind]
        return self._body([centre[0], centre[1], 0.0], face_yaw, visual, texture=texture)
