"""The telephony port: phones that ring, answer and hang up, and the records they leave.

A backend reports what happens as `CallEvent`s; when a call ends, its event
carries the finished `CallRecord` (start, answer, end, outcome), stamped by the
adapter itself because SIP user agents do not put times on their events.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.channels import Direction


class CallOutcome(enum.StrEnum):
    ANSWERED = "answered"
    BUSY = "busy"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"
    FAILED = "failed"
    """The call could not be set up, or dropped mid-call (a phone vanished)."""


class CallEventKind(enum.StrEnum):
    RINGING = "ringing"
    """A new call: inbound, it rings the agent's phone; outbound, the customer's."""
    ANSWERED = "answered"
    ENDED = "ended"


def _ordered(record: CallRecord, _attribute: attrs.Attribute[Any], _value: Any) -> None:
    if record.ended_at < record.started_at:
        raise ValidationError("ended_at", record.ended_at, "is before started_at")
    answered = record.answered_at
    if answered is not None and not record.started_at <= answered <= record.ended_at:
        raise ValidationError("answered_at", answered, "is not between start and end")
    if record.outcome is CallOutcome.ANSWERED and answered is None:
        raise ValidationError("outcome", record.outcome, "needs answered_at")


@attrs.frozen
class CallRecord:
    """A finished call. `duration` is talk time: zero for a call nobody answered."""

    call_id: str = attrs.field(validator=v.is_text(998))
    direction: Direction = attrs.field(converter=Direction)
    peer: str = attrs.field(validator=v.is_text(998, empty=True))
    """The other party as the backend names it (a SIP URI or a number)."""
    started_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    ended_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    outcome: CallOutcome = attrs.field(converter=CallOutcome, validator=_ordered)
    answered_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    reason: str = attrs.field(default="", validator=v.is_text(500, empty=True))
    """The backend's own words on why the call ended ("486 Busy Here", "rtp stream error")."""
    agent: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))

    @property
    def duration(self) -> timedelta:
        return self.ended_at - self.answered_at if self.answered_at else timedelta(0)

    @property
    def ring_time(self) -> timedelta:
        return (self.answered_at or self.ended_at) - self.started_at


@attrs.frozen
class CallEvent:
    """Something happened to a call; `record` is set on ENDED and only then."""

    kind: CallEventKind = attrs.field(converter=CallEventKind)
    call_id: str = attrs.field(validator=v.is_text(998))
    direction: Direction = attrs.field(converter=Direction)
    peer: str = attrs.field(validator=v.is_text(998, empty=True))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    display_name: str = attrs.field(default="", validator=v.is_text(200, empty=True))
    record: CallRecord | None = None
    agent: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))

    def __attrs_post_init__(self) -> None:
        if (self.kind is CallEventKind.ENDED) != (self.record is not None):
            raise ValidationError("record", self.record, "is set on ENDED events and only then")


CallListener = Callable[[CallEvent], None]
"""Called on the phone's own event thread, one event at a time, in order; it may drive the phone."""


class CallEvents(Protocol):
    """A source of call events (a SIP phone, a hosted provider's webhooks)."""

    url: str

    def subscribe(self, listener: CallListener) -> None:
        """Call `listener` with every event from now on; a listener that raises is logged, not fatal."""
        ...

    def close(self) -> None: ...


class Telephony(CallEvents, Protocol):
    """A phone crmcore drives: click-to-call, answer, hang up."""

    agent: str | None
    """The agent whose phone this is; records carry it."""

    def dial(self, number: str, *, no_answer_after: float | None = None) -> str:
        """Call a number (E.164) or SIP URI; returns the call id.

        If nobody answers within `no_answer_after` seconds the phone hangs up and
        records NO_ANSWER. A call that cannot be set up still returns its id and
        ends with a FAILED record.
        """
        ...

    def answer(self, call_id: str) -> None:
        """Pick up a ringing inbound call; `crmcore.errors.NotFound` if it is gone."""
        ...

    def hangup(self, call_id: str) -> None:
        """End a call: rejects it while it rings, hangs up once answered."""
        ...

    def live_calls(self) -> list[str]:
        """Ids of calls that have not ended yet."""
        ...
