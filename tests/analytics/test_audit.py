"""Gaps an audit of the analytics found, closed: the report and the demo kept two currencies'
figures together, a margin model could value revenue, DataFrames lost the currency, bulk
imports kept the wall clock, and wrong arguments escaped as other exceptions or gave a
silently empty result."""

from __future__ import annotations

import itertools
import random
import types
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase
from crmcore.errors import ValidationError
from crmcore.exchange import convert
from crmcore.scoring import diagnostics, margin
from crmcore.scoring.clv import BetaGeo, ParetoNBD, purchases_interval
from crmcore.scoring.horizon import MAX_PERIODS, Horizon
from crmcore.scoring.summary import summary_of
from tests.analytics.conftest import open_backend

T0 = datetime(2024, 1, 1, 9, tzinfo=UTC)
EUR_BUYERS = 300
NUMBERS = itertools.count()
AS_OF = date(2024, 12, 31)


def purchase(who: str, day: int, amount: str, currency: str = "EUR", cost: str | None = None) -> Purchase:
    price = Money(Decimal(amount), currency)
    unit_cost = None if cost is None else Money(Decimal(cost), currency)
    return Purchase(id=f"{who}-{next(NUMBERS)}", customer_id=who, ordered_at=T0 + timedelta(days=day),
                    lines=[OrderLine("x", price, unit_cost=unit_cost)])


def two_currencies() -> list[Purchase]:
    """EUR buyers drawn from the BG/NBD story (purchase rates from a gamma, a chance to leave
    after each purchase from a beta), and a few USD buyers who spend a lot."""
    rng = random.Random(7)
    bought = []
    for i in range(EUR_BUYERS):
        rate, leave = rng.gammavariate(0.8, 0.05), rng.betavariate(1, 3)  # purchases a day
        spend = rng.gammavariate(3, 10)  # the customer's mean spend
        day = rng.uniform(0, 150)
        while day < 360:
            amount = max(1, round(rng.gammavariate(5, spend / 5)))
            bought.append(purchase(f"e{i:03d}", int(day), str(amount), cost="3"))
            if rng.random() < leave:
                break
            day += rng.expovariate(rate)
    bought += [purchase(f"u{i}", d, "900", "USD", cost="100") for i in range(3) for d in (5, 40 + i)]
    bought += [purchase("e000", 70, "5000", "USD", cost="1")]  # a EUR buyer who also paid in USD
    return bought


@pytest.fixture(params=["memory", "sqlite"])
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[crmcore.CRM]:
    for crm in open_backend(request.param, tmp_path, clock=lambda: datetime(2025, 1, 1, tzinfo=UTC)):
        bought = two_currencies()
        crm.bulk_import([Customer(id=c, name=c, created_at=T0, updated_at=T0)
                         for c in sorted({p.customer_id for p in bought})])
        crm.bulk_import(bought)
        yield crm


# ---- money ----

def test_the_report_rfm_grid_is_one_currency(shop: crmcore.CRM) -> None:
    from crmcore.report.figures import gather

    grid = gather(shop, datetime(2025, 1, 1, tzinfo=UTC)).rfm_grid
    assert isinstance(grid, list) and {row["currency"] for row in grid} == {"EUR"}
    eur = [s for s in shop.analytical.rfm(AS_OF) if s.currency == "EUR"]
    assert sum(row["customers"] for row in grid) == len(eur) == EUR_BUYERS
    for row in grid:  # each cell's mean spend is of EUR amounts only
        cell = [s.monetary for s in eur if (s.r, s.f) == (row["recency"], row["frequency"])]
        assert row["mean_spend"] == round(sum(cell) / len(cell), 2)


def test_the_demo_counts_rfm_segments_per_currency(shop: crmcore.CRM) -> None:
    from crmcore.cli import _rfm

    lines = list(_rfm(types.SimpleNamespace(crm=shop)))  # type: ignore[arg-type]
    assert lines[0].split() == ["segment", "EUR", "USD"]
    columns = [line.split()[-2:] for line in lines[1:]]
    assert sum(int(eur) for eur, _ in columns) == EUR_BUYERS and sum(int(usd) for _, usd in columns) == 4


def test_a_margin_model_values_margins_only_and_says_so(shop: crmcore.CRM) -> None:
    a = shop.analytical
    rule = margin.MarginRule()
    on_margin = a.fit_clv(AS_OF, currency="EUR", margins=rule)
    assert on_margin.measure == "margin" and on_margin.explain()["measure"] == "margin"
    valued = a.clv(AS_OF, model=on_margin, margins=rule)
    assert valued.measure == "margin" and valued.explain(0)["measure"] == "margin"
    with pytest.raises(ValidationError) as raised:  # a margin model never values revenue
        a.clv(AS_OF, model=on_margin)
    assert raised.value.field == "summary"
    assert a.clv(AS_OF, currency="EUR").measure == "revenue"


def test_churn_alerts_name_the_currency_of_their_value(shop: crmcore.CRM) -> None:
    model = shop.analytical.fit_clv(AS_OF, currency="EUR")
    alerts = shop.analytical.churn_alerts(datetime(2025, 1, 1, tzinfo=UTC), 0.9, model=model, top_share=1)
    assert alerts and {(a.currency, a.explain()["currency"]) for a in alerts} == {("EUR", "EUR")}
    with shop.transaction() as uow:  # and the events say it too
        sent = [entry.event for entry in uow.outbox.claim(datetime(2025, 1, 2, tzinfo=UTC),
                                                            timedelta(minutes=1), 1000)]
    assert {e.payload["currency"] for e in sent if e.topic == "churn.alert"} == {"EUR"}


def test_dataframes_of_columnar_results_carry_currency_and_measure(shop: crmcore.CRM) -> None:
    from crmcore.dataframes import to_pandas, to_polars

    value = shop.analytical.clv(AS_OF, currency="EUR")
    frame = to_pandas(value)
    assert set(frame["currency"]) == {"EUR"} and set(frame["measure"]) == {"revenue"}
    summary = shop.analytical.summary(AS_OF, currency="USD")
    assert to_polars(summary)["currency"].to_list() == ["USD"] * len(summary)


# ---- time ----

@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_bulk_imported_customers_take_the_crms_clock(backend: str, tmp_path: Path) -> None:
    then = datetime(2001, 2, 3, 4, 5, tzinfo=UTC)
    for crm in open_backend(backend, tmp_path, clock=lambda: then):
        given = datetime(1999, 1, 1, tzinfo=UTC)
        crm.bulk_import([Customer.new("Ada", id="ada"), Customer.new("Bob", id="bob", created_at=given)])
        ada, bob = crm.customers.get("ada"), crm.customers.get("bob")
        assert ada.created_at == ada.updated_at == then
        assert bob.created_at == given


# ---- hostile arguments ----

def _calls(crm: crmcore.CRM) -> dict[str, tuple[Callable[[], object], str]]:
    a = crm.analytical
    model = a.fit_clv(AS_OF, currency="EUR")
    with crm.reading() as uow:
        split = diagnostics.calibration_holdout(uow, date(2024, 6, 30), AS_OF, currency="EUR")
    return {
        "a currency in lower case": (lambda: a.summary(AS_OF, currency="eur"), "currency"),
        "a currency that is not text": (lambda: a.rfm(AS_OF, currency=5), "currency"),  # type: ignore[arg-type]
        "rates without rate()": (lambda: a.summary(AS_OF, currency="EUR", rates=object()), "rates"),  # type: ignore[arg-type]
        "reporting in a made-up code": (lambda: a.reporting("euro"), "currency"),
        "reporting margins that are not a rule": (lambda: a.reporting("EUR", margins=5), "margins"),  # type: ignore[arg-type]
        "segments that are not a mapping": (lambda: a.rfm(AS_OF, currency="EUR", segments=5), "segments"),  # type: ignore[arg-type]
        "a model that is not one": (lambda: a.clv(AS_OF, model=5), "model"),  # type: ignore[arg-type]
        "a churn model that is not one": (lambda: a.churn_alerts(model="m", emit=False), "model"),  # type: ignore[arg-type]
        "a NaN churn min_value": (lambda: a.churn_alerts(min_value=float("nan"), emit=False), "min_value"),
        "a margin rule that is not one": (lambda: a.margin_report(rule=5), "rule"),  # type: ignore[arg-type]
        "margin shares that are not a mapping": (lambda: margin.MarginRule(by_product=5), "margin"),  # type: ignore[arg-type]
        "a NaN margin share": (lambda: margin.MarginRule(default=Decimal("NaN")), "margin['default']"),  # type: ignore[arg-type]
        "a cohort currency in lower case": (lambda: a.cohorts(AS_OF, currency="usd"), "currency"),
        "a segment function that is not one": (lambda: a.churn_rates(AS_OF, segment=5), "segment"),  # type: ignore[arg-type]
        "a segment function that fails": (lambda: a.churn_rates(AS_OF, segment=lambda c: 1 / 0), "segment"),
        "a segment label that is not text": (lambda: a.churn_rates(AS_OF, segment=lambda c: 5), "segment"),  # type: ignore[arg-type,return-value]
        "a naive since": (lambda: a.service_quality(AS_OF, since=datetime(2024, 1, 1)), "since"),
        "a horizon of a billion periods": (lambda: Horizon(10**9), "periods"),
        "an infinite period": (lambda: a.clv(AS_OF, currency="EUR", period=float("inf")), "period"),
        "an infinite discount": (lambda: Horizon(discount=float("inf")), "discount"),
        "n as text": (lambda: model.purchases.probability_of_purchases("1", 10), "n"),  # type: ignore[arg-type]
        "n negative in a list": (lambda: model.purchases.probability_of_purchases([0, -1], 10), "n[1]"),
        "t as text": (lambda: model.purchases.probability_of_purchases(1, "x"), "t"),  # type: ignore[arg-type]
        "a negative t from the start": (lambda: model.purchases.expected_purchases_from_start(-1), "t"),
        "a NaN t from the start (Pareto/NBD)": (
            lambda: ParetoNBD(1, 1, 1, 1).expected_purchases_from_start([1, float("nan")]), "t[1]"),
        "a negative interval horizon": (lambda: purchases_interval(model.purchases, -1, [1], [1], [2]), "t"),
        "columns of text": (lambda: BetaGeo.fit(["a"], [0], [1]), "columns"),
        "a NaN frequency to the chi-square": (
            lambda: diagnostics.goodness_of_fit(model.purchases, [1, float("nan")], [3, 4]), "frequency[1]"),
        "a T of 0 to the chi-square": (
            lambda: diagnostics.goodness_of_fit(model.purchases, [0], [0]), "T[0]"),
        "a tracking period of 0": (lambda: diagnostics.tracking(model.purchases, split, 0), "period_days"),
        "no rates to convert with": (
            lambda: convert(Money(Decimal(1), "EUR"), "USD", AS_OF, None), "rates"),  # type: ignore[arg-type]
    }


def test_hostile_arguments_are_validation_errors_naming_the_field(shop: crmcore.CRM) -> None:
    for name, (call, field) in _calls(shop).items():
        with pytest.raises(ValidationError) as raised:
            call()
        assert raised.value.field == field, name
    shop.analytical.reporting(None)
    with shop.reading() as uow:  # and nothing was written by a refused churn run
        assert uow.outbox.pending_count() == 0


def test_a_summary_of_purchases_in_hand_checks_its_currency_too() -> None:
    with pytest.raises(ValidationError):
        summary_of(two_currencies(), AS_OF, currency="Eur")


def test_the_longest_horizon_is_accepted() -> None:
    assert Horizon(MAX_PERIODS).periods == MAX_PERIODS

