"""The four kinds of bad input the issue names, on every backend: a typed error, and
nothing written (no record, no event)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import attrs
import pytest

from crmcore import CRM, Customer, ServicePoint, Team
from crmcore.errors import CRMError, ValidationError
from crmcore.model import Agent, BusinessCalendar, CalendarError, CasePriority, OpeningHours
from crmcore.operational.sla import DEFAULT_POLICY, SlaPolicy, SlaTarget

from .conftest import MONDAY, Recorder, drain


def _counts(crm: CRM) -> tuple[int, ...]:
    with crm.reading() as uow:
        return (uow.cases.count(), uow.tasks.count(), uow.accounts.count(), uow.service_points.count(),
                uow.customers.count(), uow.outbox.pending_count())


def _policy_with_negative_target() -> SlaPolicy:
    return attrs.evolve(DEFAULT_POLICY, targets={
        **DEFAULT_POLICY.targets, CasePriority.URGENT: SlaTarget(timedelta(hours=-1), timedelta(hours=1))})


def _calendar_without_hours(crm: CRM) -> None:
    crm.service_points.add(ServicePoint("nowhere", "Nowhere", "branch",
                                        calendar=BusinessCalendar("Europe/Paris", ())))


BAD: dict[str, Callable[[CRM], object]] = {
    "service level shorter than zero": lambda crm: _policy_with_negative_target(),
    "a one-off service level shorter than zero": lambda crm: crm.cases.open(
        "c1", "complaint", "x", sla=timedelta(hours=-2)),
    "calendar with no open hours": _calendar_without_hours,
    "calendar whose only stretch is empty": lambda crm: OpeningHours(0, "09:00", "09:00"),
    "case for an unknown team": lambda crm: crm.operational.cases.open("c1", "complaint", "x", team="nope"),
    "assignment to an unknown team": lambda crm: crm.operational.assignment.case("k1", team="nope"),
    "task due before it was created": lambda crm: crm.operational.tasks.create(
        "late", owner="ana", due_at=MONDAY - timedelta(minutes=1)),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_input_is_a_typed_error_and_writes_nothing(crm: CRM, recorder: Recorder, what: str) -> None:
    crm.customers.add(Customer(id="c1", name="C"))
    crm.teams.add(Team("care", "Care"))
    crm.agents.add(Agent("ana", "Ana", team="care"))
    crm.operational.cases.open("c1", "complaint", "existing", id="k1")
    drain(crm)
    before, seen, stored = _counts(crm), len(recorder.events), crm.cases.get("k1")
    with pytest.raises(CRMError) as caught:
        BAD[what](crm)
    assert isinstance(caught.value, ValidationError | CalendarError)
    drain(crm)
    assert _counts(crm) == before and len(recorder.events) == seen and crm.cases.get("k1") == stored
