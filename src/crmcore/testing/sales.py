"""Strategies for the sales model and the storage contract of its aggregates.

Subclass `SalesStorageContract` next to `StorageContract` (same `open_storage()`);
it checks pipelines, leads, products, price books, quotes and exchange rates, and
that SQL storage keeps the stage history table in step with the opportunities.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcore import model as m
from crmcore.errors import ConflictError, IntegrityError
from crmcore.exchange import Rate
from crmcore.model.sales import REQUIRABLE
from crmcore.ports import Storage, sql_dialect
from crmcore.sales.history import rows
from crmcore.testing import strategies as s
from crmcore.values import Money

probabilities = st.floats(0, 1, allow_nan=False)
stage_names = s.machine_names.filter(lambda n: n not in ("won", "lost"))
pipeline_stages = st.builds(
    m.PipelineStage, name=stage_names, probability=probabilities,
    required=st.lists(st.sampled_from(REQUIRABLE), unique=True, max_size=2).map(tuple),
)
pipelines = st.builds(
    m.Pipeline, id=s.machine_names, name=s.texts,
    stages=st.lists(pipeline_stages, min_size=1, max_size=5, unique_by=lambda x: x.name).map(tuple),
    won_reasons=st.lists(s.texts, max_size=2).map(tuple),
    lost_reasons=st.lists(s.texts, max_size=2).map(tuple),
    team=st.none() | s.machine_names,
)
leads = st.builds(
    m.Lead, id=s.ids, name=s.texts, created_at=s.instants, email=st.none() | s.emails(),
    company=st.none() | s.texts, source=st.none() | s.machine_names,
    attributes=st.dictionaries(s.machine_names, s.machine_names, max_size=3),
    status=st.sampled_from(list(m.LeadStatus)),
)
products = st.builds(
    m.Product, id=s.machine_names, name=s.texts, category=s.machine_names,
    cost=st.none() | s.money, active=st.booleans(),
)
price_books = st.builds(
    m.PriceBook, id=s.machine_names, currency=s.currencies,
    prices=st.dictionaries(s.machine_names, s.amounts, max_size=4),
    tier=st.none() | s.machine_names,
)
shares = st.decimals(0, 1, places=2)


@st.composite
def quote_lines(draw: st.DrawFn, currency: str) -> m.QuoteLine:
    return m.QuoteLine(
        product=draw(s.machine_names), quantity=draw(st.integers(1, 1000)),
        unit_price=Money(draw(s.amounts), currency), discount=draw(shares),
        tax_rate=draw(shares), category=draw(s.machine_names),
    )


@st.composite
def quotes(draw: st.DrawFn, customer_id: st.SearchStrategy[str] = s.ids) -> m.Quote:
    currency = draw(s.currencies)
    return m.Quote(
        id=draw(s.ids), opportunity_id=draw(s.ids), customer_id=draw(customer_id),
        currency=currency, lines=tuple(draw(st.lists(quote_lines(currency), min_size=1, max_size=5))),
        created_at=draw(s.instants), revision=draw(st.integers(1, 5)),
        status=draw(st.sampled_from(list(m.QuoteStatus))),
        valid_until=draw(st.none() | s.dates), supersedes=draw(st.none() | s.ids),
    )


@st.composite
def forecast_opportunities(draw: st.DrawFn, pipeline: m.Pipeline = m.DEFAULT_PIPELINE,
                           customer_id: st.SearchStrategy[str] = s.ids) -> m.Opportunity:
    """An opportunity moved through `pipeline` with forecast facts on every step."""
    at = draw(s.instants)
    amount = draw(st.none() | s.money)
    close = at.date() + timedelta(days=draw(st.integers(0, 120)))
    first = pipeline.stages[0]
    opportunity = m.Opportunity.open(
        draw(s.ids), draw(customer_id), "deal", at, pipeline=pipeline.id, stage=first.name,
        probability=first.probability, amount=amount, close_date=close,
        owner=draw(st.none() | st.sampled_from(("ann", "bob"))),
    )
    for _ in range(draw(st.integers(0, 4))):
        at += timedelta(hours=draw(st.integers(1, 24 * 40)))
        if draw(st.booleans()):
            close += timedelta(days=draw(st.integers(-10, 30)))
            opportunity = opportunity.revise(at, close_date=close)
        else:
            stage = draw(st.sampled_from(pipeline.order))
            opportunity = opportunity.move_to(stage, at, probability=pipeline.probability(stage))
        if opportunity.is_closed:
            break
    return opportunity


class SalesStorageContract:
    """The sales aggregates on one storage adapter."""

    def open_storage(self) -> Storage:
        raise NotImplementedError("return a fresh, empty storage")

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        store = self.open_storage()
        yield store
        store.close()

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def test_sales_aggregates_round_trip(self, data: st.DataObject) -> None:
        store = self.open_storage()
        try:
            items: dict[str, Any] = {
                "pipelines": data.draw(pipelines), "leads": data.draw(leads),
                "products": data.draw(products), "price_books": data.draw(price_books),
                "quotes": data.draw(quotes()), "opportunities": data.draw(forecast_opportunities()),
            }
            with store.transaction() as uow:
                for name, item in items.items():
                    assert getattr(uow, name).add(item) == attrs.evolve(item, version=1)
            with store.transaction() as uow:
                for name, item in items.items():
                    assert getattr(uow, name).get(item.id) == attrs.evolve(item, version=1)
                assert uow.quotes.for_customer(items["quotes"].customer_id) == [
                    attrs.evolve(items["quotes"], version=1)]
        finally:
            store.close()

    def test_stale_pipeline_is_a_conflict(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            first = uow.pipelines.add(m.DEFAULT_PIPELINE)
            uow.pipelines.update(attrs.evolve(first, name="Renamed"))
        with pytest.raises(ConflictError), storage.transaction() as uow:
            uow.pipelines.update(attrs.evolve(first, name="Stale"))
        with pytest.raises(IntegrityError), storage.transaction() as uow:
            uow.pipelines.add(m.DEFAULT_PIPELINE)
        with storage.transaction() as uow:
            assert uow.pipelines.get("default").name == "Renamed"

    def test_rates_are_replaced_per_pair_and_day(self, storage: Storage) -> None:
        day = date(2025, 1, 1)
        with storage.transaction() as uow:
            assert uow.rates.put([Rate("EUR", "USD", day, Decimal("1.1")),
                                  Rate("EUR", "GBP", day, Decimal("0.85"))]) == 2
            uow.rates.put([Rate("EUR", "USD", day, Decimal("1.0834"))])
        with storage.transaction() as uow:
            assert uow.rates.all() == [Rate("EUR", "GBP", day, Decimal("0.85")),
                                       Rate("EUR", "USD", day, Decimal("1.0834"))]

    def test_rollback_leaves_no_sales_record(self, storage: Storage) -> None:
        class Boom(Exception):
            pass

        with pytest.raises(Boom), storage.transaction() as uow:
            uow.pipelines.add(m.DEFAULT_PIPELINE)
            uow.products.add(m.Product("p1", "Widget"))
            uow.rates.put([Rate("EUR", "USD", date(2025, 1, 1), Decimal("1.1"))])
            raise Boom
        with storage.transaction() as uow:
            assert uow.pipelines.count() == uow.products.count() == 0
            assert uow.rates.all() == []

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(opportunity=forecast_opportunities())
    def test_sql_history_follows_every_write(self, opportunity: m.Opportunity) -> None:
        store = self.open_storage()
        try:
            with store.transaction() as uow:
                if sql_dialect(uow) is None:
                    return
                uow.opportunities.add(attrs.evolve(opportunity, history=opportunity.history[:1],
                                                   stage=opportunity.history[0].stage))
                current = uow.opportunities.get(opportunity.id)
                uow.opportunities.update(attrs.evolve(opportunity, version=current.version))
            with store.transaction() as uow:
                stored = uow.opportunities.get(opportunity.id)
                table = uow.select(  # type: ignore[attr-defined]
                    "SELECT seq, stage, probability, currency FROM opportunity_history "
                    "ORDER BY opportunity_id, seq")
                assert [(int(a), b, c, d) for a, b, c, d in table] == [
                    (r.seq, r.stage, r.probability, r.currency) for r in rows(stored)]
                uow.opportunities.remove(stored)
                assert uow.select("SELECT count(*) FROM opportunity_history")[0][0] == 0  # type: ignore[attr-defined]
        finally:
            store.close()
