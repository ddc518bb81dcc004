"""A generated block of a markdown page: the text between two marker comments, replaced.

A block called ``NAME`` lies between the lines ``<!-- NAME:start -->`` and
``<!-- NAME:end -->``; a command that regenerates it (``--table-into FILE``, ``--docs FILE``)
replaces only that text and keeps every other byte of the page, so one page holds
hand-written text and several generated blocks. The page is checked before long work (a
missing marker is found before the work, not after it) and rewritten atomically.
"""

from __future__ import annotations

from pathlib import Path

from artifacts.atomic import write_text_atomic


def block_markers(name: str) -> tuple[str, str]:
    """The start and end marker comments of the block called ``name``."""
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def block_span(text: str, name: str, where: str, error: type[Exception]) -> tuple[int, int]:
    """Where block ``name``'s content lies in ``text``: after its start marker, up to its end.

    Missing, reversed or repeated markers raise ``error`` (one line, starting with ``where``).
    """
    start_marker, end_marker = block_markers(name)
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < 0 or end < start:
        raise error(
            f"{where} needs the markers {start_marker} and then {end_marker} on their own lines,"
            " where the table goes"
        )
    if text.count(start_marker) > 1 or text.count(end_marker) > 1:
        raise error(f"{where} has more than one {start_marker} or {end_marker}")
    return start + len(start_marker), end


def replace_block(text: str, name: str, content: str, where: str, error: type[Exception]) -> str:
    """``text`` with block ``name`` holding ``content`` (stripped, one line break each side)."""
    start, end = block_span(text, name, where, error)
    return f"{text[:start]}\n{content.strip()}\n{text[end:]}"


def check_page(path: Path, name: str, flag: str, error: type[Exception]) -> str:
    """The text of page ``path``, refused with ``error`` unless it holds block ``name``.

    ``flag`` is the option that named the page (``--table-into``): messages start with it.
    """
    path = Path(path)
    if not path.is_file():
        start_marker, end_marker = block_markers(name)
        raise error(f"{flag} {path} does not exist; create it with the markers {start_marker}"
                    f" and {end_marker} where the table goes")  # fmt: skip
    text = path.read_text(encoding="utf-8")
    block_span(text, name, f"{flag} {path}", error)
    return text


def write_block(path: Path, name: str, content: str, flag: str, error: type[Exception]) -> None:
    """Replace block ``name`` of page ``path`` with ``content``, atomically."""
    text = check_page(path, name, flag, error)
    write_text_atomic(Path(path), replace_block(text, name, content, f"{flag} {path}", error))
