"""Cases: complaints, requests and incidents, with their service-level promises.

A case may carry `deadlines` (first response, resolution) worked out in business time
when it opened, and the `steps` of its escalation ladder already taken, so a sweep that
runs twice never takes a step twice. `next_check` is when the ladder next has a step
to take; storage indexes it, so a sweep reads only the cases that are due.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.channels import Channel
from crmcore.model.staff import Assignment


class CaseKind(v.Choice):
    __field__ = "kind"

    COMPLAINT = "complaint"
    REQUEST = "request"
    INCIDENT = "incident"


class CasePriority(v.IntChoice):
    __field__ = "priority"

    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4


class CaseStatus(v.Choice):
    __field__ = "status"

    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"
    WAITING = "waiting"
    """Waiting on the customer: open, but its service-level clock is paused."""

    @property
    def is_open(self) -> bool:
        return self in (CaseStatus.OPEN, CaseStatus.IN_PROGRESS, CaseStatus.WAITING)


MOVES: dict[CaseStatus, frozenset[CaseStatus]] = {
    CaseStatus.OPEN: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.WAITING, CaseStatus.RESOLVED,
                                CaseStatus.CLOSED}),
    CaseStatus.IN_PROGRESS: frozenset({CaseStatus.WAITING, CaseStatus.RESOLVED, CaseStatus.CLOSED}),
    CaseStatus.WAITING: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.RESOLVED, CaseStatus.CLOSED}),
    CaseStatus.RESOLVED: frozenset({CaseStatus.IN_PROGRESS, CaseStatus.CLOSED}),
    CaseStatus.CLOSED: frozenset(),
}
"""The lifecycle: which status may follow which (a closed case is final; reopen a resolved one)."""


class Target(v.Choice):
    __field__ = "target"

    FIRST_RESPONSE = "first_response"
    RESOLUTION = "resolution"


class Rung(v.Choice):
    """A step of the escalation ladder for one target."""

    __field__ = "rung"

    WARNED = "warned"
    BREACHED = "breached"


@attrs.frozen
class Deadline:
    """One promise: warn at `warn_at`, breached at `due_at`, kept if `met_at` comes first."""

    target: Target = attrs.field(converter=Target)
    warn_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    due_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    met_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )

    def __attrs_post_init__(self) -> None:
        if self.due_at < self.warn_at:
            raise ValidationError("warn_at", self.warn_at, "must not come after due_at")


@attrs.frozen
class Step:
    """A rung taken: recorded on the case so no sweep takes it again."""

    target: Target = attrs.field(converter=Target)
    rung: Rung = attrs.field(converter=Rung)
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)

    @property
    def key(self) -> tuple[Target, Rung]:
        return (self.target, self.rung)


def _instant_of(deadline: Deadline, rung: Rung) -> datetime:
    return deadline.warn_at if rung is Rung.WARNED else deadline.due_at


@attrs.frozen
class Case:
    id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    kind: CaseKind = attrs.field(converter=CaseKind)
    subject: str = attrs.field(validator=v.is_text(1000))
    opened_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    priority: CasePriority = attrs.field(default=CasePriority.NORMAL, converter=CasePriority)
    status: CaseStatus = attrs.field(default=CaseStatus.OPEN, converter=CaseStatus)
    sla_due: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    resolved_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    resolution: str = attrs.field(default="", validator=v.is_text(5000, empty=True))
    channel: Channel | None = attrs.field(default=None, converter=attrs.converters.optional(Channel))
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    agent: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    contacts: int = attrs.field(default=1, validator=v.integer(1, 10_000))
    """Contacts it took; a case resolved at its first contact counts for first-contact resolution."""
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
    deadlines: tuple[Deadline, ...] = attrs.field(default=(), converter=v.as_tuple)
    steps: tuple[Step, ...] = attrs.field(default=(), converter=v.as_tuple)
    paused_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    """While waiting on the customer: since when (the promise is extended by the pause)."""
    team: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    assignment: Assignment | None = attrs.field(default=None)
    """Why `agent` owns the case: the rule and its reason, from the last assignment."""
    escalation: int = attrs.field(default=0, validator=v.integer(0, 1000))
    merged_into: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    reopened: int = attrs.field(default=0, validator=v.integer(0, 10_000))
    source_reference: str | None = attrs.field(default=None, validator=v.optional(v.is_text(998)))
    """The channel's id of the contact that opened the case (a SIP Call-ID, a Message-ID)."""

    def resolve(self, resolution: str, at: datetime) -> Case:
        return attrs.evolve(
            self.moved_to(CaseStatus.RESOLVED), resolution=resolution, resolved_at=at,
            deadlines=self._met(Target.RESOLUTION, at),
        )

    def moved_to(self, status: CaseStatus) -> Case:
        """The case in a new status, if the lifecycle allows it (`MOVES`)."""
        if status not in MOVES[self.status]:
            raise ValidationError("status", str(status), f"a case cannot go from {self.status} to {status}")
        return attrs.evolve(self, status=status)

    def _met(self, target: Target, at: datetime) -> tuple[Deadline, ...]:
        return tuple(
            attrs.evolve(d, met_at=at) if d.target is target and d.met_at is None else d
            for d in self.deadlines
        )

    def responded(self, at: datetime) -> Case:
        """The first answer to the customer: it keeps the first-response promise."""
        if not self.status.is_open:
            raise ValidationError("status", str(self.status), "a case must be open to be answered")
        moved = self.moved_to(CaseStatus.IN_PROGRESS) if self.status is CaseStatus.OPEN else self
        return attrs.evolve(moved, deadlines=self._met(Target.FIRST_RESPONSE, at))

    def pending_steps(self, now: datetime) -> list[tuple[Deadline, Rung]]:
        """Rungs of the ladder due by `now` and not taken yet, in the order they fell due."""
        if not self.status.is_open or self.paused_at is not None:
            return []
        taken = {step.key for step in self.steps}
        due = [
            (d, rung) for d in self.deadlines if d.met_at is None for rung in Rung
            if (d.target, rung) not in taken and _instant_of(d, rung) <= now
        ]
        return sorted(due, key=lambda pair: (_instant_of(*pair), pair[1] is Rung.BREACHED))

    @property
    def next_check(self) -> datetime | None:
        """When the escalation ladder next has a step to take (None: nothing to watch)."""
        if not self.status.is_open or self.paused_at is not None:
            return None
        taken = {step.key for step in self.steps}
        waiting = [
            _instant_of(d, rung) for d in self.deadlines if d.met_at is None for rung in Rung
            if (d.target, rung) not in taken
        ]
        return min(waiting, default=None)

    def deadline(self, target: Target | str) -> Deadline | None:
        wanted = Target(target)
        return next((d for d in self.deadlines if d.target is wanted), None)

    @property
    def within_sla(self) -> bool | None:
        if self.sla_due is None or self.resolved_at is None:
            return None
        return self.resolved_at <= self.sla_due
