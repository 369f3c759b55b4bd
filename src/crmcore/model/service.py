"""Cases: complaints, requests and incidents, with their service-level deadline."""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v
from crmcore.model.channels import Channel


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

    @property
    def is_open(self) -> bool:
        return self in (CaseStatus.OPEN, CaseStatus.IN_PROGRESS)


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

    def resolve(self, resolution: str, at: datetime) -> Case:
        return attrs.evolve(self, status=CaseStatus.RESOLVED, resolution=resolution, resolved_at=at)

    @property
    def within_sla(self) -> bool | None:
        if self.sla_due is None or self.resolved_at is None:
            return None
        return self.resolved_at <= self.sla_due
