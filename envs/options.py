"""The env's keyword arguments as data: their defaults, read from ``CorridorEnv`` itself.

``CorridorEnv.__init__``'s signature is the one home of the env's tunables and their defaults;
everything that records, rebuilds or overrides an env (``expert.collect``, ``eval.rollout``,
datasets' manifests) reads them from here.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from envs.corridor_env import CorridorEnv

# keyword arguments that choose how an env is shown, not what world it simulates
PRESENTATION_KWARGS = ("render_mode", "render_size")


def env_defaults() -> dict[str, Any]:
    """CorridorEnv's keyword defaults (what an absent key in recorded env kwargs means)."""
    parameters = inspect.signature(CorridorEnv.__init__).parameters
    return {
        name: parameter.default
        for name, parameter in parameters.items()
        if name != "self" and name not in PRESENTATION_KWARGS
    }


def full_env_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every world-defining CorridorEnv argument, defaults filled in, as JSON holds them."""
    kwargs = {k: v for k, v in kwargs.items() if k not in PRESENTATION_KWARGS}
    return json.loads(json.dumps({**env_defaults(), **kwargs}))  # tuples -> lists
