"""Cases that keep their promise, on memory, SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crmcore import CRM, Customer, ServicePoint, ServicePointKind, Team, ValidationError, serialization
from crmcore.errors import CRMError, NotFound
from crmcore.lifecycle import history
from crmcore.model import Agent, BusinessCalendar, Case, CaseStatus, Rung, Target
from crmcore.operational.sla import SlaPolicy, SlaTarget
from crmcore.plugins import make_plugin_manager
from crmcore_adapters.storage import sqlite as sqlite_adapter
from crmcore_adapters.storage.sqlite import SQLiteStorage

from .conftest import MONDAY, Clock, Recorder, at_once, drain, drop_schema, open_backend

PARIS = BusinessCalendar.weekly("Europe/Paris", {"mon-fri": "09:00-17:00"},
                                holidays=(date(2025, 6, 9),))  # Whit Monday


def _desk(crm: CRM) -> None:
    crm.service_points.add(ServicePoint("paris-cc", "Paris call centre", ServicePointKind.CALL_CENTRE,
                                        calendar=PARIS))
    crm.teams.add(Team("complaints", "Complaints", frozenset({"complaints"}), lead="lea"))
    crm.agents.add(Agent("lea", "Léa", team="complaints"))
    crm.agents.add(Agent("bo", "Bo", team="complaints"))
    crm.customers.add(Customer(id="plat", name="Pia", tier="platinum"))
    crm.customers.add(Customer(id="std", name="Sam"))


def test_a_platinum_complaint_gets_a_shorter_promise_in_business_hours(crm: CRM) -> None:
    _desk(crm)
    desk = crm.operational.cases
    vip = desk.open("plat", "complaint", "Router dead", priority="high", service_point="paris-cc")
    usual = desk.open("std", "complaint", "Router dead", priority="high", service_point="paris-cc")
    first = vip.deadline(Target.FIRST_RESPONSE)
    assert first is not None and first.due_at == MONDAY + timedelta(hours=1)
    # platinum/high: resolved within 8 business hours = by Monday 17:00 Paris
    assert vip.sla_due == datetime(2025, 6, 2, 15, tzinfo=UTC)
    # standard/high: 24 business hours = three working days: Mon, Tue, Wed until 17:00 Paris
    assert usual.sla_due == datetime(2025, 6, 4, 15, tzinfo=UTC)
    stored = crm.cases.get(vip.id)
    assert stored == vip and stored.next_check == first.warn_at


def test_the_sweep_takes_each_rung_once_however_often_it_runs(
    crm: CRM, clock: Clock, recorder: Recorder
) -> None:
    _desk(crm)
    desk = crm.operational.cases
    case = desk.open("plat", "complaint", "Router dead", priority="high", service_point="paris-cc",
                     team="complaints")
    crm.cases.change(case.id, agent="bo")
    assert desk.sweep(MONDAY + timedelta(minutes=30)).steps == 0
    report = desk.sweep(MONDAY + timedelta(minutes=50))  # 75 % of the hour to first response
    assert (report.examined, report.steps) == (1, 1)
    for _ in range(3):
        assert desk.sweep(MONDAY + timedelta(minutes=55)).steps == 0
    desk.sweep(MONDAY + timedelta(hours=2))  # first response breached
    late = desk.sweep(datetime(2025, 6, 3, 12, tzinfo=UTC))  # resolution warned and breached
    assert late.steps == 2
    for _ in range(3):
        assert desk.sweep(datetime(2025, 6, 10, tzinfo=UTC)) == type(late)()
    drain(crm)
    mine = recorder.topics(case.id)
    assert mine.count("case.sla_warning") == 2 and mine.count("case.sla_breached") == 2
    assert mine.count("case.escalated") == 2
    swept = crm.cases.get(case.id)
    assert [(str(s.target), str(s.rung)) for s in swept.steps] == [
        ("first_response", "warned"), ("first_response", "breached"),
        ("resolution", "warned"), ("resolution", "breached"),
    ]
    assert swept.agent == "lea" and swept.escalation == 2 and swept.next_check is None
    assert swept.assignment is not None and swept.assignment.rule == "escalation"
    changes = crm.lifecycle.history("case", case.id)  # each sweep that climbed left its change
    assert [c.version for c in changes] == list(range(1, swept.version + 1))
    handed = [c for c in changes[1:] if "agent" in c.diff]  # after the addition
    assert [c.diff["agent"] for c in handed] == [[None, "bo"], ["bo", "lea"]]


def test_a_page_that_fails_leaves_nothing_and_the_next_sweep_takes_it_once(
    crm: CRM, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    _desk(crm)
    desk = crm.operational.cases
    ids = sorted(desk.open("std", "complaint", f"Router {n}", priority="urgent", service_point="paris-cc",
                           team="complaints").id for n in range(5))  # the order they fall due in
    before = [len(crm.lifecycle.history("case", i)) for i in ids]
    real, calls = history.record_many, []

    def crash_on_the_second_page(*args: Any, **kwargs: Any) -> Any:
        written = real(*args, **kwargs)  # the page's cases, events and history are all in
        calls.append(len(written))
        if len(calls) == 2:
            raise RuntimeError("the sweeper dies before its commit")
        return written

    monkeypatch.setattr(history, "record_many", crash_on_the_second_page)
    late = datetime(2025, 6, 20, tzinfo=UTC)
    with pytest.raises(RuntimeError):
        desk.sweep(late, page=2)
    drain(crm)
    swept = [crm.cases.get(i) for i in ids]
    assert [bool(c.steps) for c in swept] == [True, True, False, False, False]  # page 1 whole, page 2 none
    assert {e.aggregate_id for e in recorder.events if e.topic.startswith("case.sla")} == set(ids[:2])
    assert [len(crm.lifecycle.history("case", i)) - n for i, n in zip(ids, before, strict=True)] == [
        1, 1, 0, 0, 0]
    monkeypatch.undo()
    assert desk.sweep(late, page=2).examined == 3 and desk.sweep(late, page=2).examined == 0
    drain(crm)
    for i in ids:
        assert recorder.topics(i).count("case.sla_breached") == 2  # first response, resolution
        assert recorder.topics(i).count("case.escalated") == 2


def test_a_met_promise_is_never_breached(crm: CRM, recorder: Recorder) -> None:
    _desk(crm)
    desk = crm.operational.cases
    case = desk.open("std", "request", "Invoice copy", service_point="paris-cc")
    desk.respond(case.id)
    desk.resolve(case.id, "sent")
    assert desk.sweep(datetime(2026, 1, 1, tzinfo=UTC)).examined == 0
    drain(crm)
    assert "case.sla_breached" not in recorder.topics(case.id)
    assert crm.cases.get(case.id).within_sla is True


def test_waiting_on_the_customer_stops_the_clock(crm: CRM, clock: Clock) -> None:
    _desk(crm)
    desk = crm.operational.cases
    case = desk.open("std", "request", "Proof of address", priority="urgent", service_point="paris-cc")
    due = case.sla_due
    assert due == MONDAY + timedelta(hours=4)
    clock.advance(timedelta(hours=1))
    paused = desk.pause(case.id)
    assert paused.status is CaseStatus.WAITING and paused.next_check is None
    assert desk.sweep(datetime(2025, 6, 20, tzinfo=UTC)).examined == 0
    clock.now = datetime(2025, 6, 3, 9, tzinfo=UTC)  # Tuesday 11:00 Paris: 3 business hours left
    resumed = desk.resume(case.id)
    assert resumed.sla_due == datetime(2025, 6, 3, 12, tzinfo=UTC)
    assert resumed.status is CaseStatus.IN_PROGRESS


def test_reopen_and_merge_duplicates(crm: CRM, clock: Clock) -> None:
    _desk(crm)
    desk = crm.operational.cases
    first = desk.open("plat", "complaint", "No signal", service_point="paris-cc")
    clock.advance(timedelta(minutes=10))
    again = desk.open("plat", "complaint", "No signal (by e-mail)", service_point="paris-cc")
    kept = desk.merge(again.id, into=first.id)
    assert kept.contacts == 2
    gone = crm.cases.get(again.id)
    assert gone.status is CaseStatus.CLOSED and gone.merged_into == first.id
    desk.resolve(first.id, "reset")
    clock.advance(timedelta(hours=1))
    reopened = desk.reopen(first.id)
    assert reopened.status is CaseStatus.IN_PROGRESS and reopened.reopened == 1
    resolution = reopened.deadline(Target.RESOLUTION)
    assert resolution is not None and resolution.met_at is None
    assert resolution.due_at > first.sla_due  # moved by the hour it spent resolved
    with pytest.raises(ValidationError):
        desk.merge(first.id, into=again.id)  # a closed case cannot survive a merge
    other = desk.open("std", "complaint", "Unrelated")
    with pytest.raises(ValidationError):
        desk.merge(other.id, into=first.id)


def test_illegal_moves_and_bad_input_write_nothing(crm: CRM) -> None:
    _desk(crm)
    desk = crm.operational.cases
    case = desk.open("std", "complaint", "Broken")
    desk.close(case.id)
    before = crm.cases.get(case.id)
    for move in (desk.respond, desk.pause, desk.resume, desk.reopen, desk.close):
        with pytest.raises(ValidationError):
            move(case.id)
    assert crm.cases.get(case.id) == before
    count = crm.cases.count()
    with pytest.raises(ValidationError):
        desk.open("std", "complaint", "x", team="nobody-team")
    with pytest.raises(NotFound):
        desk.open("std", "complaint", "x", service_point="atlantis")
    with pytest.raises(NotFound):
        desk.open("ghost", "complaint", "x")
    assert crm.cases.count() == count


@pytest.mark.parametrize("first, done", [
    (timedelta(hours=-1), timedelta(hours=4)), (timedelta(0), timedelta(hours=4)),
    (timedelta(hours=1), timedelta(seconds=-5)), (timedelta(hours=5), timedelta(hours=4)),
])
def test_a_service_level_shorter_than_zero_is_refused(first: timedelta, done: timedelta) -> None:
    with pytest.raises(CRMError):
        SlaTarget(first, done)


def test_a_policy_must_cover_every_priority_and_warn_at_a_fraction() -> None:
    target = SlaTarget(timedelta(hours=1), timedelta(hours=2))
    with pytest.raises(ValidationError):
        SlaPolicy(targets={})
    from crmcore.model import CasePriority

    full = dict.fromkeys(CasePriority, target)
    with pytest.raises(ValidationError):
        SlaPolicy(targets=full, warn_at=1.5)
    assert SlaPolicy(targets=full).target(CasePriority.LOW, "platinum") == target


def test_a_case_stored_before_service_levels_still_loads(tmp_path: Path) -> None:
    """A schema-1 database with a case written by the old code: it migrates and reads back."""
    path = tmp_path / "old.db"
    old = Case("k1", "c1", "complaint", "Old", datetime(2024, 1, 1, tzinfo=UTC),
               sla_due=datetime(2024, 1, 2, tzinfo=UTC), version=1)
    doc = serialization.unstructure(old)
    new_keys = ("deadlines", "steps", "paused_at", "team", "assignment", "escalation",
                "merged_into", "reopened")
    old_doc = {k: v for k, v in doc.items() if k not in new_keys}
    with sqlite3.connect(path) as conn:
        for statement in sqlite_adapter.MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO cases (id, version, customer_id, kind, status, priority, opened_at, "
            "contacts, doc) VALUES ('k1', 1, 'c1', 'complaint', 'open', 2, 0, 1, ?)",
            (json.dumps(old_doc),),
        )
    conn.close()
    store = SQLiteStorage(f"sqlite:///{path}")
    try:
        crm = CRM(store, plugins=make_plugin_manager(load_entry_points=False),
                  clock=lambda: datetime(2025, 1, 1, tzinfo=UTC))
        loaded = crm.cases.get("k1")
        assert loaded.deadlines == () and loaded.next_check is None and loaded.version == 1
        assert crm.operational.cases.sweep().examined == 0
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_sweepers_at_once_emit_each_rung_once(kind: str, tmp_path: Path) -> None:
    store, schema = open_backend(kind, tmp_path)
    recorder = Recorder()
    plugins = make_plugin_manager(load_entry_points=False)
    plugins.register(recorder, name="recorder")
    clock = Clock()
    crm = CRM(store, plugins=plugins, clock=clock)
    try:
        crm.customers.add(Customer(id="c", name="C", tier="platinum"))
        ids = [crm.operational.cases.open("c", "complaint", f"n{n}", priority="urgent").id
               for n in range(40)]
        later = MONDAY + timedelta(days=2)
        at_once(lambda: crm.operational.cases.sweep(later, page=7))
        drain(crm)
        breaches = [(e.aggregate_id, e.payload["target"]) for e in recorder.events
                    if e.topic == "case.sla_breached"]
        assert sorted(breaches) == sorted((i, t) for i in ids for t in ("first_response", "resolution"))
        assert all(len(crm.cases.get(i).steps) == 4 for i in ids)
    finally:
        store.close()
        drop_schema(schema)


def test_history_lists_contacts_ladder_and_outcome(crm: CRM, clock: Clock) -> None:
    _desk(crm)
    desk = crm.operational.cases
    case = desk.open("plat", "complaint", "Router", service_point="paris-cc", team="complaints")
    crm.interactions.log("plat", channel="phone", direction="inbound", case_id=case.id, subject="call")
    clock.now = datetime(2025, 6, 20, tzinfo=UTC)
    desk.sweep()
    clock.advance(timedelta(minutes=5))
    desk.resolve(case.id, "replaced")
    lines = [e.what for e in desk.history(case.id)]
    assert lines[0] == "opened" and "phone inbound" in lines and lines[-1] == "resolved"
    assert "first_response breached" in lines and "assigned to lea" in lines
    assert Rung.BREACHED in {s.rung for s in crm.cases.get(case.id).steps}
