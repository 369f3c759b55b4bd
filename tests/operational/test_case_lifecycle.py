"""A state machine over case lifecycles: random opens, moves, merges, clock jumps and
sweeps. No illegal move is accepted (and a refused one writes nothing); every rung of
the escalation ladder is emitted exactly once, and none is missed after a sweep."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from datetime import timedelta
from pathlib import Path

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from crmcore import CRM, Customer, ServicePoint, ServicePointKind, ValidationError
from crmcore.model import BusinessCalendar, CaseStatus, Rung
from crmcore.plugins import make_plugin_manager

from .conftest import Clock, Recorder, drain, drop_schema, open_backend

OPEN, WORK, WAIT, DONE, SHUT = (CaseStatus.OPEN, CaseStatus.IN_PROGRESS, CaseStatus.WAITING,
                                CaseStatus.RESOLVED, CaseStatus.CLOSED)
LEGAL = {  # written out here, independently of the model's table
    "respond": {OPEN, WORK, WAIT}, "pause": {OPEN, WORK}, "resume": {WAIT},
    "resolve": {OPEN, WORK, WAIT}, "close": {OPEN, WORK, WAIT, DONE}, "reopen": {DONE},
}
AFTER = {"respond": None, "pause": WAIT, "resume": WORK, "resolve": DONE, "close": SHUT,
         "reopen": WORK}


class CaseLifecycle(RuleBasedStateMachine):
    backend = "memory"
    cases = Bundle("cases")

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp(prefix="crmcore-cases-")
        store, self.schema = open_backend(self.backend, Path(self.directory))
        self.store = store
        self.clock = Clock()
        self.recorder = Recorder()
        plugins = make_plugin_manager(load_entry_points=False)
        plugins.register(self.recorder, name="recorder")
        self.crm = CRM(store, plugins=plugins, clock=self.clock)
        self.crm.service_points.add(ServicePoint(
            "desk", "Desk", ServicePointKind.BRANCH,
            calendar=BusinessCalendar.weekly(
                "Europe/Paris", {"mon-fri": "09:00-18:00", "sat": "10:00-12:00"}),
        ))
        for name, tier in (("vip", "platinum"), ("gold", "gold"), ("plain", None)):
            self.crm.customers.add(Customer(id=name, name=name, tier=tier))
        self.status: dict[str, CaseStatus] = {}
        self.owner: dict[str, str] = {}
        self.swept_at = self.clock.now

    def teardown(self) -> None:
        self.store.close()
        drop_schema(self.schema)
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(target=cases, customer=st.sampled_from(["vip", "gold", "plain"]),
          priority=st.integers(1, 4), at_desk=st.booleans())
    def open_case(self, customer: str, priority: int, at_desk: bool) -> str:
        case = self.crm.operational.cases.open(
            customer, "complaint", "s", priority=priority, service_point="desk" if at_desk else None)
        self.status[case.id] = OPEN
        self.owner[case.id] = customer
        return case.id

    @rule(case_id=cases, action=st.sampled_from(sorted(LEGAL)))
    def move(self, case_id: str, action: str) -> None:
        desk = self.crm.operational.cases
        before = self.crm.cases.get(case_id)
        call = getattr(desk, action)
        if self.status[case_id] in LEGAL[action]:
            after = call(case_id, "done") if action == "resolve" else call(case_id)
            expected = AFTER[action] or (WORK if self.status[case_id] is OPEN else self.status[case_id])
            assert after.status is expected
            self.status[case_id] = expected
        else:
            with pytest.raises(ValidationError):
                call(case_id, "done") if action == "resolve" else call(case_id)
            assert self.crm.cases.get(case_id) == before

    @rule(duplicate=cases, into=cases)
    def merge(self, duplicate: str, into: str) -> None:
        legal = (duplicate != into and self.owner[duplicate] == self.owner[into]
                 and self.status[duplicate] is not SHUT and self.status[into].is_open)
        if legal:
            self.crm.operational.cases.merge(duplicate, into=into)
            self.status[duplicate] = SHUT
        else:
            before = (self.crm.cases.get(duplicate), self.crm.cases.get(into))
            with pytest.raises(ValidationError):
                self.crm.operational.cases.merge(duplicate, into=into)
            assert (self.crm.cases.get(duplicate), self.crm.cases.get(into)) == before

    @rule(minutes=st.integers(1, 60 * 24 * 4))
    def wait(self, minutes: int) -> None:
        self.clock.advance(timedelta(minutes=minutes))

    @rule(times=st.integers(1, 3))
    def sweep(self, times: int) -> None:
        for _ in range(times):
            self.crm.operational.cases.sweep(page=3)
        self.swept_at = self.clock.now
        for case in self.crm.cases.list():
            assert case.pending_steps(self.swept_at) == []  # nothing due was missed

    @invariant()
    def each_rung_is_emitted_once_and_recorded(self) -> None:
        drain(self.crm)
        emitted = Counter(
            (e.aggregate_id, e.payload["target"], "breached" if e.topic.endswith("breached") else "warned")
            for e in self.recorder.events if e.topic in ("case.sla_warning", "case.sla_breached")
        )
        assert all(n == 1 for n in emitted.values())
        recorded = {(c.id, str(s.target), str(s.rung)) for c in self.crm.cases.list() for s in c.steps}
        assert set(emitted) == recorded
        for case in self.crm.cases.list():
            assert case.status is self.status[case.id]
            breached = {s.target for s in case.steps if s.rung is Rung.BREACHED}
            assert case.escalation == len(breached)
            assert attrs.evolve(case) == case


@pytest.mark.parametrize(("backend", "examples"), [("memory", 40), ("sqlite", 40), ("postgresql", 15)])
def test_case_lifecycles(backend: str, examples: int) -> None:
    """On every backend (PostgreSQL: fewer runs, each makes a schema of its own)."""
    machine = type("Machine", (CaseLifecycle,), {"backend": backend})
    run_state_machine_as_test(
        machine, settings=settings(max_examples=examples, stateful_step_count=30, deadline=None))
