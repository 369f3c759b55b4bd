"""The customer: one record shared by every service point and channel."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

import attrs
import phonenumbers

from crmcore import values as v
from crmcore.errors import LimitExceeded, ValidationError
from crmcore.model.channels import Channel
from crmcore.model.ownership import Assignment


class PartyKind(v.Choice):
    __field__ = "kind"

    PERSON = "person"
    ORGANISATION = "organisation"


class LifecycleStage(v.Choice):
    __field__ = "lifecycle"

    LEAD = "lead"
    PROSPECT = "prospect"
    CUSTOMER = "customer"
    FORMER_CUSTOMER = "former_customer"


class ConsentStatus(v.Choice):
    __field__ = "status"

    GRANTED = "granted"
    WITHDRAWN = "withdrawn"


def _country(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(attribute.name, value, "must be an ISO 3166 alpha-2 code such as 'FR'")


@attrs.frozen
class PostalAddress:
    country: str = attrs.field(validator=_country)
    lines: tuple[str, ...] = attrs.field(
        default=(), converter=v.as_tuple, validator=attrs.validators.deep_iterable(v.is_text(200))
    )
    city: str = attrs.field(default="", validator=v.is_text(100, empty=True))
    postal_code: str = attrs.field(default="", validator=v.is_text(20, empty=True))
    region: str = attrs.field(default="", validator=v.is_text(100, empty=True))
    kind: str = attrs.field(default="home", validator=v.check(v.name))


@attrs.frozen
class Consent:
    """The current answer of a customer for one purpose on one channel."""

    purpose: str = attrs.field(validator=v.check(v.name))
    channel: Channel = attrs.field(converter=Channel)
    status: ConsentStatus = attrs.field(converter=ConsentStatus)
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    source: str = attrs.field(validator=v.is_text(200))


class ContactKind(v.Choice):
    __field__ = "kind"

    EMAIL = "email"
    PHONE = "phone"


@attrs.frozen
class PendingContact:
    """An e-mail address or phone number a customer added themself, not yet proven theirs.

    Until the customer gives back the token sent to it, it identifies nobody and
    receives nothing meant for the customer: it is not in `emails`/`phones`, which
    every lookup and every message use. Only the token's SHA-256 digest is kept.
    """

    kind: ContactKind = attrs.field(converter=ContactKind)
    value: str = attrs.field(validator=v.is_text(320))
    digest: str = attrs.field(validator=v.is_text(64))
    requested_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    expires_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)


MAX_PENDING = 5
"""Contact details one customer may have waiting for verification at a time."""


def _pending(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[PendingContact, ...]) -> None:
    if len(value) > MAX_PENDING:
        raise LimitExceeded("pending_contacts", attribute.name, len(value), MAX_PENDING)
    for index, item in enumerate(value):
        if not isinstance(item, PendingContact):
            raise ValidationError(f"{attribute.name}[{index}]", item, "must be a PendingContact")


def _postal(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
    for index, item in enumerate(value):
        if not isinstance(item, PostalAddress):
            raise ValidationError(f"{attribute.name}[{index}]", item, "must be a PostalAddress")


def _unique(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    """E-mail addresses match case-insensitively (as lookups do), so duplicates do too."""
    if len({item.lower() for item in value}) != len(value):
        raise ValidationError(attribute.name, value, "holds the same entry twice")


def _consents(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[Consent, ...]) -> None:
    keys = [(c.purpose, c.channel) for c in value]
    if len(set(keys)) != len(keys):
        raise ValidationError(attribute.name, keys, "holds two answers for one purpose and channel")


def _attributes(_instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    for key, item in value.items():
        v.name(key, f"{attribute.name} key")
        v.attribute_value(item, f"{attribute.name}[{key!r}]")
        if isinstance(item, datetime) and item.utcoffset():
            raise ValidationError(f"{attribute.name}[{key!r}]", item, "must be in UTC")


def _external_ids(_instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    for source, external in value.items():
        v.name(source, f"{attribute.name} source")
        v.text(external, f"{attribute.name}[{source!r}]", max_length=200)


@attrs.frozen
class Customer:
    """A person or organisation the company serves, at some stage of its lifecycle.

    `version` is 0 until the record is stored; storage bumps it on every write and
    refuses a write based on a stale version.
    """

    id: str = attrs.field(validator=v.is_text(64, one_line=True))
    name: str = attrs.field(validator=v.is_text(200, one_line=True))
    kind: PartyKind = attrs.field(default=PartyKind.PERSON, converter=PartyKind)
    emails: tuple[str, ...] = attrs.field(
        default=(), converter=v.as_tuple, validator=[v.each(v.email), _unique]
    )
    phones: tuple[str, ...] = attrs.field(
        default=(), converter=v.as_tuple, validator=[v.each(v.phone), _unique]
    )
    addresses: tuple[PostalAddress, ...] = attrs.field(default=(), converter=v.as_tuple, validator=_postal)
    birth_date: date | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(date))
    )
    language: str | None = attrs.field(default=None, validator=v.optional(v.is_text(35)))
    lifecycle: LifecycleStage = attrs.field(
        default=LifecycleStage.LEAD, converter=LifecycleStage
    )
    tier: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    tags: frozenset[str] = attrs.field(
        default=frozenset(), converter=v.as_frozenset, validator=v.each(v.name)
    )
    attributes: dict[str, v.AttributeValue] = attrs.field(factory=dict, validator=_attributes)
    external_ids: dict[str, str] = attrs.field(factory=dict, validator=_external_ids)
    consents: tuple[Consent, ...] = attrs.field(default=(), converter=v.as_tuple, validator=_consents)
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    created_at: datetime = attrs.field(factory=v.now, converter=v.as_utc, validator=v.is_utc)
    updated_at: datetime = attrs.field(factory=v.now, converter=v.as_utc, validator=v.is_utc)
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
    pending: tuple[PendingContact, ...] = attrs.field(default=(), converter=v.as_tuple, validator=_pending)
    """Contact details added in self-service and waiting for verification (see `PendingContact`)."""
    owner: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    """The member of staff (an agent id) who owns the relationship."""
    assignment: Assignment | None = attrs.field(
        default=None, validator=v.optional(v.instance_of(Assignment)))
    """Why `owner` owns it: the rule and its reason, from the last assignment by rule."""

    def __attrs_post_init__(self) -> None:
        if self.birth_date is not None and isinstance(self.birth_date, datetime):
            raise ValidationError("birth_date", self.birth_date, "must be a date, not a datetime")

    @classmethod
    def new(
        cls,
        name: str,
        *,
        emails: Iterable[str] = (),
        phones: Iterable[str] = (),
        region: str | None = None,
        id: str | None = None,
        **fields: Any,
    ) -> Customer:
        """Build a customer from loosely written input: e-mails and phones are normalised.

        National phone numbers are read in `region`, else in the first address's country.
        """
        first = next(iter(fields.get("addresses") or ()), None)
        region = region or (first.country if isinstance(first, PostalAddress) else None)
        stamped = "created_at" not in fields
        if stamped:
            fields["created_at"] = v.now()
        fields.setdefault("updated_at", fields["created_at"])
        built = cls(
            id=id or v.new_id(),
            name=name,
            emails=dedupe(v.email(e, f"emails[{i}]") for i, e in enumerate(emails)),
            phones=dedupe(v.phone(p, f"phones[{i}]", region) for i, p in enumerate(phones)),
            **fields,
        )
        if stamped:
            _WALL_CLOCK_STAMPED[id_of(built)] = built
        return built

    def times_from(self, moment: datetime) -> Customer:
        """This customer with `moment` as its creation time, when `new` stamped it from the
        wall clock (no time given); otherwise unchanged. The CRM calls it with its own
        clock when the customer is added, so an injected clock governs new records."""
        if _WALL_CLOCK_STAMPED.get(id_of(self)) is not self:
            return self
        return attrs.evolve(self, created_at=moment, updated_at=moment)

    def consent(self, purpose: str, channel: Channel) -> Consent | None:
        return next((c for c in self.consents if (c.purpose, c.channel) == (purpose, channel)), None)

    def has_consent(self, purpose: str, channel: Channel) -> bool:
        """True only on an explicit, unwithdrawn grant: silence is not consent."""
        answer = self.consent(purpose, channel)
        return answer is not None and answer.status is ConsentStatus.GRANTED

    def with_consent(
        self,
        purpose: str,
        channel: Channel,
        status: ConsentStatus,
        *,
        at: datetime,
        source: str,
    ) -> Customer:
        answer = Consent(purpose, channel, status, at, source)
        others = tuple(c for c in self.consents if (c.purpose, c.channel) != (purpose, channel))
        return attrs.evolve(self, consents=(*others, answer))

    @property
    def country(self) -> str | None:
        return self.addresses[0].country if self.addresses else None


_WALL_CLOCK_STAMPED: weakref.WeakValueDictionary[int, Customer] = weakref.WeakValueDictionary()
"""Customers `new` stamped from the wall clock, by object identity (a weak reference: the
entry goes with the object; an evolved copy is a new object, with times of its own)."""
id_of = id  # the builtin, under a name `new` (which takes an `id` argument) can reach


def dedupe(items: Iterable[str]) -> tuple[str, ...]:
    """The items, each first spelling once (e-mails and phones match case-insensitively)."""
    first: dict[str, str] = {}
    for item in items:
        first.setdefault(item.lower(), item)
    return tuple(first.values())
