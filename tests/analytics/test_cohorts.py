"""Cohort tables and churn rates: laws on any data, and a small history worked by hand."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Customer, OrderLine, Purchase
from crmcore.scoring.cohorts import NO_SEGMENT, cohorts_of
from crmcore.scoring.summary import Period, python_day_totals
from crmcore.testing.strategies import purchases

buyers = st.sampled_from(("ann", "bob", "cyd", "dan", "eve"))


@settings(max_examples=60)
@given(st.lists(purchases(customer_id=buyers), max_size=25, unique_by=lambda p: p.id))
def test_cohort_tables_conserve_customers_and_money(bought: list[Purchase]) -> None:
    period = Period.as_of(datetime(2040, 1, 1, tzinfo=UTC))
    table = cohorts_of(python_day_totals(bought, period), period.through)
    kept = [p for p in bought if p.ordered_at < period.end]
    assert sum(c.customers for c in table) == len({p.customer_id for p in kept})
    spent: Counter[str] = Counter()
    for p in kept:
        spent[p.currency] += p.total.amount  # type: ignore[assignment]
    found: Counter[str] = Counter()
    for cohort in table:
        assert cohort.active[0] == cohort.customers and cohort.retention[0] == 1
        assert all(0 <= n <= cohort.customers for n in cohort.active)
        for month in cohort.revenue:
            for code, amount in month.items():
                found[code] += amount  # type: ignore[assignment]
    assert found == spent  # per currency: nothing added across them, nothing lost
    assert [c.month for c in table] == sorted(c.month for c in table)


def buy(who: str, day: date, amount: str = "10", currency: str = "EUR") -> Purchase:
    return Purchase(id=crmcore.values.new_id(), customer_id=who,
                    ordered_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC),
                    lines=[OrderLine("x", crmcore.Money(Decimal(amount), currency))])


@pytest.fixture
def history(crm: crmcore.CRM) -> crmcore.CRM:
    crm.bulk_import([Customer.new(c, id=c, tier=t, created_at=datetime(2024, 1, 1, tzinfo=UTC))
                     for c, t in (("ann", "gold"), ("bob", "gold"), ("cyd", None))])
    crm.bulk_import([
        buy("ann", date(2024, 1, 5)), buy("ann", date(2024, 2, 5), "20"), buy("ann", date(2024, 3, 5)),
        buy("bob", date(2024, 1, 9), "5", "USD"),
        buy("cyd", date(2024, 2, 1)), buy("cyd", date(2024, 4, 1)),
    ])
    return crm


def test_cohorts_and_churn_on_every_backend(history: crmcore.CRM) -> None:
    a = history.analytical
    january, february = a.cohorts(date(2024, 4, 30))
    assert (january.month, january.customers, january.active) == ("2024-01", 2, [2, 1, 1, 0])
    assert january.revenue[0] == {"EUR": Decimal(10), "USD": Decimal(5)}
    assert (february.month, february.active) == ("2024-02", [1, 0, 1])
    # window of one month: active means bought that month
    rates = {(r.month, r.segment): (r.active_before, r.churned)
             for r in a.churn_rates(date(2024, 4, 30), window=1)}
    assert rates["2024-02", None] == (2, 1)      # ann stays, bob leaves
    assert rates["2024-03", None] == (2, 1)      # ann stays, cyd pauses
    assert rates["2024-02", "gold"] == (2, 1)
    assert rates["2024-03", NO_SEGMENT] == (1, 1)
    assert rates["2024-04", None] == (1, 1)      # ann leaves; cyd's return is not churn
    assert all(r.rate is None or 0 <= r.rate <= 1 for r in a.churn_rates(date(2024, 4, 30)))
    assert a.cohorts(date(2024, 4, 30) - timedelta(days=365)) == []
