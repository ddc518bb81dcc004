"""Where policies fail: each failed episode placed at the bend (or the straight) it ended at.

``python -m eval.failure_sites PATH...`` reads evaluation files (``eval.rollout``'s results,
``eval.suite``'s flights; a folder is searched for them), rebuilds the world of every episode
that did not reach the goal from its env arguments and seed, and places its end on the
corridor's centreline: at a bend when it ended within ``--near`` metres of one (its angle,
and its side: a right-hand bend turns clockwise), else on a straight. It prints one row per
site, with the collisions by what they hit and the timeouts, and returns the rows.

A policy that fails mostly at bends of one side sees one side of its images worse than the
other (docs/nets.md, "The centred view").
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from configflags import option, run_main
from envs.corridor_env import CorridorEnv
from eval.errors import EvalError
from eval.run_files import read_json

STRAIGHT = "straight"


@dataclass(frozen=True)
class FailureSitesConfig:
    """Which evaluations to read, and how near a bend an end counts as at it."""

    paths: tuple[Path, ...] = option(
        (), "evaluation files or folders holding them", positional=True, metavar="PATH"
    )
    near: float = option(1.0, "metres from a bend within which an end counts as at the bend")

    def __post_init__(self) -> None:
        if not self.paths:
            raise EvalError("name at least one evaluation file or folder")
        if not self.near > 0:
            raise EvalError(f"--near must be > 0 metres, got {self.near}")


@dataclass(frozen=True)
class SiteRow:
    """The failed episodes that ended at one kind of site."""

    site: str
    walls: int = 0
    obstacles: int = 0
    # collisions of files written before records said what was hit
    unrecorded: int = 0
    timeouts: int = 0

    @property
    def failures(self) -> int:
        return self.walls + self.obstacles + self.unrecorded + self.timeouts


def evaluations(paths: tuple[Path, ...]) -> list[tuple[Path, dict[str, Any]]]:
    """The evaluation files under ``paths`` (files as given, folders searched) and their data.

    A file named on its own must be an evaluation; a folder's other JSON files are skipped.
    """
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in paths:
        if path.is_dir():
            read = [(file, read_json(file)) for file in sorted(path.rglob("*.json"))]
            found += [(file, data) for file, data in read if _is_evaluation(data)]
        elif path.is_file():
            data = read_json(path)
            if not _is_evaluation(data):
                raise EvalError(f"{path} is not an evaluation file (no env_kwargs/records)")
            found.append((path, data))
        else:
            raise EvalError(f"{path} does not exist")
    if not found:
        raise EvalError(f"no evaluation file under {', '.join(map(str, paths))}")
    return found


def _is_evaluation(data: Any) -> bool:
    return isinstance(data, dict) and "env_kwargs" in data and "records" in data


def bend_site(turn_rad: float) -> str:
    """``"90 right"`` for a turn of -pi/2 (clockwise), ``"45 left"`` for +pi/4."""
    side = "left" if turn_rad > 0 else "right"
    return f"{round(abs(math.degrees(turn_rad)))} {side}"


def site_of(env: CorridorEnv, seed: int, progress_m: float, near: float) -> str:
    """Where an episode of ``env``'s world ``seed`` that ended at ``progress_m`` ended."""
    env.reset(seed=seed)
    centreline = env.layout.centreline
    bends = np.cumsum(centreline.segment_lengths)[:-1]  # along the centreline
    if not len(bends):
        return STRAIGHT
    nearest = int(np.argmin(np.abs(bends - progress_m)))
    if abs(bends[nearest] - progress_m) > near:
        return STRAIGHT
    turns = np.diff(np.unwrap(centreline.headings))
    return bend_site(float(turns[nearest]))


def main(config: FailureSitesConfig) -> list[SiteRow]:
    """Count every evaluation's failed episodes by site; print the table and return its rows."""
    counts: Counter[tuple[str, str]] = Counter()
    episodes = 0
    for path, data in evaluations(config.paths):
        failed = [record for record in data["records"] if record["outcome"] != "goal"]
        episodes += len(data["records"])
        if not failed:
            continue
        try:
            env = CorridorEnv(**data["env_kwargs"])
        except (TypeError, ValueError) as error:
            raise EvalError(f"{path}: cannot rebuild its env: {error}") from None
        try:
            for record in failed:
                site = site_of(env, int(record["seed"]), record["progress_m"], config.near)
                if record["outcome"] == "collision":
                    kind = record.get("hit") or "unrecorded"
                else:
                    kind = "timeout"
                counts[(site, kind)] += 1
        finally:
            env.close()
    rows = [
        SiteRow(
            site, *(counts[(site, kind)] for kind in ("wall", "obstacle", "unrecorded", "timeout"))
        )
        for site in sorted({site for site, _ in counts}, key=_site_order)
    ]
    _print(rows, episodes, config.near)
    return rows


def _site_order(site: str) -> tuple[int, int, str]:
    if site == STRAIGHT:
        return (1, 0, "")
    angle, side = site.split()
    return (0, -int(angle), side)


def _print(rows: list[SiteRow], episodes: int, near: float) -> None:
    failures = sum(row.failures for row in rows)
    table = Table(
        title=f"{failures} of {episodes} episodes failed",
        caption=f"at a bend: ended within {near:g} m of it",
    )
    unrecorded = any(row.unrecorded for row in rows)
    columns = (
        ["site", "wall", "obstacle"] + ["hit unrecorded"] * unrecorded + ["timeout", "failures"]
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "site" else "right")
    for row in rows:
        cells = [row.walls, row.obstacles] + [row.unrecorded] * unrecorded
        table.add_row(row.site, *map(str, cells + [row.timeouts, row.failures]))
    Console().print(table)


if __name__ == "__main__":
    run_main(main, FailureSitesConfig, "python -m eval.failure_sites", __doc__)
