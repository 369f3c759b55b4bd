"""The public dialect layer on its own: spelling, values, and how a unit of work names it."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

import crmcore
from crmcore import Channel
from crmcore.exchange import Rate, RateTable
from crmcore.ports import sql_dialect
from crmcore.scoring.service_quality import service_quality
from crmcore.scoring.summary import MixedCurrencies, currencies, summarize
from crmcore.sql import POSTGRESQL, SQLITE, Dialect, SQLite, Unsupported, dialect_of
from crmcore.sql.dialect import EPOCH_SHIFT_DAYS
from crmcore.synthetic import AS_OF, SyntheticBase


def test_reserved_words_and_odd_names_are_quoted() -> None:
    assert [SQLITE.quote(n) for n in ("at", "left", "status", "Mixed", 'we"ird')] == [
        '"at"', '"left"', "status", '"Mixed"', '"we""ird"']


def test_upsert_and_parameters_are_spelt_per_dialect() -> None:
    key = ("campaign_id", "customer_id")
    assert SQLITE.upsert("campaign_members", (*key, "at"), key) == (
        'INSERT INTO campaign_members (campaign_id, customer_id, "at") VALUES (?, ?, ?) '
        'ON CONFLICT (campaign_id, customer_id) DO UPDATE SET "at" = excluded."at"')
    assert POSTGRESQL.sql("a = ? AND b = ?") == "a = %s AND b = %s"


class Recording:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Sequence[Any]]]] = []
        self.rowcount = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise AssertionError("not used")

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> None:
        self.calls.append((sql, list(params)))

    def fetchone(self) -> Any:
        return None

    def fetchall(self) -> list[Any]:
        return []


def test_an_empty_batch_runs_nothing() -> None:
    cursor = Recording()
    POSTGRESQL.executemany(cursor, "INSERT INTO t (a) VALUES (?)", [])
    POSTGRESQL.executemany(cursor, "INSERT INTO t (a) VALUES (?)", [(1,)])
    assert cursor.calls == [("INSERT INTO t (a) VALUES (%s)", [(1,)])]


@given(st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)))
def test_sqlite_day_arithmetic_matches_python(moment: datetime) -> None:
    micros = SQLITE.instant(moment)
    with sqlite3.connect(":memory:") as conn:
        day, start, bucket, key = conn.execute(
            f"SELECT {SQLITE.epoch_day(':m')}, {SQLITE.day_start(SQLITE.epoch_day(':m'))}, "
            f"{SQLITE.period(':m', 'day')}, {SQLITE.day_key(':m')}", {"m": micros},
        ).fetchone()
    assert day == (moment.date() - date(1970, 1, 1)).days
    assert key == day + EPOCH_SHIFT_DAYS  # one key per day, so counting keys counts days
    assert SQLITE.from_instant(start) == datetime.combine(moment.date(), datetime.min.time(), UTC)
    assert bucket == moment.date().isoformat()


@given(st.decimals(-(10**9), 10**9, places=4, allow_nan=False, allow_infinity=False))
def test_money_round_trips_exactly(amount: Decimal) -> None:
    assert SQLITE.money(amount) == amount * 10_000
    assert SQLITE.from_money(SQLITE.money(amount)) == float(amount)
    assert POSTGRESQL.from_money(POSTGRESQL.money(amount)) == float(amount)
    assert SQLITE.exact_money(SQLITE.money(amount)) == amount
    assert POSTGRESQL.exact_money(POSTGRESQL.money(amount)) == amount


def test_the_base_dialect_leaves_json_to_python() -> None:
    with pytest.raises(Unsupported):
        Dialect().json_array_length("c.doc", "tags")
    with pytest.raises(Unsupported):
        Dialect().period("t", "month")
    with pytest.raises(Unsupported):
        Dialect().json_integer("t.doc", "expectation")


class Named:
    """A unit of work that names a dialect instead of holding one (the old convention)."""

    def __init__(self, uow: Any, name: str) -> None:
        self._uow = uow
        self.dialect = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._uow, attribute)


def test_units_of_work_hold_or_name_their_dialect() -> None:
    with crmcore.open("sqlite://") as crm, crm.transaction() as uow:
        assert dialect_of(uow) is SQLITE and sql_dialect(uow) == "sqlite"
        assert dialect_of(Named(uow, "sqlite")) is SQLITE
        assert dialect_of(Named(uow, "oracle")) is None and sql_dialect(Named(uow, "oracle")) == "oracle"
    with crmcore.open("memory://") as crm, crm.transaction() as uow:
        assert dialect_of(uow) is None and sql_dialect(uow) is None


def test_an_unknown_dialect_name_is_answered_in_python_with_the_same_figures() -> None:
    with crmcore.open("sqlite://", clock=lambda: AS_OF) as crm:
        SyntheticBase(size=30, seed=2).load(crm)
        with crm.transaction() as uow:
            for code in currencies(uow, AS_OF):
                native = summarize(uow, AS_OF, currency=code)
                foreign = summarize(Named(uow, "oracle"), AS_OF, currency=code)
                assert native.customer_ids == foreign.customer_ids
                assert list(native.total) == list(foreign.total)


class NoDays(SQLite):
    def epoch_day(self, instant: str) -> str:
        raise Unsupported("no day arithmetic")


class NoJson(SQLite):
    def json_integer(self, doc: str, key: str) -> str:
        raise Unsupported("no JSON reads")


def test_what_a_dialect_cannot_spell_is_computed_in_python_with_the_same_answers() -> None:
    rates = RateTable([Rate("EUR", "USD", date(1970, 1, 1), Decimal("1.2")),
                       Rate("EUR", "GBP", date(1970, 1, 1), Decimal("0.8"))])
    with crmcore.open("sqlite://", clock=lambda: AS_OF) as crm:
        SyntheticBase(size=30, seed=2).load(crm)
        customers = crm.customers.list(limit=3)
        for n, customer in enumerate(customers):
            crm.interactions.log(customer.id, channel=Channel.PHONE, direction="inbound",
                                 at=AS_OF - timedelta(days=n + 1), satisfaction=n + 2, expectation=4)
        with crm.transaction() as uow:
            partial = Named(uow, NoDays())
            for currency, convert in (("EUR", None), ("EUR", rates), ("USD", None)):
                native = summarize(uow, AS_OF, currency=currency, rates=convert)
                foreign = summarize(partial, AS_OF, currency=currency, rates=convert)
                assert native.customer_ids == foreign.customer_ids and len(native) > 0
                assert list(native.total) == pytest.approx(list(foreign.total))
                assert list(native.monetary) == pytest.approx(list(foreign.monetary))
            with pytest.raises(MixedCurrencies):
                summarize(partial, AS_OF)
            by = ("tier", "channel")
            native_quality = service_quality(uow, AS_OF, by=by)
            assert native_quality == service_quality(Named(uow, NoJson()), AS_OF, by=by)
            assert any(q.gap is not None for q in native_quality)
