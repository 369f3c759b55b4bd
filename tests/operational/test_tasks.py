"""Tasks through the CRM on every backend: views, reminders exactly once, bad input."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from crmcore import CRM, Customer, ValidationError
from crmcore.errors import NotFound
from crmcore.model import Agent, TaskStatus
from crmcore.plugins import make_plugin_manager

from .conftest import MONDAY, Clock, Recorder, at_once, drain, drop_schema, open_backend


def _people(crm: CRM) -> None:
    crm.agents.add(Agent("ana", "Ana"))
    crm.agents.add(Agent("bo", "Bo"))
    crm.customers.add(Customer(id="c1", name="Camille"))


def test_my_open_tasks_and_overdue(crm: CRM, clock: Clock) -> None:
    _people(crm)
    tasks = crm.operational.tasks
    case = crm.operational.cases.open("c1", "request", "Copy of invoice")
    call = tasks.create("Call back", owner="ana", customer_id="c1", due_at=MONDAY + timedelta(hours=2))
    send = tasks.create("Send invoice", owner="ana", case_id=case.id, due_at=MONDAY + timedelta(hours=1))
    someday = tasks.create("Tidy notes", owner="ana")
    tasks.create("Other's", owner="bo", due_at=MONDAY + timedelta(minutes=5))
    assert [t.id for t in tasks.open_for("ana")] == [send.id, call.id, someday.id]
    clock.advance(timedelta(minutes=90))
    assert [t.title for t in tasks.overdue()] == ["Other's", "Send invoice"]
    assert [t.title for t in tasks.overdue(owner="ana")] == ["Send invoice"]
    done = tasks.complete(send.id, "sent by post")
    assert done.status is TaskStatus.DONE and done.completed_at == clock.now
    assert tasks.overdue(owner="ana") == []
    with pytest.raises(ValidationError):
        tasks.complete(send.id)


def test_reminders_go_out_once_however_often_the_sweep_runs(
    crm: CRM, clock: Clock, recorder: Recorder
) -> None:
    _people(crm)
    tasks = crm.operational.tasks
    soon = tasks.create("Soon", owner="ana", remind_at=MONDAY + timedelta(minutes=30),
                        due_at=MONDAY + timedelta(hours=1))
    later = tasks.create("Later", owner="bo", remind_at=MONDAY + timedelta(hours=3))
    cancelled = tasks.create("Dropped", owner="bo", remind_at=MONDAY + timedelta(minutes=10))
    tasks.cancel(cancelled.id, "customer withdrew")
    assert tasks.remind(MONDAY + timedelta(minutes=20)) == 0
    assert tasks.remind(MONDAY + timedelta(hours=1), page=1) == 1
    assert tasks.remind(MONDAY + timedelta(hours=1)) == 0
    assert tasks.remind(MONDAY + timedelta(hours=5)) == 1
    assert tasks.remind(MONDAY + timedelta(days=5)) == 0
    drain(crm)
    reminded = [e.aggregate_id for e in recorder.events if e.topic == "task.reminder"]
    assert reminded == [soon.id, later.id]


def test_bad_tasks_are_refused_and_nothing_is_written(crm: CRM, clock: Clock) -> None:
    _people(crm)
    tasks = crm.operational.tasks
    with pytest.raises(ValidationError) as caught:
        tasks.create("Back in time", due_at=MONDAY - timedelta(seconds=1))
    assert caught.value.field == "due_at"
    with pytest.raises(ValidationError):
        tasks.create("x", remind_at=MONDAY - timedelta(days=1))
    with pytest.raises(ValidationError):
        tasks.create("x", owner="nobody")
    with pytest.raises(ValidationError):
        tasks.create("x", case_id="no-such-case")
    with pytest.raises(ValidationError):
        tasks.create("", owner="ana")
    with pytest.raises(NotFound):
        tasks.reassign("missing", "ana")
    assert tasks.open_for("ana") == [] and tasks.overdue(now=MONDAY + timedelta(days=900)) == []


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_reminder_sweeps_at_once_remind_each_task_once(kind: str, tmp_path: Path) -> None:
    store, schema = open_backend(kind, tmp_path)
    recorder = Recorder()
    plugins = make_plugin_manager(load_entry_points=False)
    plugins.register(recorder, name="recorder")
    crm = CRM(store, plugins=plugins, clock=Clock())
    try:
        crm.agents.add(Agent("ana", "Ana"))
        ids = [crm.operational.tasks.create(f"t{n}", owner="ana",
                                            remind_at=MONDAY + timedelta(minutes=n)).id
               for n in range(30)]
        at_once(lambda: crm.operational.tasks.remind(MONDAY + timedelta(hours=1), page=4))
        drain(crm)
        reminded = [e.aggregate_id for e in recorder.events if e.topic == "task.reminder"]
        assert sorted(reminded) == sorted(ids)
    finally:
        store.close()
        drop_schema(schema)


@pytest.mark.parametrize("page", [0, -5, 10_001, 2.5, True, "a", None])
def test_a_sweep_refuses_a_page_it_cannot_take(crm: CRM, page: object) -> None:
    _people(crm)
    crm.operational.tasks.create("Soon", owner="ana", remind_at=MONDAY)
    for sweep in (crm.operational.tasks.remind, crm.operational.cases.sweep):
        with pytest.raises(ValidationError) as caught:
            sweep(MONDAY + timedelta(days=1), page=page)  # type: ignore[operator]
        assert caught.value.field == "page" and caught.value.value == page
    assert [t.reminded_at for t in crm.operational.tasks.open_for("ana")] == [None]  # nothing sent
