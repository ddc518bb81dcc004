"""The ``format`` / ``format_version`` check of a file this project wrote.

Checkpoints, exported policies, evaluation results and datasets each carry a format name
and/or a version number; a reader refuses a file it cannot read with one line that names the
file and the versions it reads, raised as the reader's own error class (so each command keeps
its exit code and its one-line ``error: ...``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any


def check_version(
    where: str,
    version: Any,
    readable: Collection[int],
    error: type[Exception],
    hint: str = "",
) -> int:
    """``version`` as an int if it is one of ``readable``, else ``error`` naming ``where``.

    ``hint`` ends the message (``"; re-run python -m eval.rollout"``).
    """
    readable = tuple(readable)
    if version not in readable:
        versions = " or ".join(str(v) for v in readable)
        raise error(
            f"{where}: format_version {version!r} is not one this corridor-bc reads"
            f" ({versions}){hint}"
        )
    return int(version)


def check_format(
    where: str,
    data: Any,
    readable: Collection[int],
    error: type[Exception],
    *,
    name: str | None = None,
    kind: str = "file",
    hint: str = "",
) -> int:
    """The ``format_version`` of a file's header ``data``, checked; ``error`` if unreadable.

    With ``name``, the header's ``format`` must be it (else "``where`` is not a corridor-bc
    ``kind``"); without, ``data`` need only be a mapping.
    """
    if not isinstance(data, Mapping) or (name is not None and data.get("format") != name):
        raise error(f"{where} is not a corridor-bc {kind}")
    return check_version(where, data.get("format_version"), readable, error, hint)
