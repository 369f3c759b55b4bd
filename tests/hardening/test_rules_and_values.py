"""Issue 13 (3)-(5): rules and values fail with a CRMError naming the limit, the same on every backend."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase, limits
from crmcore.errors import LimitExceeded, RuleError, RuleLimit, StorageError, ValidationError
from crmcore.segments import to_data
from tests.hardening.conftest import BACKENDS, NOW, drop, open_backend
from tests.support import postgres_url


@pytest.fixture(params=BACKENDS)
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened, schema = open_backend(request.param)
    try:
        with opened.transaction():
            for name in ("Ada", "Bob", "Cy"):
                opened.customers.add(
                    Customer.new(
                        name, emails=[f"{name.lower()}@example.org"], created_at=NOW - timedelta(days=1)
                    )
                )
        yield opened
    finally:
        opened.close()
        drop(schema)


def nested_not(depth: int) -> dict[str, object]:
    rule: dict[str, object] = {"node": "Truth", "term": {"node": "Field", "path": ["consent", "x", "email"]}}
    for _ in range(depth):
        rule = {"node": "Not", "item": rule}
    return rule


@pytest.mark.parametrize(
    ("rule", "limit"),
    [
        ("lower(" * 300 + "name" + ")" * 300 + ' = "a"', "rule_depth"),
        ("lower(" * 25 + "name" + ")" * 25 + ' = "a"', "rule_depth"),  # SQLite's own parser gave up here
        (nested_not(5_000), "json_depth"),
        (nested_not(limits.RULE_DEPTH + 1), "rule_depth"),
        ("count(purchases) in (" + ", ".join(map(str, range(1500))) + ")", "in_values"),
        ("tier = " + '"' + "x" * 20_000 + '"', "rule_length"),
        (" or ".join(["tier=1"] * 1_500)[:9_990].rsplit(" or", 1)[0], "rule_nodes"),
    ],
)
def test_rules_beyond_a_limit_name_it(crm: crmcore.CRM, rule: object, limit: str) -> None:
    """Issue 13 (3, 5): RecursionError, SQLite's 'parser stack overflow', 61 s on PostgreSQL."""
    with pytest.raises(RuleLimit) as refused:
        crm.customers.matching(rule)
    assert refused.value.limit == limit and isinstance(refused.value, LimitExceeded | RuleError)


def test_the_deepest_rule_allowed_runs_on_every_backend(crm: crmcore.CRM) -> None:
    depth = limits.RULE_DEPTH - 1
    assert crm.customers.matching("lower(" * depth + "name" + ")" * depth + ' = "ada"') != []
    wide = "tier in (" + ", ".join(f'"t{i}"' for i in range(limits.IN_VALUES)) + ")"
    assert crm.customers.matching(wide) == []


@pytest.mark.parametrize(
    "rule",
    [
        "created_at > 100000 years ago",
        "count(purchases, last 100000 years) > 0",
        "count(purchases, since 99999 years ago) > 0",
        "created_at > 0001-01-01T00:00:00+05:00",
        "created_at < 9999-12-31T23:59:59-05:00",
        "birth_date > 0001-01-01",
        "sum(purchases.total) > 999999999999999",
        "sum(purchases.total) < -999999999999999.5",
    ],
)
def test_far_dates_and_huge_numbers_are_validation_errors(crm: crmcore.CRM, rule: str) -> None:
    """Issue 13 (3): ValueError, OverflowError from the calendar, and SQLite's 64-bit integers."""
    with pytest.raises(ValidationError):
        crm.customers.matching(rule)


@pytest.mark.parametrize(
    "as_of",
    [
        datetime(9999, 12, 31, 23, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime.max.replace(tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_far_as_of_instants_are_refused(crm: crmcore.CRM, as_of: datetime) -> None:
    with pytest.raises(LimitExceeded) as refused:
        crm.customers.matching("created_at < now", as_of=as_of)
    assert refused.value.limit == "instant"


def test_lone_surrogates_are_refused_by_values_on_every_backend(crm: crmcore.CRM) -> None:
    """Issue 13 (3): memory stored them, SQLite and PostgreSQL raised UnicodeEncodeError."""
    for build in (
        lambda: Customer.new("Ada\ud800"),
        lambda: Customer.new("Ada", attributes={"x": "\udfff"}),
        lambda: Customer.new("Ada", emails=["a\ud800@example.org"]),
    ):
        with pytest.raises(ValidationError):
            crm.customers.add(build())
    with pytest.raises(RuleError):
        crm.customers.matching('name = "\\ud800"')
    assert len(crm.customers.list()) == 3


def test_far_instants_in_a_customer_are_refused() -> None:
    far = datetime.max.replace(tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(LimitExceeded):
        Customer.new("Ada", attributes={"seen": far})
    with pytest.raises(ValidationError):
        Customer.new("Ada", created_at=far)
    with pytest.raises(ValidationError):
        Customer.new("Ada", created_at="0001-01-01T00:00:00+05:00")


def test_purchase_totals_out_of_range_are_refused_even_in_bulk(crm: crmcore.CRM) -> None:
    """Issue 13 (3): each line in range, their sum not: bulk import took it."""
    ada = crm.customers.list()[0]
    with pytest.raises(LimitExceeded) as refused:
        Purchase("p1", ada.id, NOW, [OrderLine("x", Money(limits.MONEY - 1), quantity=1_000_000)])
    assert refused.value.limit == "money"
    with pytest.raises(LimitExceeded):
        crm.bulk_import([Purchase("p2", ada.id, NOW, [OrderLine("x", Money(limits.MONEY - 1))] * 2)])
    assert crm.purchases.for_customer(ada.id) == []


def test_a_field_name_cannot_smuggle_a_rule_through_the_json_form(crm: crmcore.CRM) -> None:
    """Issue 13 (4): the JSON form was printed and read back, so this matched everyone."""
    smuggled = {
        "node": "Compare",
        "left": {"node": "Field", "path": ['id != "" or id']},
        "op": "=",
        "right": {"node": "Text", "value": "nobody"},
    }
    with pytest.raises(RuleError):
        crm.customers.matching(smuggled)
    call = {
        "node": "Compare",
        "left": {
            "node": "Call",
            "name": 'lower(name) != "" or lower',
            "args": [{"node": "Field", "path": ["name"]}],
        },
        "op": "=",
        "right": {"node": "Text", "value": "nobody"},
    }
    with pytest.raises(RuleError):
        crm.customers.matching(call)


def test_a_naive_instant_in_the_json_form_is_refused(crm: crmcore.CRM) -> None:
    """Issue 13 (4): it was read in the server's time zone."""
    rule = to_data(crmcore.segments.parse("created_at > 2024-01-01T00:00:00Z"))
    rule["right"]["value"] = "2024-01-01T00:00:00"
    with pytest.raises(RuleError):
        crm.customers.matching(rule)
    rule["right"]["value"] = "2024-01-01T00:00:00+02:00"
    assert len(crm.customers.matching(rule, as_of=NOW)) == 3


def test_a_costly_rule_is_cancelled_by_the_query_timeout() -> None:
    """Issue 13 (5): one correlated subquery per listed value held PostgreSQL for a minute."""
    postgres_url()
    crm, schema = open_backend("postgresql", query_timeout="300")
    try:
        with crm.transaction():
            for i in range(3):
                crm.customers.add(Customer.new(f"C{i}"))
        many = "count(purchases) in (" + ", ".join(map(str, range(limits.IN_VALUES))) + ")"
        costly = " or ".join([many] * 8)
        started = time.perf_counter()
        try:
            crm.customers.matching(costly)
        except StorageError as cancelled:
            assert "cancel" in str(cancelled)
        assert time.perf_counter() - started < 5
        assert len(crm.customers.list()) == 3  # the storage is fine afterwards
    finally:
        crm.close()
        drop(schema)


def test_a_refused_value_is_shown_short() -> None:
    """Issue 13 (7): validation errors echoed megabytes of bad input."""
    with pytest.raises(ValidationError) as refused:
        Customer.new("x" * 5_000_000)
    assert len(str(refused.value)) < 1_000
    with pytest.raises(RuleError) as bad:
        crmcore.segments.parse_json({"node": "Not", "item": {"x": ["y" * 1_000_000] * 100}})
    assert len(str(bad.value)) < 2_000


def test_dates_in_rules_stay_in_the_calendar() -> None:
    with pytest.raises(RuleError):
        crmcore.segments.parse_json(
            {
                "node": "Compare",
                "left": {"node": "Field", "path": ["birth_date"]},
                "op": ">",
                "right": {"node": "Day", "value": date.min.isoformat()},
            }
        )
    assert Decimal(limits.RULE_NUMBER) * 10**4 < 2**63
