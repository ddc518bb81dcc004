"""Markdown tables: a header, its rule and one line per row, with ``|`` in a cell escaped."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_row(cells: Sequence[str]) -> str:
    """``| a | b |``; a ``|`` inside a cell is escaped so that it stays in its cell."""
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def markdown_rule(columns: int, compact: bool = False) -> str:
    """The line under the header: ``| --- | --- |``, or ``|---|---|`` when ``compact``."""
    return "|" + "---|" * columns if compact else markdown_row(["---"] * columns)


def markdown_table(
    header: Sequence[str], rows: Iterable[Sequence[str]], compact_rule: bool = False
) -> list[str]:
    """The lines of a table: header, rule, then one line per row (join them with newlines)."""
    lines = [markdown_row(header), markdown_rule(len(header), compact_rule)]
    return lines + [markdown_row(cells) for cells in rows]
