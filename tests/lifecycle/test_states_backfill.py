"""The migration that brings in `customer_states` rebuilds, from the diffs alone, the very
rows the storage keeps when it writes: checked by emptying the table of a base written
through the CRM and backfilling it again, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import crmcore
from crmcore.model import Customer
from crmcore_adapters.storage import sql
from tests.lifecycle.conftest import T0, Clock, storage_url


@pytest.fixture(params=["sqlite://", "postgresql"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    clock = Clock()
    opened = crmcore.open(storage_url(request), clock=clock)
    opened.test_clock = clock  # type: ignore[attr-defined]
    yield opened
    opened.close()


def kept_rows(uow: Any) -> list[tuple[Any, ...]]:
    uow.cur.execute('SELECT "at", op, customer_id, version, tier, created_at, doc FROM customer_states '
                    "ORDER BY seq")
    return [(*row[:-1], None if row[-1] is None else
             row[-1] if isinstance(row[-1], dict) else json.loads(row[-1]))
            for row in uow.cur.fetchall()]


def test_backfill_rebuilds_the_rows_kept_on_write(crm: crmcore.CRM) -> None:
    clock: Clock = crm.test_clock  # type: ignore[attr-defined]
    crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0))
    crm.customers.add(Customer.new("Old", id="old", tier="gold", created_at=T0 - timedelta(days=400)))
    crm.bulk_import([Customer.new("Imp", id="imp", tier="bronze", created_at=T0, updated_at=T0)])
    for hours, (who, fields) in enumerate([("ann", {"tier": "gold"}), ("imp", {"tags": {"vip"}}),
                                           ("ann", {"name": "Ann B"}), ("old", {"tier": None})], 1):
        clock.now = T0 + timedelta(hours=hours)
        crm.customers.change(who, **fields)
    clock.now = T0 + timedelta(hours=9)
    crm.customers.remove(crm.customers.get("old"))
    with crm.transaction() as uow:
        live = kept_rows(uow)
        uow.cur.execute("DELETE FROM customer_states")  # type: ignore[attr-defined]
        sql.backfill_states(uow.cur, uow.dialect, page=2)  # type: ignore[attr-defined]
        rebuilt = kept_rows(uow)
    assert len(live) == 6  # "old" added with an earlier created_at, 4 changes, 1 removal
    assert sorted(rebuilt, key=repr) == sorted(live, key=repr)
    by_customer = [row[2] for row in rebuilt]
    assert by_customer.index("ann") < by_customer.index("imp")  # one customer after another...
    ann = [row for row in rebuilt if row[2] == "ann"]
    assert [row[4] for row in ann] == ["silver", "gold"]  # ...each oldest first
