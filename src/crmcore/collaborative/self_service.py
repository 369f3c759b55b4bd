"""One customer's self-service session: see the account, order, change details and consent.

The session holds a single customer id and no method takes another, so it cannot
reach anyone else's data. Every action is an interaction on the customer's
timeline, on the self-service channel it came through.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model import (
    Case,
    CaseKind,
    Channel,
    ConsentStatus,
    Customer,
    Direction,
    Interaction,
    OrderLine,
    PostalAddress,
    Purchase,
)

if TYPE_CHECKING:
    from crmcore.crm import CRM


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
        catalogue: Mapping[str, OrderLine],
    ) -> None:
        self._crm = crm
        self._customer_id = customer_id
        self._catalogue = catalogue
        self.channel = channel
        self.service_point = service_point

    def _log(self, subject: str, **fields: Any) -> None:
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
        """Change the details a customer owns; tier, tags, scores and the like stay staff-only."""
        with self._crm.transaction():
            current = self._crm.customers.get(self._customer_id)
            changes: dict[str, Any] = {}
            if name is not None:
                changes["name"] = name
            if addresses is not None:
                changes["addresses"] = tuple(addresses)
            if emails is not None:
                changes["emails"] = Customer.new("x", emails=emails).emails
            if phones is not None:
                where = (changes.get("addresses") or current.addresses or (None,))[0]
                region = where.country if where is not None else None
                changes["phones"] = Customer.new("x", phones=phones, region=region).phones
            if language is not None:
                changes["language"] = language
            updated = self._crm.customers.update(attrs.evolve(current, **changes))
            self._log("details changed: " + ", ".join(sorted(changes)))
            return updated

    def set_consent(self, purpose: str, channel: Channel | str, granted: bool) -> Customer:
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
