"""Table cells of rates: ``56.0%`` and ``56.0% [46%, 66%]``, with their digits chosen per table.

Every results table (console and markdown) formats its rates here, so a change of form is one
edit; the digits are each table's own (bounds of a Wilson interval at 0 digits on the sweep
and results pages, at 1 in a DAgger run's table), and the tables already in docs/ keep theirs.
"""

from __future__ import annotations

MISSING = "-"


def pct(value: float | None, digits: int = 1, *, sign: bool = True) -> str:
    """``56.0%`` for 0.56 (``56.0`` without ``sign``); None is ``-``."""
    if value is None:
        return MISSING
    return f"{100 * value:.{digits}f}{'%' if sign else ''}"


def interval_cell(
    value: float | None,
    low: float | None,
    high: float | None,
    *,
    digits: int = 1,
    bound_digits: int = 0,
    bound_sign: bool = True,
    gap: str = " ",
) -> str:
    """``56.0% [46%, 66%]``: a rate and its interval, in percent.

    ``bound_digits`` and ``bound_sign`` format the bounds (``[43.1, 68.9]`` with 1 and False);
    ``gap`` goes between the rate and the bracket.
    """
    shown_low, shown_high = (pct(bound, bound_digits, sign=bound_sign) for bound in (low, high))
    return f"{pct(value, digits)}{gap}[{shown_low}, {shown_high}]"
