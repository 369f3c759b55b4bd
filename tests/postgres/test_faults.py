"""The server going away: a clear StorageError, nothing half-written, and the next transaction works."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import psycopg
import pytest

from crmcore.errors import ConflictError, IntegrityError, StorageError
from crmcore.testing.contract import T0, customer, interaction, purchase
from crmcore_adapters.storage.postgres import PostgresStorage

from .conftest import Schemas, sessions, wait_until
from .proxy import Relay

pytestmark = pytest.mark.postgres


@pytest.fixture
def app() -> str:
    return f"crm-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(schemas: Schemas, app: str) -> Iterator[PostgresStorage]:
    opened = schemas.open(application_name=app, pool_min="3", pool_max="3")
    yield opened
    opened.close()


def kill(admin: psycopg.Connection[Any], pid: int) -> None:
    """Terminate one backend and wait until it is gone, as when the server drops a session."""
    assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    wait_until(lambda: admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,))


def assert_untouched(store: PostgresStorage, before: Any) -> None:
    with store.transaction() as uow:
        assert uow.customers.get(before.id) == before
        assert uow.interactions.for_customer(before.id) == []
        assert uow.purchases.count() == 0


@pytest.mark.parametrize("at_commit", [False, True], ids=["mid-statement", "at-commit"])
def test_session_killed_mid_transaction(
    store: PostgresStorage, admin: psycopg.Connection[Any], at_commit: bool
) -> None:
    with store.transaction() as uow:
        ada = uow.customers.add(customer(1))
    with pytest.raises(StorageError) as caught, store.transaction() as uow:
        uow.customers.update(attrs.evolve(ada, name="Half written"))
        uow.interactions.add(interaction(1, ada.id, T0))
        kill(admin, int(uow.select("SELECT pg_backend_pid()")[0][0]))
        if not at_commit:
            uow.purchases.add(purchase(1, ada.id, T0))
    assert not isinstance(caught.value, ConflictError | IntegrityError)
    assert "lost the connection" in str(caught.value)
    assert_untouched(store, ada)


def test_every_session_lost_then_the_pool_recovers(
    store: PostgresStorage, admin: psycopg.Connection[Any], app: str
) -> None:
    """All pooled connections die at once (a server restart): the next transactions still work."""
    with store.transaction() as uow:
        ada = uow.customers.add(customer(1))
    wait_until(lambda: len(sessions(admin, app)) == 3)
    for pid in sessions(admin, app):
        kill(admin, pid)
    for n in range(6):
        with store.transaction() as uow:
            uow.purchases.add(purchase(n, ada.id, T0 + timedelta(days=n)))
    with store.transaction() as uow:
        assert uow.purchases.count() == 6
        assert uow.customers.get(ada.id) == ada


def test_statement_timeout_from_the_url(schemas: Schemas) -> None:
    store = schemas.open(statement_timeout="200")
    try:
        with pytest.raises(StorageError) as caught, store.transaction() as uow:
            uow.customers.add(customer(1))
            uow.select("SELECT pg_sleep(2)")
        assert "statement_timeout" in str(caught.value)
        with store.transaction() as uow:
            assert uow.customers.count() == 0
            assert uow.select("SELECT 1") == [(1,)]
    finally:
        store.close()


def test_driver_errors_never_escape_untranslated(store: PostgresStorage) -> None:
    with pytest.raises(StorageError) as caught, store.transaction() as uow:
        uow.select("SELECT * FROM no_such_table")
    assert "no_such_table" in str(caught.value)
    assert not isinstance(caught.value, psycopg.Error)
    with pytest.raises(IntegrityError), store.transaction() as uow:
        uow.select("INSERT INTO customer_emails (email, customer_id) VALUES ('a@b.c', 'x'), ('a@b.c', 'y')")
    with store.transaction() as uow:
        assert uow.select("SELECT count(*) FROM customer_emails") == [(0,)]


@pytest.fixture
def relay(schemas: Schemas) -> Iterator[Relay]:
    server = urlsplit(schemas.server)
    started = Relay(server.hostname or "127.0.0.1", server.port or 5432).start()
    yield started
    started.stop()


def through(relay: Relay, url: str) -> str:
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{relay.port}"))


def test_server_down_then_back(schemas: Schemas, relay: Relay) -> None:
    """A long pool_timeout: while the server is down, transactions must fail at once, not wait it out."""
    store = PostgresStorage(through(relay, schemas.url(pool_min="2", pool_timeout="120")))
    try:
        with store.transaction() as uow:
            ada = uow.customers.add(customer(1))
        with pytest.raises(StorageError) as caught, store.transaction() as uow:
            uow.customers.update(attrs.evolve(ada, name="Half written"))
            relay.stop()
            uow.interactions.add(interaction(1, ada.id, T0))
        assert "lost the connection" in str(caught.value)
        for _ in range(2):
            with pytest.raises(StorageError) as caught, store.transaction():
                pass
            assert "cannot connect" in str(caught.value) and "refused" in str(caught.value)
        relay.start()
        assert_untouched(store, ada)
        relay.stop()  # a restart between two transactions: the idle connections died
        relay.start()
        with store.transaction() as uow:
            uow.purchases.add(purchase(1, ada.id, T0))
        with store.transaction() as uow:
            assert uow.purchases.count() == 1
    finally:
        store.close()


def test_server_gone_in_the_middle_of_a_bulk_import(schemas: Schemas, relay: Relay) -> None:
    store = PostgresStorage(through(relay, schemas.url()))
    try:
        def records() -> Iterator[Any]:
            for n in range(1, 20_001):
                if n == 12_000:  # several COPY batches already sent
                    relay.stop()
                yield purchase(n, "c0001", T0)
        with pytest.raises(StorageError) as caught:
            store.bulk_import(records())
        assert "lost the connection" in str(caught.value)
        relay.start()
        with store.transaction() as uow:
            assert uow.purchases.count() == 0
        assert store.bulk_import([customer(1), purchase(1, "c0001", T0)]) == 2
    finally:
        store.close()
