"""Catalogue, price books and quotes: exact money, versions, and acceptance in one transaction."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from crmcore import CRM, Customer
from crmcore.errors import ValidationError
from crmcore.exchange import Rate
from crmcore.model import Opportunity, PriceBook, Product, QuoteStatus, Stage
from crmcore.values import Money
from tests.sales.conftest import Clock


@pytest.fixture
def shop(crm: CRM) -> CRM:
    catalogue = crm.sales.catalogue
    catalogue.add_product(Product("widget", "Widget", "tools", cost=Money("4.00")))
    catalogue.add_product(Product("gadget", "Gadget", "toys"))
    catalogue.add_product(Product("relic", "Relic", "toys", active=False))
    catalogue.add_price_book(PriceBook("eur", "EUR", {"widget": Decimal("10.00"),
                                                      "gadget": Decimal("7.50"),
                                                      "relic": Decimal("1.00")}))
    catalogue.add_price_book(PriceBook("eur-gold", "EUR", {"widget": Decimal("9.00")}, tier="gold"))
    catalogue.add_price_book(PriceBook("gbp", "GBP", {"gadget": Decimal("6.00")}))
    return crm


@pytest.fixture
def deal(shop: CRM) -> Opportunity:
    gold = shop.customers.add(Customer.new("Gold Ltd", tier="gold"))
    return shop.opportunities.open(gold.id, "Restock", amount=Money("100.00"))


def test_prices_come_from_the_tier_book_then_the_currency_book(shop: CRM, deal: Opportunity) -> None:
    quote = shop.sales.quotes.draft(deal.id, [("widget", 3), ("gadget", 2)], currency="EUR")
    assert [(li.product, li.unit_price) for li in quote.lines] == [
        ("widget", Money("9.00")), ("gadget", Money("7.50"))]
    assert quote.total == Money("42.00") and quote.revision == 1


def test_discount_and_tax_round_half_even_to_the_cent(shop: CRM, deal: Opportunity) -> None:
    quote = shop.sales.quotes.draft(
        deal.id, [{"product": "gadget", "quantity": 3, "discount": "0.15", "tax_rate": "0.2"}],
        currency="EUR")
    (line,) = quote.lines
    assert line.net_unit_price == Money("6.38")  # 7.50 x 0.85 = 6.375 -> 6.38 (half-even)
    assert (line.net, line.tax, quote.total) == (Money("19.14"), Money("3.83"), Money("22.97"))


def test_a_line_in_another_currency_needs_a_rate(shop: CRM, deal: Opportunity) -> None:
    with pytest.raises(ValidationError) as caught:
        shop.sales.quotes.draft(deal.id, [("widget", 1)], currency="GBP")
    assert caught.value.field == "lines[0].product.currency"
    assert shop.sales.quotes.for_opportunity(deal.id) == []
    shop.rates.load([Rate("GBP", "EUR", date(2024, 12, 1), Decimal("1.2"))])
    quote = shop.sales.quotes.draft(deal.id, [("widget", 1), ("gadget", 1)], currency="GBP")
    assert [li.unit_price for li in quote.lines] == [Money("7.50", "GBP"), Money("6.00", "GBP")]


@pytest.mark.parametrize(("item", "field"), [
    (("widget", -1), "lines[0].quantity"),
    (("widget", 0), "lines[0].quantity"),
    (("relic", 1), "lines[0].product"),
    (("nothing", 1), "lines[0].product"),
    ({"product": "widget", "quantity": 1, "discount": "1.5"}, "lines[0].discount"),
])
def test_bad_lines_are_refused_and_nothing_is_written(
    shop: CRM, deal: Opportunity, item: object, field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        shop.sales.quotes.draft(deal.id, [("gadget", 1), item], currency="EUR")  # type: ignore[list-item]
    assert caught.value.field == field.replace("[0]", "[1]")
    assert shop.sales.quotes.for_opportunity(deal.id) == []


def test_revisions_supersede_and_acceptance_wins_and_buys(
    shop: CRM, deal: Opportunity, clock: Clock
) -> None:
    first = shop.sales.quotes.draft(deal.id, [("widget", 3)], currency="EUR")
    shop.sales.quotes.send(first.id)
    clock.advance(days=1)
    second = shop.sales.quotes.revise(first.id, [("widget", 10), ("gadget", 1)])
    assert (second.revision, second.supersedes) == (2, first.id)
    assert [q.status for q in shop.sales.quotes.for_opportunity(deal.id)] == [
        QuoteStatus.SUPERSEDED, QuoteStatus.DRAFT]
    with pytest.raises(ValidationError):
        shop.sales.quotes.accept(first.id)
    clock.advance(days=1)
    quote, won, purchase = shop.sales.quotes.accept(second.id)
    assert quote.status is QuoteStatus.ACCEPTED and won.stage is Stage.WON
    assert won.amount == quote.subtotal == purchase.total == Money("97.50")
    assert shop.purchases.for_customer(deal.customer_id) == [purchase]
    assert shop.customers.get(deal.customer_id).lifecycle == "customer"


def test_a_refused_acceptance_writes_nothing(shop: CRM, deal: Opportunity) -> None:
    from crmcore.model import Pipeline, PipelineStage

    shop.sales.pipelines.add(Pipeline("p", "P", (PipelineStage("open", 0.3),), won_reasons=("fit",)))
    other = shop.sales.pipelines.open(deal.customer_id, "Reasons needed", pipeline="p")
    quote = shop.sales.quotes.draft(other.id, [("widget", 1)], currency="EUR")
    with pytest.raises(ValidationError) as caught:
        shop.sales.quotes.accept(quote.id)
    assert caught.value.field == "reason"
    assert shop.sales.quotes.get(quote.id).status is QuoteStatus.DRAFT
    assert shop.opportunities.get(other.id) == other
    assert shop.purchases.for_customer(deal.customer_id) == []


def test_self_service_orders_from_the_stored_catalogue(shop: CRM, deal: Opportunity) -> None:
    portal = shop.collaborative.session(deal.customer_id, currency="EUR")
    order = portal.order({"widget": 2, "gadget": 1})
    assert order.total == Money("25.50")  # widget at the gold price
    with pytest.raises(ValidationError):
        portal.order({"relic": 1})
    assert shop.collaborative.session(deal.customer_id).order({"widget": 1}).total == Money("9.00")
    plain = shop.customers.add(Customer.new("Plain"))  # no tier: the EUR and GBP books both fit
    with pytest.raises(ValidationError) as caught:
        shop.collaborative.session(plain.id)
    assert caught.value.field == "currency"
    assert shop.collaborative.session(plain.id, currency="GBP").order({"gadget": 1}).total == Money(
        "6.00", "GBP")


@pytest.mark.parametrize("item", [("widget",), "widget", ("widget", 1, 2), None])
def test_a_malformed_line_is_a_validation_error(shop: CRM, deal: Opportunity, item: object) -> None:
    with pytest.raises(ValidationError) as caught:
        shop.sales.quotes.draft(deal.id, [item], currency="EUR")  # type: ignore[list-item]
    assert caught.value.field == "lines[0]"


def test_cross_sell_offers_keep_to_active_products(shop: CRM, clock: Clock) -> None:
    from crmcore.model import OrderLine, Purchase

    buyers = [shop.customers.add(Customer.new(f"B{n}")) for n in range(6)]
    baskets = [("widget", "relic"), ("widget", "relic"), ("widget", "gadget"), ("widget",),
               ("relic", "widget"), ("gadget",)]
    for n, (buyer, basket) in enumerate(zip(buyers, baskets, strict=True)):
        shop.purchases.record(Purchase(f"p{n}", buyer.id, clock.now, tuple(
            OrderLine(item, Money("1.00")) for item in basket)))
    clock.advance(days=1)
    everything = shop.analytical.next_offers(min_support=0.1)
    kept = shop.sales.catalogue.next_offers(min_support=0.1)
    assert any(o.item == "relic" for o in everything.values())
    assert kept == {c: o for c, o in everything.items() if o.item != "relic"}
