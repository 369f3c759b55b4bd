"""The log of automation: each rule run for one event, with what it did and how it ended."""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v


class RunOutcome(v.Choice):
    __field__ = "outcome"

    DONE = "done"
    """The condition held and every action ran."""
    SKIPPED = "skipped"
    """The condition did not hold for the customer."""
    FAILED = "failed"
    """An action raised; what it had written was rolled back."""
    LOOP = "loop"
    """The event came from this rule's own actions: running again would never end."""


@attrs.frozen
class AutomationRun:
    id: str = attrs.field(validator=v.is_text(64))
    rule: str = attrs.field(validator=v.check(v.name))
    event_id: str = attrs.field(validator=v.is_text(64))
    topic: str = attrs.field(validator=v.is_text(100))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    outcome: RunOutcome = attrs.field(converter=RunOutcome)
    customer_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    actions: tuple[str, ...] = attrs.field(default=(), converter=v.as_tuple)
    detail: str = attrs.field(default="", validator=v.is_text(2000, empty=True))
