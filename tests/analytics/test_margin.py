"""Margins: from costs on the lines or a rule, per category, and customer value on margin."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase
from crmcore.scoring.margin import MarginRule


def line(product: str, price: str, category: str, cost: str | None = None, quantity: int = 1) -> OrderLine:
    return OrderLine(product, Money(Decimal(price), "EUR"), quantity, category,
                     None if cost is None else Money(Decimal(cost), "EUR"))


def test_a_line_margin_comes_from_its_cost_or_the_rule() -> None:
    rule = MarginRule(by_product={"gift": 0.5}, by_category={"books": 0.25}, default=0.1)
    assert rule.margin(line("pen", "10", "office", cost="6", quantity=3)) == Decimal(12)
    assert rule.margin(line("gift", "10", "books")) == Decimal(5)
    assert rule.margin(line("novel", "10", "books")) == Decimal("2.5")
    assert rule.margin(line("lamp", "10", "home")) == Decimal(1)
    with pytest.raises(crmcore.ValidationError, match="no margin rule"):
        MarginRule().margin(line("lamp", "10", "home"))
    with pytest.raises(crmcore.ValidationError):
        MarginRule(default=2)
    with pytest.raises(crmcore.ValidationError, match="currency"):
        OrderLine("x", Money(Decimal(1), "EUR"), unit_cost=Money(Decimal(1), "USD"))


def test_rfm_and_the_summary_rank_by_margin_when_asked(crm: crmcore.CRM) -> None:
    crm.bulk_import([Customer.new(c, id=c, created_at=datetime(2024, 1, 1, tzinfo=UTC))
                     for c in ("ann", "bob")])
    at = [datetime(2024, 1, d, 10, tzinfo=UTC) for d in (2, 9, 16)]
    crm.bulk_import(
        [Purchase(id=f"a{i}", customer_id="ann", ordered_at=t, lines=[line("tv", "100", "tech", "95")])
         for i, t in enumerate(at)]
        + [Purchase(id=f"b{i}", customer_id="bob", ordered_at=t, lines=[line("book", "20", "books")])
           for i, t in enumerate(at)])
    a = crm.analytical
    rule = MarginRule(by_category={"books": 0.5})
    by_revenue = {r.customer_id: r for r in a.rfm(date(2024, 1, 31))}
    by_margin = {r.customer_id: r for r in a.rfm(date(2024, 1, 31), margins=rule)}
    assert by_revenue["ann"].monetary == 300 and by_revenue["ann"].m > by_revenue["bob"].m
    assert by_margin["ann"].monetary == 15 and by_margin["bob"].monetary == 30
    assert by_margin["bob"].m > by_margin["ann"].m and by_margin["bob"].explain()["measure"] == "margin"
    rows = {(r.item, r.currency): r for r in a.margin_report(date(2024, 1, 31), rule=rule)}
    assert rows["tech", "EUR"].margin == 15 and rows["tech", "EUR"].revenue == 300
    assert rows["books", "EUR"].share == pytest.approx(0.5)
    a.reporting(None, margins=rule)
    assert a.summary(date(2024, 1, 31)).measure == "margin"
