"""CDNOW through crmcore: the calibration summary equals the shipped files, and the
fitted models reproduce the published parameters (within 1%)."""

from __future__ import annotations

import csv
from datetime import date

import pytest

import crmcore
from crmcore.scoring.clv import BetaGeo, GammaGamma, ParetoNBD
from crmcore.scoring.summary import Summary, summarize
from tests.analytics.conftest import cdnow_dir

CALIBRATION_END = date(1997, 9, 30)

BG_NBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
BG_NBD_LL = -9582.4
GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "gamma": 15.44}
PARETO_NBD = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
PARETO_NBD_LL = -9595.0
"""Fader, Hardie & Lee (2005) and Fader & Hardie (2013), as quoted in the data's README."""


def calibration(crm: crmcore.CRM) -> Summary:
    with crm.transaction() as uow:
        return summarize(uow, CALIBRATION_END, unit_days=7)


def shipped() -> list[dict[str, str]]:
    with (cdnow_dir() / "cdnow_customers_summary_with_transactions.csv").open() as f:
        return list(csv.DictReader(f))


def close(found: dict[str, float], published: dict[str, float], tolerance: float = 0.01) -> bool:
    return all(abs(found[k] - v) <= tolerance * abs(v) for k, v in published.items())


def test_the_summary_equals_the_shipped_files(cdnow_crm: crmcore.CRM) -> None:
    summary = calibration(cdnow_crm)
    expected = shipped()
    assert len(summary) == len(expected) == 2357
    with (cdnow_dir() / "cdnow_customers_summary.csv").open() as f:
        plain = list(csv.DictReader(f))
    for index, (row, other) in enumerate(zip(expected, plain, strict=True)):
        assert summary.customer_ids[index] == f"cdnow-{int(row['ID']):04d}"
        assert summary.frequency[index] == int(row["x"]) == int(other["frequency"])
        assert round(summary.recency[index], 2) == float(row["t_x"]) == float(other["recency"])
        assert round(summary.T[index], 2) == float(row["T"]) == float(other["T"])
        # the file rounds half up (22.345 -> 22.35); binary floats cannot round that way
        assert abs(summary.monetary[index] - float(row["zbar"])) <= 0.005 + 1e-9


def test_bg_nbd_reproduces_the_published_fit(cdnow_crm: crmcore.CRM) -> None:
    s = calibration(cdnow_crm)
    model = BetaGeo.fit(s.frequency, s.recency, s.T)
    assert close(model.params, BG_NBD), model
    assert abs(model.log_likelihood - BG_NBD_LL) <= 0.01 * abs(BG_NBD_LL)
    assert round(model.log_likelihood, 1) == BG_NBD_LL
    assert model.customers == 2357


def test_gamma_gamma_reproduces_the_published_fit(cdnow_crm: crmcore.CRM) -> None:
    s = calibration(cdnow_crm)
    model = GammaGamma.fit(s.frequency, s.monetary)
    assert close(model.params, GAMMA_GAMMA), model
    assert model.customers == 946


def test_pareto_nbd_reproduces_the_published_fit() -> None:
    rows = shipped()
    model = ParetoNBD.fit(
        [float(r["x"]) for r in rows], [float(r["t_x"]) for r in rows], [float(r["T"]) for r in rows]
    )
    assert close(model.params, PARETO_NBD, tolerance=0.02), model
    assert abs(model.log_likelihood - PARETO_NBD_LL) <= 1.0


def test_fits_do_not_depend_on_the_starting_point() -> None:
    rows = shipped()
    x, tx, T = ([float(r[k]) for r in rows] for k in ("x", "t_x", "T"))
    assert close(BetaGeo.fit(x, tx, T, start=(0.1, 20.0, 3.0, 0.5)).params, BG_NBD)


@pytest.mark.parametrize("as_of", [date(1997, 1, 15), date(1998, 6, 30)])
def test_sql_and_python_summaries_agree_on_cdnow(cdnow_crm: crmcore.CRM, as_of: date) -> None:
    from crmcore.scoring.datasets import cdnow
    from crmcore.scoring.summary import summary_of

    with cdnow_crm.transaction() as uow:
        stored = summarize(uow, as_of)
    items = cdnow(cdnow_dir() / "CDNOW_sample.txt")
    reference = summary_of([p for p in items if isinstance(p, crmcore.Purchase)], as_of)
    assert stored.customer_ids == reference.customer_ids
    for column in ("frequency", "recency", "T", "monetary", "total"):
        assert getattr(stored, column) == pytest.approx(getattr(reference, column), rel=1e-12)


def test_the_facade_fits_either_count_model_and_values_customers(cdnow_crm: crmcore.CRM) -> None:
    pareto = cdnow_crm.analytical.fit_clv(CALIBRATION_END, counts="pareto/nbd")
    assert isinstance(pareto.purchases, ParetoNBD)
    assert close(pareto.purchases.params, PARETO_NBD, tolerance=0.02)
    assert close(pareto.spend.params, GAMMA_GAMMA)
    by_pareto = cdnow_crm.analytical.clv(CALIBRATION_END, model=pareto)
    by_bg = cdnow_crm.analytical.clv(CALIBRATION_END)
    assert by_pareto.customer_ids == by_bg.customer_ids
    # two models of one process: they rank customers alike
    import numpy as np

    assert np.corrcoef(by_pareto.clv, by_bg.clv)[0, 1] > 0.95
    longer = cdnow_crm.analytical.clv(CALIBRATION_END, periods=24)
    assert (longer.clv >= by_bg.clv - 1e-9).all()
    with pytest.raises(crmcore.ValidationError):
        cdnow_crm.analytical.fit_clv(CALIBRATION_END, counts="magic")


def test_fits_recover_the_parameters_of_simulated_customers() -> None:
    """Customers drawn from the BG/NBD and Gamma-Gamma processes give their parameters back."""
    import numpy as np

    rng = np.random.default_rng(7)
    n, true_bg, true_gg = 20_000, (0.5, 6.0, 0.8, 2.5), (6.0, 4.0, 15.0)
    r, alpha, a, b = true_bg
    p, q, gamma = true_gg
    T = rng.uniform(26, 52, n)
    rate, drop = rng.gamma(r, 1 / alpha, n), rng.beta(a, b, n)
    nu = rng.gamma(q, 1 / gamma, n)
    x, tx, zbar = np.zeros(n), np.zeros(n), np.zeros(n)
    for i in range(n):
        t, count = rng.exponential(1 / rate[i]), 0
        while t < T[i]:
            count, tx[i] = count + 1, t
            if rng.random() < drop[i]:
                break
            t += rng.exponential(1 / rate[i])
        x[i] = count
        if count:
            zbar[i] = rng.gamma(p, 1 / nu[i], count).mean()
    bg = BetaGeo.fit(x, tx, T)
    gg = GammaGamma.fit(x, zbar)
    assert close(bg.params, dict(zip(("r", "alpha", "a", "b"), true_bg, strict=True)), 0.1), bg
    assert close(gg.params, dict(zip(("p", "q", "gamma"), true_gg, strict=True)), 0.1), gg
