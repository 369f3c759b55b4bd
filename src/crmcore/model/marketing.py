"""Campaigns and the customers they target (the model; behaviour comes with campaigns)."""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v
from crmcore.model.channels import Channel


class MemberGroup(v.Choice):
    __field__ = "group"

    TARGET = "target"
    CONTROL = "control"
    """Held out on purpose, so the campaign's lift can be measured."""


class MemberStatus(v.Choice):
    __field__ = "status"

    SELECTED = "selected"
    SENT = "sent"
    REFUSED = "refused"
    RESPONDED = "responded"
    CONVERTED = "converted"


@attrs.frozen
class Campaign:
    id: str = attrs.field(validator=v.is_text(64))
    name: str = attrs.field(validator=v.is_text(200))
    channel: Channel = attrs.field(converter=Channel)
    purpose: str = attrs.field(default="marketing", validator=v.check(v.name))
    rule: str | None = attrs.field(default=None, validator=v.optional(v.is_text(10_000)))
    starts_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    ends_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    budget: v.Money | None = attrs.field(default=None, validator=v.optional(v.instance_of(v.Money)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))


@attrs.frozen
class CampaignMember:
    campaign_id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    group: MemberGroup = attrs.field(default=MemberGroup.TARGET, converter=MemberGroup)
    status: MemberStatus = attrs.field(default=MemberStatus.SELECTED, converter=MemberStatus)
    at: datetime = attrs.field(factory=v.now, converter=v.as_utc, validator=v.is_utc)
