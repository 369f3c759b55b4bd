"""The company's exchange rates: loaded into storage, read as one `ExchangeRates`.

Stored rates answer first; where they have none for a pair on or before a day, a
provider plugin (`crmcore_exchange_rates`) may answer; else the rate is `NotFound`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING

from crmcore.errors import NotFound, PluginError, ValidationError
from crmcore.exchange import ExchangeRates, Rate, RateTable

if TYPE_CHECKING:
    import pluggy

    from crmcore.crm import CRM


class ProvidedRates:
    """A table of rates read once, with the provider plugins behind it."""

    def __init__(self, table: RateTable, plugins: pluggy.PluginManager) -> None:
        self.table = table
        self.plugins = plugins

    def rate(self, base: str, quote: str, on: date) -> Decimal:
        try:
            return self.table.rate(base, quote, on)
        except NotFound:
            provided = self.plugins.hook.crmcore_exchange_rates(base=base, quote=quote, on=on)
            if provided is None:
                raise
        try:
            return Rate(base, quote, on, provided).value
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise PluginError(f"a rates provider answered {provided!r} for {base}/{quote}: {exc}") from None


class Rates:
    """`crm.rates`: load rates, and read them (with the providers) as `ExchangeRates`."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def load(self, rates: Iterable[Rate]) -> int:
        """Store rates (a rate for the same pair and day replaces the old one)."""
        held = list(rates)
        for index, rate in enumerate(held):
            if not isinstance(rate, Rate):
                raise ValidationError(f"rates[{index}]", rate, "must be a Rate")
        with self.crm.transaction() as uow:
            return uow.rates.put(held)

    def all(self) -> list[Rate]:
        with self.crm.reading() as uow:
            return uow.rates.all()

    def table(self) -> ProvidedRates:
        """Every stored rate, read once, answering as `ExchangeRates` (providers behind it)."""
        return ProvidedRates(RateTable(self.all()), self.crm.plugins)

    def rate(self, base: str, quote: str, on: date) -> Decimal:
        return self.table().rate(base, quote, on)


def _fits(rates: ProvidedRates) -> ExchangeRates:
    return rates  # mypy proves ProvidedRates implements the protocol
