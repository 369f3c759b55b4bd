"""True as-of: a rule evaluated as of an instant sees each customer as they were then.

Random bases get random edit histories (tier, lifecycle, country, custom attributes,
tags, consents) written through the CRM at increasing instants; at random instants,
every engine and backend must agree with a plain model: a fresh base holding the
records exactly as they were at that instant (the snapshots the test kept), with
no history at all, evaluated at the same instant.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.lifecycle import states
from crmcore.model import Channel, Consent, Customer, PostalAddress
from crmcore.segments import ast as a
from crmcore.segments import explain, parse, select_ids, to_text
from crmcore.sql.dialect import INDEXED_TAGS
from tests.lifecycle.conftest import Clock
from tests.segments.strategies import (
    AS_OF,
    COUNTRIES,
    KEYS,
    PURPOSES,
    TAGS,
    TIERS,
    attribute_values,
    bases,
    instants,
    rules,
)
from tests.support import postgres_url

START = AS_OF - timedelta(days=3)

MANY_TAGS = frozenset(f"more{n:02d}" for n in range(INDEXED_TAGS + 1))
"""Added to some edits' tags: a state with more than `INDEXED_TAGS` is kept apart on
PostgreSQL (`Dialect.state_parts`), and read by a branch of its own."""
edits_fields = st.fixed_dictionaries({}, optional={
    "tier": st.sampled_from((*TIERS, None)),
    "lifecycle": st.sampled_from(("lead", "prospect", "customer", "former_customer")),
    "addresses": st.sampled_from(COUNTRIES).map(lambda c: (PostalAddress(c),)) | st.just(()),
    "attributes": st.dictionaries(st.sampled_from(KEYS), attribute_values, max_size=3),
    "tags": st.frozensets(st.sampled_from(TAGS)).flatmap(
        lambda tags: st.sampled_from((tags, tags | MANY_TAGS))),
    "consents": st.lists(st.tuples(st.sampled_from(PURPOSES), st.sampled_from(("email", "phone")),
                                   st.sampled_from(("granted", "withdrawn")), instants),
                         unique_by=lambda t: (t[0], t[1]), max_size=2).map(
        lambda items: tuple(Consent(p, Channel(c), s, at, "test") for p, c, s, at in items)),
})
REMOVE: dict[str, Any] = {"remove": True}
histories = st.lists(st.tuples(st.integers(0, 6), st.integers(1, 30) | st.sampled_from((600, 1440, 2887)),
                               edits_fields | st.just(REMOVE)), max_size=10)
"""(which customer, minutes after the previous edit, fields it changes or REMOVE); gaps of
half a day and more put the edits on several days (the states are indexed by day)."""


class Recorded:
    """A base written through the CRM with its history, and the snapshots a plain model keeps."""

    def __init__(self, base: dict[str, list[Any]], edits: list[tuple[int, int, dict[str, Any]]]) -> None:
        self.base = base
        self.edits = edits
        self.snapshots: dict[str, list[tuple[datetime, Customer | None]]] = {}
        self.gone: set[str] = set()
        """Customers removed: their purchases, contacts, cases and scores went with them."""

    def write(self, crm: crmcore.CRM, clock: Clock) -> None:
        """Every other customer added through the CRM (with history), the rest imported
        (no history: their state before a later edit is only in today's row or the edit)."""
        clock.now = START
        self.gone = set()
        people = self.base["customers"]
        for person in people[::2]:
            self.snapshots[person.id] = [(clock.now, crm.customers.add(person))]
        crm.bulk_import(people[1::2])
        for person in people[1::2]:  # as it is, since its creation: nothing says otherwise
            self.snapshots[person.id] = [(min(person.created_at, START), person)]
        crm.bulk_import([*self.base["purchases"], *self.base["interactions"]])
        with crm.transaction() as uow:
            for case in self.base["cases"]:
                uow.cases.add(case)
            uow.scores.put(self.base["scores"])
        for index, minutes, fields in self.edits:
            if not people:
                return
            clock.tick(minutes=minutes)
            target = people[index % len(people)].id
            if target in self.gone:
                continue
            if fields is REMOVE:
                crm.customers.remove(crm.customers.get(target))
                self.snapshots[target].append((clock.now, None))
                self.gone.add(target)
            else:
                self.snapshots[target].append((clock.now, crm.customers.change(target, **fields)))

    def at(self, instant: datetime) -> dict[str, list[Any]]:
        """The base as it was at `instant`: each record's last snapshot taken by then."""
        people = []
        for shots in self.snapshots.values():
            seen = [c for at, c in shots if at <= instant]
            if seen and seen[-1] is not None:
                people.append(_unstored(seen[-1]))
        alive = {c.id for c in people} - self.gone
        return {"customers": people,
                "purchases": [p for p in self.base["purchases"] if p.customer_id in alive],
                "interactions": [i for i in self.base["interactions"] if i.customer_id in alive],
                "cases": [k for k in self.base["cases"] if k.customer_id in alive],
                "scores": [s for s in self.base["scores"] if s.customer_id in alive]}

    def instants(self) -> list[datetime]:
        times = sorted({at for shots in self.snapshots.values() for at, _ in shots})
        return [START - timedelta(minutes=1), *times, *(t + timedelta(seconds=30) for t in times)]


def _unstored(customer: Customer) -> Customer:
    import attrs

    return attrs.evolve(customer, version=0)


def model_members(base: dict[str, list[Any]], rule: a.Predicate, instant: datetime) -> list[str]:
    """The plain model: a history-free base of the records as they were, evaluated at `instant`."""
    with crmcore.open("memory://") as model:
        model.bulk_import([*base["customers"], *base["purchases"], *base["interactions"]])
        with model.transaction() as uow:
            for case in base["cases"]:
                uow.cases.add(case)
            uow.scores.put(base["scores"])
            return sorted(select_ids(uow, rule, as_of=instant, engine="python"))


def members(crm: crmcore.CRM, rule: a.Predicate, instant: datetime, engine: str = "auto") -> list[str]:
    with crm.transaction() as uow:
        return sorted(select_ids(uow, rule, as_of=instant, engine=engine))


def check(crm: crmcore.CRM, recorded: Recorded, chosen: list[a.Predicate], picks: list[int]) -> None:
    moments = recorded.instants()
    for rule, pick in zip(chosen, picks, strict=False):
        instant = moments[pick % len(moments)]
        expected = model_members(recorded.at(instant), rule, instant)
        assert members(crm, rule, instant) == expected, (to_text(rule), instant)
        assert members(crm, rule, instant, "python") == expected, (to_text(rule), instant)
        # matching hands out the records as they were then, those removed since included
        then = {c.id: c for c in recorded.at(instant)["customers"]}
        found = crm.customers.matching(rule, as_of=instant)
        assert [c.id for c in found] == expected
        assert [(c.name, c.tier, c.lifecycle, c.tags) for c in found] == [
            (then[i].name, then[i].tier, then[i].lifecycle, then[i].tags) for i in expected]


@settings(max_examples=50, deadline=None)
@given(base=bases(), edits=histories, chosen=st.lists(rules, min_size=1, max_size=3),
       picks=st.lists(st.integers(0, 100), min_size=3, max_size=3))
def test_memory_and_sqlite_read_the_past(
    base: dict[str, list[Any]], edits: list[Any], chosen: list[a.Predicate], picks: list[int]
) -> None:
    recorded = Recorded(base, edits)
    for url in ("memory://", "sqlite://"):
        clock = Clock()
        with crmcore.open(url, clock=clock) as crm:
            recorded.snapshots = {}
            recorded.write(crm, clock)
            check(crm, recorded, chosen, picks)


@pytest.fixture(scope="module")
def postgres_schema() -> Iterator[str]:
    server = postgres_url()
    schema = f"crmcore_asof_{uuid.uuid4().hex[:12]}"
    yield f"{server}{'&' if '?' in server else '?'}schema={schema}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


TABLES = ("customers", "customer_emails", "customer_phones", "customer_external_ids", "purchases",
          "interactions", "cases", "scores", "outbox", "history", "customer_states")


@settings(max_examples=25, deadline=None)
@given(base=bases(), edits=histories, chosen=st.lists(rules, min_size=1, max_size=3),
       picks=st.lists(st.integers(0, 100), min_size=3, max_size=3))
def test_postgresql_reads_the_past(
    postgres_schema: str, base: dict[str, list[Any]], edits: list[Any], chosen: list[a.Predicate],
    picks: list[int],
) -> None:
    recorded = Recorded(base, edits)
    clock = Clock()
    with crmcore.open(postgres_schema, clock=clock) as crm:
        with crm.transaction() as uow:
            for table in TABLES:
                uow.cur.execute(f"DELETE FROM {table}")  # type: ignore[attr-defined]
        recorded.write(crm, clock)
        check(crm, recorded, chosen, picks)


def test_a_span_of_more_days_than_sought_one_by_one_is_read_as_one_range(clock: Clock) -> None:
    """Changes decades apart (an odd clock): the days between are not sought one by one
    (`states.SEEKS`) but read as one range, with the same answers."""
    with crmcore.open("sqlite://", clock=clock) as crm:
        clock.now = START - timedelta(days=365 * 30)
        crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=clock.now))
        crm.customers.add(Customer.new("Bob", id="bob", tier="silver", created_at=clock.now))
        clock.tick(minutes=5)
        crm.customers.change("bob", tier="gold")
        clock.now = START
        crm.customers.change("ann", tier="gold")
        early = START - timedelta(days=365 * 20)
        with crm.transaction() as uow:
            assert len(states.days(uow.select, uow.dialect, early)) > states.SEEKS  # type: ignore[attr-defined]
            assert "BETWEEN" in (explain(uow, 'tier = "gold"', as_of=early).sql or "")
        for instant, gold in [(early, ["bob"]), (START - timedelta(minutes=1), ["bob"]),
                              (START, ["ann", "bob"])]:
            assert members(crm, parse('tier = "gold"'), instant) == gold
            assert members(crm, parse('tier = "gold"'), instant, "python") == gold


def test_explain_shows_the_past_read_in_sql(clock: Clock) -> None:
    with crmcore.open("sqlite://", clock=clock) as crm:
        crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=clock.now))
        clock.tick(days=1)
        crm.customers.change("ann", tier="gold")
        with crm.reading() as uow:
            past = explain(uow, 'tier = "silver"', as_of=clock.now - timedelta(hours=1))
            present = explain(uow, 'tier = "silver"', as_of=clock.now)
        assert past.engine == "sql" and "customer_states" in (past.sql or "")
        assert present.engine == "sql" and "customer_states" not in (present.sql or "")
        assert crm.customers.ids_matching('tier = "silver"', as_of=clock.now - timedelta(hours=1)) == ["ann"]
        assert crm.customers.ids_matching('tier = "silver"') == []
