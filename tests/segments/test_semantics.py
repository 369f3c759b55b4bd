"""What rules mean, checked on the memory storage (Python engine) and SQLite (SQL) alike:
unknown values, empty collections, as-of evaluation, calendar arithmetic, time zones.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

import crmcore
from crmcore import Customer, OrderLine, PostalAddress, Purchase
from crmcore.model import Case, Score
from crmcore.segments import Context, explain
from crmcore.values import Money
from tests.segments.conftest import open_url

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened = crmcore.open(open_url(request), clock=lambda: NOW)
    created = NOW - timedelta(days=1000)
    opened.bulk_import([
        Customer("ada", "Ada", tier="gold", tags=["vip"], addresses=[PostalAddress("FR")],
                 birth_date=date(1990, 3, 1), attributes={"size": 42, "ratio": Decimal("0.5"),
                                                          "vip": True, "color": "red"},
                 created_at=created, updated_at=created),
        Customer("bob", "Bob", birth_date=date(2000, 2, 29), created_at=created, updated_at=created),
        Customer("cy", "Cy", tier="silver", attributes={"size": "L"}, created_at=NOW - timedelta(days=1),
                 updated_at=NOW),
        Purchase("p1", "ada", NOW - timedelta(days=400), [OrderLine("x", Money(Decimal("600")))]),
        Purchase("p2", "ada", NOW - timedelta(days=20), [OrderLine("x", Money(Decimal("500.25")))]),
        Purchase("p3", "ada", NOW + timedelta(days=1), [OrderLine("x", Money(Decimal("9999")))]),
        Purchase("p4", "bob", NOW - timedelta(days=200), [OrderLine("x", Money(Decimal("10")), 3)]),
    ])
    with opened.transaction() as uow:
        uow.cases.add(Case("k1", "bob", "complaint", "late", NOW - timedelta(days=5),
                           status="resolved", resolved_at=NOW - timedelta(days=1)))
        uow.cases.add(Case("k2", "bob", "request", "info", NOW - timedelta(days=5)))
        uow.scores.put([Score("ada", "churn", NOW - timedelta(days=30), 0.2, "loyal"),
                        Score("ada", "churn", NOW - timedelta(days=1), 0.8, "at_risk"),
                        Score("bob", "churn", NOW + timedelta(days=1), 0.9)])
    yield opened
    opened.close()


def ids(crm: crmcore.CRM, rule: str, as_of: datetime = NOW) -> list[str]:
    found = sorted(crm.customers.ids_matching(rule, as_of=as_of))
    assert sorted(c.id for c in crm.customers.matching(rule, as_of=as_of)) == found
    return found


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ('tier = "gold"', ["ada"]),
        ('not tier = "gold"', ["cy"]),  # bob's tier is unknown: neither gold nor not gold
        ("tier is null", ["bob"]),
        ('tier = "gold" or not tier = "gold"', ["ada", "cy"]),
        ('tier in ("gold", "silver")', ["ada", "cy"]),
        ('not tier in ("gold")', ["cy"]),
        ('tags contains "vip"', ["ada"]),
        ('not tags contains "vip"', ["bob", "cy"]),
        ("tags is empty", ["bob", "cy"]),
        ("avg(purchases.total) > 0", ["ada", "bob"]),
        ("not avg(purchases.total) > 0", []),  # cy has no purchases: the average is unknown
        ("count(purchases) = 0", ["cy"]),
        ("sum(purchases.total) is null", ["cy"]),
        ("sum(purchases.total) = 1100.25", ["ada"]),  # the purchase after as_of is not counted
        ("avg(purchases.total) = 550.125", ["ada"]),
        ("sum(purchases.total, last 365 days) > 1000", []),
        ("sum(purchases.total, last 2 years) > 1000", ["ada"]),
        ("sum(purchases.total, since 2024-12-01) = 500.25", ["ada"]),
        ("count(purchases, last 90 days) = 0", ["bob", "cy"]),
        ("last(purchases) > 30 days ago", ["ada"]),
        ("first(purchases) < 1 year ago", ["ada"]),
        ("max(purchases.total) between 31 and 600", ["ada"]),
        ("max(purchases.total) between 30 and 30", ["bob"]),
        ("sum(purchases.total) = 30", ["bob"]),
        ("count(cases where open) = 1", ["bob"]),
        ('count(cases where status = "resolved") = 1', ["bob"]),
        ("attributes.size > 41.5", ["ada"]),
        ('attributes.size = "L"', ["cy"]),
        ("attributes.size is null", ["bob"]),
        ("attributes.ratio = 0.5", ["ada"]),
        ("attributes.vip", ["ada"]),
        ('attributes.color contains "e"', ["ada"]),
        ("not attributes.vip", []),
        ('name < "B"', ["ada"]),
        ('name contains "y"', ["cy"]),
        ('country = "FR"', ["ada"]),
        ("score.churn > 0.5", ["ada"]),  # the newest score as of now; bob's comes later
        ('score.churn.label = "at_risk"', ["ada"]),
        ("score.churn is null", ["bob", "cy"]),
        ("birth_date <= 18 years ago", ["ada", "bob"]),
        ("birthday within 0 days", ["ada"]),
        ("length(name) = 2", ["cy"]),
        ('lower(name) = "ada"', ["ada"]),
        ('upper(name) contains "DA"', ["ada"]),
        ('name = "ada"', []),  # texts compare case-sensitively
        ("created_at < 2 days ago", ["ada", "bob"]),
        ("1 = 1", ["ada", "bob", "cy"]),
    ],
)
def test_meaning(crm: crmcore.CRM, rule: str, expected: list[str]) -> None:
    assert ids(crm, rule) == expected


def test_sql_storage_runs_rules_in_sql(crm: crmcore.CRM) -> None:
    with crm.transaction() as uow:
        plan = explain(uow, "sum(purchases.total, last 2 years) > 1000", as_of=NOW)
    if not crm.storage.url.startswith("memory"):
        assert plan.engine == "sql" and plan.sql is not None and "1000" not in plan.sql
    else:
        assert plan.engine == "python"


def test_as_of_recomputes_the_past(crm: crmcore.CRM) -> None:
    before = NOW - timedelta(days=100)
    assert ids(crm, "sum(purchases.total) > 500", as_of=before) == ["ada"]
    assert ids(crm, "count(purchases) = 2", as_of=before) == []  # p2 came later
    assert ids(crm, "count(purchases) = 1", as_of=before) == ["ada", "bob"]  # cy did not exist yet
    assert ids(crm, "score.churn < 0.5", as_of=NOW - timedelta(days=10)) == ["ada"]
    later = NOW + timedelta(days=2)
    assert ids(crm, "sum(purchases.total) > 10000", as_of=later) == ["ada"]
    assert ids(crm, "score.churn > 0.85", as_of=later) == ["bob"]


def test_the_clock_is_the_default_instant(crm: crmcore.CRM) -> None:
    assert crm.customers.ids_matching("count(purchases) = 2") == ["ada"]  # p3 is still to come
    assert crm.customers.ids_matching("count(purchases) = 3") == []


def test_time_zone_of_as_of_decides_today(crm: crmcore.CRM) -> None:
    paris = datetime(2025, 3, 1, 0, 30, tzinfo=ZoneInfo("Europe/Paris"))  # still 28 Feb in UTC
    assert ids(crm, "birthday within 0 days", as_of=paris) == ["ada"]
    assert ids(crm, "birthday within 0 days", as_of=paris.astimezone(UTC)) == ["bob"]  # 29 Feb -> 28th


def test_calendar_arithmetic() -> None:
    context = Context(datetime(2024, 5, 31, 9, 0, tzinfo=UTC))
    assert context.back(3, "months") == datetime(2024, 2, 29, 9, 0, tzinfo=UTC)
    assert context.back(1, "years") == datetime(2023, 5, 31, 9, 0, tzinfo=UTC)
    assert context.back(36, "hours") == datetime(2024, 5, 29, 21, 0, tzinfo=UTC)
    dst = Context(datetime(2024, 3, 31, 12, 0, tzinfo=ZoneInfo("Europe/Paris")))  # the day clocks go forward
    assert dst.back(1, "days") == datetime(2024, 3, 30, 11, 0, tzinfo=UTC)  # noon to noon: 23 hours
    assert "02-29" in Context(datetime(2025, 2, 27, tzinfo=UTC)).birthdays(1)
    assert "02-29" not in Context(datetime(2024, 2, 27, tzinfo=UTC)).birthdays(1)
    with pytest.raises(crmcore.ValidationError):
        Context(datetime(2024, 1, 1))  # naive instants are refused, not guessed


TRICKY = ["-634379.877622", "418367.345061", "817467.106753", "0.1", "2.675", "-0.096831"]
"""Decimals that SQLite's CAST does not round to the nearest double (Python does)."""


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def empty(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened = crmcore.open(open_url(request), clock=lambda: NOW)
    yield opened
    opened.close()


def test_decimal_attributes_read_as_the_nearest_double(empty: crmcore.CRM) -> None:
    crm = empty
    crm.bulk_import([
        Customer(f"c{n}", "C", attributes={"d": Decimal(text), "f": float(text)}, created_at=NOW,
                 updated_at=NOW)
        for n, text in enumerate(TRICKY)
    ])
    for n, text in enumerate(TRICKY):
        assert ids(crm, f"attributes.d = {text}") == [f"c{n}"], text
        assert ids(crm, f"attributes.f = {text}") == [f"c{n}"], text


def test_members_come_in_id_order_by_code_point(empty: crmcore.CRM) -> None:
    empty.bulk_import([Customer(id, "X", created_at=NOW, updated_at=NOW) for id in ("b", "B", "a", "É", "_")])
    expected = ["B", "_", "a", "b", "É"]
    assert empty.customers.ids_matching('name = "X"') == expected
    assert [c.id for c in empty.customers.matching('name = "X"')] == expected
