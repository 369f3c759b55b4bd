"""Cases that keep their promise: service levels in business time, an escalation ladder,
pauses while waiting on the customer, reopening, and merging duplicates.

`sweep(now)` takes every rung of the ladder that has fallen due: a warning at a share of
each target, a breach when it passes (and then the case goes to its team's lead). Each
rung taken is written on the case in the same transaction as its events, so a sweep run
twice, or by two workers at once, emits each event exactly once. Storage picks the cases
due by an indexed column (`Case.next_check`) and the sweep streams their ids in pages, so
its memory does not grow with the number of open cases; a page is read, written back, and
its events and history logged in a few batched statements, none per case (a database
across a network charges a round trip for each, and more on a busy machine).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.lifecycle import history
from crmcore.model import (
    Assignment,
    Case,
    CaseKind,
    CasePriority,
    CaseStatus,
    Channel,
    ConfigKind,
    Deadline,
    Rung,
    Step,
    Target,
)
from crmcore.operational.calendars import ALWAYS_OPEN, BusinessClock, clock
from crmcore.operational.configuration import Stored
from crmcore.operational.sla import DEFAULT_POLICY, SlaPolicy, policy_data, policy_from_data
from crmcore.operational.sweeping import MAX_PAGE, due_pages, redone_on_conflict

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.ports import UnitOfWork

SWEEP_PAGE = 500


@attrs.frozen
class SweepReport:
    """What one sweep did: cases looked at, rungs taken, escalations (reassignments)."""

    examined: int = 0
    steps: int = 0
    escalated: int = 0


@attrs.frozen
class CaseEntry:
    """One line of a case's history, oldest first."""

    at: datetime
    what: str
    detail: str = ""


class ServiceCases:
    """The operational case desk of one CRM (`crm.operational.cases`)."""

    def __init__(self, crm: CRM, policy: SlaPolicy = DEFAULT_POLICY) -> None:
        self.crm = crm
        self.policy = policy
        """The policy configured in code: used where no stored one applies."""
        self._clocks: dict[str | None, BusinessClock] = {}

    @functools.cached_property
    def policies(self) -> Stored[SlaPolicy]:
        """Stored SLA policies: `default`, or named after the service point they apply to."""
        return Stored(self.crm, ConfigKind.SLA_POLICY, SlaPolicy, check=_check_policy,
                      dump=policy_data, load=policy_from_data)

    def policy_for(self, uow: UnitOfWork, service_point: str | None) -> SlaPolicy:
        """The stored policy of the service point, else the stored `default`, else the code's."""
        for name in (service_point, "default"):
            found = self.policies.find(uow, name) if name else None
            if found is not None:
                return found
        return self.policy

    # ---- the calendar a case is counted on ----

    def clock_for(self, uow: UnitOfWork, service_point: str | None) -> BusinessClock:
        """The business clock of a service point (24/7 UTC when it has no calendar)."""
        point = uow.service_points.get(service_point) if service_point else None
        calendar = point.calendar if point else None
        cached = self._clocks.get(service_point)
        if cached is None or cached.calendar != (calendar or ALWAYS_OPEN):
            cached = clock(calendar)
            self._clocks[service_point] = cached
        return cached

    # ---- lifecycle ----

    def open(
        self,
        customer_id: str,
        kind: CaseKind | str,
        subject: str,
        *,
        priority: CasePriority | int | str = CasePriority.NORMAL,
        service_point: str | None = None,
        channel: Channel | str | None = None,
        team: str | None = None,
        source_reference: str | None = None,
        id: str | None = None,
    ) -> Case:
        """Open a case with deadlines for the customer's tier, counted in the service point's hours.

        `source_reference` is the channel's id of the contact that opened it (the call's SIP
        Call-ID, the message's Message-ID), so that contact shows in the case's history.
        """
        opened = self.crm.clock()
        priority = _priority(priority)
        with self.crm.transaction() as uow:
            customer = uow.customers.get(customer_id)
            if team is not None and uow.teams.find(team) is None:
                raise ValidationError("team", team, "no such team")
            hours = self.clock_for(uow, service_point)
            policy = self.policy_for(uow, service_point)
            deadlines = policy.deadlines(hours, opened, priority, customer.tier)
            case = self.crm.cases.add(Case(
                id=id or v.new_id(), customer_id=customer_id, kind=CaseKind(kind), subject=subject,
                opened_at=opened, priority=priority, service_point=service_point,
                channel=None if channel is None else Channel(channel), team=team,
                sla_due=deadlines[-1].due_at, deadlines=deadlines, source_reference=source_reference,
            ))
            self.crm.emit(
                "case.opened", case.id, customer_id=customer_id, tier=customer.tier,
                priority=int(priority), **{f"{d.target}_due": d.due_at.isoformat() for d in deadlines},
            )
            return case

    def respond(self, case_id: str) -> Case:
        """The first answer went out: the first-response promise is kept (or late, but met)."""
        return self._change(case_id, "case.responded", lambda c, now: c.responded(now))

    def pause(self, case_id: str) -> Case:
        """Waiting on the customer: the clock stops until `resume`."""
        return self._change(case_id, "case.paused", lambda c, now: attrs.evolve(
            c.moved_to(CaseStatus.WAITING), paused_at=now))

    def resume(self, case_id: str) -> Case:
        """The customer answered: every promise still running moves by the business time paused."""
        def resumed(case: Case, now: datetime) -> Case:
            _expect(case, CaseStatus.WAITING, "resumed")
            moved = case.moved_to(CaseStatus.IN_PROGRESS)
            since = case.paused_at or now
            return self._extended(attrs.evolve(moved, paused_at=None), since, now)

        return self._change(case_id, "case.resumed", resumed)

    def resolve(self, case_id: str, resolution: str) -> Case:
        return self._change(case_id, "case.resolved", lambda c, now: c.resolve(resolution, now))

    def close(self, case_id: str) -> Case:
        return self._change(case_id, "case.closed", lambda c, now: c.moved_to(CaseStatus.CLOSED))

    def reopen(self, case_id: str) -> Case:
        """A resolved case the customer says is not: the resolution promise runs again, moved
        by the business time it spent resolved."""
        def reopened(case: Case, now: datetime) -> Case:
            _expect(case, CaseStatus.RESOLVED, "reopened")
            moved = case.moved_to(CaseStatus.IN_PROGRESS)
            deadlines = tuple(
                attrs.evolve(d, met_at=None) if d.target is Target.RESOLUTION else d
                for d in case.deadlines
            )
            again = attrs.evolve(moved, deadlines=deadlines, resolved_at=None, resolution="",
                                 reopened=case.reopened + 1)
            return self._extended(again, case.resolved_at or now, now)

        return self._change(case_id, "case.reopened", reopened)

    def merge(self, duplicate_id: str, into: str) -> Case:
        """Fold a duplicate into the case it repeats: the duplicate closes, pointing at the
        survivor, which counts its contacts and keeps the earlier of each promise."""
        if duplicate_id == into:
            raise ValidationError("into", into, "a case cannot be merged into itself")
        now = self.crm.clock()
        with self.crm.transaction():
            duplicate, survivor = self.crm.cases.get(duplicate_id), self.crm.cases.get(into)
            if duplicate.customer_id != survivor.customer_id:
                raise ValidationError("into", into, "a duplicate must belong to the same customer")
            if not survivor.status.is_open:
                raise ValidationError("into", into, f"the surviving case is {survivor.status}")
            closed = attrs.evolve(duplicate.moved_to(CaseStatus.CLOSED), merged_into=into)
            self.crm.cases.update(closed)
            kept = self.crm.cases.update(attrs.evolve(
                survivor, contacts=min(survivor.contacts + duplicate.contacts, 10_000),
                deadlines=_earliest(survivor.deadlines, duplicate.deadlines),
            ))
            self.crm.emit("case.merged", into, duplicate=duplicate_id, at=now.isoformat())
            return kept

    def assign(self, case_id: str, assignment: Assignment) -> Case:
        """Give the case an owner, with the explanation of why (see `operational.assignment`)."""
        with self.crm.transaction() as uow:
            uow.agents.get(assignment.agent)
            if assignment.team is not None and uow.teams.find(assignment.team) is None:
                raise ValidationError("team", assignment.team, "no such team")
            case = self.crm.cases.get(case_id)
            stored = self.crm.cases.update(attrs.evolve(
                case, agent=assignment.agent, team=assignment.team or case.team,
                assignment=assignment,
            ))
            self.crm.emit("case.assigned", case_id, agent=assignment.agent, team=stored.team,
                          rule=assignment.rule, reason=assignment.reason)
            return stored

    def _change(self, case_id: str, topic: str, change: Any) -> Case:
        now = self.crm.clock()
        with self.crm.transaction():
            case = self.crm.cases.get(case_id)
            stored = self.crm.cases.update(change(case, now))
            self.crm.emit(topic, case_id, status=str(stored.status))
            return stored

    def _extended(self, case: Case, since: datetime, now: datetime) -> Case:
        """Move every running promise by the business time between `since` and `now`."""
        with self.crm.reading() as uow:
            hours = self.clock_for(uow, case.service_point)

        def moved(instant: datetime) -> datetime:
            return instant if instant <= since else hours.add(now, hours.elapsed(since, instant))

        deadlines = tuple(
            d if d.met_at is not None else attrs.evolve(d, warn_at=moved(d.warn_at), due_at=moved(d.due_at))
            for d in case.deadlines
        )
        resolution = case.deadline(Target.RESOLUTION)
        due = next((d.due_at for d in deadlines if d.target is Target.RESOLUTION), case.sla_due)
        return attrs.evolve(case, deadlines=deadlines, sla_due=due if resolution else case.sla_due)

    # ---- the sweep ----

    def sweep(self, now: datetime | None = None, *, page: int = SWEEP_PAGE) -> SweepReport:
        """Take every escalation rung due by `now`, once; safe to run as often as you like."""
        at = v.utc(now, "now") if now is not None else self.crm.clock()
        v.whole(page, "page", 1, MAX_PAGE)
        report = SweepReport()
        for ids in due_pages(self.crm, lambda uow, after: uow.cases.due(at, after=after, limit=page)):
            report = redone_on_conflict(functools.partial(self._sweep_page, ids, at, report),
                                        "a sweep page")
        return report

    def _sweep_page(self, ids: list[str], at: datetime, report: SweepReport) -> SweepReport:
        """One page in one transaction: its cases read in one query, written back in one
        batch (each with its version check), its events in another and its history in a
        third, so a SQL storage across a network pays a few round trips a page, none a case."""
        steps = escalated = 0
        with self.crm.transaction() as uow, self.crm.batched_events():
            leads: dict[str, str | None] = {}
            found = {c.id: c for c in uow.cases.find_many(ids)}
            climbed: list[Case] = []
            for case_id in ids:  # in the order they fell due
                case = found.get(case_id)
                if case is None:
                    continue
                taken, moved = self._climb(uow, case, at, leads, climbed)
                steps += taken
                escalated += moved
            stored = uow.cases.update_many(climbed)
            # each step in the case's history, as any write through crm.cases, in one batch
            history.record_many(uow, "case", [(found[c.id], c) for c in stored], at, uow.cases)
        return SweepReport(report.examined + len(ids), report.steps + steps,
                           report.escalated + escalated)

    def _climb(
        self, uow: UnitOfWork, case: Case, at: datetime, leads: dict[str, str | None],
        climbed: list[Case],
    ) -> tuple[int, int]:
        """Take the case's pending steps; the case as it now stands joins `climbed`."""
        pending = case.pending_steps(at)
        if not pending:
            return 0, 0
        steps = list(case.steps)
        owner: dict[str, Any] = {"agent": case.agent, "escalation": case.escalation}
        escalated = 0
        for deadline, rung in pending:
            steps.append(Step(deadline.target, rung, at))
            self.crm.emit(
                "case.sla_warning" if rung is Rung.WARNED else "case.sla_breached", case.id,
                target=str(deadline.target), due_at=deadline.due_at.isoformat(),
                customer_id=case.customer_id, agent=owner["agent"],
            )
            if rung is Rung.BREACHED:
                escalated += self._escalate(uow, case, owner, deadline, at, leads)
        climbed.append(attrs.evolve(case, steps=tuple(steps), **owner))
        return len(pending), escalated

    def _escalate(
        self, uow: UnitOfWork, case: Case, owner: dict[str, Any], deadline: Deadline, at: datetime,
        leads: dict[str, str | None],
    ) -> int:
        """A breach climbs one level (in `owner`) and hands the case to its team's lead, if any
        (a case with no team goes to the lead of its policy's escalation team)."""
        lead = None
        team_id = case.team
        if team_id is None:
            key = f"policy:{case.service_point or ''}"
            if key not in leads:
                leads[key] = self.policy_for(uow, case.service_point).escalation_team
            team_id = leads[key]
        if team_id is not None:
            if team_id not in leads:
                team = uow.teams.find(team_id)
                leads[team_id] = team.lead if team else None
            lead = leads[team_id]
        previous = owner["agent"]
        owner["escalation"] += 1
        handed = lead is not None and lead != previous
        reason = f"{deadline.target} promise broken at {deadline.due_at.isoformat()}"
        if handed:
            reason += "; the team lead takes over"
            owner.update(agent=lead, assignment=Assignment(str(lead), "escalation", reason, at, team_id))
        # one event says both: the level climbed and, when `agent` changed, the reassignment and why
        self.crm.emit("case.escalated", case.id, level=owner["escalation"],
                      target=str(deadline.target), agent=owner["agent"], previous_agent=previous,
                      team=team_id, rule="escalation", reason=reason)
        return 1 if handed else 0

    # ---- reading ----

    def history(self, case_id: str) -> list[CaseEntry]:
        """Everything that happened to a case, oldest first: opening, contacts, ladder, outcome."""
        with self.crm.reading() as uow:
            case = uow.cases.get(case_id)
            merged = [c for c in uow.cases.for_customer(case.customer_id) if c.merged_into == case_id]
            ours = {case_id, *(c.id for c in merged)}
            opening = {c.source_reference for c in (case, *merged)} - {None}
            contacts = [i for i in uow.interactions.for_customer(case.customer_id, limit=None)
                        if i.case_id in ours or (i.reference is not None and i.reference in opening)]
        entries = [CaseEntry(case.opened_at, "opened", f"{case.kind} {case.priority.name.lower()}")]
        entries += [CaseEntry(i.occurred_at, f"{i.channel} {i.direction}", i.subject) for i in contacts]
        entries += [CaseEntry(c.opened_at, "merged", f"duplicate {c.id}: {c.subject}") for c in merged]
        entries += [CaseEntry(s.at, f"{s.target} {s.rung}") for s in case.steps]
        entries += [CaseEntry(d.met_at, f"{d.target} met") for d in case.deadlines if d.met_at]
        if case.assignment is not None:
            a = case.assignment
            entries.append(CaseEntry(a.at, f"assigned to {a.agent}", f"{a.rule}: {a.reason}"))
        if case.resolved_at is not None:
            entries.append(CaseEntry(case.resolved_at, "resolved", case.resolution))
        return sorted(entries, key=lambda e: e.at)

    def open_for(self, customer_id: str) -> list[Case]:
        with self.crm.reading() as uow:
            return [c for c in uow.cases.for_customer(customer_id) if c.status.is_open]


def _check_policy(uow: UnitOfWork, name: str, policy: SlaPolicy) -> None:
    """A stored policy applies to a service point that exists (or is the `default`), and
    escalates to a team that exists."""
    if name != "default" and uow.service_points.find(name) is None:
        raise ValidationError("name", name, "is neither default nor a service point")
    if policy.escalation_team is not None and uow.teams.find(policy.escalation_team) is None:
        raise ValidationError("escalation_team", policy.escalation_team, "no such team")


def _expect(case: Case, status: CaseStatus, action: str) -> None:
    if case.status is not status:
        raise ValidationError("status", str(case.status), f"only a {status} case can be {action}")


def _priority(value: CasePriority | int | str) -> CasePriority:
    """A priority by number or by name ('urgent', 'high', ...)."""
    if isinstance(value, str):
        if value.upper() not in CasePriority.__members__:
            raise ValidationError("priority", value, "must be low, normal, high or urgent")
        return CasePriority[value.upper()]
    return CasePriority(value)


def _earliest(mine: tuple[Deadline, ...], theirs: tuple[Deadline, ...]) -> tuple[Deadline, ...]:
    """Per target, the promise falling due first among those still running."""
    other = {d.target: d for d in theirs if d.met_at is None}
    return tuple(
        other[d.target] if d.met_at is None and d.target in other and other[d.target].due_at < d.due_at
        else d
        for d in mine
    )

