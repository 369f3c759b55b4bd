"""Many writers on the same customers: a stale version is a ConflictError, never an overwrite."""

from __future__ import annotations

import multiprocessing
import threading
import uuid
from typing import Any

import attrs
import psycopg
import pytest

import crmcore
from crmcore.errors import ConflictError
from crmcore.testing.contract import customer
from crmcore_adapters.storage.postgres import PostgresStorage

from .conftest import Schemas, sessions, wait_until

pytestmark = pytest.mark.postgres


def test_a_writer_queued_behind_another_gets_a_conflict(
    schemas: Schemas, admin: psycopg.Connection[Any]
) -> None:
    """B waits on A's row lock; when A commits, B's version check fails instead of overwriting."""
    app = f"crm-{uuid.uuid4().hex[:8]}"
    store = schemas.open(application_name=app)
    try:
        with store.transaction() as uow:
            first = uow.customers.add(customer(1))
        a_wrote, a_may_commit = threading.Event(), threading.Event()

        def writer_a() -> None:
            with store.transaction() as uow:
                uow.customers.update(attrs.evolve(first, name="Written by A"))
                a_wrote.set()
                a_may_commit.wait(10)

        outcome: list[object] = []

        def writer_b() -> None:
            try:
                with store.transaction() as uow:
                    outcome.append(uow.customers.update(attrs.evolve(first, name="Written by B")))
            except ConflictError as exc:
                outcome.append(exc)

        a = threading.Thread(target=writer_a)
        a.start()
        assert a_wrote.wait(10)
        b = threading.Thread(target=writer_b)
        b.start()
        wait_until(lambda: len(sessions(admin, app, "Lock")) == 1)
        a_may_commit.set()
        a.join(10)
        b.join(10)
        [conflict] = outcome
        assert isinstance(conflict, ConflictError)
        assert (conflict.expected, conflict.actual) == (1, 2)
        with store.transaction() as uow:
            stored = uow.customers.get(first.id)
        assert (stored.name, stored.version) == ("Written by A", 2)
    finally:
        store.close()


ROUNDS = 25


def _bump(url: str, ids: list[str], start: Any) -> tuple[int, int]:
    """One process: read, increment and write back each customer's counter, ROUNDS times."""
    crm = crmcore.open(url)
    done = conflicts = 0
    try:
        start.wait(60)
        for n in range(ROUNDS):
            id = ids[n % len(ids)]
            current = crm.customers.get(id)
            visits = current.attributes["visits"]
            assert isinstance(visits, int)
            try:
                crm.customers.update(attrs.evolve(current, attributes={"visits": visits + 1}))
                done += 1
            except ConflictError:
                conflicts += 1
    finally:
        crm.close()
    return done, conflicts


def test_processes_racing_on_the_same_customers_lose_no_update(schemas: Schemas) -> None:
    url = schemas.url()
    store = PostgresStorage(url)
    ids = ["c0001", "c0002"]
    try:
        with store.transaction() as uow:
            for n, _ in enumerate(ids, start=1):
                uow.customers.add(customer(n, attributes={"visits": 0}))
        context = multiprocessing.get_context("spawn")
        with context.Manager() as manager:
            start = manager.Event()
            with context.Pool(3) as pool:
                running = pool.starmap_async(_bump, [(url, ids, start)] * 3)
                start.set()
                results = running.get(120)
        assert sum(done + conflicts for done, conflicts in results) == 3 * ROUNDS
        with store.transaction() as uow:
            final = [uow.customers.get(id) for id in ids]
        visits = [c.attributes["visits"] for c in final]
        assert sum(v for v in visits if isinstance(v, int)) == sum(done for done, _ in results)
        assert [c.version for c in final] == [v + 1 for v in visits if isinstance(v, int)]
    finally:
        store.close()
