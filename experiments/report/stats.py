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
* claim "A spread> B" (A is the less stable: its seeds spread wider): the F interval of the
  ratio of A's variance over seeds to B's (``eval.stats.spread_ratio``) entirely above 1 ->
  ``agrees``; entirely below 1 -> ``disagrees``; containing 1 -> ``inconclusive``.
* a configuration with fewer than 2 seeds has no interval -> ``inconclusive``.
"""

from __future__ import annotations

from collections.abc import Sequence

from eval.stats import CONFIDENCE, Interval, SpreadRatio, wilson_interval

EQUIVALENCE_MARGIN = 0.10  # "about equal": both intervals inside a 10-point band
AGREES, DISAGREES, INCONCLUSIVE, NOT_APPLICABLE, NOT_RUN = (
    "agrees",
    "disagrees",
    "inconclusive",
    "n/a",
    "not run",
)
MEAN_RELATIONS = (">", "~")
SPREAD = "spread>"  # a claim about the spread over seeds, not the mean
RELATIONS = (*MEAN_RELATIONS, SPREAD)


def pooled_wilson(
    successes: int, episodes: int, confidence: float = CONFIDENCE
) -> tuple[float, float, float]:
    """Pooled success rate of all episodes and its Wilson interval: (rate, low, high)."""
    low, high = wilson_interval(successes, episodes, confidence)
    return successes / episodes if episodes else 0.0, low, high


def compare(a: Interval | None, relation: str, b: Interval | None) -> str:
    """The verdict of the claim ``a RELATION b`` from the two intervals (module docstring)."""
    if relation not in MEAN_RELATIONS:
        raise ValueError(f"relation must be one of {MEAN_RELATIONS}, got {relation!r}")
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


def compare_spread(ratio: SpreadRatio | None) -> str:
    """The verdict of a claim "A spread> B" from the ratio of A's variance to B's."""
    if ratio is None:
        return NOT_APPLICABLE
    if not ratio.defined:
        return INCONCLUSIVE
    assert ratio.low is not None and ratio.high is not None
    return AGREES if ratio.low > 1.0 else DISAGREES if ratio.high < 1.0 else INCONCLUSIVE


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
