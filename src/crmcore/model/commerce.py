"""Purchases (orders) and their lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from crmcore import limits
from crmcore import values as v
from crmcore.errors import LimitExceeded, ValidationError
from crmcore.model.channels import Channel


def _cost(instance: OrderLine, attribute: attrs.Attribute[Any], value: v.Money | None) -> None:
    if value is None:
        return
    if not isinstance(value, v.Money):
        raise ValidationError(attribute.name, value, "must be Money or None")
    if value.currency != instance.unit_price.currency:
        raise ValidationError(attribute.name, value.currency,
                              f"differs from the price's currency {instance.unit_price.currency}")


@attrs.frozen
class OrderLine:
    product: str = attrs.field(validator=v.is_text(100))
    unit_price: v.Money
    quantity: int = attrs.field(default=1, validator=v.integer(1, 1_000_000))
    category: str = attrs.field(default="", validator=v.is_text(100, empty=True))
    unit_cost: v.Money | None = attrs.field(default=None, validator=_cost)
    """What one unit cost the company (for margins), in the price's currency; None: unknown."""

    @property
    def total(self) -> v.Money:
        return self.unit_price * self.quantity


def _lines(instance: Purchase, attribute: attrs.Attribute[Any], value: tuple[OrderLine, ...]) -> None:
    if not value:
        raise ValidationError(attribute.name, value, "a purchase needs at least one line")
    for index, line in enumerate(value):
        if not isinstance(line, OrderLine):
            raise ValidationError(f"lines[{index}]", line, "must be an OrderLine")
        if line.unit_price.currency != value[0].unit_price.currency:
            raise ValidationError(
                f"lines[{index}].unit_price.currency", line.unit_price.currency,
                f"differs from the purchase's currency {value[0].unit_price.currency}",
            )
    total = sum((line.unit_price.amount * line.quantity for line in value), Decimal(0))
    if abs(total) >= limits.MONEY:  # each line may be in range and their sum not
        reason = f"is out of range (below {limits.MONEY:,})"
        raise LimitExceeded("money", "total", total, limits.MONEY, reason)


@attrs.frozen
class Purchase:
    """An order placed by a customer; append-only, so it carries no version."""

    id: str = attrs.field(validator=v.is_text(64))
    customer_id: str = attrs.field(validator=v.is_text(64))
    ordered_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    lines: tuple[OrderLine, ...] = attrs.field(converter=v.as_tuple, validator=_lines)
    channel: Channel | None = attrs.field(default=None, converter=attrs.converters.optional(Channel))
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))

    @property
    def currency(self) -> str:
        return self.lines[0].unit_price.currency

    @property
    def amount(self) -> Decimal:
        """The total as a bare Decimal in `currency` (storage reads this on hot paths)."""
        return sum((line.unit_price.amount * line.quantity for line in self.lines), Decimal(0))

    @property
    def total(self) -> v.Money:
        return v.Money(self.amount, self.currency)
