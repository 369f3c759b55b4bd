"""The storage contract for the operational aggregates (tasks, accounts, the automation
log, the cases' escalation index), with hypothesis strategies for their model.

`crmcore.testing.contract.StorageContract` inherits these tests, so every adapter that
runs the storage contract runs them too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcore import model as m
from crmcore.errors import ConflictError
from crmcore.events import Event
from crmcore.ports import Storage
from crmcore.segments import select_ids
from crmcore.testing import strategies as s
from crmcore.values import Money

T0 = datetime(2025, 1, 1, tzinfo=UTC)

calendars = st.builds(
    m.BusinessCalendar.weekly, st.sampled_from(["UTC", "Europe/Paris", "America/New_York"]),
    st.fixed_dictionaries({"mon-fri": st.sampled_from(["09:00-17:00", "08:00-12:00 13:00-18:00"])}),
    st.lists(s.dates, max_size=3).map(tuple),
)
assignments = st.builds(m.Assignment, s.machine_names, s.machine_names, s.texts, s.instants,
                        st.none() | s.machine_names)


@st.composite
def sla_cases(draw: st.DrawFn, customer_id: st.SearchStrategy[str] = s.ids) -> m.Case:
    """A case with promises, rungs taken, an owner and the reason for it."""
    case = draw(s.cases(customer_id))
    warn = case.opened_at + draw(st.timedeltas(timedelta(minutes=1), timedelta(days=3)))
    due = warn + draw(st.timedeltas(timedelta(0), timedelta(days=3)))
    deadlines = tuple(m.Deadline(t, warn, due) for t in m.Target)
    steps = tuple(m.Step(t, r, due) for t in m.Target for r in m.Rung if draw(st.booleans()))
    return attrs.evolve(case, deadlines=deadlines, steps=steps, team=draw(st.none() | s.machine_names),
                        assignment=draw(st.none() | assignments))


@st.composite
def tasks(draw: st.DrawFn) -> m.Task:
    created = draw(s.instants)
    later = st.none() | st.timedeltas(timedelta(0), timedelta(days=60)).map(lambda d: created + d)
    return m.Task(
        id=draw(s.ids), title=draw(s.texts), created_at=created, due_at=draw(later),
        owner=draw(st.none() | s.machine_names), remind_at=draw(later),
        customer_id=draw(st.none() | s.ids), case_id=draw(st.none() | s.ids),
        status=draw(st.sampled_from(list(m.TaskStatus))),
    )


@st.composite
def accounts(draw: st.DrawFn) -> m.Account:
    people = draw(st.lists(s.ids, unique=True, max_size=4))
    primary = draw(st.none() | st.sampled_from(people)) if people else None
    return m.Account(
        id=draw(s.ids), name=draw(s.texts), kind=draw(st.sampled_from(list(m.AccountKind))),
        members=tuple(m.AccountMember(p, draw(s.machine_names), p == primary) for p in people),
        tier=draw(st.none() | s.machine_names), owner=draw(st.none() | s.machine_names),
        attributes=draw(st.dictionaries(s.machine_names, s.attribute_values, max_size=3)),
    )


def _task(n: int, **fields: Any) -> m.Task:
    return m.Task(f"t{n:03d}", f"Task {n}", T0, **fields)


def _run(rule: str, event: str, minutes: int) -> m.AutomationRun:
    return m.AutomationRun(f"r-{rule}-{event}", rule, event, "case.opened",
                           T0 + timedelta(minutes=minutes), m.RunOutcome.DONE)


class OperationalStorageContract:
    """Tests every storage must pass for the operational aggregates."""

    def open_storage(self) -> Storage:
        raise NotImplementedError

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def test_operational_records_round_trip(self, data: st.DataObject) -> None:
        store = self.open_storage()
        try:
            items: dict[str, Any] = {
                "cases": data.draw(sla_cases()), "tasks": data.draw(tasks()),
                "accounts": data.draw(accounts()),
                "service_points": attrs.evolve(data.draw(s.service_points), calendar=data.draw(calendars)),
                "agents": attrs.evolve(data.draw(s.agents), languages=data.draw(
                    st.frozensets(s.machine_names, max_size=2)), territories={"north"}),
                "teams": attrs.evolve(data.draw(s.teams), lead="boss"),
            }
            with store.transaction() as uow:
                for name, item in items.items():
                    getattr(uow, name).add(item)
            with store.transaction() as uow:
                for name, item in items.items():
                    assert getattr(uow, name).get(item.id) == attrs.evolve(item, version=1)
        finally:
            store.close()

    def test_cases_due_for_the_sweep_page_by_id(self, storage: Storage) -> None:
        opened = T0
        deadline = m.Deadline(m.Target.RESOLUTION, T0 + timedelta(hours=1), T0 + timedelta(hours=2))

        def case(n: int, **fields: Any) -> m.Case:
            return m.Case(f"k{n:02d}", "c1", "complaint", "s", opened, deadlines=(deadline,), **fields)

        with storage.transaction() as uow:
            for n in range(7):
                uow.cases.add(case(n, agent="ana" if n % 2 else "bo"))
            uow.cases.add(case(7, status=m.CaseStatus.WAITING, paused_at=T0))
            uow.cases.add(case(8, status=m.CaseStatus.RESOLVED))
            uow.cases.add(m.Case("k09", "c1", "complaint", "no promises", opened))
        with storage.transaction() as uow:
            assert uow.cases.due(T0 + timedelta(minutes=59)) == []
            at = T0 + timedelta(hours=1)
            first = uow.cases.due(at, limit=4)
            assert first == [(at, f"k{n:02d}") for n in range(4)]
            assert [i for _, i in uow.cases.due(at, after=first[-1], limit=4)] == ["k04", "k05", "k06"]
            assert uow.cases.open_load() == {"ana": 3, "bo": 4}
            warned = uow.cases.get("k01")
            uow.cases.update(attrs.evolve(warned, steps=(m.Step(m.Target.RESOLUTION, m.Rung.WARNED, at),)))
        with storage.transaction() as uow:
            assert "k01" not in [i for _, i in uow.cases.due(at)]
            assert uow.cases.due(T0 + timedelta(hours=2))[-1] == (T0 + timedelta(hours=2), "k01")

    def test_a_sweep_page_is_read_and_its_events_written_in_batches(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n in range(3):
                uow.cases.add(m.Case(f"k{n}", "c1", "complaint", "s", T0))
        with storage.transaction() as uow:
            found = uow.cases.find_many(["k2", "nope", "k0", "k2"])
            assert sorted(c.id for c in found) == ["k0", "k2"]
            assert uow.cases.find_many([]) == []
            events = [Event(f"case.t{n}", f"k{n}", {"n": n}, T0) for n in range(3)]
            uow.outbox.append_many(events)
            uow.outbox.append_many([])
            uow.outbox.append(Event("case.t3", "k3", {}, T0))
        with storage.transaction() as uow:
            claimed = uow.outbox.claim(T0 + timedelta(seconds=1), timedelta(minutes=1), 10)
            assert [e.event.topic for e in claimed] == ["case.t0", "case.t1", "case.t2", "case.t3"]
            assert [e.event.payload for e in claimed][:3] == [{"n": 0}, {"n": 1}, {"n": 2}]
            k0, k1 = uow.cases.get("k0"), uow.cases.get("k1")
            written = uow.cases.update_many([attrs.evolve(k0, subject="a"), attrs.evolve(k1, subject="b")])
            assert [(c.id, c.version, c.subject) for c in written] == [("k0", 2, "a"), ("k1", 2, "b")]
            assert uow.cases.update_many([]) == []
        with pytest.raises(ConflictError), storage.transaction() as uow:  # k0 is stale: nothing stays
            fresh = attrs.evolve(uow.cases.get("k2"), subject="c")
            uow.cases.update_many([fresh, attrs.evolve(k0, subject="x")])
        with storage.transaction() as uow:
            assert [uow.cases.get(k).subject for k in ("k0", "k1", "k2")] == ["a", "b", "s"]

    def test_my_open_tasks_overdue_and_reminders(self, storage: Storage) -> None:
        day = timedelta(days=1)
        with storage.transaction() as uow:
            uow.tasks.add(_task(1, owner="ana", due_at=T0 + 3 * day))
            uow.tasks.add(_task(2, owner="ana"))
            uow.tasks.add(_task(3, owner="ana", due_at=T0 + day, remind_at=T0 + day / 2))
            uow.tasks.add(_task(4, owner="bo", due_at=T0 + day, remind_at=T0))
            uow.tasks.add(_task(5, owner="ana", due_at=T0, status=m.TaskStatus.DONE))
        with storage.transaction() as uow:
            assert [t.id for t in uow.tasks.open_for("ana")] == ["t003", "t001", "t002"]
            assert [t.id for t in uow.tasks.open_for("ana", limit=1)] == ["t003"]
            assert [t.id for t in uow.tasks.overdue(T0 + 2 * day)] == ["t003", "t004"]
            assert [t.id for t in uow.tasks.overdue(T0 + 2 * day, owner="bo")] == ["t004"]
            assert uow.tasks.reminders_due(T0 + day) == [(T0, "t004"), (T0 + day / 2, "t003")]
            assert uow.tasks.reminders_due(T0 + day, after=(T0, "t004")) == [(T0 + day / 2, "t003")]
            sent = uow.tasks.get("t004")
            uow.tasks.update(attrs.evolve(sent, reminded_at=T0 + day))
        with storage.transaction() as uow:
            assert [i for _, i in uow.tasks.reminders_due(T0 + 5 * day)] == ["t003"]
            with pytest.raises(ConflictError):
                uow.tasks.update(attrs.evolve(sent, title="stale"))
        with storage.transaction() as uow:  # a reminder page: read in one query, written in one batch
            page = uow.tasks.find_many(["t003", "nope", "t001", "t003"])
            assert sorted(t.id for t in page) == ["t001", "t003"]
            written = uow.tasks.update_many([attrs.evolve(t, title=f"paged {t.id}") for t in page])
            assert sorted((t.id, t.version) for t in written) == [("t001", 2), ("t003", 2)]
        with pytest.raises(ConflictError), storage.transaction() as uow:  # t003 is stale: nothing stays
            stale = next(t for t in page if t.id == "t003")
            uow.tasks.update_many([attrs.evolve(uow.tasks.get("t001"), title="x"), stale])
        with storage.transaction() as uow:
            assert uow.tasks.get("t001").title == "paged t001"

    def test_account_members_are_indexed_with_the_account(self, storage: Storage) -> None:
        group = m.Account("g", "Group", members=(m.AccountMember("c1", "ceo"),))
        site = m.Account("s", "Site", parent_id="g", members=(m.AccountMember("c1"), m.AccountMember("c2")))
        with storage.transaction() as uow:
            uow.accounts.add(group)
            stored = uow.accounts.add(site)
        with storage.transaction() as uow:
            assert [a.id for a in uow.accounts.of_customer("c1")] == ["g", "s"]
            assert [a.id for a in uow.accounts.children("g")] == ["s"]
            uow.accounts.update(stored.without_member("c2"))
        with storage.transaction() as uow:
            assert uow.accounts.of_customer("c2") == []
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            uow.accounts.update(uow.accounts.get("g").with_member(m.AccountMember("c3")))
            raise RuntimeError("roll back")
        with storage.transaction() as uow:
            assert uow.accounts.of_customer("c3") == []
            uow.accounts.remove(uow.accounts.get("s"))
        with storage.transaction() as uow:
            assert [a.id for a in uow.accounts.of_customer("c1")] == ["g"]

    def test_account_rules_see_the_primary_contact_in_the_member_index(self, storage: Storage) -> None:
        """Segment rules pick a customer's account by the index (SQL) or the members (Python):
        both must agree, so the index must hold who is the primary contact, through updates."""
        with storage.transaction() as uow:
            for n in (1, 2):
                uow.customers.add(m.Customer(id=f"c{n}", name=f"N{n}", created_at=T0, updated_at=T0))
            uow.accounts.add(m.Account("a", "A", tier="gold", members=(m.AccountMember("c1"),)))
            uow.accounts.add(m.Account("b", "B", tier="silver",
                                       members=(m.AccountMember("c1", primary=True), m.AccountMember("c2"))))
        rule, later = 'account.tier = "silver"', T0 + timedelta(days=1)
        with storage.transaction() as uow:
            assert select_ids(uow, rule, as_of=later) == ["c1", "c2"]
            assert select_ids(uow, rule, as_of=later, engine="python") == ["c1", "c2"]
            b = uow.accounts.get("b")
            uow.accounts.update(b.with_member(m.AccountMember("c2", primary=True)))
        with storage.transaction() as uow:
            assert select_ids(uow, rule, as_of=later) == ["c2"]
            assert select_ids(uow, rule, as_of=later, engine="python") == ["c2"]

    def test_account_roll_ups_in_rules_reach_the_sub_accounts(self, storage: Storage) -> None:
        """A group, its subsidiary and the subsidiary's site: a rule's roll-up over a
        customer's account adds up every account below it, in SQL as in Python."""
        with storage.transaction() as uow:
            for n in (1, 2, 3):
                uow.customers.add(m.Customer(id=f"c{n}", name=f"N{n}", created_at=T0, updated_at=T0))
            uow.accounts.add(m.Account("g", "Group", members=(m.AccountMember("c1"),)))
            uow.accounts.add(m.Account("s", "Subsidiary", parent_id="g", members=(m.AccountMember("c2"),)))
            uow.accounts.add(m.Account("t", "Site", parent_id="s", members=(m.AccountMember("c3"),)))
            bought = (("c1", "1000"), ("c2", "100"), ("c3", "10"), ("c3", "1"))
            for n, (customer, amount) in enumerate(bought):
                line = m.OrderLine("x", Money(Decimal(amount)))
                uow.purchases.add(m.Purchase(f"p{n}", customer, T0, (line,)))
        later = T0 + timedelta(days=1)
        with storage.transaction() as uow:
            for rule, expected in (("sum(account.purchases.total) = 1111", ["c1"]),
                                   ("sum(account.purchases.total) = 111", ["c2"]),
                                   ("count(account.purchases) = 3", ["c2"]),
                                   ("count(account.purchases) = 2", ["c3"])):
                assert select_ids(uow, rule, as_of=later) == expected, rule
                assert select_ids(uow, rule, as_of=later, engine="python") == expected, rule

    def test_configuration_keeps_every_version(self, storage: Storage) -> None:
        def version(name: str, n: int, doc: dict[str, Any] | None,
                    kind: str = "sla_policy") -> m.ConfigVersion:
            return m.ConfigVersion(kind, name, n, T0 + timedelta(minutes=n), doc, actor="ana")

        with storage.transaction() as uow:
            assert uow.configurations.current("sla_policy", "default") is None
            uow.configurations.add(version("default", 1, {"warn_at": 0.5}))
            uow.configurations.add(version("paris", 1, {"warn_at": 0.8, "nested": {"x": [1, "é"]}}))
            uow.configurations.add(version("default", 1, {"steps": []}, kind="automation_rule"))
        with storage.transaction() as uow, pytest.raises(ConflictError):  # a second writer of version 1
            uow.configurations.add(version("default", 1, {"warn_at": 0.9}))
        with storage.transaction() as uow:
            uow.configurations.add(version("default", 2, {"warn_at": 0.6}))
            uow.configurations.add(version("paris", 2, None))
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            uow.configurations.add(version("default", 3, {"warn_at": 0.7}))
            raise RuntimeError("roll back")
        with storage.transaction() as uow:
            current = uow.configurations.current("sla_policy", "default")
            assert current == version("default", 2, {"warn_at": 0.6})
            assert [e.doc for e in uow.configurations.history("sla_policy", "default")] == [
                {"warn_at": 0.5}, {"warn_at": 0.6}]
            assert [e.name for e in uow.configurations.in_force("sla_policy")] == ["default"]
            assert uow.configurations.current("sla_policy", "paris") == version("paris", 2, None)
            assert [e.name for e in uow.configurations.in_force("automation_rule")] == ["default"]
            assert uow.configurations.history("mail_template", "default") == []

    def test_a_rule_runs_once_per_event_in_the_automation_log(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            assert uow.automation_runs.record(_run("tag", "e2", 5)) is True
            assert uow.automation_runs.record(_run("tag", "e1", 1)) is True
            assert uow.automation_runs.record(_run("task", "e1", 2)) is True
        with storage.transaction() as uow:
            again = attrs.evolve(_run("tag", "e1", 9), id="another")
            assert uow.automation_runs.record(again) is False
            assert [r.event_id for r in uow.automation_runs.for_rule("tag")] == ["e1", "e2"]
            assert len(uow.automation_runs.for_rule("tag", limit=1)) == 1

    def test_round_robin_turns_are_counted_per_pool_and_undone_with_the_transaction(
        self, storage: Storage
    ) -> None:
        with storage.transaction() as uow:
            assert uow.turns.peek("care") == 0
            assert [uow.turns.take("care") for _ in range(3)] == [0, 1, 2]
            assert uow.turns.take('["care", ["fr"]]') == 0
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            assert uow.turns.take("care") == 3
            raise RuntimeError("roll back")
        with storage.transaction() as uow:
            assert uow.turns.peek("care") == 3 and uow.turns.peek("care") == 3
            assert uow.turns.take("care") == 3
            assert uow.turns.peek('["care", ["fr"]]') == 1

    def test_the_staff_generation_rises_with_every_staff_change_and_only_then(
        self, storage: Storage
    ) -> None:
        """Assignment keeps an index of the staff while this number stands: every write of an
        agent or a team must raise it in its own transaction, a rollback must undo it, and
        the transaction that changed the staff must not offer its uncommitted number."""
        def generation() -> int:
            with storage.transaction(readonly=True) as uow:
                found = uow.staff_generation.current()
            assert found is not None
            return found

        seen = [generation()]
        writes: list[Any] = [
            lambda uow: uow.teams.add(m.Team("care", "Care")),
            lambda uow: uow.agents.add(m.Agent("ana", "Ana", team="care")),
            lambda uow: uow.agents.add_many([m.Agent("bo", "Bo"), m.Agent("cy", "Cy")]),
            lambda uow: uow.agents.update(attrs.evolve(uow.agents.get("ana"), active=False)),
            lambda uow: uow.teams.update(attrs.evolve(uow.teams.get("care"), lead="bo")),
            lambda uow: uow.agents.remove(uow.agents.get("cy")),
            lambda uow: uow.teams.remove(uow.teams.get("care")),
        ]
        for write in writes:
            with storage.transaction() as uow:
                assert uow.staff_generation.current() == seen[-1]
                write(uow)
                assert uow.staff_generation.current() is None  # not committed: keep nothing
            seen.append(generation())
        assert seen == sorted(set(seen)), f"every change must raise the generation: {seen}"
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            uow.agents.add(m.Agent("dee", "Dee"))
            raise RuntimeError("roll back")
        assert generation() == seen[-1]
        with storage.transaction() as uow:  # what assignment does not read leaves it alone
            uow.cases.add(m.Case("k1", "c1", "complaint", "s", T0, agent="bo"))
            uow.service_points.add(m.ServicePoint("paris", "Paris", "branch"))
        assert generation() == seen[-1]

    def test_the_open_load_of_some_agents(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n, (agent, status) in enumerate([("ana", m.CaseStatus.OPEN), ("ana", m.CaseStatus.WAITING),
                                                 ("bo", m.CaseStatus.OPEN), ("bo", m.CaseStatus.RESOLVED),
                                                 ("cy", m.CaseStatus.OPEN), (None, m.CaseStatus.OPEN)]):
                uow.cases.add(m.Case(f"k{n}", "c1", "complaint", "s", T0, agent=agent, status=status,
                                     paused_at=T0 if status is m.CaseStatus.WAITING else None))
        with storage.transaction(readonly=True) as uow:
            assert uow.cases.open_load() == {"ana": 2, "bo": 1, "cy": 1}
            assert uow.cases.open_load(["ana", "bo", "zed", "ana"]) == {"ana": 2, "bo": 1}
            assert uow.cases.open_load([]) == {}
