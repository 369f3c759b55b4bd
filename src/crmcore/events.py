"""Domain events and the outbox records that carry them to subscribers after commit."""

from __future__ import annotations

from contextvars import ContextVar
from datetime import datetime
from typing import Any

import attrs

from crmcore import values as v


@attrs.frozen
class Event:
    """Something that happened to an aggregate, written in the same transaction as the change."""

    topic: str = attrs.field(validator=v.check(v.name))
    aggregate_id: str = attrs.field(validator=v.is_text(64))
    payload: dict[str, Any] = attrs.field(factory=dict)
    occurred_at: datetime = attrs.field(factory=v.now, converter=v.as_utc, validator=v.is_utc)
    id: str = attrs.field(factory=v.new_id)


@attrs.frozen
class OutboxEntry:
    """An event waiting in the outbox; `delivered_to` names the subscribers that took it."""

    seq: int
    event: Event
    attempts: int = 0
    delivered_to: frozenset[str] = frozenset()
    last_error: str | None = None


CAUSED_BY: ContextVar[tuple[str, ...]] = ContextVar("crmcore_caused_by", default=())
"""Names of the automation rules whose actions are running (outermost first); every event
emitted meanwhile carries them as `caused_by`, so a rule can tell its own echo (a loop)."""
