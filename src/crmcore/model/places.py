"""Where the company meets its customers, and the staff who do it."""

from __future__ import annotations

import attrs

from crmcore import values as v
from crmcore.model.calendar import BusinessCalendar
from crmcore.model.customer import PostalAddress


class ServicePointKind(v.Choice):
    __field__ = "kind"

    BRANCH = "branch"
    CALL_CENTRE = "call_centre"
    KIOSK = "kiosk"
    WEB = "web"
    APP = "app"


@attrs.frozen
class Location:
    address: PostalAddress | None = None
    latitude: float | None = attrs.field(default=None, validator=v.optional(v.in_range(-90, 90)))
    longitude: float | None = attrs.field(
        default=None, validator=v.optional(v.in_range(-180, 180))
    )
    timezone: str = attrs.field(default="UTC", validator=v.is_text(64))


@attrs.frozen
class ServicePoint:
    """A branch, call centre, kiosk, web site or app; its id is a short name like 'paris-cc'."""

    id: str = attrs.field(validator=v.check(v.name))
    name: str = attrs.field(validator=v.is_text(200))
    kind: ServicePointKind = attrs.field(converter=ServicePointKind)
    location: Location = attrs.field(factory=Location)
    calendar: BusinessCalendar | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(BusinessCalendar))
    )
    """Its business hours; service-level promises made here count only these (None: 24/7)."""
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))


@attrs.frozen
class Team:
    id: str = attrs.field(validator=v.check(v.name))
    name: str = attrs.field(validator=v.is_text(200))
    skills: frozenset[str] = attrs.field(
        default=frozenset(), converter=v.as_frozenset, validator=v.each(v.name)
    )
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
    lead: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    """The agent a case escalates to when the team breaks a promise."""


@attrs.frozen
class Agent:
    """A member of staff; `capacity` is how many conversations they can hold at once."""

    id: str = attrs.field(validator=v.check(v.name))
    name: str = attrs.field(validator=v.is_text(200))
    team: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    skills: frozenset[str] = attrs.field(
        default=frozenset(), converter=v.as_frozenset, validator=v.each(v.name)
    )
    capacity: int = attrs.field(default=1, validator=v.integer(1, 100))
    email: str | None = attrs.field(default=None, validator=v.optional(v.check(v.email)))
    phone_uri: str | None = attrs.field(default=None, validator=v.optional(v.is_text(200)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
    languages: frozenset[str] = attrs.field(
        default=frozenset(), converter=v.as_frozenset, validator=v.each(v.name)
    )
    """Languages the agent serves customers in (lower-case tags such as 'fr', 'pt-br')."""
    territories: frozenset[str] = attrs.field(
        default=frozenset(), converter=v.as_frozenset, validator=v.each(v.name)
    )
    """Regions or customer segments the agent covers besides their own service point."""
    active: bool = attrs.field(default=True, validator=v.instance_of(bool))
