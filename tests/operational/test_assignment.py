"""Assignment rules on every backend, and the indexed filters against a plain scan."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmcore import CRM, Customer, Team, ValidationError, hookimpl
from crmcore.errors import Unassignable
from crmcore.model import Account, Agent, Assignment
from crmcore.operational.assignment import Decider, Staff, WorkItem
from crmcore.plugins import make_plugin_manager
from crmcore.ports import Storage

from .conftest import Clock, Recorder, drain


def _staff(crm: CRM) -> None:
    crm.teams.add(Team("care", "Care", lead="ana"))
    crm.teams.add(Team("sales", "Sales"))
    crm.agents.add(Agent("ana", "Ana", team="care", skills={"complaints"}, languages={"fr", "en"},
                         service_point="paris-cc", capacity=4))
    crm.agents.add(Agent("ben", "Ben", team="care", skills={"complaints", "billing"},
                         languages={"en"}, service_point="lyon-cc", capacity=2))
    crm.agents.add(Agent("cal", "Cal", team="care", skills={"billing"}, languages={"fr"},
                         territories={"paris-cc"}))
    crm.agents.add(Agent("dee", "Dee", team="sales", languages={"fr"}, active=False))
    crm.customers.add(Customer(id="c1", name="Camille", language="fr-FR", service_point="paris-cc"))


def test_by_skill_and_language_the_least_loaded_qualified_agent(crm: CRM, recorder: Recorder) -> None:
    _staff(crm)
    desk = crm.operational.cases
    busy = [desk.open("c1", "complaint", f"old {n}") for n in range(2)]
    for case in busy:
        crm.cases.change(case.id, agent="ana")
    case = desk.open("c1", "complaint", "Bill wrong", team="care")
    assigned = crm.operational.assignment.case(case.id, skills=["complaints"], language="en")
    # ana: 2 open cases of 4 (0.5); ben: 0 of 2 -> ben
    assert assigned.agent == "ben" and assigned.team == "care"
    assert assigned.assignment is not None and assigned.assignment.rule == "least_loaded"
    assert "skill complaints" in assigned.assignment.reason and "ben" in assigned.assignment.reason
    drain(crm)
    made = [e for e in recorder.events if e.topic == "assignment.made"]
    assert made[-1].payload["agent"] == "ben" and made[-1].payload["reason"] == assigned.assignment.reason


def test_round_robin_takes_turns_within_the_pool(crm: CRM) -> None:
    _staff(crm)
    assigner = crm.operational.assignment
    cases = [crm.operational.cases.open("c1", "complaint", f"k{n}", team="care") for n in range(6)]
    picks = []
    for case in cases:
        due = assigner.decide(WorkItem("case", case.id, team="care"), rule="round_robin").agent
        picks.append(assigner.case(case.id, rule="round_robin").agent)
        assert picks[-1] == due  # deciding shows whose turn it is and takes no turn
    assert picks == ["ana", "ben", "cal"] * 2
    billing = crm.operational.cases.open("c1", "complaint", "bill", team="care")
    assert assigner.case(billing.id, rule="round_robin", skills=["billing"]).agent == "ben"  # its own pool


def test_two_crms_on_one_base_share_the_round_robin_turns(
    backend: str, storage: Storage, clock: Clock
) -> None:
    """Turns are a row in the base, taken in the assignment's transaction: two processes
    (here two CRMs over one SQLite file or PostgreSQL schema) alternate instead of each
    keeping its own turn; assigning at once from both, no turn is taken twice."""
    if backend == "memory":
        pytest.skip("a memory base is one process's")
    first = CRM(storage, plugins=make_plugin_manager(load_entry_points=False), clock=clock)
    _staff(first)
    second_storage = type(storage)(storage.url)  # type: ignore[call-arg, attr-defined]
    try:
        second = CRM(second_storage, plugins=make_plugin_manager(load_entry_points=False), clock=clock)
        desks = [first, second] * 3
        cases = [first.operational.cases.open("c1", "complaint", f"k{n}", team="care") for n in range(12)]
        picks = [crm.operational.assignment.case(c.id, rule="round_robin").agent
                 for crm, c in zip(desks, cases[:6], strict=True)]
        assert picks == ["ana", "ben", "cal"] * 2
        rest, lock, errors = iter(cases[6:]), threading.Lock(), []

        def assign(crm: CRM) -> None:
            try:
                with lock:
                    case = next(rest)
                crm.operational.assignment.case(case.id, rule="round_robin")
            except Exception as exc:  # reported below: a thread's error must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=assign, args=(crm,)) for crm in desks]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        # six consecutive turns among three agents: two each, whatever the order of the threads
        assert Counter(first.cases.get(c.id).agent for c in cases[6:]) == {"ana": 2, "ben": 2, "cal": 2}
    finally:
        second_storage.close()


@contextmanager
def _other_process(storage: Storage, clock: Clock) -> Iterator[CRM]:
    """A second CRM on the same base, on its own connections, as another process has."""
    other = type(storage)(storage.url)  # type: ignore[call-arg, attr-defined]
    try:
        yield CRM(other, plugins=make_plugin_manager(load_entry_points=False), clock=clock)
    finally:
        other.close()


def test_the_kept_staff_index_follows_what_another_crm_changes(
    backend: str, storage: Storage, clock: Clock
) -> None:
    """The index of the staff is kept between decisions while the storage's staff generation
    stands; a change made through another CRM raises it, and the next decision sees it. The
    load is read for every decision, so the other CRM's assignments count at once too."""
    if backend == "memory":
        pytest.skip("a memory base is one process's")
    first = CRM(storage, plugins=make_plugin_manager(load_entry_points=False), clock=clock)
    _staff(first)
    assigner = first.operational.assignment
    billing = WorkItem("case", "k", skills=frozenset({"billing"}), team="care")
    with _other_process(storage, clock) as second:
        assert assigner.decide(billing).agent == "ben"  # ben 0 of 2, cal 0 of 1: by id
        with first.reading() as uow:
            kept = assigner.staff(uow)
        with first.reading() as uow:
            assert assigner.staff(uow) is kept  # nothing changed: nothing read again
        second.agents.change("ben", active=False)
        assert assigner.decide(billing).agent == "cal"
        second.agents.add(Agent("abe", "Abe", team="care", skills={"billing"}, capacity=2))
        assert assigner.decide(billing).agent == "abe"
        with pytest.raises(ValidationError):
            assigner.decide(WorkItem("case", "k", team="night"))
        second.teams.add(Team("night", "Night shift"))
        with pytest.raises(Unassignable):  # a team now, with nobody in it
            assigner.decide(WorkItem("case", "k", team="night"))
        case = second.operational.cases.open("c1", "complaint", "bill", team="care")
        assert second.operational.assignment.case(case.id, skills=["billing"]).agent == "abe"
        assert assigner.decide(billing).agent == "cal"  # abe has 1 of 2 now, cal 0 of 1


def test_a_staff_change_undone_is_never_kept(crm: CRM) -> None:
    """Inside the transaction that changes the staff its decisions see the change, but that
    index is not kept: undone, the number it would be kept under comes back with other staff."""
    _staff(crm)
    assigner = crm.operational.assignment
    billing = WorkItem("case", "k", skills=frozenset({"billing"}), team="care")
    assert assigner.decide(billing).agent == "ben"
    with pytest.raises(RuntimeError), crm.transaction():
        crm.agents.add(Agent("aaron", "Aaron", team="care", skills={"billing"}, capacity=5))
        assert assigner.decide(billing).agent == "aaron"
        raise RuntimeError("undone")
    assert assigner.decide(billing).agent == "ben"
    crm.agents.add(Agent("abe", "Abe", team="care", skills={"billing"}, capacity=5))
    assert assigner.decide(billing).agent == "abe"
    crm.agents.change("abe", skills={"fraud"})
    assert assigner.decide(billing).agent == "ben"


def test_two_crms_assigning_by_load_at_once_share_the_load(
    backend: str, storage: Storage, clock: Clock
) -> None:
    """Assignments by load take turns on a row of the base, each reading the load the one
    before it left: seven at once from two CRMs end as seven one after the other would,
    in proportion to the capacities (ana 4, ben 2, cal 1)."""
    if backend == "memory":
        pytest.skip("a memory base is one process's")
    first = CRM(storage, plugins=make_plugin_manager(load_entry_points=False), clock=clock)
    _staff(first)
    cases = [first.operational.cases.open("c1", "complaint", f"k{n}", team="care") for n in range(7)]
    with _other_process(storage, clock) as second:
        rest, lock, errors = iter(cases), threading.Lock(), []

        def assign(crm: CRM) -> None:
            try:
                with lock:
                    case = next(rest)
                crm.operational.assignment.case(case.id)
            except Exception as exc:  # reported below: a thread's error must fail the test
                errors.append(exc)

        threads = [threading.Thread(target=assign, args=(crm,)) for crm in [first, second] * 3 + [first]]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
    assert Counter(first.cases.get(c.id).agent for c in cases) == {"ana": 4, "ben": 2, "cal": 1}


def test_territory_and_ownership_of_customers_accounts_and_opportunities(crm: CRM) -> None:
    _staff(crm)
    assigner = crm.operational.assignment
    decided = assigner.customer("c1", skills=["billing"])  # language fr, territory paris-cc
    assert decided.agent == "cal" and crm.customers.get("c1").owner == "cal"
    crm.operational.accounts.add(Account("acme", "ACME", service_point="paris-cc"))
    assert assigner.account("acme", language="en").agent == "ana"
    stored = crm.operational.accounts.get("acme")
    assert stored.owner == "ana" and stored.assignment is not None
    deal = crm.opportunities.open("c1", "Fibre for ACME")
    assert assigner.opportunity(deal.id, team="care", rule="round_robin").agent in {"ana", "ben", "cal"}
    assert crm.opportunities.get(deal.id).owner is not None


def test_every_owned_record_keeps_why_its_owner_was_chosen_and_its_history_says_so(
    crm: CRM, clock: Clock
) -> None:
    """Customers, opportunities, accounts and cases keep the `Assignment` with the owner,
    and the change is in the record's history: owner and explanation, old and new."""
    _staff(crm)
    assigner = crm.operational.assignment
    crm.operational.accounts.add(Account("acme", "ACME", service_point="paris-cc"))
    deal = crm.opportunities.open("c1", "Fibre for ACME")
    case = crm.operational.cases.open("c1", "complaint", "x", team="care")
    decided = {
        "customer": ("c1", assigner.customer("c1", skills=["billing"]), crm.customers.get),
        "opportunity": (deal.id, assigner.opportunity(deal.id, team="care", skills=["billing"]),
                        crm.opportunities.get),
        "account": ("acme", assigner.account("acme", language="en"), crm.operational.accounts.get),
        "case": (case.id, assigner.case(case.id, language="en").assignment, crm.cases.get),
    }
    for kind, (record_id, assignment, read) in decided.items():
        assert assignment is not None and assignment.at == clock.now, kind
        stored: Any = read(record_id)
        owner = stored.agent if kind == "case" else stored.owner
        assert (owner, stored.assignment) == (assignment.agent, assignment), kind
        assert assignment.reason.startswith("1 agent(s)") or "least loaded" in assignment.reason
        last = crm.lifecycle.history(kind, record_id)[-1]
        owned = "agent" if kind == "case" else "owner"
        assert last.diff[owned] == [None, assignment.agent], kind
        before, after = last.diff["assignment"]
        assert before is None and after["reason"] == assignment.reason and after["rule"] == "least_loaded"
    # a second assignment replaces the explanation; the history keeps both
    crm.agents.change("cal", active=False)
    again = assigner.customer("c1", skills=["complaints"], language="en", territory=None)
    assert crm.customers.get("c1").assignment == again and again.agent == "ben"  # ana has the case
    old, new = crm.lifecycle.history("customer", "c1")[-1].diff["assignment"]
    assert old["agent"] == "cal" and new["agent"] == "ben"


def test_an_unknown_team_or_nobody_qualified_is_refused_and_nothing_is_written(
    crm: CRM, recorder: Recorder
) -> None:
    _staff(crm)
    case = crm.operational.cases.open("c1", "complaint", "x")
    drain(crm)
    before, seen = crm.cases.get(case.id), len(recorder.events)
    with pytest.raises(ValidationError):
        crm.operational.assignment.case(case.id, team="ghosts")
    with pytest.raises(Unassignable):
        crm.operational.assignment.case(case.id, skills=["plumbing"])
    with pytest.raises(Unassignable):
        crm.operational.assignment.case(case.id, team="sales")  # its only agent is inactive
    with pytest.raises(ValidationError):
        crm.operational.assignment.case(case.id, rule="coin_toss")
    drain(crm)
    assert crm.cases.get(case.id) == before and len(recorder.events) == seen


class VipDesk:
    """A company rule: platinum customers' cases always go to ana."""

    @hookimpl
    def crmcore_assign(self, item: WorkItem, candidates: list[Agent], now: datetime) -> Assignment | None:
        if item.kind == "case" and any(a.id == "ana" for a in candidates) and item.customer_id == "vip":
            return Assignment("ana", "vip_desk", "platinum customers go to the VIP desk", now, "care")
        return None


def test_a_company_rule_decides_first(crm: CRM) -> None:
    _staff(crm)
    crm.plugins.register(VipDesk())
    crm.customers.add(Customer(id="vip", name="V", tier="platinum"))
    vip = crm.operational.cases.open("vip", "complaint", "x")
    usual = crm.operational.cases.open("c1", "complaint", "y")
    assert crm.operational.assignment.case(vip.id, team="care").assignment == Assignment(
        "ana", "vip_desk", "platinum customers go to the VIP desk", crm.clock(), "care")
    assert crm.operational.assignment.case(usual.id, team="care").assignment.rule == "least_loaded"  # type: ignore[union-attr]


NAMES = st.sampled_from(["a", "b", "c", "d"])


@st.composite
def agents(draw: st.DrawFn) -> list[Agent]:
    count = draw(st.integers(0, 25))
    return [Agent(
        f"ag{n}", f"Agent {n}", team=draw(st.sampled_from([None, "t1", "t2"])),
        service_point=draw(st.sampled_from([None, "p1", "p2"])),
        skills=draw(st.frozensets(NAMES, max_size=3)), languages=draw(st.frozensets(NAMES, max_size=2)),
        territories=draw(st.frozensets(st.sampled_from(["p1", "p2", "z"]), max_size=2)),
        capacity=draw(st.integers(1, 5)), active=draw(st.booleans()),
    ) for n in range(count)]


@given(agents(), st.frozensets(NAMES, max_size=2), st.sampled_from([None, "a", "b"]),
       st.sampled_from([None, "t1", "t2"]), st.sampled_from([None, "p1", "z"]),
       st.dictionaries(st.sampled_from([f"ag{n}" for n in range(25)]), st.integers(0, 9)))
def test_indexed_filters_and_least_loaded_agree_with_a_plain_scan(
    staff: list[Agent], skills: frozenset[str], language: str | None, team: str | None,
    place: str | None, loads: dict[str, int],
) -> None:
    item = WorkItem("case", "k", skills, language, team, territory=place)
    expected = [a for a in staff if a.active and (team is None or a.team == team)
                and skills <= a.skills and (language is None or language in a.languages)
                and (place is None or place == a.service_point or place in a.territories)]
    found, _ = Staff(staff).candidates(item)
    assert [a.id for a in found] == sorted(a.id for a in expected)
    now = datetime(2025, 1, 1, tzinfo=UTC)
    if not expected:
        with pytest.raises(Unassignable):
            Decider().choose("least_loaded", item, found, loads, [], now)
        return
    chosen = Decider().choose("least_loaded", item, found, loads, [], now)
    best = min(loads.get(a.id, 0) / a.capacity for a in expected)
    winner = next(a for a in expected if a.id == chosen.agent)
    assert loads.get(winner.id, 0) / winner.capacity == best
