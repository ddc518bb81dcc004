"""A fixed bank of procedural grey-scale textures, tinted per body at reset.

The patterns never change (they come from a fixed seed), so a world depends only on which
pattern and which tint the reset seed picks. They are written once per machine as PNG files,
since PyBullet loads textures from disk.

The bank holds two families. The training family (:data:`TRAINING_PATTERNS`) is what every
world draws from, fixed or randomised; the held-out family (:data:`HELD_OUT_PATTERNS`) is
drawn only by worlds made with ``held_out_textures``, so no dataset recorded without that
option has seen one of its patterns: a policy flown there meets texture families it has
never seen (the generalisation suite's ``held_out_textures`` track).
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from artifacts.atomic import atomic_path

TEXTURE_SIZE = 64

TEXTURE_SEED = 12345


def _bricks(rng: np.random.Generator, n: int) -> np.ndarray:
    image = np.full((n, n), 200, np.float64)
    rows = 4
    h = n // rows
    for r in range(rows):
        image[r * h, :] = 90  # mortar line
        shift = (n // 4) if r % 2 else 0
        for c in range(0, n, n // 2):
            image[r * h : (r + 1) * h, (c + shift) % n] = 90
    return image + rng.normal(0, 12, (n, n))


def _tiles(rng: np.random.Generator, n: int) -> np.ndarray:
    image = np.full((n, n), 215, np.float64)
    image[:: n // 4, :] = 120
    image[:, :: n // 4] = 120
    return image + rng.normal(0, 6, (n, n))


def _stripes(rng: np.random.Generator, n: int) -> np.ndarray:
    period = int(rng.integers(6, 16))
    x = np.arange(n)
    stripes = np.where((x // (period // 2)) % 2 == 0, 220.0, 130.0)
    return np.tile(stripes, (n, 1)) + rng.normal(0, 5, (n, n))


def _checker(rng: np.random.Generator, n: int) -> np.ndarray:
    cells = int(rng.choice([4, 8]))
    y, x = np.mgrid[0:n, 0:n] // (n // cells)
    return np.where((x + y) % 2 == 0, 225.0, 110.0) + rng.normal(0, 4, (n, n))


def _noise(rng: np.random.Generator, n: int) -> np.ndarray:
    coarse = rng.normal(0, 1, (n // 8, n // 8))
    smooth = np.kron(coarse, np.ones((8, 8)))
    return 175 + 30 * smooth + rng.normal(0, 10, (n, n))


def _planks(rng: np.random.Generator, n: int) -> np.ndarray:
    y = np.arange(n)[:, None]
    grain = 170 + 25 * np.sin(y / 1.7 + rng.uniform(0, 6)) + rng.normal(0, 8, (n, n))
    grain[:: n // 4, :] = 90
    return grain


def _plain(rng: np.random.Generator, n: int) -> np.ndarray:
    return 205 + rng.normal(0, 3, (n, n))


def _dots(rng: np.random.Generator, n: int) -> np.ndarray:
    spacing = int(rng.choice([8, 16]))
    y, x = np.mgrid[0:n, 0:n] % spacing - spacing / 2 + 0.5
    return np.where(x**2 + y**2 < (spacing / 3) ** 2, 100.0, 215.0) + rng.normal(0, 4, (n, n))


def _zigzag(rng: np.random.Generator, n: int) -> np.ndarray:
    period = int(rng.choice([8, 16]))
    y, x = np.mgrid[0:n, 0:n]
    triangle = np.abs((x % period) - period / 2)
    return np.where(((y + triangle) // (period / 2)) % 2 == 0, 215.0, 120.0)


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n] - n / 2 + 0.5
    radius = np.sqrt(x**2 + y**2)
    return 170 + 50 * np.sin(radius / rng.uniform(1.2, 2.0)) + rng.normal(0, 5, (n, n))


def _marble(rng: np.random.Generator, n: int) -> np.ndarray:
    coarse = rng.normal(0, 1, (n // 16, n // 16))
    smooth = np.kron(coarse, np.ones((16, 16)))
    x = np.arange(n)[None, :]
    return 165 + 55 * np.sin(x / 3.0 + 2.5 * smooth) + rng.normal(0, 4, (n, n))


# Appended families keep every earlier pattern's index and pixels (the bank draws in order).
TRAINING_PATTERNS = (_bricks, _tiles, _stripes, _checker, _noise, _planks, _plain)
HELD_OUT_PATTERNS = (_dots, _zigzag, _rings, _marble)
PATTERNS = TRAINING_PATTERNS + HELD_OUT_PATTERNS
PATTERN_NAMES = tuple(pattern.__name__.lstrip("_") for pattern in PATTERNS)
# indices into texture_files() of each family
TRAINING_TEXTURES = tuple(range(len(TRAINING_PATTERNS)))
HELD_OUT_TEXTURES = tuple(range(len(TRAINING_PATTERNS), len(PATTERNS)))


@functools.cache
def _bank_directory() -> Path:
    tag = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"corridor-bc-textures-{tag}"


def texture_files() -> list[Path]:
    """Paths of the bank's PNG files, written once into a temp dir that every process shares.

    The directory name carries a hash of this module, so a changed bank gets a new one, and
    files are written to a temporary name and renamed, so concurrent processes never read a
    half-written texture. Nothing is left per process, even when one is killed.
    """
    directory = _bank_directory()
    paths = [directory / f"{name}.png" for name in PATTERN_NAMES]
    if all(path.exists() for path in paths):
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(TEXTURE_SEED)
    for path, pattern in zip(paths, PATTERNS, strict=True):
        # drawn in order whether or not the file exists, so every pattern is the same
        grey = np.clip(pattern(rng, TEXTURE_SIZE), 0, 255).astype(np.uint8)
        if path.exists():
            continue
        with atomic_path(path) as temporary:
            iio.imwrite(temporary, np.repeat(grey[:, :, None], 3, axis=2))
    return paths
