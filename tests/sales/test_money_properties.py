"""Laws of money: conversion round trips and quote totals."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from crmcore.exchange import CENT, Rate, RateTable, convert
from crmcore.model import Quote
from crmcore.testing import strategies as s
from crmcore.testing.sales import quote_lines
from crmcore.values import Money

DAY = date(2025, 1, 1)
rates = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("10000"), places=4)
cents = st.decimals(min_value=0, max_value=10**9, places=2).map(lambda d: Money(d, "EUR"))


@given(money=cents, value=rates)
def test_a_round_trip_moves_at_most_half_a_cent_each_way(money: Money, value: Decimal) -> None:
    table = RateTable([Rate("EUR", "USD", DAY, value)])
    there = convert(money, "USD", DAY, table)
    back = convert(there, "EUR", DAY, table)
    # each conversion rounds half-even to the cent, so it moves the amount by at most half a
    # cent; the way back scales the first rounding by 1/rate
    assert abs(there.amount - money.amount * value) <= CENT / 2
    bound = CENT / 2 + CENT / 2 / value
    assert abs(back.amount - money.amount) <= bound
    assert back.currency == "EUR"


@given(money=cents)
def test_the_same_currency_is_never_touched(money: Money) -> None:
    assert convert(money, "EUR", DAY, RateTable()) == money


@given(currency=s.currencies, data=st.data())
def test_a_quote_total_is_the_sum_of_its_lines(currency: str, data: st.DataObject) -> None:
    lines = data.draw(st.lists(quote_lines(currency), min_size=1, max_size=8))
    quote = Quote("q", "o", "c", currency, lines, datetime(2025, 1, 1, tzinfo=UTC))
    assert quote.total.amount == sum((line.total.amount for line in lines), Decimal(0))
    assert quote.total == quote.subtotal + quote.tax
    for line in lines:
        assert line.net.amount == line.net_unit_price.amount * line.quantity
        assert line.net_unit_price.amount == line.net_unit_price.amount.quantize(CENT)
        assert line.tax.amount == line.tax.amount.quantize(CENT)
        assert line.net_unit_price.amount <= line.unit_price.amount
