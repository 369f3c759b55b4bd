"""The catalogue (products and price books) and quotes priced from it.

A price is looked up in the book for the quote's currency and the customer's tier,
then the currency's book for every tier; failing both, a book in another currency
is converted with the company's rates of the day (no rate: the line is refused).
Accepting a quote wins the opportunity and records the purchase in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import NotFound, ValidationError
from crmcore.exchange import ExchangeRates, convert
from crmcore.model import (
    OrderLine,
    PriceBook,
    Product,
    Purchase,
    Quote,
    QuoteLine,
    QuoteStatus,
)

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.model import Opportunity
    from crmcore.scoring.cross_sell import Offer

Item = tuple[str, int] | Mapping[str, Any]
"""A line asked for: (product, quantity), or a mapping with product, quantity, discount, tax_rate."""


class PriceList:
    """Prices for one currency and tier on one day, read once and looked up many times."""

    def __init__(self, products: Iterable[Product], books: Iterable[PriceBook], currency: str,
                 tier: str | None, on: date, rates: ExchangeRates) -> None:
        self.products = {p.id: p for p in products}
        self.currency = currency
        self.on = on
        self.rates = rates
        self.books = sorted(
            (b for b in books if b.tier in (tier, None)),
            key=lambda b: (b.currency != currency, b.tier != tier, b.currency),
        )
        """Books that may price a product, in order: this currency before converted ones,
        the tier's own before the one for every tier."""

    def price(self, product: str, field: str = "product") -> v.Money:
        """The unit price in this list's currency; refused when the product is not sold,
        has no price, or only a price in a currency without a rate to this one."""
        known = self.products.get(product)
        if known is None or not known.active:
            raise ValidationError(field, product, "is not an active product of the catalogue")
        for book in self.books:
            found = book.price(product)
            if found is None:
                continue
            try:
                return convert(found, self.currency, self.on, self.rates)
            except NotFound:
                raise ValidationError(
                    f"{field}.currency", found.currency,
                    f"no {found.currency}/{self.currency} rate on {self.on.isoformat()} to price it",
                ) from None
        raise ValidationError(field, product, f"has no price for {self.currency}")

    def line(self, item: Item, index: int = 0) -> QuoteLine:
        if isinstance(item, Mapping):
            spec: Mapping[str, Any] = item
        elif isinstance(item, tuple | list) and len(item) == 2:
            spec = {"product": item[0], "quantity": item[1]}
        else:
            raise ValidationError(f"lines[{index}]", item, "must be (product, quantity) or a mapping")
        unknown = set(spec) - {"product", "quantity", "discount", "tax_rate"}
        if unknown:
            raise ValidationError(f"lines[{index}]", sorted(unknown), "unknown keys")
        product = spec.get("product")
        where = f"lines[{index}]"
        try:
            return QuoteLine(
                product=product, quantity=spec.get("quantity"),  # type: ignore[arg-type]
                unit_price=self.price(product, f"{where}.product"),  # type: ignore[arg-type]
                discount=spec.get("discount", 0), tax_rate=spec.get("tax_rate", 0),
                category=self.products[product].category,  # type: ignore[index]
            )
        except ValidationError as error:
            raise error if error.field.startswith(where) else error.within(where) from None


class Catalogue:
    """`crm.sales.catalogue`: products and price books."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def add_product(self, product: Product) -> Product:
        with self.crm.transaction() as uow:
            stored = uow.products.add(product)
            self.crm.emit("product.added", stored.id)
            return stored

    def update_product(self, product: Product) -> Product:
        with self.crm.transaction() as uow:
            return uow.products.update(product)

    def add_price_book(self, book: PriceBook) -> PriceBook:
        with self.crm.transaction() as uow:
            for other in uow.price_books.list():
                if (other.currency, other.tier) == (book.currency, book.tier):
                    raise ValidationError("price_book", book.id,
                                          f"{other.id} already prices {book.currency} for tier {book.tier}")
            return uow.price_books.add(book)

    def update_price_book(self, book: PriceBook) -> PriceBook:
        with self.crm.transaction() as uow:
            return uow.price_books.update(book)

    def products(self) -> list[Product]:
        with self.crm.reading() as uow:
            return _all(uow.products)

    def price_list(self, currency: str, tier: str | None = None, on: date | None = None) -> PriceList:
        v.Money(0, currency)
        with self.crm.reading() as uow:
            products, books = _all(uow.products), _all(uow.price_books)
        return PriceList(products, books, currency, tier, on or self.crm.clock().date(),
                         self.crm.rates.table())

    def offers(self, currency: str | None = None, tier: str | None = None) -> dict[str, OrderLine]:
        """What a customer of `tier` may order and at what unit price: the order lines at
        quantity 1 that self-service takes. Without `currency`, the currency of the books
        that fit the tier (refused when they are in several)."""
        with self.crm.reading() as uow:
            books = _all(uow.price_books)
        if currency is None:
            fitting = {b.currency for b in books if b.tier == tier} or {
                b.currency for b in books if b.tier is None}
            if len(fitting) > 1:
                raise ValidationError("currency", None, f"price books in {sorted(fitting)}; name one")
            if not fitting:
                return {}
            currency = fitting.pop()
        prices = self.price_list(currency, tier)
        found = {}
        for product in prices.products.values():
            try:
                found[product.id] = OrderLine(product.id, prices.price(product.id), 1, product.category)
            except ValidationError:
                continue  # not sold in this currency
        return found

    def next_offers(self, as_of: datetime | None = None, **rules: Any) -> dict[str, Offer]:
        """The cross-sell next-best offers, kept to the catalogue's active products (when the
        company keeps a catalogue)."""
        offers = self.crm.analytical.next_offers(as_of, **rules)
        products = self.products()
        if not products:
            return offers
        active = {p.id for p in products if p.active}
        return {c: o for c, o in offers.items() if o.item in active}


def _all(repo: Any) -> list[Any]:
    found: list[Any] = []
    while batch := repo.list(after=found[-1].id if found else None, limit=1000):
        found.extend(batch)
    return found


class Quotes:
    """`crm.sales.quotes`: quotes, their revisions, and acceptance."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def draft(self, opportunity_id: str, items: Sequence[Item], *, currency: str,
              tier: str | None = None, valid_until: date | None = None) -> Quote:
        """A first quote on an opportunity, priced from the catalogue for the customer's
        tier (or `tier`)."""
        with self.crm.transaction() as uow:
            opportunity = uow.opportunities.get(opportunity_id)
            return self._write(opportunity, items, currency, tier, valid_until, 1, None)

    def _write(self, opportunity: Opportunity, items: Sequence[Item], currency: str,
               tier: str | None, valid_until: date | None, revision: int,
               supersedes: str | None) -> Quote:
        if opportunity.is_closed:
            raise ValidationError("opportunity", opportunity.id, f"is {opportunity.stage} already")
        customer = self.crm.customers.get(opportunity.customer_id)
        prices = self.crm.sales.catalogue.price_list(currency, tier or customer.tier)
        lines = [prices.line(item, index) for index, item in enumerate(items)]
        quote = Quote(v.new_id(), opportunity.id, opportunity.customer_id, currency, lines,
                      self.crm.clock(), revision=revision, valid_until=valid_until,
                      supersedes=supersedes)
        with self.crm.transaction() as uow:
            stored = uow.quotes.add(quote)
            self.crm.emit("quote.drafted", stored.id, opportunity_id=opportunity.id,
                          revision=revision, total=str(stored.total.amount), currency=currency)
            return stored

    def get(self, quote_id: str) -> Quote:
        with self.crm.reading() as uow:
            return uow.quotes.get(quote_id)

    def for_opportunity(self, opportunity_id: str) -> list[Quote]:
        """Every revision, oldest first."""
        with self.crm.reading() as uow:
            opportunity = uow.opportunities.get(opportunity_id)
            mine = [q for q in uow.quotes.for_customer(opportunity.customer_id)
                    if q.opportunity_id == opportunity_id]
        return sorted(mine, key=lambda q: q.revision)

    def revise(self, quote_id: str, items: Sequence[Item], *, tier: str | None = None,
               valid_until: date | None = None) -> Quote:
        """A new revision priced afresh; the one it replaces is superseded."""
        with self.crm.transaction() as uow:
            old = self._open(uow, quote_id)
            uow.quotes.update(attrs.evolve(old, status=QuoteStatus.SUPERSEDED))
            opportunity = uow.opportunities.get(old.opportunity_id)
            return self._write(opportunity, items, old.currency, tier, valid_until,
                               old.revision + 1, old.id)

    def send(self, quote_id: str) -> Quote:
        with self.crm.transaction() as uow:
            stored = uow.quotes.update(attrs.evolve(self._open(uow, quote_id), status=QuoteStatus.SENT))
            self.crm.emit("quote.sent", quote_id)
            return stored

    def reject(self, quote_id: str) -> Quote:
        with self.crm.transaction() as uow:
            stored = uow.quotes.update(
                attrs.evolve(self._open(uow, quote_id), status=QuoteStatus.REJECTED))
            self.crm.emit("quote.rejected", quote_id)
            return stored

    def accept(self, quote_id: str, *, by: str | None = None,
               reason: str | None = None) -> tuple[Quote, Opportunity, Purchase]:
        """The customer said yes: the quote is accepted, its opportunity won (with `reason`
        when the pipeline lists won reasons) and the purchase recorded, all or nothing."""
        with self.crm.transaction() as uow:
            quote = uow.quotes.update(
                attrs.evolve(self._open(uow, quote_id), status=QuoteStatus.ACCEPTED))
            opportunity = uow.opportunities.get(quote.opportunity_id)
            if opportunity.amount != quote.subtotal:
                opportunity = uow.opportunities.update(
                    opportunity.revise(self.crm.clock(), by, amount=quote.subtotal))
            won = self.crm.sales.pipelines.move(opportunity.id, "won", by=by, reason=reason)
            purchase = self.crm.purchases.record(Purchase(
                v.new_id(), quote.customer_id, self.crm.clock(),
                tuple(OrderLine(line.product, line.net_unit_price, line.quantity, line.category)
                      for line in quote.lines),
            ))
            self.crm.emit("quote.accepted", quote_id, opportunity_id=won.id, purchase_id=purchase.id)
            return quote, won, purchase

    @staticmethod
    def _open(uow: Any, quote_id: str) -> Quote:
        quote: Quote = uow.quotes.get(quote_id)
        if quote.status.is_final:
            raise ValidationError("status", str(quote.status), f"quote {quote_id} is {quote.status}")
        return quote
