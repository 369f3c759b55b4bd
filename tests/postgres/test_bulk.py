"""Bulk import through COPY: streamed in bounded batches, all or nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from crmcore import model as m
from crmcore.errors import IntegrityError, StorageError, ValidationError
from crmcore.testing import strategies as s
from crmcore.testing.contract import T0, customer, interaction, purchase
from crmcore_adapters.storage.postgres import BULK_BATCH, PostgresStorage

from .conftest import Schemas

pytestmark = pytest.mark.postgres

PEOPLE = 3 * BULK_BATCH // 2


def stream(people: int, purchases_each: int) -> Iterator[Any]:
    """Customers, each followed by their purchases and one interaction, generated lazily."""
    for n in range(1, people + 1):
        yield customer(n, external_ids={"erp": f"E{n}"})
        for k in range(purchases_each):
            yield purchase(n * 10 + k, f"c{n:04d}", T0 + timedelta(days=k), amount=f"{k + 1}.25")
        yield interaction(n, f"c{n:04d}", T0)


def test_a_stream_larger_than_a_batch_lands_whole(storage: PostgresStorage) -> None:
    assert storage.bulk_import(stream(PEOPLE, 3)) == PEOPLE * 5
    with storage.transaction() as uow:
        assert uow.customers.count() == PEOPLE
        assert uow.purchases.count() == 3 * PEOPLE
        assert uow.interactions.count() == PEOPLE
        last = f"c{PEOPLE:04d}"
        assert uow.customers.by_email(f"USER{PEOPLE}@example.org") == attrs.evolve(
            customer(PEOPLE, external_ids={"erp": f"E{PEOPLE}"}), version=1)
        assert uow.customers.by_external_id("erp", "E7") == uow.customers.get("c0007")
        assert [c.id for c in uow.customers.by_phone(customer(9).phones[0])] == ["c0009"]
        assert [p.total.amount for p in uow.purchases.for_customer(last)] == [
            Decimal("3.25"), Decimal("2.25"), Decimal("1.25")]
        assert uow.select("SELECT sum(total) FROM purchases") == [(Decimal("6.75") * PEOPLE,)]


def test_a_clash_in_a_late_batch_undoes_the_early_ones(storage: PostgresStorage) -> None:
    def clashing() -> Iterator[Any]:
        yield from stream(PEOPLE, 1)
        yield purchase(10, "c0001", T0)  # the id of an early purchase
    with pytest.raises(IntegrityError) as caught:
        storage.bulk_import(clashing())
    assert "purchases" in str(caught.value)
    with storage.transaction() as uow:
        assert (uow.customers.count(), uow.purchases.count(), uow.interactions.count()) == (0, 0, 0)
        assert uow.select("SELECT count(*) FROM customer_emails") == [(0,)]
    assert storage.bulk_import(stream(2, 1)) == 6


def test_a_bad_record_while_a_copy_is_open_leaves_nothing(storage: PostgresStorage) -> None:
    def broken() -> Iterator[Any]:
        yield from stream(PEOPLE, 1)
        yield "not a record"
    with pytest.raises(ValidationError) as caught:
        storage.bulk_import(broken())
    assert caught.value.field == "item"
    with storage.transaction() as uow:
        assert (uow.customers.count(), uow.purchases.count()) == (0, 0)
    assert storage.bulk_import(stream(2, 1)) == 6


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(people=st.lists(s.customers(), min_size=1, max_size=6, unique_by=lambda c: c.id), data=st.data())
def test_imported_records_read_back_equal(schemas: Schemas, people: list[m.Customer],
                                          data: st.DataObject) -> None:
    owners = st.sampled_from([c.id for c in people])
    bought = data.draw(st.lists(s.purchases(customer_id=owners), max_size=6, unique_by=lambda p: p.id))
    emails = [e.lower() for c in people for e in c.emails]
    external = [pair for c in people for pair in c.external_ids.items()]
    assume(len(set(emails)) == len(emails) and len(set(external)) == len(external))
    store = schemas.open()
    try:
        assert store.bulk_import([*people, *bought]) == len(people) + len(bought)
        with store.transaction() as uow:
            assert uow.customers.list() == sorted(
                (attrs.evolve(c, version=1) for c in people), key=lambda c: c.id)
            for p in bought:
                assert uow.purchases.get(p.id) == p
    finally:
        store.close()


def test_statement_timeout_does_not_cut_a_long_import(schemas: Schemas) -> None:
    """The timeout guards interactive statements; an import's COPY runs as long as its stream."""
    store = schemas.open(statement_timeout="200")
    try:
        def slow() -> Iterator[Any]:
            yield customer(1)
            yield from (purchase(n, "c0001", T0) for n in range(BULK_BATCH + 1))
            time.sleep(0.5)  # the stream pauses while the purchases' COPY is open
            yield from (purchase(n, "c0001", T0) for n in range(BULK_BATCH + 1, 2 * BULK_BATCH + 1))
        assert store.bulk_import(slow()) == 2 * BULK_BATCH + 2
        with pytest.raises(StorageError), store.transaction() as uow:
            uow.select("SELECT pg_sleep(0.5)")
    finally:
        store.close()
