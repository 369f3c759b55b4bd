"""Merges and unmerges against a plain model: random adds, edits, contacts, merges,
unmerges and erasures; after every step the records and their rows equal the model's."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import crmcore
from crmcore.model import Customer
from tests.lifecycle.conftest import T0, Clock
from tests.support import postgres_url

TIERS = st.sampled_from((None, "gold", "silver"))
TAGS = st.frozensets(st.sampled_from(("vip", "web", "b2b")))
SEEN = ("name", "emails", "phones", "tags", "tier")


@attrs.frozen
class Journal:
    id: str
    survivor: str
    merged: Customer
    before: Customer
    after: Customer
    moved: frozenset[str]


def merged_view(a: Customer, b: Customer) -> Customer:
    """What the default survivorship policy promises for the fields this model edits."""
    emails = (*a.emails, *(e for e in b.emails if e.lower() not in {x.lower() for x in a.emails}))
    phones = (*a.phones, *(p for p in b.phones if p not in a.phones))
    return attrs.evolve(a, emails=emails, phones=phones, tags=a.tags | b.tags, tier=a.tier or b.tier)


def separated(now: Customer, j: Journal) -> Customer:
    """The unmerge rule: untouched fields go back; later-written ones keep their value,
    less what came only from the merged record."""
    changes: dict[str, Any] = {}
    for name in SEEN:
        current, after, before, theirs = (getattr(x, name) for x in (now, j.after, j.before, j.merged))
        if current == after:
            changes[name] = before
        elif isinstance(current, tuple | frozenset):
            kept = [x for x in current if x not in theirs or x in before]
            changes[name] = frozenset(kept) if isinstance(current, frozenset) else tuple(kept)
    return attrs.evolve(now, **changes)


class MergeMachine(RuleBasedStateMachine):
    def __init__(self, open_crm: Callable[[Clock], crmcore.CRM]) -> None:
        super().__init__()
        self.clock = Clock()
        self.crm = open_crm(self.clock)
        self.people: dict[str, Customer] = {}
        self.owner: dict[str, str] = {}
        self.journals: list[Journal] = []
        self.count = 0

    def teardown(self) -> None:
        self.crm.close()

    def _pick(self, data: st.DataObject) -> str:
        return data.draw(st.sampled_from(sorted(self.people)))

    @rule(tier=TIERS, tags=TAGS, phone=st.sampled_from(((), ("+33123456789",), ("+33999999999",))))
    def add(self, tier: str | None, tags: frozenset[str], phone: tuple[str, ...]) -> None:
        self.count += 1
        self.clock.tick(minutes=1)
        made = Customer(f"c{self.count:03d}", f"Person {self.count}", emails=(f"p{self.count}@x.org",),
                        phones=phone, tier=tier, tags=tags, created_at=T0, updated_at=T0)
        self.people[made.id] = self.crm.customers.add(made)

    @precondition(lambda self: self.people)
    @rule(data=st.data(), tier=TIERS, tags=TAGS)
    def edit(self, data: st.DataObject, tier: str | None, tags: frozenset[str]) -> None:
        self.clock.tick(minutes=1)
        who = self._pick(data)
        self.people[who] = self.crm.customers.change(who, tier=tier, tags=tags)

    @precondition(lambda self: self.people)
    @rule(data=st.data())
    def contact(self, data: st.DataObject) -> None:
        who = self._pick(data)
        self.count += 1
        logged = self.crm.interactions.log(who, channel="phone", direction="inbound", id=f"i{self.count}")
        self.owner[logged.id] = who

    @precondition(lambda self: len(self.people) >= 2)
    @rule(data=st.data())
    def merge(self, data: st.DataObject) -> None:
        a, b = data.draw(st.lists(st.sampled_from(sorted(self.people)), min_size=2, max_size=2, unique=True))
        self.clock.tick(minutes=1)
        record = self.crm.lifecycle.merge(a, b)
        after = self.crm.customers.get(a)
        expected = merged_view(self.people[a], self.people[b])
        assert [getattr(after, f) for f in SEEN] == [getattr(expected, f) for f in SEEN]
        moved = frozenset(i for i, o in self.owner.items() if o == b)
        assert set(record.moved["interactions"]) == moved
        self.owner.update(dict.fromkeys(moved, a))
        self.journals.append(Journal(record.id, a, self.people.pop(b), self.people[a], after, moved))
        self.people[a] = after

    @precondition(lambda self: any(j.survivor in self.people and j.merged.id not in self.people
                                   for j in self.journals))
    @rule(data=st.data())
    def unmerge(self, data: st.DataObject) -> None:
        open_ = [j for j in self.journals if j.survivor in self.people and j.merged.id not in self.people]
        journal = data.draw(st.sampled_from(open_))
        self.clock.tick(minutes=1)
        survivor, restored = self.crm.lifecycle.unmerge(journal.id)
        assert restored == journal.merged  # exactly as it was, version included
        expected = separated(self.people[journal.survivor], journal)
        assert [getattr(survivor, f) for f in SEEN] == [getattr(expected, f) for f in SEEN]
        self.people[journal.survivor] = survivor
        self.people[journal.merged.id] = restored
        self.owner.update(dict.fromkeys(journal.moved, journal.merged.id))
        self.journals.remove(journal)

    @precondition(lambda self: self.people)
    @rule(data=st.data())
    def erase(self, data: st.DataObject) -> None:
        who = self._pick(data)
        self.crm.lifecycle.erase_person(who)
        del self.people[who]
        folded = {j.merged.id for j in self.journals if j.survivor == who}
        self.owner = {i: o for i, o in self.owner.items() if o != who}
        self.journals = [j for j in self.journals if who not in (j.survivor, j.merged.id)
                         and j.survivor not in folded]

    @invariant()
    def same_records_and_rows(self) -> None:
        with self.crm.reading() as uow:
            stored = {c.id: c for c in uow.customers.list()}
            owners = {i.id: i.customer_id for i in uow.interactions.list()}
        assert stored.keys() == self.people.keys()
        for id, customer in stored.items():
            assert [getattr(customer, f) for f in SEEN] == [getattr(self.people[id], f) for f in SEEN]
        assert owners == self.owner


SETTINGS = settings(max_examples=25, stateful_step_count=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("url", ["memory://", "sqlite://"])
def test_merges_and_unmerges_match_the_model(url: str) -> None:
    run_state_machine_as_test(lambda: MergeMachine(lambda clock: crmcore.open(url, clock=clock)),
                              settings=SETTINGS)


def test_merges_and_unmerges_match_the_model_on_postgresql() -> None:
    server = postgres_url()
    schemas: list[str] = []

    def fresh(clock: Clock) -> crmcore.CRM:
        schemas.append(f"crmcore_mm_{uuid.uuid4().hex[:12]}")
        return crmcore.open(f"{server}{'&' if '?' in server else '?'}schema={schemas[-1]}", clock=clock)

    try:
        run_state_machine_as_test(lambda: MergeMachine(fresh), settings=settings(
            SETTINGS, max_examples=8))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_events_hooks_and_refusals() -> None:
    class Plugin:
        def __init__(self) -> None:
            self.moved: list[tuple[str, str]] = []
            self.undone: list[dict[str, Any]] = []

        @crmcore.hookimpl
        def crmcore_survivorship(self, survivor: Customer, merged: Customer, proposed: Customer) -> Customer:
            return attrs.evolve(proposed, name=max(survivor.name, merged.name, key=len))

        @crmcore.hookimpl
        def crmcore_on_merge(self, crm: crmcore.CRM, survivor_id: str, merged_id: str) -> dict[str, Any]:
            self.moved.append((merged_id, survivor_id))
            return {"loyalty": {"points": 40}}

        @crmcore.hookimpl
        def crmcore_on_unmerge(self, crm: crmcore.CRM, survivor_id: str, merged_id: str,
                               journal: dict[str, Any]) -> None:
            self.undone.append(journal)

        @crmcore.hookimpl
        def crmcore_on_event(self, event: Any) -> None:
            self.events.append(event.topic)

    from crmcore.plugins import make_plugin_manager

    plugin = Plugin()
    plugin.events = []  # type: ignore[attr-defined]
    pm = make_plugin_manager()
    pm.register(plugin)
    clock = Clock()
    with crmcore.open("sqlite://", plugins=pm, clock=clock) as crm:
        crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
        crm.customers.add(Customer.new("Ann Lovelace", id="b", created_at=T0 - timedelta(days=9)))
        with crm.acting_as("user:zoe"):
            record = crm.lifecycle.merge("a", "b")
        assert record.actor == "user:zoe" and record.plugins == {"loyalty": {"points": 40}}
        survivor = crm.customers.get("a")
        assert survivor.name == "Ann Lovelace" and survivor.created_at == T0 - timedelta(days=9)
        assert plugin.moved == [("b", "a")]
        assert "customer.merged" in plugin.events  # type: ignore[attr-defined]
        with pytest.raises(crmcore.ValidationError):
            crm.lifecycle.merge("a", "a")
        with pytest.raises(crmcore.errors.NotFound):
            crm.lifecycle.merge("a", "b")
        crm.lifecycle.unmerge(record.id)
        assert plugin.undone == [{"loyalty": {"points": 40}}]
        assert "customer.unmerged" in plugin.events  # type: ignore[attr-defined]
        with pytest.raises(crmcore.ValidationError):
            crm.lifecycle.unmerge(record.id)
        assert [j.undone_at for j in crm.lifecycle.merges("b")] == [clock.now]
