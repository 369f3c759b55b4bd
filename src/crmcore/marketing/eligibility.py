"""Who may be contacted at send time, and why not: consent, frequency cap, suppression, quiet hours.

The same checks run for control members (who are then held, not sent), so target
and control stay comparable: both groups keep only those the campaign could have reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model import Channel, Customer, Direction, Interaction


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", value, "is not an IANA time zone such as 'Europe/Paris'") from None
    return value


def _cap(_instance: object, attribute: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValidationError(attribute.name, value, "must be a whole number of at least 1")


def _pair(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _addresses(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.email(a, "suppressed").lower() for a in values)


def _window(_instance: object, attribute: attrs.Attribute[timedelta], value: timedelta) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise ValidationError(attribute.name, value, "must be a positive timedelta")


def _hours(_instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not (isinstance(value, tuple) and len(value) == 2 and all(isinstance(t, time) for t in value)):
        raise ValidationError(attribute.name, value, "must be a (start, end) pair of datetime.time")


@attrs.frozen
class Policy:
    """Company rules for marketing contact, applied to every campaign's send.

    `frequency_cap` messages per customer in `frequency_window`, counting every
    campaign's sends on the timeline; `quiet_hours` (start, end) in the customer's
    `timezone` attribute, else `timezone`; `suppressed` addresses and customers
    tagged with any of `suppress_tags` are never contacted.
    """

    frequency_cap: int | None = attrs.field(default=None, validator=_cap)
    frequency_window: timedelta = attrs.field(default=timedelta(days=7), validator=_window)
    quiet_hours: tuple[time, time] | None = attrs.field(default=None, converter=_pair, validator=_hours)
    timezone: str = attrs.field(default="UTC", converter=_zone)
    suppressed: frozenset[str] = attrs.field(factory=frozenset, converter=_addresses)
    suppress_tags: frozenset[str] = attrs.field(factory=frozenset, converter=v.as_frozenset)


@attrs.frozen
class Verdict:
    eligible: bool
    reason: str | None = None
    deferred: bool = False
    """Not now (quiet hours), but the member stays in the queue for a later run."""


ELIGIBLE = Verdict(True)


def check(
    policy: Policy,
    customer: Customer,
    *,
    purpose: str,
    channel: Channel,
    now: datetime,
    recent: Iterable[Interaction],
) -> Verdict:
    """The verdict for one customer; `recent` is their timeline over the frequency window."""
    if not customer.has_consent(purpose, channel):
        return Verdict(False, f"no {channel} consent for {purpose}")
    if channel is Channel.EMAIL:
        if not customer.emails:
            return Verdict(False, "no e-mail address")
        if any(address.lower() in policy.suppressed for address in customer.emails):
            return Verdict(False, "address on the suppression list")
    if channel is Channel.LETTER and not customer.addresses:
        return Verdict(False, "no postal address")
    tagged = sorted(customer.tags & policy.suppress_tags)
    if tagged:
        return Verdict(False, f"suppressed by tag {tagged[0]}")
    if policy.frequency_cap is not None:
        since = now - policy.frequency_window
        sent = sum(
            1
            for i in recent
            if i.campaign_id is not None and i.direction is Direction.OUTBOUND and i.occurred_at > since
        )
        if sent >= policy.frequency_cap:
            return Verdict(
                False, f"frequency cap: {sent} marketing messages since {since:%Y-%m-%d %H:%M} UTC"
            )
    if policy.quiet_hours is not None and _quiet(policy, customer, now):
        return Verdict(False, "quiet hours", deferred=True)
    return ELIGIBLE


def _quiet(policy: Policy, customer: Customer, now: datetime) -> bool:
    zone_name = customer.attributes.get("timezone")
    try:
        zone = ZoneInfo(zone_name) if isinstance(zone_name, str) else ZoneInfo(policy.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zone = ZoneInfo(policy.timezone)
    local = now.astimezone(zone).time()
    start, end = policy.quiet_hours or (time(0), time(0))
    return start <= local < end if start <= end else local >= start or local < end
