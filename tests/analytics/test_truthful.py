"""Figures that say what they are: one currency, the customers left out, the clock the CRM
keeps, the CLV period in force, and the uncertainty around estimates."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Customer, OrderLine, Purchase
from crmcore.exchange import Rate, RateTable
from crmcore.scoring.clv import BetaGeo, GammaGamma, LifetimeModel
from crmcore.scoring.horizon import CALENDAR_MONTH, LIFETIMES_MONTH, Horizon
from crmcore.scoring.summary import MixedCurrencies, summary_of
from tests.analytics.test_reference import shipped

T0 = datetime(2024, 1, 1, 9, tzinfo=UTC)


def purchase(who: str, day: int, amount: str, currency: str = "EUR") -> Purchase:
    return Purchase(id=crmcore.values.new_id(), customer_id=who, ordered_at=T0 + timedelta(days=day),
                    lines=[OrderLine("x", crmcore.Money(Decimal(amount), currency))])


# ---- nothing dropped silently ----

def test_zero_and_negative_repeaters_are_named_counted_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    x, _, _, zbar = shipped()
    ids = [f"c{i}" for i in range(x.size)]
    repeaters = np.flatnonzero(x > 0)
    zbar = zbar.copy()
    zbar[repeaters[0]], zbar[repeaters[1]], zbar[repeaters[2]] = 0.0, 0.0, -5.0
    with caplog.at_level(logging.WARNING, logger="crmcore.scoring.clv"):
        model = GammaGamma.fit(x, zbar, customer_ids=ids)
    zero, negative = model.excluded
    assert zero.reason == GammaGamma.ZERO and zero.customer_ids == (ids[repeaters[0]], ids[repeaters[1]])
    assert negative.reason == GammaGamma.NEGATIVE and negative.count == 1
    assert model.customers + zero.count + negative.count == int((x > 0).sum())
    logged = [r for r in caplog.records if "Gamma-Gamma" in r.getMessage()]
    assert len(logged) == 2 and ids[repeaters[0]] in logged[0].getMessage()


def test_a_lifetime_fit_explains_whom_it_left_out() -> None:
    bought = [purchase(f"p{i:03d}", d, "10") for i in range(60) for d in range(0, 3 + i % 40, 9)]
    bought += [purchase("free", 0, "10"), purchase("free", 5, "0"), purchase("free", 9, "0")]
    bought += [purchase("refund", 0, "10"), purchase("refund", 3, "-30")]
    base = summary_of(bought, date(2024, 3, 31))
    model = LifetimeModel.fit(base)
    explained = model.explain()["excluded"]
    assert {e["reason"]: e["customers"] for e in explained} == {
        LifetimeModel.NEGATIVE_TOTAL: "refund", GammaGamma.ZERO: "free"}
    assert model.purchases.customers == len(base) - 1 and model.currency == "EUR"


# ---- time ----

def test_customers_added_through_the_crm_take_its_clock() -> None:
    then = datetime(2001, 2, 3, 4, 5, tzinfo=UTC)
    crm = crmcore.open("memory://", clock=lambda: then)
    try:
        ada = crm.customers.add(Customer.new("Ada"))
        kept = crm.customers.add(Customer.new("Bob", created_at=datetime(1999, 1, 1, tzinfo=UTC)))
    finally:
        crm.close()
    assert ada.created_at == ada.updated_at == then
    assert kept.created_at == datetime(1999, 1, 1, tzinfo=UTC)


def test_the_clv_period_is_stated_and_the_lifetimes_convention_available() -> None:
    through = date(2024, 1, 31)
    assert Horizon(3).ends(through, 1.0) == [29.0, 60.0, 90.0]  # Feb 29, Mar 31, Apr 30
    assert Horizon(2, LIFETIMES_MONTH).ends(through, 7.0) == pytest.approx([4.345, 8.69])
    assert Horizon(2, 30).ends(through, 7.0) == pytest.approx([30 / 7, 60 / 7])
    assert Horizon().period == CALENDAR_MONTH and "calendar month" in Horizon().describe()
    assert Horizon(2, LIFETIMES_MONTH).describe() == "2 periods of 4.345 weeks, discounted 1.00% a period"
    with pytest.raises(crmcore.ValidationError):
        Horizon(period="fortnight")
    with pytest.raises(crmcore.ValidationError):
        Horizon(0)


# ---- money on the facade ----

def test_the_facade_keeps_currencies_apart_or_converts(tmp_path: object) -> None:
    crm = crmcore.open("memory://", clock=lambda: datetime(2024, 6, 1, tzinfo=UTC))
    try:
        crm.bulk_import([Customer.new(c, id=c) for c in ("ann", "bob")])
        crm.bulk_import([purchase("ann", 0, "10"), purchase("ann", 5, "20"),
                         purchase("bob", 1, "100", "USD")])
        a = crm.analytical
        with pytest.raises(MixedCurrencies):
            a.summary()
        # no currency chosen: each currency's buyers are ranked among themselves
        assert {r.customer_id: r.currency for r in a.rfm()} == {"ann": "EUR", "bob": "USD"}
        by_currency = a.clv_by_currency()
        assert "USD" not in by_currency  # one buyer, no repeat: no spend to fit, left out and logged
        assert all(v.currency == code for code, v in by_currency.items())
        assert {r.customer_id: (r.monetary, r.currency) for r in a.rfm(currency="USD")} == {
            "bob": (100.0, "USD")}
        a.reporting("EUR", RateTable([Rate("EUR", "USD", date(2020, 1, 1), Decimal("1.25"))]))
        assert {r.customer_id: (r.monetary, r.currency) for r in a.rfm()} == {
            "ann": (30.0, "EUR"), "bob": (80.0, "EUR")}
        assert a.currencies() == ["EUR", "USD"]
        assert a.repurchase()[0].customer_id == "ann"  # purchase days need no currency
    finally:
        crm.close()


@pytest.mark.parametrize("url", ["memory://", "sqlite:///:memory:"])
def test_rfm_snapshots_of_a_customer_in_two_currencies_are_one_per_currency(url: str) -> None:
    when = datetime(2024, 6, 1, tzinfo=UTC)
    crm = crmcore.open(url, clock=lambda: when)
    try:
        crm.bulk_import([Customer.new(c, id=c) for c in ("ann", "bob", "cy")])
        crm.bulk_import([purchase("ann", 0, "10"), purchase("ann", 5, "20"), purchase("ann", 9, "1", "USD"),
                         purchase("bob", 1, "100", "USD"), purchase("bob", 2, "5", "USD"),
                         purchase("bob", 3, "7"), purchase("cy", 4, "3", "USD"), purchase("cy", 4, "3")])
        scores = {(r.customer_id, r.currency): r for r in crm.analytical.rfm()}
        assert crm.analytical.score(names=["rfm"]) == {"rfm": 3 + 6}
        for who in ("ann", "bob", "cy"):
            stored = crm.analytical.latest_scores(who)
            bought = sorted(code for (c, code) in scores if c == who)
            assert sorted(k for k in stored if k.startswith("rfm_")) == [f"rfm_{c.lower()}" for c in bought]
            for code in bought:  # each currency's scores, as ranked among that currency's buyers
                assert stored[f"rfm_{code.lower()}"].value == scores[who, code].value
                assert stored[f"rfm_{code.lower()}"].details["currency"] == code
            # `rfm`: the currency of the most purchase days (the lower code on a tie)
            main = {"ann": "EUR", "bob": "USD", "cy": "EUR"}[who]
            assert stored["rfm"].details["currency"] == main
            assert stored["rfm"].details["currencies"] == ",".join(bought)
            assert (stored["rfm"].value, stored["rfm"].label) == (scores[who, main].value,
                                                                 scores[who, main].segment)
        # with one reporting currency, one snapshot per customer under `rfm` alone
        crm.analytical.reporting("EUR", RateTable([Rate("EUR", "USD", date(2020, 1, 1), Decimal("1.25"))]))
        later = when + timedelta(days=1)
        assert crm.analytical.score(later, ["rfm"]) == {"rfm": 3}
        assert {s.details["currency"] for s in (crm.analytical.latest_scores(c, later)["rfm"]
                                                for c in ("ann", "bob", "cy"))} == {"EUR"}
    finally:
        crm.close()


# ---- uncertainty and P(X(t) = n) ----

bg_models = st.builds(BetaGeo, st.floats(0.1, 5), st.floats(1, 50), st.floats(0.2, 5), st.floats(0.2, 5))


@settings(max_examples=60, deadline=None)
@given(bg_models, st.floats(0.5, 60))
def test_probabilities_of_n_purchases_sum_to_one(model: BetaGeo, t: float) -> None:
    p = model.probability_of_purchases(list(range(4000)), t)
    assert (p >= 0).all()
    assert p.sum() == pytest.approx(1.0, abs=1e-6)
    # and their mean is the expected number of purchases (eq. 9, singular at a = 1 and a + b = 1)
    if abs(model.a - 1) > 0.05 and abs(model.a + model.b - 1) > 0.05:
            assert float(np.arange(4000) @ p) == pytest.approx(
            float(model.expected_purchases_from_start(t)[0]), rel=1e-3, abs=1e-6)


@pytest.fixture(scope="module")
def cdnow_model() -> tuple[LifetimeModel, object]:
    from crmcore.scoring.datasets import cdnow
    from tests.analytics.conftest import cdnow_dir

    bought = [p for p in cdnow(cdnow_dir() / "CDNOW_sample.txt") if isinstance(p, Purchase)]
    base = summary_of(bought, date(1997, 9, 30))
    return LifetimeModel.fit(base), base


histories = st.tuples(st.integers(0, 30), st.floats(0, 1), st.floats(1, 80), st.floats(1, 300))


@settings(max_examples=40, deadline=None)
@given(st.lists(histories, min_size=1, max_size=10), st.sampled_from([0.5, 0.9, 0.99]),
       st.integers(1, 36))
def test_intervals_contain_the_point_estimate(
    cdnow_model: tuple[LifetimeModel, object], rows: list[tuple[int, float, float, float]],
    level: float, periods: int,
) -> None:
    from crmcore.scoring.clv import purchases_interval
    from crmcore.scoring.summary import Period, Summary

    model, _ = cdnow_model
    x = [float(r[0]) for r in rows]
    T = [r[2] for r in rows]
    tx = [0.0 if r[0] == 0 else r[1] * r[2] for r in rows]
    m = [0.0 if r[0] == 0 else r[3] for r in rows]
    estimate, lower, upper = purchases_interval(model.purchases, 39.0, x, tx, T, level)
    assert (lower <= estimate).all() and (estimate <= upper).all()
    summary = Summary(Period.as_of(date(1997, 9, 30)), [f"c{i}" for i in range(len(rows))],
                      *(np.asarray(c, dtype=np.float64) for c in (x, tx, T, m, m)), currency="USD")
    value = model.value(summary, horizon=Horizon(periods), level=level)  # type: ignore[arg-type]
    assert value.clv_interval is not None and value.purchases_interval is not None
    low, high = value.clv_interval
    assert (low <= value.clv).all() and (value.clv <= high).all()
    low, high = value.purchases_interval
    assert (low <= value.expected_purchases).all() and (value.expected_purchases <= high).all()


def test_clv_intervals_narrow_as_the_level_falls(cdnow_model: tuple[LifetimeModel, object]) -> None:
    model, base = cdnow_model
    wide = model.value(base, level=0.99)  # type: ignore[arg-type]
    narrow = model.value(base, level=0.5)  # type: ignore[arg-type]
    assert wide.clv_interval is not None and narrow.clv_interval is not None
    width = [band[1] - band[0] for band in (wide.clv_interval, narrow.clv_interval)]
    assert (width[0] >= width[1]).all()
    assert wide.currency == "USD" and wide.explain(0)["horizon"].startswith("12 calendar months")
