"""New figures checked against the reference library `lifetimes` 0.11.3 on the CDNOW sample.

The numbers below are printed by `benchmarks/lifetimes_reference.py` (run by
`.venv-lifetimes/bin/python`, see `benchmarks/setup-lifetimes.sh`): standard errors
from the Hessian at the optimum, P(X(t) = n) and the calibration/holdout table
(calibration to 1997-09-30, holdout to 1998-06-30, 39 weeks).
"""

from __future__ import annotations

import csv
from datetime import date

import numpy as np
import pytest

import crmcore
from crmcore.scoring.clv import BetaGeo, GammaGamma, ParetoNBD, purchases_interval
from crmcore.scoring.diagnostics import calibration_holdout, goodness_of_fit, holdout_table, tracking
from tests.analytics.conftest import cdnow_dir

LIFETIMES_BG_NBD = {"r": (0.24259454342106704, 0.012557379181029445),
                    "alpha": (4.413602716077371, 0.37822410126505257),
                    "a": (0.7929218333478817, 0.1857337496972401),
                    "b": (2.425905728721775, 0.7054138496772121)}
LIFETIMES_GAMMA_GAMMA = {"p": (6.249572277633281, 1.190055346397826),
                         "q": (3.7442246747587378, 0.2901330675936107),
                         "gamma": (15.44352101837112, 4.159422802215317)}  # lifetimes calls it v
LIFETIMES_P_N = {
    39.0: [0.5743071606916326, 0.19919254313800783, 0.08532292342736154, 0.04579755753602017,
           0.02763141213870471, 0.01793848014602526, 0.012249985631337574, 0.008681657088509941,
           0.0063300769761978435, 0.004720271950904213, 0.0035844659255363544],
    78.0: [0.4916006437699379, 0.2103062777393001, 0.09664651033779958, 0.05497917233137199,
           0.03499023021881545, 0.02390788423929184, 0.017162925874257523, 0.012778520972295631,
           0.009784973540364587, 0.007661537218556391, 0.006108613606842286],
}
LIFETIMES_HOLDOUT = {  # calibration frequency: (customers, mean actual, mean expected)
    0: (1411, 0.23671155209071582, 0.225087337844798),
    1: (439, 0.6970387243735763, 0.52313112968455),
    2: (214, 1.3925233644859814, 1.0441341006498928),
    3: (100, 1.56, 1.5202795287390587),
    4: (62, 2.532258064516129, 2.1638658540720996),
    5: (38, 2.9473684210526314, 2.6538459803954075),
    6: (29, 3.8620689655172415, 3.5040424584216607),
}
CALIBRATION_END, HOLDOUT_END = date(1997, 9, 30), date(1998, 6, 30)


def shipped() -> tuple[np.ndarray, ...]:
    with (cdnow_dir() / "cdnow_customers_summary_with_transactions.csv").open() as f:
        rows = list(csv.DictReader(f))
    return tuple(np.array([float(r[k]) for r in rows]) for k in ("x", "t_x", "T", "zbar"))


@pytest.fixture(scope="module")
def bg() -> BetaGeo:
    x, tx, T, _ = shipped()
    return BetaGeo.fit(x, tx, T)


def test_bg_nbd_standard_errors_match_lifetimes(bg: BetaGeo) -> None:
    table = bg.summary()
    for name, (estimate, se) in LIFETIMES_BG_NBD.items():
        assert table[name]["estimate"] == pytest.approx(estimate, rel=1e-4)
        assert table[name]["se"] == pytest.approx(se, rel=2e-3)
        assert table[name]["lower"] < estimate < table[name]["upper"]


def test_gamma_gamma_standard_errors_match_lifetimes() -> None:
    x, _, _, zbar = shipped()
    table = GammaGamma.fit(x, zbar).summary()
    for name, (estimate, se) in LIFETIMES_GAMMA_GAMMA.items():
        assert table[name]["estimate"] == pytest.approx(estimate, rel=1e-3)
        assert table[name]["se"] == pytest.approx(se, rel=2e-3)


LIFETIMES_PARETO_NBD = {"r": 0.5532834776454716, "alpha": 10.577625460461881,
                        "s": 0.6061995402647431, "beta": 11.667381579902786}


def test_pareto_nbd_standard_errors_are_stable_and_cover_the_published_fit() -> None:
    """lifetimes 0.11.3 reports no Pareto/NBD errors; the Hessian must not depend on the
    difference step, and the published parameters lie inside the 95% intervals."""
    from crmcore.scoring import uncertainty

    x, tx, T, _ = shipped()
    model = ParetoNBD.fit(x, tx, T)
    assert model.params == pytest.approx(LIFETIMES_PARETO_NBD, rel=1e-4)
    at = model.log_params()

    def ll(v: np.ndarray) -> float:
        return float(model.at(v).log_likelihoods(x, tx, T).sum())

    coarse = np.linalg.inv(-uncertainty.hessian_from_value(ll, at, step=1e-2))
    assert np.sqrt(np.diag(coarse)) == pytest.approx(np.sqrt(np.diag(model.log_covariance)), rel=1e-2)
    for name, published in {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}.items():
        row = model.summary()[name]
        assert row["lower"] < published < row["upper"]


def test_probability_of_n_purchases_matches_lifetimes(bg: BetaGeo) -> None:
    for t, expected in LIFETIMES_P_N.items():
        assert bg.probability_of_purchases(list(range(11)), t) == pytest.approx(expected, rel=2e-4)


def test_calibration_holdout_table_matches_lifetimes(cdnow_crm: crmcore.CRM) -> None:
    with cdnow_crm.reading() as uow:
        split = calibration_holdout(uow, CALIBRATION_END, HOLDOUT_END, unit_days=7)
    assert split.duration == 39.0 and len(split.calibration) == 2357
    model = BetaGeo.fit(split.calibration.frequency, split.calibration.recency, split.calibration.T)
    rows = holdout_table(model, split, censor=7)
    for row in rows[:7]:
        customers, actual, expected = LIFETIMES_HOLDOUT[int(row.frequency)]
        assert row.customers == customers
        assert row.actual == pytest.approx(actual, rel=1e-12)
        assert row.expected == pytest.approx(expected, rel=1e-3)
    assert rows[-1].frequency == "7+" and sum(r.customers for r in rows) == 2357
    # the censored group: customers with 7 or more calibration repeat purchases
    assert rows[-1].customers == int(np.sum(np.asarray(split.calibration.frequency) >= 7))

    steps = tracking(model, split, period_days=7)
    assert steps[-1].cumulative_actual == sum(split.repeat_days.values())
    assert sum(s.actual for s in steps) == steps[-1].cumulative_actual
    assert sum(s.expected for s in steps) == pytest.approx(steps[-1].cumulative_expected)
    # the published tracking plot: the model follows the cohort within a few percent
    assert steps[-1].cumulative_expected == pytest.approx(steps[-1].cumulative_actual, rel=0.05)
    # holdout purchases are those after the calibration end
    assert sum(split.purchases) == sum(n for d, n in split.repeat_days.items()
                                       if d > (CALIBRATION_END - date(1970, 1, 1)).days)


def test_goodness_of_fit_on_cdnow(bg: BetaGeo) -> None:
    x, _, T, _ = shipped()
    fit = goodness_of_fit(bg, x, T, bins=7)
    assert sum(fit.observed) == 2357 and sum(fit.expected) == pytest.approx(2357)
    assert fit.degrees_of_freedom == 3
    # BG/NBD describes CDNOW's frequencies well (the paper's histogram): no rejection at 1%
    assert fit.p_value > 0.01, fit
    assert fit.chi_square >= 0


def test_purchase_intervals_hold_the_estimate_and_widen_with_the_horizon(bg: BetaGeo) -> None:
    x, tx, T, _ = shipped()
    short = purchases_interval(bg, 13.0, x, tx, T)
    long = purchases_interval(bg, 52.0, x, tx, T)
    for estimate, lower, upper in (short, long):
        assert (lower <= estimate).all() and (estimate <= upper).all()
    assert ((long[2] - long[1]) >= (short[2] - short[1]) - 1e-12).all()


def simulate_bg_nbd(rng: np.random.Generator, n: int, params: tuple[float, float, float, float]
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Customers drawn from the BG/NBD process, all of them at once, one purchase at a time."""
    r, alpha, a, b = params
    T = rng.uniform(26, 52, n)
    rate, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    x, tx, t = np.zeros(n), np.zeros(n), np.zeros(n)
    alive = np.ones(n, dtype=bool)
    while alive.any():
        t[alive] += rng.exponential(1 / rate[alive])
        alive &= t < T
        x[alive] += 1
        tx[alive] = t[alive]
        alive &= rng.random(n) >= drop
    return x, tx, T


def test_bg_nbd_standard_errors_match_the_spread_of_simulated_fits() -> None:
    """With a known truth: the reported standard errors are the spread of the estimates
    over repeated samples, and the 95% intervals hold the truth about 95% of the time."""
    rng = np.random.default_rng(11)
    truth = (0.5, 6.0, 0.8, 2.5)
    estimates, errors, covered = [], [], []
    for _ in range(40):
        model = BetaGeo.fit(*simulate_bg_nbd(rng, 3000, truth))
        table = model.summary()
        estimates.append([table[k]["estimate"] for k in BetaGeo.NAMES])
        errors.append([table[k]["se"] for k in BetaGeo.NAMES])
        covered.append([table[k]["lower"] <= v <= table[k]["upper"]
                        for k, v in zip(BetaGeo.NAMES, truth, strict=True)])
    spread, reported = np.std(estimates, axis=0, ddof=1), np.median(errors, axis=0)
    assert reported == pytest.approx(spread, rel=0.35), (reported, spread)
    assert np.mean(covered, axis=0).min() >= 0.8
