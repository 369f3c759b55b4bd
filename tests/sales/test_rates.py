"""The company's rates in storage, and a provider plugin behind them."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from crmcore import CRM, hookimpl
from crmcore.errors import NotFound, PluginError
from crmcore.exchange import Rate
from crmcore.values import Money


class Provider:
    """A rates provider plugin: knows CHF only, and answers garbage for JPY."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, date]] = []

    @hookimpl
    def crmcore_exchange_rates(self, base: str, quote: str, on: date) -> Decimal | str | None:
        self.asked.append((base, quote, on))
        if (base, quote) == ("CHF", "EUR"):
            return Decimal("1.05")
        return "lots" if base == "JPY" else None


def test_stored_rates_answer_first_then_the_provider(crm: CRM) -> None:
    provider = Provider()
    crm.plugins.register(provider)
    crm.plugins.check_pending()
    crm.rates.load([Rate("EUR", "USD", date(2025, 1, 1), Decimal("1.10")),
                    Rate("EUR", "USD", date(2025, 2, 1), Decimal("1.05"))])
    table = crm.rates.table()
    assert table.rate("EUR", "USD", date(2025, 1, 31)) == Decimal("1.10")
    assert table.rate("USD", "EUR", date(2025, 2, 3)) == 1 / Decimal("1.05")
    assert provider.asked == []
    assert crm.rates.rate("CHF", "EUR", date(2025, 1, 1)) == Decimal("1.05")
    with pytest.raises(NotFound):
        table.rate("EUR", "USD", date(2024, 12, 31))  # before the first stored rate, no provider answer
    with pytest.raises(PluginError):
        table.rate("JPY", "EUR", date(2025, 1, 1))
    crm.rates.load([Rate("EUR", "USD", date(2025, 1, 1), Decimal("1.11"))])
    assert [r.value for r in crm.rates.all()] == [Decimal("1.11"), Decimal("1.05")]


def test_the_provider_prices_a_quote_line(crm: CRM) -> None:
    from crmcore import Customer
    from crmcore.model import PriceBook, Product

    crm.plugins.register(Provider())
    crm.sales.catalogue.add_product(Product("watch", "Watch"))
    crm.sales.catalogue.add_price_book(PriceBook("chf", "CHF", {"watch": Decimal("100.00")}))
    buyer = crm.customers.add(Customer.new("Buyer"))
    deal = crm.opportunities.open(buyer.id, "Watches")
    quote = crm.sales.quotes.draft(deal.id, [("watch", 2)], currency="EUR")
    assert quote.total == Money("210.00")
