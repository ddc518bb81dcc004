"""Small statistics for closed-loop results: Wilson intervals, means, smoothing, summaries.

Two intervals: the Wilson interval of one policy's successes over its episodes, and the Student-t
interval of a mean over training seeds (``t_interval``: how much a result moves from one seed
to the next). ``spread_ratio`` compares how widely two configurations' seeds spread (the F
interval of a ratio of variances). The t and F quantiles are computed here from the
incomplete beta function, so nothing beyond the standard library is needed.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

OUTCOMES = ("goal", "collision", "timeout")
CONFIDENCE = 0.95


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a success rate.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n
    successes, which matters for the small episode counts of closed-loop evaluation
    (20/20 successes still leaves a lower bound of 84%).
    """
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if trials == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # at p = 0 or 1 the exact bound is 0 or 1; rounding would leave it a hair inside
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value; NaN if empty)."""
    data = [float(v) for v in values]
    if not data:
        return math.nan, math.nan
    mean = math.fsum(data) / len(data)
    if len(data) == 1:
        return mean, 0.0
    variance = math.fsum((v - mean) ** 2 for v in data) / (len(data) - 1)
    return mean, math.sqrt(variance)


def ema(values: Sequence[float], smooth: float) -> list[float]:
    """Exponential moving average with TensorBoard's slider convention.

    ``smooth`` in [0, 1): 0 returns the values unchanged, 0.9 keeps 90% of the running value
    at each step. The running value is debiased (as TensorBoard does), so the first points
    are not dragged towards zero; NaNs are passed through and skipped.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    out: list[float] = []
    running = 0.0
    weight = 0.0
    for value in values:
        value = float(value)
        if math.isnan(value):
            out.append(value)
            continue
        running = smooth * running + (1.0 - smooth) * value
        weight = smooth * weight + (1.0 - smooth)
        out.append(running / weight)
    return out


def _pooled(records: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Step-weighted mean of a per-episode mean ``key`` (None where no episode has it)."""
    pairs = [(r[key], r["steps"]) for r in records if r.get(key) is not None and r["steps"] > 0]
    steps = sum(n for _, n in pairs)
    if steps == 0:
        return None
    return math.fsum(value * n for value, n in pairs) / steps


def _successes(successes: int, episodes: int, confidence: float) -> dict[str, Any]:
    """A summary's counts, success rate and its Wilson interval."""
    low, high = wilson_interval(successes, episodes, confidence)
    return {
        "episodes": episodes,
        "successes": successes,
        "success_rate": successes / episodes,
        "success_ci_low": low,
        "success_ci_high": high,
        "confidence": confidence,
    }


def summarize(records: Sequence[Mapping[str, Any]], confidence: float = 0.95) -> dict[str, Any]:
    """Aggregate per-episode records into the closed-loop metrics.

    Rates are over episodes; agreement, expert NLL, yaw MSE and latency are pooled over all
    visited steps (an episode of 400 steps counts 400 times as much as one of a single step),
    which is what "share of visited steps" means.
    """
    n = len(records)
    if n == 0:
        raise ValueError("cannot summarize zero episodes")
    outcomes = [r["outcome"] for r in records]
    unknown = sorted(set(outcomes) - set(OUTCOMES))
    if unknown:
        raise ValueError(f"unknown outcomes {unknown}; expected one of {OUTCOMES}")
    progress_m, progress_m_std = mean_std(r["progress_m"] for r in records)
    progress_frac, progress_frac_std = mean_std(r["progress_frac"] for r in records)
    steps, steps_std = mean_std(r["steps"] for r in records)
    return {
        **_successes(outcomes.count("goal"), n, confidence),
        "collision_rate": outcomes.count("collision") / n,
        "timeout_rate": outcomes.count("timeout") / n,
        "progress_m": progress_m,
        "progress_m_std": progress_m_std,
        "progress_frac": progress_frac,
        "progress_frac_std": progress_frac_std,
        "corridor_length_m": mean_std(r["corridor_length_m"] for r in records)[0],
        "mean_steps": steps,
        "mean_steps_std": steps_std,
        "total_steps": int(sum(r["steps"] for r in records)),
        "agreement": _pooled(records, "agreement"),
        "expert_nll": _pooled(records, "expert_nll"),
        "yaw_mse": _pooled(records, "yaw_mse"),
        "latency_ms": _pooled(records, "latency_ms"),
        "speed_mean": _pooled(records, "speed_mean"),
        # the typical episode's slowest and fastest speed (records before speeds: None)
        "speed_min_median": _median(records, "speed_min"),
        "speed_max_median": _median(records, "speed_max"),
        "collisions_by_hit": _collisions_by_hit(records),
    }


def _collisions_by_hit(records: Sequence[Mapping[str, Any]]) -> dict[str, int] | None:
    """How many collisions were with each kind of body (None where a collision lacks it)."""
    hits = [r.get("hit") for r in records if r["outcome"] == "collision"]
    if None in hits:  # records from before the env said what was hit
        return None
    return {kind: hits.count(kind) for kind in sorted(set(hits))}


# the fields of a summary that pool_summaries pools exactly
POOLED_FIELDS = ("episodes", "successes", "collision_rate", "timeout_rate", "progress_frac",
                 "mean_steps", "total_steps")  # fmt: skip


def pool_summaries(
    summaries: Sequence[Mapping[str, Any]], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """The summary of several summaries' episodes together, for the fields that pool exactly.

    Counts add up, rates and means are weighted by episodes, and the Wilson interval is
    computed anew over every episode: what :func:`summarize` gives for the records of all of
    them, for :data:`POOLED_FIELDS` and the success rate and interval. A summary needs only
    those fields, so results kept as summaries (``experiments.generalist --rows``) pool as
    the episodes they came from would.
    """
    if not summaries:
        raise ValueError("cannot pool zero summaries")
    n = sum(int(s["episodes"]) for s in summaries)
    successes = sum(int(s["successes"]) for s in summaries)

    def weighted(key: str) -> float:
        return math.fsum(s[key] * s["episodes"] for s in summaries) / n

    total_steps = sum(int(s["total_steps"]) for s in summaries)
    return {
        **_successes(successes, n, confidence),
        "collision_rate": weighted("collision_rate"),
        "timeout_rate": weighted("timeout_rate"),
        "progress_frac": weighted("progress_frac"),
        "mean_steps": total_steps / n,
        "total_steps": total_steps,
    }


def _median(records: Sequence[Mapping[str, Any]], key: str) -> float | None:
    """Median over episodes of a per-episode ``key`` (None where no episode has it)."""
    values = [r[key] for r in records if r.get(key) is not None]
    return float(statistics.median(values)) if values else None


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


def _increasing_quantile(cdf: Callable[[float], float], probability: float) -> float:
    """The x >= 0 where the increasing ``cdf`` reaches ``probability`` (bisection)."""
    low, high = 0.0, 1.0
    while cdf(high) < probability:
        high *= 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if cdf(middle) < probability:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2.0


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile of Student's t (bisection on ``t_cdf``), 0.5 < p < 1."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if not 0.5 < probability < 1.0:
        raise ValueError(f"probability must be in (0.5, 1), got {probability}")
    return _increasing_quantile(lambda t: t_cdf(t, df), probability)


def f_cdf(x: float, df1: int, df2: int) -> float:
    """P(F <= x) for Fisher's F with ``df1`` and ``df2`` degrees of freedom."""
    if x <= 0.0:
        return 0.0
    return regularized_beta(df1 / 2.0, df2 / 2.0, df1 * x / (df1 * x + df2))


def f_quantile(probability: float, df1: int, df2: int) -> float:
    """The ``probability`` quantile of Fisher's F (bisection on ``f_cdf``), 0 < p < 1."""
    if df1 < 1 or df2 < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df1} and {df2}")
    if not 0.0 < probability < 1.0:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    return _increasing_quantile(lambda x: f_cdf(x, df1, df2), probability)


@dataclass(frozen=True)
class SpreadRatio:
    """How much more A's values spread than B's: the ratio of their variances over seeds.

    ``low`` and ``high`` bound the ratio of the true variances (the F interval, which assumes
    each configuration's seed results are normal); ``None`` where it is undefined (fewer than
    2 values on a side, or no spread on either side).
    """

    a_std: float
    b_std: float
    ratio: float | None
    low: float | None
    high: float | None

    @property
    def defined(self) -> bool:
        return self.low is not None and self.high is not None


def spread_ratio(
    a: Iterable[float], b: Iterable[float], confidence: float = CONFIDENCE
) -> SpreadRatio | None:
    """Variance of ``a`` over variance of ``b``, with its F interval; ``None`` if one is empty.

    A side without spread (all its values equal) makes the ratio 0 or infinite: its bounds
    are then 0 or ``math.inf`` on that side, and undefined if neither side spreads.
    """
    a_data, b_data = [float(v) for v in a], [float(v) for v in b]
    if not a_data or not b_data:
        return None
    a_std, b_std = mean_std(a_data)[1], mean_std(b_data)[1]
    if len(a_data) < 2 or len(b_data) < 2 or (a_std == 0.0 and b_std == 0.0):
        return SpreadRatio(a_std, b_std, None, None, None)
    if b_std == 0.0:
        return SpreadRatio(a_std, b_std, math.inf, math.inf, math.inf)
    df_a, df_b = len(a_data) - 1, len(b_data) - 1
    tail = 0.5 + confidence / 2.0
    ratio = (a_std / b_std) ** 2
    low = ratio / f_quantile(tail, df_a, df_b)
    high = ratio * f_quantile(tail, df_b, df_a)
    return SpreadRatio(a_std, b_std, ratio, low, high)


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
