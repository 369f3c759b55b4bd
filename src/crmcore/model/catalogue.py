"""What the company sells and at what price: products, price books and quotes.

Prices are exact `Money`. One rounding rule, stated once: a discounted unit price
and a line's tax are rounded half-even to the cent; everything else is exact
addition and multiplication by whole quantities, so a quote's total is the sum of
its lines to the cent.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError

CENT = Decimal("0.01")


def _share(_instance: Any, attribute: attrs.Attribute[Any], value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite() or not 0 <= value <= 1:
        raise ValidationError(attribute.name, value, "must be a Decimal between 0 and 1")


def _iso(_instance: Any, _attribute: attrs.Attribute[Any], value: Any) -> None:
    v.Money(0, value)  # refuses anything but an ISO 4217 code, naming `currency`


def _decimal(value: object) -> Decimal:
    return v.decimal(value, "share")


@attrs.frozen
class Product:
    """A thing the company sells; `id` is the code order lines carry. `cost` (optional)
    is what one unit costs the company, for margins."""

    id: str = attrs.field(validator=v.is_text(100))
    name: str = attrs.field(validator=v.is_text(200))
    category: str = attrs.field(default="", validator=v.is_text(100, empty=True))
    cost: v.Money | None = attrs.field(default=None, validator=v.optional(v.instance_of(v.Money)))
    active: bool = attrs.field(default=True, validator=v.instance_of(bool))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))


def _prices(_instance: Any, attribute: attrs.Attribute[Any], value: dict[str, Decimal]) -> None:
    if not isinstance(value, dict):
        raise ValidationError(attribute.name, value, "must map product ids to unit prices")
    for product, price in value.items():
        v.text(product, f"{attribute.name} key", max_length=100)
        v.decimal(price, f"{attribute.name}[{product!r}]")
        if price < 0:
            raise ValidationError(f"{attribute.name}[{product!r}]", price, "must not be negative")


@attrs.frozen
class PriceBook:
    """Unit prices in one currency, for one customer tier (None: for every tier)."""

    id: str = attrs.field(validator=v.check(v.name))
    currency: str = attrs.field(validator=_iso)
    prices: dict[str, Decimal] = attrs.field(factory=dict, validator=_prices)
    tier: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))

    def price(self, product: str) -> v.Money | None:
        found = self.prices.get(product)
        return None if found is None else v.Money(found, self.currency)


class QuoteStatus(v.Choice):
    __field__ = "status"

    DRAFT = "draft"
    SENT = "sent"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"

    @property
    def is_final(self) -> bool:
        return self in (QuoteStatus.ACCEPTED, QuoteStatus.REJECTED, QuoteStatus.SUPERSEDED)


def _quantity(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(attribute.name, value, "must be a whole number")
    if not 1 <= value <= 1_000_000:
        raise ValidationError(attribute.name, value, "must be between 1 and 1,000,000")


@attrs.frozen
class QuoteLine:
    """A product at a quantity, its list unit price, a discount and a tax rate (shares)."""

    product: str = attrs.field(validator=v.is_text(100))
    quantity: int = attrs.field(validator=_quantity)
    unit_price: v.Money = attrs.field(validator=v.instance_of(v.Money))
    discount: Decimal = attrs.field(default=Decimal(0), converter=_decimal, validator=_share)
    tax_rate: Decimal = attrs.field(default=Decimal(0), converter=_decimal, validator=_share)
    category: str = attrs.field(default="", validator=v.is_text(100, empty=True))

    def __attrs_post_init__(self) -> None:
        if self.unit_price.amount < 0:
            raise ValidationError("unit_price", self.unit_price, "must not be negative")

    @property
    def net_unit_price(self) -> v.Money:
        """The unit price after the discount, rounded half-even to the cent."""
        net = self.unit_price.amount * (1 - self.discount)
        return v.Money(net.quantize(CENT, rounding=ROUND_HALF_EVEN), self.unit_price.currency)

    @property
    def net(self) -> v.Money:
        return self.net_unit_price * self.quantity

    @property
    def tax(self) -> v.Money:
        tax = (self.net.amount * self.tax_rate).quantize(CENT, rounding=ROUND_HALF_EVEN)
        return v.Money(tax, self.unit_price.currency)

    @property
    def total(self) -> v.Money:
        return self.net + self.tax


def _lines(instance: Quote, attribute: attrs.Attribute[Any], value: tuple[QuoteLine, ...]) -> None:
    if not value:
        raise ValidationError(attribute.name, value, "a quote needs at least one line")
    for index, line in enumerate(value):
        if not isinstance(line, QuoteLine):
            raise ValidationError(f"lines[{index}]", line, "must be a QuoteLine")
        if line.unit_price.currency != instance.currency:
            raise ValidationError(f"lines[{index}].unit_price.currency", line.unit_price.currency,
                                  f"differs from the quote's currency {instance.currency}")


@attrs.frozen
class Quote:
    """One revision of an offer on an opportunity; a new revision supersedes the previous."""

    id: str = attrs.field(validator=v.is_text(64))
    opportunity_id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    currency: str = attrs.field(validator=_iso)
    lines: tuple[QuoteLine, ...] = attrs.field(converter=v.as_tuple, validator=_lines)
    created_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    revision: int = attrs.field(default=1, validator=v.integer(1, 10_000))
    status: QuoteStatus = attrs.field(default=QuoteStatus.DRAFT, converter=QuoteStatus)
    valid_until: date | None = attrs.field(default=None, validator=v.optional(v.instance_of(date)))
    supersedes: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))

    @property
    def subtotal(self) -> v.Money:
        return _sum((line.net for line in self.lines), self.currency)

    @property
    def tax(self) -> v.Money:
        return _sum((line.tax for line in self.lines), self.currency)

    @property
    def total(self) -> v.Money:
        return self.subtotal + self.tax


def _sum(amounts: Any, currency: str) -> v.Money:
    total = v.Money.zero(currency)
    for amount in amounts:
        total = total + amount
    return total
