"""Collaborative CRM: the customer serves themself, 24/7, with no staff in the loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from crmcore.collaborative.self_service import Account, SelfService
from crmcore.errors import ValidationError
from crmcore.model import Channel, ChannelFamily, OrderLine

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.mail import Mailer

__all__ = ["Account", "Collaborative", "SelfService"]


class Collaborative:
    """The self-service family of a CRM."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def session(
        self, customer_id: str, *, channel: Channel | str = Channel.PORTAL,
        service_point: str | None = None, catalogue: Mapping[str, OrderLine] | None = None,
        mailer: Mailer | None = None,
        currency: str | None = None,
    ) -> SelfService:
        """A self-service session for one (already authenticated) customer.

        Authentication is the host application's job; crmcore makes sure the session
        can reach that customer's data and nobody else's. `catalogue` maps each product
        the customer may order to its line at quantity 1 (price, category): the company
        sets prices, the customer only picks products and quantities. Without it, the
        company's stored catalogue prices for the customer's tier (in `currency`, needed
        only when the fitting price books are in several) are used. `mailer` sends the
        verification token of an e-mail address the customer adds (else the
        `crmcore_send_verification` hook does, as it does for phones).
        """
        channel = Channel(channel)
        if channel.family is not ChannelFamily.COLLABORATIVE:
            raise ValidationError(
                "channel", str(channel), "self-service runs on portal, kiosk, app or ivr"
            )
        customer = self.crm.customers.get(customer_id)
        if catalogue is None:
            catalogue = self.crm.sales.catalogue.offers(currency, customer.tier)
        return SelfService(self.crm, customer_id, channel, service_point, catalogue, mailer)
