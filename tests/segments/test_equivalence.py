"""One meaning, several engines: random rules over random bases give the same members
in the Python engine (memory storage, and SQLite data read into Python), in SQLite's
pushed-down SQL and in PostgreSQL's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.model import Account
from crmcore.segments import ast as a
from crmcore.segments import explain, select_ids, to_text
from crmcore.segments.parse import checked
from crmcore.segments.schema import walk
from tests.segments.strategies import AS_OF, account_tests, accounts, bases, rules
from tests.support import postgres_url

TABLES = ("customers", "customer_emails", "customer_phones", "customer_external_ids", "purchases",
          "interactions", "cases", "scores", "outbox", "accounts", "account_members", "history")


def load(crm: crmcore.CRM, base: dict[str, list[Any]]) -> None:
    crm.bulk_import([*base["customers"], *base["purchases"], *base["interactions"]])
    with crm.transaction() as uow:
        for case in base["cases"]:
            uow.cases.add(case)
        for account in base["accounts"]:
            uow.accounts.add(account)
        uow.scores.put(base["scores"])


def members(crm: crmcore.CRM, rule: a.Predicate, engine: str = "auto", as_of: datetime = AS_OF) -> list[str]:
    with crm.transaction() as uow:
        return sorted(select_ids(uow, rule, as_of=as_of, engine=engine))


def all_sql(crm: crmcore.CRM, rule: a.Predicate) -> bool:
    with crm.transaction() as uow:
        return explain(uow, rule, as_of=AS_OF).engine == "sql"


ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo", "Pacific/Kiritimati"])


@settings(max_examples=60)
@given(base=bases(), chosen=st.lists(rules, min_size=1, max_size=4), zone=ZONES)
def test_python_and_sqlite_agree(base: dict[str, list[Any]], chosen: list[a.Predicate], zone: str) -> None:
    """`zone` is the time zone the evaluation instant is given in: it decides `today` and months."""
    as_of = AS_OF.astimezone(ZoneInfo(zone))
    memory = crmcore.open("memory://")
    sqlite = crmcore.open("sqlite://")
    try:
        load(memory, base)
        load(sqlite, base)
        for rule in chosen:
            checked(rule)  # the strategies draw well-typed rules only
            reference = members(memory, rule, as_of=as_of)
            assert all_sql(sqlite, rule), to_text(rule)
            assert members(sqlite, rule, as_of=as_of) == reference, to_text(rule)
            assert members(sqlite, rule, engine="python", as_of=as_of) == reference, to_text(rule)
    finally:
        memory.close()
        sqlite.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[crmcore.CRM]:
    server = postgres_url()
    schema = f"crmcore_seg_{uuid.uuid4().hex[:12]}"
    separator = "&" if "?" in server else "?"
    crm = crmcore.open(f"{server}{separator}schema={schema}")
    try:
        yield crm
    finally:
        crm.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def clear(crm: crmcore.CRM) -> None:
    with crm.transaction() as uow:
        for table in TABLES:
            uow.cur.execute(f"DELETE FROM {table}")  # type: ignore[attr-defined]


@settings(max_examples=40)
@given(base=bases(), chosen=st.lists(rules, min_size=1, max_size=4), zone=ZONES)
def test_python_and_postgresql_agree(
    postgres: crmcore.CRM, base: dict[str, list[Any]], chosen: list[a.Predicate], zone: str
) -> None:
    as_of = AS_OF.astimezone(ZoneInfo(zone))
    memory = crmcore.open("memory://")
    try:
        clear(postgres)
        load(memory, base)
        load(postgres, base)
        for rule in chosen:
            assert all_sql(postgres, rule), to_text(rule)
            assert members(postgres, rule, as_of=as_of) == members(memory, rule, as_of=as_of), to_text(rule)
    finally:
        memory.close()


def change_accounts(crm: crmcore.CRM, later: list[Account]) -> None:
    """Write `later` over the base's accounts through `crm.operational.accounts` (so the
    history keeps what they were), after the evaluation instant (the CRM's clock is now);
    a change the facade refuses (an unknown parent, a loop) is refused on every backend."""
    for account in later:
        with crm.reading() as uow:
            current = uow.accounts.find(account.id)
        try:
            if current is None:
                crm.operational.accounts.add(account)
            else:
                crm.operational.accounts.update(attrs.evolve(account, version=current.version))
        except crmcore.ValidationError:
            pass


def as_of_then(backends: dict[str, crmcore.CRM], base: dict[str, list[Any]], later: list[Account],
               chosen: list[a.Predicate]) -> None:
    """Each rule as of AS_OF, before the accounts change and after: the same members, on every
    backend and engine."""
    for crm in backends.values():
        load(crm, base)
    before = {to_text(rule): members(backends["memory"], rule) for rule in chosen}
    for crm in backends.values():
        change_accounts(crm, later)
    for name, crm in backends.items():
        for rule in chosen:
            expected = before[to_text(rule)]
            assert members(crm, rule) == expected, (name, to_text(rule))
            assert members(crm, rule, engine="python") == expected, (name, to_text(rule))


ABOUT_ACCOUNTS = st.lists(account_tests() | rules, min_size=1, max_size=4)
"""Rules half of which test an account field (roll-ups of accounts come among the others)."""


@settings(max_examples=40)
@given(base=bases(), data=st.data(), chosen=ABOUT_ACCOUNTS)
def test_rules_as_of_read_the_accounts_of_then_in_python_and_sqlite(
    base: dict[str, list[Any]], data: st.DataObject, chosen: list[a.Predicate]
) -> None:
    later = data.draw(accounts(base["customers"]))
    backends = {"memory": crmcore.open("memory://"), "sqlite": crmcore.open("sqlite://")}
    try:
        as_of_then(backends, base, later, chosen)
    finally:
        for crm in backends.values():
            crm.close()


@settings(max_examples=25)
@given(base=bases(), data=st.data(), chosen=ABOUT_ACCOUNTS)
def test_rules_as_of_read_the_accounts_of_then_in_postgresql(
    postgres: crmcore.CRM, base: dict[str, list[Any]], data: st.DataObject, chosen: list[a.Predicate]
) -> None:
    later = data.draw(accounts(base["customers"]))
    memory = crmcore.open("memory://")
    try:
        clear(postgres)
        as_of_then({"memory": memory, "postgresql": postgres}, base, later, chosen)
    finally:
        memory.close()


@settings(max_examples=200)
@given(rule=rules)
def test_drawn_rules_cover_the_language(rule: a.Predicate) -> None:
    """Every drawn rule is valid; over a run they reach every kind of node (checked below)."""
    checked(rule)
    kinds = {type(node).__name__ for node in walk(rule)}
    assert kinds


def test_strategies_reach_every_node_kind() -> None:
    seen: set[str] = set()

    @settings(max_examples=400, database=None, derandomize=True)
    @given(rule=rules)
    def collect(rule: a.Predicate) -> None:
        seen.update(type(node).__name__ for node in walk(rule))
        seen.update(f"{node.of}.aggregate" for node in walk(rule)
                    if isinstance(node, a.Aggregate) and node.of)
        seen.update(f"{node.path[0]}.field" for node in walk(rule)
                    if isinstance(node, a.Field) and node.path[0] in a.GROUPS)

    collect()
    expected = {"And", "Or", "Not", "Compare", "In", "Contains", "Between", "IsNull", "IsEmpty", "Birthday",
                "Truth", "Field", "Text", "Number", "Bool", "Day", "Instant", "Now", "Today", "Ago",
                "Aggregate", "Call", "Last", "Since", "account.aggregate", "household.aggregate",
                "account.field", "household.field"}
    assert expected <= seen, expected - seen
