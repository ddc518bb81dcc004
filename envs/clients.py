"""PyBullet physics clients, kept for the next env when one closes.

Connecting a DIRECT client starts a physics server in the process: 10-16 ms on the 2-core
development machine, where resetting one costs a few. A worker of the generalisation suite
builds an env for every slot of its batch on every track (``eval.episode_group``), so it
connected a client every episode or two. :func:`connect` hands out a client that a closed env
gave back (:func:`release`) before it starts a new one. A client given back is reset
(``resetSimulation``: its bodies and textures go), and every episode of
:class:`envs.corridor_env.CorridorEnv` resets its client before it builds its world, so an env
cannot tell a kept client from a new one: it renders the same images bit for bit.

The kept clients belong to the process that connected them: a forked child connects its own.
At most :data:`MAX_KEPT` are kept; a client given back beyond them is disconnected.
"""

from __future__ import annotations

import os

import pybullet as pb

MAX_KEPT = 32

_kept: list[int] = []
_owner = os.getpid()


def connect() -> int:
    """A DIRECT client: one given back by a closed env if any, else a new one."""
    global _owner
    if _owner != os.getpid():  # a forked child: the parent's clients are not its own
        _kept.clear()
        _owner = os.getpid()
    while _kept:
        client = _kept.pop()
        if pb.isConnected(physicsClientId=client):
            return client
    return pb.connect(pb.DIRECT)


def release(client: int) -> None:
    """Give ``client`` back for the next :func:`connect`, reset; beyond the cap, disconnect."""
    if not pb.isConnected(physicsClientId=client):
        return
    if _owner != os.getpid() or len(_kept) >= MAX_KEPT:
        pb.disconnect(physicsClientId=client)
        return
    pb.resetSimulation(physicsClientId=client)
    _kept.append(client)


def kept() -> int:
    """How many clients are kept for reuse in this process."""
    return len(_kept) if _owner == os.getpid() else 0
