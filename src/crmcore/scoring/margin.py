"""Profit, not only revenue: the margin of each order line, and figures built on it.

A line's margin is (unit price - unit cost) x quantity when the line carries its
cost; otherwise the `MarginRule` gives a share of the price, by product, then by
category, then a default. A line with neither is refused (a ValidationError naming
the product), never counted as zero margin.

Margins need the order lines, which SQL storage keeps inside each purchase's
document: these figures read the purchases a page at a time (`every`), unlike
the revenue summary, which is aggregated in the database.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

import attrs

from crmcore.errors import ValidationError
from crmcore.exchange import ExchangeRates
from crmcore.model import OrderLine, Purchase
from crmcore.ports import UnitOfWork
from crmcore.scoring import arguments
from crmcore.scoring.summary import (
    EPOCH_DAY,
    DayTotal,
    Period,
    Summary,
    every,
    rows_of_day_totals,
)

QUANTUM = Decimal("0.0001")


def _shares(value: Mapping[str, float]) -> dict[str, Decimal]:
    out = {}
    for key, share in dict(arguments.mapping(value, "margin")).items():
        finite = (isinstance(share, Decimal) and share.is_finite()) or (
            isinstance(share, int | float) and not isinstance(share, bool) and math.isfinite(share))
        if not finite or not -1 <= share <= 1:
            raise ValidationError(f"margin[{key!r}]", share, "must be a share of the price from -1 to 1")
        out[key] = Decimal(str(share))
    return out


def _default(value: float | None) -> Decimal | None:
    return None if value is None else _shares({"default": value})["default"]


@attrs.frozen
class MarginRule:
    """Margin as a share of the price, for lines that carry no cost."""

    by_product: Mapping[str, Decimal] = attrs.field(factory=dict, converter=_shares)
    by_category: Mapping[str, Decimal] = attrs.field(factory=dict, converter=_shares)
    default: Decimal | None = attrs.field(default=None, converter=_default)

    def margin(self, line: OrderLine) -> Decimal:
        """The line's margin in its price's currency."""
        price = line.unit_price.amount * line.quantity
        if line.unit_cost is not None:
            return price - line.unit_cost.amount * line.quantity
        share = self.by_product.get(line.product, self.by_category.get(line.category, self.default))
        if share is None:
            raise ValidationError("margin", line.product,
                                  f"the line has no cost and no margin rule covers product "
                                  f"{line.product!r} or category {line.category!r}")
        return (price * share).quantize(QUANTUM)


COSTS_ONLY = MarginRule()
"""Every line must carry its cost."""


def margin_day_totals(purchases: Iterable[Purchase], period: Period, rule: MarginRule) -> list[DayTotal]:
    """Day totals (see `summary.DayTotal`) of margin instead of revenue."""
    found: dict[tuple[str, int, str], Decimal] = defaultdict(Decimal)
    for purchase in purchases:
        if purchase.ordered_at < period.end:
            day = (purchase.ordered_at.date() - EPOCH_DAY).days
            found[purchase.customer_id, day, purchase.currency] += sum(
                (rule.margin(line) for line in purchase.lines), Decimal(0))
    return [(c, d, code, amount) for (c, d, code), amount in sorted(found.items())]


def margin_summary(
    uow: UnitOfWork, as_of: date | datetime, rule: MarginRule = COSTS_ONLY, *,
    unit_days: float = 7.0, currency: str | None = None, rates: ExchangeRates | None = None,
) -> Summary:
    """The purchase summary with margin as the money figure (`monetary`: mean repeat
    margin, `total`: margin so far): what CLV and RFM use to rank by profit."""
    period = Period.as_of(as_of, unit_days)
    day_totals = margin_day_totals(every(uow, "purchases"), period, rule)
    rows, found = rows_of_day_totals(day_totals, currency=currency, rates=rates)
    return attrs.evolve(Summary.from_days(period, rows, currency=found, converted=rates is not None),
                        measure="margin")


@attrs.frozen
class MarginRow:
    item: str
    """The product or category."""
    currency: str
    revenue: Decimal
    margin: Decimal

    @property
    def share(self) -> float | None:
        """Margin over revenue."""
        return float(self.margin / self.revenue) if self.revenue else None


def margins_by(
    uow: UnitOfWork, as_of: date | datetime, rule: MarginRule = COSTS_ONLY, *, level: str = "category",
) -> list[MarginRow]:
    """Revenue and margin per product or category and currency, largest margin first."""
    if level not in ("product", "category"):
        raise ValidationError("level", level, "must be 'product' or 'category'")
    end = Period.as_of(as_of).end
    revenue: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    margin: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for purchase in every(uow, "purchases"):
        if purchase.ordered_at >= end:
            continue
        for line in purchase.lines:
            key = (getattr(line, level), purchase.currency)
            revenue[key] += line.unit_price.amount * line.quantity
            margin[key] += rule.margin(line)
    rows = [MarginRow(item, code, revenue[item, code], margin[item, code]) for item, code in revenue]
    return sorted(rows, key=lambda r: (r.currency, -r.margin, r.item))
