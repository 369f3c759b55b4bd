"""Tasks: work a member of staff promised to do, by when, about whom, and how it ended."""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError


class TaskStatus(v.Choice):
    __field__ = "status"

    OPEN = "open"
    DONE = "done"
    CANCELLED = "cancelled"


@attrs.frozen
class Task:
    """A to-do linked to a customer, an account, a case or an opportunity (or none)."""

    id: str = attrs.field(validator=v.is_text(64))
    title: str = attrs.field(validator=v.is_text(500))
    created_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    due_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    owner: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    status: TaskStatus = attrs.field(default=TaskStatus.OPEN, converter=TaskStatus)
    customer_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    account_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    case_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    opportunity_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    remind_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    reminded_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    outcome: str = attrs.field(default="", validator=v.is_text(2000, empty=True))
    completed_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))

    def __attrs_post_init__(self) -> None:
        if self.due_at is not None and self.due_at < self.created_at:
            raise ValidationError("due_at", self.due_at, "is before the task was created")
        if self.remind_at is not None and self.remind_at < self.created_at:
            raise ValidationError("remind_at", self.remind_at, "is before the task was created")

    @property
    def reminder_due(self) -> datetime | None:
        """When the owner is still to be reminded (None: no reminder pending)."""
        if self.status is not TaskStatus.OPEN or self.reminded_at is not None:
            return None
        return self.remind_at

    def is_overdue(self, now: datetime) -> bool:
        return self.status is TaskStatus.OPEN and self.due_at is not None and self.due_at < now

    def finished(self, status: TaskStatus, outcome: str, at: datetime) -> Task:
        if self.status is not TaskStatus.OPEN:
            raise ValidationError("status", str(status), f"the task is already {self.status}")
        return attrs.evolve(self, status=status, outcome=outcome, completed_at=at)
