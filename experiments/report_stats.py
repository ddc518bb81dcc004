"""Intervals and verdicts of the findings report (``python -m experiments.report``).

A configuration's result is summarised over its training seeds: the mean of the seed means
with a 95% Student-t interval (``t_interval``), and, for closed-loop success, the Wilson
interval of all its episodes pooled (``pooled_wilson``). The t-interval says how much the
result moves from one training seed to another; the pooled interval only counts episodes, so
it is narrower and ignores that spread, and is shown for information.

Verdicts (docs/sweeps.md, "The verdict rule") compare the t-intervals of two configurations:

* claim "A > B": A's interval entirely above B's -> ``agrees``; entirely below -> ``disagrees``;
  overlapping -> ``inconclusive``.
* claim "A ~ B" (no clear difference): disjoint intervals -> ``disagrees``; overlapping and
  both inside a band of ``EQUIVALENCE_MARGIN`` (from the lowest low to the highest high) ->
  ``agrees``; overlapping but wider -> ``inconclusive`` (the data cannot rule out a difference
  larger than the margin).
* a configuration with fewer than 2 seeds has no interval -> ``inconclusive``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from eval.stats import mean_std, wilson_interval

CONFIDENCE = 0.95
EQUIVALENCE_MARGIN = 0.10  # "about equal": both intervals inside a 10-point band
AGREES, DISAGREES, INCONCLUSIVE, NOT_APPLICABLE, NOT_RUN = (
    "agrees",
    "disagrees",
    "inconclusive",
    "n/a",
    "not run",
)
RELATIONS = (">", "~")


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            result *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return result


def regularized_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * regularized_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t (bisection on ``t_cdf``), 0.5 < p < 1."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if not 0.5 < probability < 1.0:
        raise ValueError(f"probability must be in (0.5, 1), got {probability}")
    low, high = 0.0, 1.0
    while t_cdf(high, df) < probability:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` seeds and its two-sided interval (``None`` bounds: fewer than 2)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @property
    def defined(self) -> bool:
        return self.low is not None and self.high is not None


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval | None:
    """Mean and Student-t interval of ``values`` (seed means), clipped to [0, 1].

    ``None`` for no values; an interval without bounds for a single value.
    """
    data = [float(v) for v in values]
    if not data:
        return None
    mean, std = mean_std(data)
    if len(data) < 2:
        return Interval(mean, None, None, 1)
    half = t_quantile(0.5 + confidence / 2.0, len(data) - 1) * std / math.sqrt(len(data))
    return Interval(mean, max(0.0, mean - half), min(1.0, mean + half), len(data))


def pooled_wilson(
    successes: int, episodes: int, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Pooled success rate of all episodes and its Wilson interval: (rate, low, high)."""
    low, high = wilson_interval(successes, episodes, confidence)
    return successes / episodes if episodes else 0.0, low, high


def compare(a: Interval | None, relation: str, b: Interval | None) -> str:
    """The verdict of the claim ``a RELATION b`` from the two intervals (module docstring)."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, got {relation!r}")
    if a is None or b is None:
        return NOT_APPLICABLE
    if not (a.defined and b.defined):
        return INCONCLUSIVE
    assert a.low is not None and a.high is not None and b.low is not None and b.high is not None
    above, below = a.low > b.high, a.high < b.low
    if relation == ">":
        return AGREES if above else DISAGREES if below else INCONCLUSIVE
    if above or below:
        return DISAGREES
    band = max(a.high, b.high) - min(a.low, b.low)
    return AGREES if band <= EQUIVALENCE_MARGIN + 1e-12 else INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """One verdict from several (metrics of a claim, or claims of a finding).

    ``agrees`` if at least one agrees and none disagrees, ``disagrees`` the other way round,
    ``inconclusive`` when all are inconclusive or they contradict each other; ``n/a`` and
    ``not run`` are left out (``not run`` if nothing else is left, ``n/a`` if all are n/a).
    """
    counted = [v for v in verdicts if v not in (NOT_APPLICABLE, NOT_RUN)]
    if not counted:
        return NOT_RUN if NOT_RUN in verdicts else NOT_APPLICABLE
    agree, disagree = AGREES in counted, DISAGREES in counted
    if agree and not disagree:
        return AGREES
    if disagree and not agree:
        return DISAGREES
    return INCONCLUSIVE
