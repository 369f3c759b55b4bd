"""One customer's self-service session: see the account, order, change details and consent.

The session holds a single customer id and no method takes another, so it cannot
reach anyone else's data. Every action is an interaction on the customer's
timeline, on the self-service channel it came through.

An e-mail address or phone number the customer adds is pending until they give
back the token sent to it (`verify`): typing someone else's address must not let
them read replies meant for that person, nor make the real owner's calls
unidentifiable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import IntegrityError, PluginError, ValidationError
from crmcore.model import (
    Case,
    CaseKind,
    Channel,
    ConsentStatus,
    ContactKind,
    Customer,
    Direction,
    Interaction,
    OrderLine,
    PendingContact,
    PostalAddress,
    Purchase,
)

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.mail import Mailer

VERIFY_WITHIN = timedelta(hours=24)
"""How long a verification token stays good."""
SUBJECT_LENGTH = 1000
"""An interaction's subject holds at most this many characters (the timeline entry is cut to it)."""


@attrs.frozen
class Account:
    """What the customer sees of themself."""

    customer: Customer
    purchases: list[Purchase]
    open_cases: list[Case]
    timeline: list[Interaction]


class SelfService:
    def __init__(
        self, crm: CRM, customer_id: str, channel: Channel, service_point: str | None,
        catalogue: Mapping[str, OrderLine], mailer: Mailer | None = None,
    ) -> None:
        self._crm = crm
        self._customer_id = customer_id
        self._catalogue = catalogue
        self._mailer = mailer
        self.channel = channel
        self.service_point = service_point

    def _log(self, subject: str, **fields: Any) -> None:
        if len(subject) > SUBJECT_LENGTH:  # what the customer wrote fits; the words we add may not
            subject = subject[: SUBJECT_LENGTH - 3] + "..."
        self._crm.interactions.log(
            self._customer_id, channel=self.channel, direction=Direction.INBOUND,
            service_point=self.service_point, subject=subject, **fields,
        )

    def account(self, *, history: int = 20) -> Account:
        with self._crm.transaction():
            return Account(
                customer=self._crm.customers.get(self._customer_id),
                purchases=self._crm.purchases.for_customer(self._customer_id, limit=history),
                open_cases=self._crm.cases.for_customer(self._customer_id, open_only=True),
                timeline=self._crm.interactions.timeline(self._customer_id, limit=history),
            )

    def update_details(
        self,
        *,
        name: str | None = None,
        emails: Iterable[str] | None = None,
        phones: Iterable[str] | None = None,
        addresses: Sequence[PostalAddress] | None = None,
        language: str | None = None,
    ) -> Customer:
        """Change the details a customer owns; tier, tags, scores and the like stay staff-only.

        `emails` and `phones` are the complete lists wanted: one left out is removed
        at once, one added becomes pending and a token is sent to it (see `verify`).
        """
        with self._crm.transaction():
            current = self._crm.customers.get(self._customer_id)
            changes: dict[str, Any] = {}
            if name is not None:
                changes["name"] = name
            if addresses is not None:
                changes["addresses"] = _addresses(addresses)
            added: list[tuple[ContactKind, str]] = []
            if emails is not None:
                wanted = Customer.new("x", emails=_texts(emails, "emails")).emails
                changes["emails"], new = _split(current.emails, wanted)
                added += [(ContactKind.EMAIL, e) for e in new]
            if phones is not None:
                where = (changes.get("addresses") or current.addresses or (None,))[0]
                region = where.country if where is not None else None
                wanted = Customer.new("x", phones=_texts(phones, "phones"), region=region).phones
                changes["phones"], new = _split(current.phones, wanted)
                added += [(ContactKind.PHONE, p) for p in new]
            if language is not None:
                changes["language"] = language
            tokens = {detail: secrets.token_urlsafe(24) for detail in added}
            kept = tuple(p for p in current.pending if (p.kind, p.value) not in tokens)
            now = self._crm.clock()
            pending = kept + tuple(
                PendingContact(kind, value, _digest(token), now, now + VERIFY_WITHIN)
                for (kind, value), token in tokens.items()
            )
            updated = self._crm.customers.update(attrs.evolve(current, pending=pending, **changes))
            for (kind, value), token in tokens.items():
                self._send_token(updated, kind, value, token)
            changed = sorted(changes) + [f"{kind} pending verification" for kind, _ in added]
            self._log("details changed: " + ", ".join(changed))
            return updated

    def verify(self, token: str) -> Customer:
        """Prove a pending contact detail with the token sent to it: it becomes the customer's.

        A wrong or expired token is a ValidationError; an address that meanwhile
        belongs to someone else is an IntegrityError that names nobody.
        """
        if not isinstance(token, str) or not 0 < len(token) <= 200:
            raise ValidationError("token", token, "is not a verification token")
        digest = _digest(token)
        with self._crm.transaction():
            current = self._crm.customers.get(self._customer_id)
            now = self._crm.clock()
            found = next((p for p in current.pending if hmac.compare_digest(p.digest, digest)), None)
            if found is None or found.expires_at < now:
                raise ValidationError("token", "...", "is wrong or has expired")
            rest = tuple(p for p in current.pending if p is not found)
            if found.kind is ContactKind.EMAIL:
                proven = attrs.evolve(current, pending=rest, emails=(*current.emails, found.value))
            else:
                proven = attrs.evolve(current, pending=rest, phones=(*current.phones, found.value))
            try:
                updated = self._crm.customers.update(proven)
            except IntegrityError:
                raise IntegrityError(f"this {found.kind} cannot be added to your account") from None
            self._log(f"{found.kind} verified")
            return updated

    def _send_token(self, customer: Customer, kind: ContactKind, address: str, token: str) -> None:
        if kind is ContactKind.EMAIL and self._mailer is not None:
            self._mailer.send_verification(customer, address, token)
            return
        sent = self._crm.plugins.hook.crmcore_send_verification(
            crm=self._crm, customer_id=customer.id, kind=str(kind), address=address, token=token
        )
        if not sent:
            raise PluginError(f"no way to send a verification code to a new {kind}: "
                              "give the session a mailer or install a crmcore_send_verification plugin")

    def set_consent(self, purpose: str, channel: Channel | str, granted: bool) -> Customer:
        if not isinstance(granted, bool):  # "false" is a truthy string: consent must be said, not guessed
            raise ValidationError("granted", granted, "must be True or False")
        status = ConsentStatus.GRANTED if granted else ConsentStatus.WITHDRAWN
        with self._crm.transaction():
            updated = self._crm.customers.set_consent(
                self._customer_id, purpose, Channel(channel), status, source=f"self-service:{self.channel}"
            )
            self._log(f"consent {status}: {purpose} by {Channel(channel)}")
            return updated

    def order(self, items: Mapping[str, int]) -> Purchase:
        """Order products by name and quantity; prices come from the company's catalogue,
        never from the customer."""
        lines = []
        for product, quantity in items.items():
            offer = self._catalogue.get(product)
            if offer is None:
                raise ValidationError("product", product, "is not in the catalogue")
            lines.append(attrs.evolve(offer, quantity=quantity))
        with self._crm.transaction():
            purchase = self._crm.purchases.record(Purchase(
                v.new_id(), self._customer_id, self._crm.clock(), tuple(lines),
                channel=self.channel, service_point=self.service_point,
            ))
            self._log(f"order {purchase.id}: {purchase.total}", reference=purchase.id)
            return purchase

    def request(self, subject: str, kind: CaseKind | str = CaseKind.REQUEST) -> Case:
        """Open a case (a request, a complaint) without talking to anyone."""
        with self._crm.transaction():
            case = self._crm.cases.open(
                self._customer_id, kind, subject, channel=self.channel,
                service_point=self.service_point,
            )
            self._log(f"{case.kind} opened: {subject}", case_id=case.id)
            return case


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _texts(values: Iterable[str], field: str) -> list[str]:
    """A list of texts; a bare string is refused (it would be read letter by letter)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError(field, values, "must be a list of texts")
    return list(values)


def _addresses(values: Sequence[PostalAddress]) -> tuple[PostalAddress, ...]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise ValidationError("addresses", values, "must be a list of PostalAddress")
    found = tuple(values)
    for index, item in enumerate(found):
        if not isinstance(item, PostalAddress):
            raise ValidationError(f"addresses[{index}]", item, "must be a PostalAddress")
    return found


def _split(current: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """(what stays: the wanted ones already proven, case-insensitively; what must be verified first)."""
    known = {item.lower(): item for item in current}
    kept = tuple(known[item.lower()] for item in wanted if item.lower() in known)
    return kept, [item for item in wanted if item.lower() not in known]
