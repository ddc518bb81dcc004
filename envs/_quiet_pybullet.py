"""Import PyBullet with its C-level "pybullet build time" banner silenced.

PyBullet writes the banner straight to file descriptor 2 when imported, so every command's
contract of a single ``error: ...`` line on stderr (and every worker's log) would carry it.
"""

from __future__ import annotations

import os
import sys


def import_pybullet_quietly() -> None:
    """Import PyBullet once with fd 2 pointed at /dev/null; a failing import is left alone.

    The real import that follows reports the failure with its own message.
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
