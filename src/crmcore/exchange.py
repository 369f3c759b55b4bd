"""Money across currencies: dated exchange rates and the one conversion rule.

No figure in crmcore adds two currencies together. A result is either kept per
currency, or every amount is converted to one reporting currency with the rate
of its own day, through `convert`. Where the rates come from (a table the
company loads, a provider plugin) is behind the `ExchangeRates` protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Protocol

import attrs

from crmcore.errors import NotFound, ValidationError
from crmcore.values import Money

CENT = Decimal("0.01")


class ExchangeRates(Protocol):
    """A source of dated rates."""

    def rate(self, base: str, quote: str, on: date) -> Decimal:
        """Units of `quote` for one unit of `base` on that day (the latest known on or
        before it); `NotFound` when there is none."""
        ...


@attrs.frozen
class Rate:
    """One published rate: 1 `base` = `value` `quote` from `on` onwards."""

    base: str
    quote: str
    on: date
    value: Decimal = attrs.field(converter=Decimal)

    def __attrs_post_init__(self) -> None:
        if not self.value.is_finite() or self.value <= 0:
            raise ValidationError("rate.value", self.value, "must be a positive finite number")
        if self.base == self.quote:
            raise ValidationError("rate.quote", self.quote, "must differ from the base currency")


class RateTable:
    """Rates held in memory (loaded from storage, a file or a provider); inverse rates
    are derived, so loading EUR→USD also answers USD→EUR."""

    def __init__(self, rates: Iterable[Rate] = ()) -> None:
        self._by_pair: dict[tuple[str, str], list[Rate]] = {}
        for rate in rates:
            self.add(rate)

    def add(self, rate: Rate) -> None:
        series = self._by_pair.setdefault((rate.base, rate.quote), [])
        series.append(rate)
        series.sort(key=lambda r: r.on)

    def rate(self, base: str, quote: str, on: date) -> Decimal:
        if base == quote:
            return Decimal(1)
        direct = _latest(self._by_pair.get((base, quote), ()), on)
        if direct is not None:
            return direct.value
        inverse = _latest(self._by_pair.get((quote, base), ()), on)
        if inverse is not None:
            return Decimal(1) / inverse.value
        raise NotFound("exchange rate", f"{base}/{quote} on {on.isoformat()}")


def _latest(series: Iterable[Rate], on: date) -> Rate | None:
    found = None
    for rate in series:
        if rate.on > on:
            break
        found = rate
    return found


def convert(
    money: Money, currency: str, on: date, rates: ExchangeRates, *, quantum: Decimal = CENT
) -> Money:
    """`money` in `currency` at the rate of day `on`, rounded half-even to `quantum`."""
    if money.currency == currency:
        return money
    try:
        rate = rates.rate(money.currency, currency, on)
    except AttributeError:
        if callable(getattr(rates, "rate", None)):
            raise
        raise ValidationError("rates", type(rates).__name__, "must be exchange rates (with rate())") from None
    value = money.amount * rate
    return Money(value.quantize(quantum, rounding=ROUND_HALF_EVEN), currency)


def totals(amounts: Iterable[Money]) -> dict[str, Decimal]:
    """Sum per currency: the only way crmcore adds money it has not converted."""
    out: dict[str, Decimal] = {}
    for money in amounts:
        out[money.currency] = out.get(money.currency, Decimal(0)) + money.amount
    return out


def in_currency(
    by_currency: Mapping[str, Decimal], currency: str, on: date, rates: ExchangeRates
) -> Money:
    """Per-currency totals converted to one reporting currency on one day, then added."""
    total = Money.zero(currency)
    for code, amount in sorted(by_currency.items()):
        total = total + convert(Money(amount, code), currency, on, rates)
    return total
