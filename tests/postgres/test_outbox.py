"""Several dispatchers drain one outbox at once: no entry handled twice, none lost."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest

from crmcore import CRM, hookimpl
from crmcore.events import Event
from crmcore.plugins import make_plugin_manager
from crmcore.testing.contract import T0
from crmcore_adapters.storage.postgres import PostgresStorage

from .conftest import Schemas

pytestmark = pytest.mark.postgres

LEASE = timedelta(minutes=1)


def append(store: PostgresStorage, count: int) -> list[str]:
    events = [Event("customer.added", f"c{n}", {"n": n}, T0) for n in range(count)]
    with store.transaction() as uow:
        for event in events:
            uow.outbox.append(event)
    return [e.id for e in events]


def test_a_claim_skips_rows_another_open_transaction_holds(schemas: Schemas) -> None:
    """Without SKIP LOCKED the second claim would wait for the first (the timeout makes that an error)."""
    store = schemas.open(statement_timeout="3000")
    try:
        append(store, 10)
        held, release = threading.Event(), threading.Event()
        first: list[int] = []

        def hold_a_claim() -> None:
            with store.transaction() as uow:
                first.extend(e.seq for e in uow.outbox.claim(T0, LEASE, 4))
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold_a_claim)
        holder.start()
        assert held.wait(10)
        try:
            with store.transaction() as uow:
                second = [e.seq for e in uow.outbox.claim(T0, LEASE, 10)]
        finally:
            release.set()
            holder.join(10)
        assert len(first) == 4 and len(second) == 6
        assert not set(first) & set(second)
    finally:
        store.close()


def test_dispatchers_in_parallel_deliver_each_event_once(schemas: Schemas) -> None:
    store = schemas.open(pool_max="8")
    try:
        ids = append(store, 300)
        delivered: list[str] = []
        lock = threading.Lock()

        class Recorder:
            @hookimpl
            def crmcore_on_event(self, event: Event) -> None:
                with lock:
                    delivered.append(event.id)

        def dispatcher() -> None:
            pm = make_plugin_manager(load_entry_points=False)
            pm.register(Recorder(), "recorder")
            crm = CRM(store, plugins=pm, clock=lambda: T0)
            while crm.dispatch_events(limit=7):
                pass

        threads = [threading.Thread(target=dispatcher) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert Counter(delivered) == Counter(ids)
        with store.transaction() as uow:
            assert uow.outbox.pending_count() == 0
    finally:
        store.close()


def test_a_lease_left_by_a_crashed_dispatcher_is_taken_again(storage: PostgresStorage) -> None:
    """At least once: an entry claimed but never settled comes back when its lease runs out."""
    [event_id] = append(storage, 1)
    with storage.transaction() as uow:
        [taken] = uow.outbox.claim(T0, LEASE, 10)
    with storage.transaction() as uow:
        assert uow.outbox.claim(T0 + LEASE - timedelta(seconds=1), LEASE, 10) == []
        [again] = uow.outbox.claim(T0 + LEASE, LEASE, 10)
    assert again.seq == taken.seq and again.event.id == event_id
