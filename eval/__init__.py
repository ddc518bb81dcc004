"""Closed-loop evaluation: rollouts on held-out worlds, videos, run comparison.

* ``python -m eval.rollout``: success, progress, collisions, expert agreement of a checkpoint
  (or of the expert, ``--expert``) on held-out worlds, with videos on request;
* ``python -m eval.compare RUN...``: curves, closed-loop bars and the markdown results table;
* ``python -m eval.bench``: episodes per minute with 1 and 2 workers;
* ``eval.during_training.evaluate_checkpoint``: the trainer's ``--eval-every`` hook.

See docs/evaluation.md.
"""

from __future__ import annotations

import os
import sys


def _import_pybullet_quietly() -> None:
    """Import PyBullet with its C-level "pybullet build time" banner silenced.

    The banner goes straight to file descriptor 2 at import, so the commands' contract of a
    single ``error: ...`` line on stderr (and the workers' logs) would otherwise carry it. An
    import that fails is left for the real import to report.
    """
    if "pybullet" in sys.modules:
        return
    try:
        saved = os.dup(2)
    except OSError:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stderr.flush()
        os.dup2(devnull, 2)
        try:
            import pybullet  # noqa: F401
        except ImportError:
            pass
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_pybullet_quietly()
