import math

import pytest

from eval.stats import (
    POOLED_FIELDS,
    ema,
    f_quantile,
    mean_std,
    pool_summaries,
    spread_ratio,
    summarize,
    t_interval,
    t_quantile,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "trials", "low", "high"),
    [
        # reference values of the Wilson score interval at 95% (z = 1.959964)
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        (5, 10, 0.236593, 0.763407),
        (20, 20, 0.838875, 1.0),
        (99, 100, 0.945514, 0.998232),
    ],
)
def test_wilson_interval_matches_reference_values(successes, trials, low, high):
    got_low, got_high = wilson_interval(successes, trials)
    assert got_low == pytest.approx(low, abs=1e-5)
    assert got_high == pytest.approx(high, abs=1e-5)


def test_wilson_interval_narrows_with_more_trials_and_widens_with_confidence():
    assert wilson_interval(50, 100)[0] > wilson_interval(5, 10)[0]
    assert wilson_interval(5, 10, 0.99)[0] < wilson_interval(5, 10, 0.95)[0]
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("successes", "trials", "confidence"), [(3, 2, 0.95), (-1, 2, 0.95), (1, 2, 1.0), (1, 2, 0.0)]
)
def test_wilson_interval_rejects_bad_input(successes, trials, confidence):
    with pytest.raises(ValueError):
        wilson_interval(successes, trials, confidence)


def test_mean_std_uses_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert mean_std([7.0]) == (7.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_ema_is_debiased_and_zero_smoothing_is_the_identity():
    values = [1.0, 5.0, 2.0, 8.0]
    assert ema(values, 0.0) == values
    smoothed = ema(values, 0.5)
    assert smoothed[0] == 1.0  # debiased: no pull towards zero
    # running = 0.5 * 0.5 + 0.5 * 5 = 2.75, weight = 0.75
    assert smoothed[1] == pytest.approx(2.75 / 0.75)
    assert ema([3.0] * 5, 0.9) == pytest.approx([3.0] * 5)
    with_nan = ema([1.0, float("nan"), 1.0], 0.5)
    assert math.isnan(with_nan[1]) and with_nan[2] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        ema(values, 1.0)


def _record(outcome, steps, agreement=None, progress=1.0, latency=1.0, nll=None):
    return {
        "outcome": outcome,
        "steps": steps,
        "progress_m": 10 * progress,
        "progress_frac": progress,
        "corridor_length_m": 10.0,
        "agreement": agreement,
        "expert_nll": nll,
        "yaw_mse": None,
        "latency_ms": latency,
    }


def test_summarize_rates_over_episodes_and_agreement_over_steps():
    records = [
        _record("goal", 100, agreement=1.0, latency=1.0, nll=0.1),
        _record("collision", 300, agreement=0.5, progress=0.5, latency=3.0, nll=0.5),
        _record("timeout", 100, agreement=0.0, progress=0.25, latency=1.0, nll=None),
    ]
    s = summarize(records)
    assert s["episodes"] == 3 and s["successes"] == 1
    assert s["success_rate"] == pytest.approx(1 / 3)
    assert (s["success_ci_low"], s["success_ci_high"]) == pytest.approx(wilson_interval(1, 3))
    assert s["collision_rate"] == pytest.approx(1 / 3)
    assert s["timeout_rate"] == pytest.approx(1 / 3)
    # pooled over visited steps: (100 * 1 + 300 * 0.5 + 100 * 0) / 500
    assert s["agreement"] == pytest.approx(250 / 500)
    assert s["latency_ms"] == pytest.approx((100 + 900 + 100) / 500)
    # the NLL only over the steps of episodes that have it
    assert s["expert_nll"] == pytest.approx((100 * 0.1 + 300 * 0.5) / 400)
    assert s["yaw_mse"] is None
    assert s["progress_frac"] == pytest.approx((1 + 0.5 + 0.25) / 3)
    assert s["mean_steps"] == pytest.approx(500 / 3)
    assert s["total_steps"] == 500


def test_collisions_are_counted_by_what_they_hit_when_every_one_says():
    hits = ["obstacle", "wall", "obstacle", None]
    records = [{**_record("collision", 50), "hit": hit} for hit in hits[:3]]
    records.append(_record("goal", 80))  # a goal has no hit
    assert summarize(records)["collisions_by_hit"] == {"obstacle": 2, "wall": 1}
    older = [*records, _record("collision", 20)]  # a record from before the env said it
    assert summarize(older)["collisions_by_hit"] is None
    assert summarize([_record("goal", 80)])["collisions_by_hit"] == {}


def test_pooled_summaries_are_the_summary_of_all_their_episodes():
    first = [_record("goal", 100), _record("collision", 300, progress=0.5)]
    second = [_record("timeout", 40, progress=0.25), _record("goal", 90),
              _record("goal", 120), _record("collision", 7, progress=0.1)]  # fmt: skip
    pooled = pool_summaries([summarize(first), summarize(second)])
    whole = summarize(first + second)
    for name in (*POOLED_FIELDS, "success_rate", "success_ci_low", "success_ci_high"):
        assert pooled[name] == pytest.approx(whole[name]), name
    # a summary reduced to the pooled fields pools the same
    kept = [{n: summarize(part)[n] for n in POOLED_FIELDS} for part in (first, second)]
    assert pool_summaries(kept) == pytest.approx(pooled)
    with pytest.raises(ValueError, match="zero summaries"):
        pool_summaries([])


def test_summarize_rejects_empty_and_unknown_outcomes():
    with pytest.raises(ValueError, match="zero episodes"):
        summarize([])
    with pytest.raises(ValueError, match="unknown outcomes"):
        summarize([_record("running", 5)])


@pytest.mark.parametrize(
    ("df", "table"), [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622), (30, 2.0423)]
)
def test_t_quantiles_match_the_printed_table(df, table):
    assert t_quantile(0.975, df) == pytest.approx(table, abs=1e-4)


def test_a_t_interval_over_three_seeds_is_mean_plus_minus_t_s_over_root_n():
    # mean 0.6, s = 0.1, t(0.975, 2) = 4.302653: half-width 4.302653 * 0.1 / sqrt(3) = 0.248414
    interval = t_interval([0.5, 0.6, 0.7])
    assert interval.n == 3 and interval.mean == pytest.approx(0.6)
    assert (interval.low, interval.high) == pytest.approx((0.351586, 0.848414), abs=1e-6)
    assert t_interval([0.9, 1.0, 1.0]).high == 1.0, "rates are clipped to [0, 1]"
    single = t_interval([0.4])
    assert single.mean == 0.4 and not single.defined
    assert t_interval([]) is None


@pytest.mark.parametrize(
    ("probability", "df1", "df2", "table"),
    [
        (0.975, 5, 5, 7.1464),
        (0.95, 3, 10, 3.7083),
        (0.99, 2, 20, 5.8489),
        (0.975, 1, 2, 38.5063),
        (0.975, 2, 1, 799.5000),
        (0.025, 5, 5, 1 / 7.1464),  # the lower quantile is the reciprocal of the swapped upper
    ],
)
def test_f_quantiles_match_the_printed_table(probability, df1, df2, table):
    assert f_quantile(probability, df1, df2) == pytest.approx(table, rel=1e-4)


def test_a_spread_ratio_is_the_variance_ratio_with_its_f_interval():
    # variances 2 (0, 2) and 1 (0, 1, 2): ratio 2, interval [2 / F(1, 2), 2 * F(2, 1)]
    ratio = spread_ratio([0.0, 2.0], [0.0, 1.0, 2.0])
    assert (ratio.a_std, ratio.b_std) == pytest.approx((2**0.5, 1.0))
    assert ratio.ratio == pytest.approx(2.0)
    assert (ratio.low, ratio.high) == pytest.approx((2 / 38.5063, 2 * 799.5), rel=1e-4)
    assert spread_ratio([0.1, 0.5], [0.3, 0.3]).low == float("inf"), "B does not spread"
    assert spread_ratio([0.3, 0.3], [0.1, 0.5]).high == 0.0, "A does not spread"
    assert not spread_ratio([0.3, 0.3], [0.4, 0.4]).defined, "neither spreads"
    assert not spread_ratio([0.3], [0.1, 0.5]).defined, "one seed has no spread"
    assert spread_ratio([], [0.1]) is None
