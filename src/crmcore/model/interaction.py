"""A contact between the company and a customer, on any channel."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from crmcore import values as v
from crmcore.model.channels import Channel, ChannelFamily, Direction


@attrs.frozen
class Interaction:
    """One entry of a customer's timeline; append-only, so it carries no version."""

    id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    channel: Channel = attrs.field(converter=Channel)
    direction: Direction = attrs.field(converter=Direction)
    occurred_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    agent: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    duration: timedelta | None = attrs.field(default=None)
    subject: str = attrs.field(default="", validator=v.is_text(1000, empty=True))
    outcome: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    satisfaction: int | None = attrs.field(default=None, validator=v.optional(v.integer(1, 5)))
    nps: int | None = attrs.field(default=None, validator=v.optional(v.integer(0, 10)))
    expectation: int | None = attrs.field(default=None, validator=v.optional(v.integer(1, 5)))
    """What the customer expected, on the satisfaction scale (1-5), when a survey asks both:
    the service-quality gap is satisfaction (perception) minus expectation."""
    case_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    reference: str | None = attrs.field(default=None, validator=v.optional(v.is_text(998)))
    """The channel's own id: a Message-ID, a SIP Call-ID; replies thread on it."""
    in_reply_to: str | None = attrs.field(default=None, validator=v.optional(v.is_text(998)))
    campaign_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    """The marketing campaign this contact belongs to (a send, a click), if any."""

    @duration.validator
    def _duration(self, attribute: attrs.Attribute[timedelta | None], value: timedelta | None) -> None:
        if value is not None and (not isinstance(value, timedelta) or value < timedelta(0)):
            from crmcore.errors import ValidationError

            raise ValidationError(attribute.name, value, "must be a non-negative timedelta")

    @property
    def family(self) -> ChannelFamily:
        return self.channel.family
