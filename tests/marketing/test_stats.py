"""The holdout statistics against independent implementations (statsmodels, scipy),
and by simulation on campaigns whose true effect is known."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore.errors import ValidationError
from crmcore.marketing import stats
from crmcore.marketing.analysis import Tally, lift, revenue_lift

scipy_stats = pytest.importorskip("scipy.stats")
proportion = pytest.importorskip("statsmodels.stats.proportion")

counts = st.integers(5, 5000).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n)))


@given(counts)
def test_wilson_matches_statsmodels(pair: tuple[int, int]) -> None:
    x, n = pair
    low, high = stats.wilson(x, n)
    expected = proportion.proportion_confint(x, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(expected[0], abs=1e-9) and high == pytest.approx(expected[1], abs=1e-9)


@given(counts, counts)
def test_newcombe_difference_matches_statsmodels(target: tuple[int, int], control: tuple[int, int]) -> None:
    low, high = stats.newcombe(*target, *control)
    expected = proportion.confint_proportions_2indep(*target, *control, method="newcomb", compare="diff")
    assert low == pytest.approx(expected[0], abs=1e-9) and high == pytest.approx(expected[1], abs=1e-9)


@given(counts, counts)
def test_ratio_interval_matches_statsmodels_log_method(
    target: tuple[int, int], control: tuple[int, int]
) -> None:
    found = stats.ratio_interval(*target, *control)
    expected = proportion.confint_proportions_2indep(*target, *control, method="log", compare="ratio")
    assert found is not None
    assert found[0] == pytest.approx(expected[0], rel=1e-9) and found[1] == pytest.approx(
        expected[1], rel=1e-9
    )


@given(counts, counts)
def test_p_value_matches_the_pooled_z_test(target: tuple[int, int], control: tuple[int, int]) -> None:
    _, expected = proportion.proportions_ztest([target[0], control[0]], [target[1], control[1]])
    assert stats.two_proportion_p(*target, *control) == pytest.approx(expected, abs=1e-9)


@given(st.floats(-50, 50), st.floats(1.5, 500))
def test_t_distribution_matches_scipy(t: float, df: float) -> None:
    assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), abs=1e-9)


@given(st.floats(0.01, 0.99), st.floats(1.5, 500))
def test_t_quantile_inverts_the_distribution(p: float, df: float) -> None:
    assert stats.t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), abs=1e-7)


@settings(max_examples=50)
@given(
    st.lists(st.floats(0, 1000), min_size=3, max_size=60),
    st.lists(st.floats(0, 1000), min_size=3, max_size=60),
)
def test_welch_matches_scipy(target: list[float], control: list[float]) -> None:
    if len(set(target)) < 2 or len(set(control)) < 2:
        return
    moments = [stats.Moments(len(xs), sum(xs), sum(x * x for x in xs)) for xs in (target, control)]
    difference, low, high, p = stats.welch(*moments)
    result = scipy_stats.ttest_ind(target, control, equal_var=False)
    interval = result.confidence_interval(0.95)
    assert p == pytest.approx(result.pvalue, abs=1e-6)
    assert low == pytest.approx(interval.low, rel=1e-6, abs=1e-6)
    assert high == pytest.approx(interval.high, rel=1e-6, abs=1e-6)
    assert difference == pytest.approx(sum(target) / len(target) - sum(control) / len(control))


@given(st.floats(0.01, 0.3), st.floats(0.005, 0.1), st.sampled_from([0.05, 0.1, 0.2, 0.5]))
def test_sample_size_reaches_the_power_statsmodels_computes(
    baseline: float, lift: float, fraction: float
) -> None:
    needed = stats.sample_size(baseline, lift, control_fraction=fraction)
    ratio = (1 - fraction) / fraction
    assert needed.target >= needed.control * ratio - 1e-6

    def power(control: float) -> float:  # statsmodels' group 1 has rate prop2 + diff: the target
        found = proportion.power_proportions_2indep(
            lift, baseline, control * ratio, ratio=1 / ratio, alpha=0.05
        )
        return float(found.power)

    assert power(needed.control) >= 0.8 - 1e-6  # enough...
    assert power(needed.control - 1) < 0.8 + 1e-6  # ...and not one control member more than needed


def test_sample_size_refuses_impossible_designs() -> None:
    with pytest.raises(ValidationError):
        stats.sample_size(0.1, 0.01, control_fraction=0.6)
    with pytest.raises(ValidationError):
        stats.sample_size(0.95, 0.1, control_fraction=0.1)


# ---------------------------------------------------------------- simulation with a known truth


def _campaign(
    rnd: random.Random, n_target: int, n_control: int, p_target: float, p_control: float
) -> tuple[int, int]:
    return (
        sum(rnd.random() < p_target for _ in range(n_target)),
        sum(rnd.random() < p_control for _ in range(n_control)),
    )


def test_conversion_interval_covers_the_true_lift_at_least_180_times_in_200() -> None:
    rnd = random.Random(2026)
    truth = 0.03
    covered = 0
    for _ in range(200):
        x1, x2 = _campaign(rnd, 1800, 200, 0.08 + truth, 0.08)
        result = lift((x1, 1800), (x2, 200))
        covered += result.low <= truth <= result.high
    assert covered >= 180, covered


def test_no_effect_is_claimed_at_about_the_nominal_rate() -> None:
    rnd = random.Random(7)
    claims = 0
    for _ in range(400):
        x1, x2 = _campaign(rnd, 900, 300, 0.1, 0.1)
        claims += lift((x1, 900), (x2, 300)).significant(0.05)
    # 5 % of 400 is 20; 32 is beyond the binomial's 99.5th percentile
    assert claims <= 32, claims


def _spend(rnd: random.Random, buys: float, scale: float) -> float:
    """Skewed spend: most members buy nothing; buyers' amounts are log-normal."""
    return rnd.lognormvariate(math.log(scale), 1.0) if rnd.random() < buys else 0.0


def test_revenue_interval_covers_the_true_difference_on_skewed_spend() -> None:
    rnd = random.Random(11)
    mean = math.exp(0.5)  # of a lognormal(0, 1) multiplied by scale
    truth = 0.12 * 50 * mean - 0.10 * 50 * mean
    covered = 0
    for _ in range(200):
        target = [_spend(rnd, 0.12, 50) for _ in range(1500)]
        control = [_spend(rnd, 0.10, 50) for _ in range(500)]
        tallies = [
            Tally(len(xs), sum(x > 0 for x in xs), sum(x > 0 for x in xs), sum(xs), sum(x * x for x in xs))
            for xs in (target, control)
        ]
        result = revenue_lift(*tallies, "EUR")
        covered += result.low <= truth <= result.high
    assert covered >= 180, covered


def test_the_computed_sample_size_detects_the_lift_about_as_often_as_promised() -> None:
    rnd = random.Random(3)
    needed = stats.sample_size(0.1, 0.04, control_fraction=0.25)
    detected = sum(
        lift(
            *[
                (x, n)
                for x, n in zip(
                    _campaign(rnd, needed.target, needed.control, 0.14, 0.1),
                    (needed.target, needed.control),
                    strict=True,
                )
            ]
        ).significant()
        for _ in range(200)
    )
    assert 140 <= detected <= 180, detected  # 80 % power: about 160 of 200
