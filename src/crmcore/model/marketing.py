"""Campaigns and the customers they target (the model; behaviour lives in `crmcore.marketing`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.channels import Channel


class MemberGroup(v.Choice):
    __field__ = "group"

    TARGET = "target"
    CONTROL = "control"
    """Held out on purpose, so the campaign's lift can be measured."""


class MemberStatus(v.Choice):
    __field__ = "status"

    SELECTED = "selected"
    """Frozen into the audience at launch; not yet looked at by a send run."""
    SENDING = "sending"
    """Handed to the transport by a run that has not yet recorded the outcome."""
    SENT = "sent"
    HELD = "held"
    """A control member who was eligible at send time: deliberately not sent."""
    SKIPPED = "skipped"
    """Not eligible at send time (no consent, capped, suppressed...); `reason` says why."""
    FAILED = "failed"
    """Eligible, but the message did not go out (or a crash left it unknown); never retried."""
    REFUSED = "refused"
    RESPONDED = "responded"
    CONVERTED = "converted"


class CampaignStatus(v.Choice):
    __field__ = "status"

    DRAFT = "draft"
    LAUNCHED = "launched"
    CLOSED = "closed"


def _fraction(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 0.5:
        raise ValidationError(
            attribute.name, value, "must be a number from 0 to 0.5 (control no larger than target)"
        )


def _probability(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValidationError(attribute.name, value, "must be a number strictly between 0 and 1")


def _links(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, dict):
        raise ValidationError(attribute.name, value, "must be a dict of name -> URL")
    for name, url in value.items():
        v.name(name, f"{attribute.name} name")
        v.text(url, f"{attribute.name}[{name!r}]", max_length=2000)
        if not url.startswith(("https://", "http://")) or any(ch.isspace() for ch in url):
            raise ValidationError(f"{attribute.name}[{name!r}]", url, "must be an http(s) URL without spaces")


@attrs.frozen
class Campaign:
    """A marketing action: who (a saved segment or a rule), how (channel, template), and
    how its effect is measured (a control group, a response window from `starts_at` to
    `ends_at`, a budget the cost per incremental conversion is judged against)."""

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
    segment_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    subject: str = attrs.field(default="", validator=v.is_text(1000, empty=True))
    text: str = attrs.field(default="", validator=v.is_text(1_000_000, empty=True))
    html: str | None = attrs.field(default=None, validator=v.optional(v.is_text(1_000_000)))
    links: dict[str, str] = attrs.field(factory=dict, validator=_links)
    """Named destinations; the template writes `$link_<name>` for a signed tracking URL."""
    control_fraction: float = attrs.field(default=0.1, validator=_fraction)
    seed: str = attrs.field(default="", validator=v.is_text(200, empty=True))
    stratify: str | None = attrs.field(default=None, validator=v.optional(v.is_text(100)))
    """A customer field ("tier", "country"...) or `score.<scorer>` (its label) to balance the holdout in."""
    baseline_rate: float | None = attrs.field(default=None, validator=_probability)
    minimum_lift: float | None = attrs.field(default=None, validator=_probability)
    """Absolute lift in conversion rate the campaign must be able to detect (power check at launch)."""
    alpha: float = attrs.field(default=0.05, validator=_probability)
    power: float = attrs.field(default=0.8, validator=_probability)
    status: CampaignStatus = attrs.field(default=CampaignStatus.DRAFT, converter=CampaignStatus)
    launched_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    closed_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )

    def __attrs_post_init__(self) -> None:
        if self.starts_at is not None and self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValidationError("ends_at", self.ends_at, f"must be after starts_at ({self.starts_at})")
        if (self.baseline_rate is None) != (self.minimum_lift is None):
            raise ValidationError("minimum_lift", self.minimum_lift, "goes with baseline_rate (both or none)")
        if self.baseline_rate is not None and self.minimum_lift is not None \
                and self.baseline_rate + self.minimum_lift >= 1:
            raise ValidationError("minimum_lift", self.minimum_lift, "baseline_rate + it must stay below 1")


@attrs.frozen
class CampaignMember:
    """One customer in one campaign: the group drawn at launch and what happened since."""

    campaign_id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    group: MemberGroup = attrs.field(default=MemberGroup.TARGET, converter=MemberGroup)
    status: MemberStatus = attrs.field(default=MemberStatus.SELECTED, converter=MemberStatus)
    at: datetime = attrs.field(factory=v.now, converter=v.as_utc, validator=v.is_utc)
    stratum: str = attrs.field(default="", validator=v.is_text(200, empty=True))
    reason: str | None = attrs.field(default=None, validator=v.optional(v.is_text(500)))
    reference: str | None = attrs.field(default=None, validator=v.optional(v.is_text(998)))
    """The send's own id (a Message-ID, a letter number): replies thread on it."""
    sent_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    responded_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    response: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    converted_at: datetime | None = attrs.field(
        default=None, converter=attrs.converters.optional(v.as_utc), validator=v.optional(v.is_utc)
    )
    revenue: Decimal | None = attrs.field(default=None, converter=attrs.converters.optional(v.decimal))
    joined: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    """Joined after launch (`crm.marketing.join`): its group was drawn alone, not in the launch's blocks."""
