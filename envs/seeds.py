"""World seeds: recording worlds and held-out evaluation worlds never coincide.

Both come from ``numpy.random.SeedSequence`` of (base seed, index), folded into 31 bits, and
the evaluation space sets bit 31 on top of that: a recording seed is always < 2**31 and an
evaluation seed always >= 2**31, whatever base seeds and indices are used.
"""

from __future__ import annotations

import numpy as np

EVAL_SEED_OFFSET = 2**31
_SPACES = {"collect": 0, "eval": 1}


def _fold(base_seed: int, index: int, space: int) -> int:
    if base_seed < 0 or index < 0:
        raise ValueError(f"seeds and indices must be >= 0, got seed={base_seed}, index={index}")
    state = np.random.SeedSequence([base_seed, index, space]).generate_state(1, np.uint32)[0]
    return int(state) & 0x7FFFFFFF


def collect_seed(base_seed: int, run_index: int) -> int:
    """World seed of recorded run ``run_index`` of a dataset collected with ``base_seed``."""
    return _fold(base_seed, run_index, _SPACES["collect"])


def eval_seed(base_seed: int, episode_index: int) -> int:
    """World seed of held-out evaluation episode ``episode_index``."""
    return EVAL_SEED_OFFSET + _fold(base_seed, episode_index, _SPACES["eval"])


def is_eval_seed(seed: int) -> bool:
    """Whether ``seed`` lies in the held-out evaluation space."""
    return seed >= EVAL_SEED_OFFSET
