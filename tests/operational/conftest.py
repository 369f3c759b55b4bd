"""A CRM on each real backend (memory, SQLite file, PostgreSQL in its own schema), a clock
the test moves, and a subscriber that keeps every event delivered."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from crmcore import CRM, hookimpl
from crmcore.events import Event
from crmcore.plugins import make_plugin_manager
from crmcore.ports import Storage
from crmcore_adapters.storage.memory import MemoryStorage
from crmcore_adapters.storage.postgres import PostgresStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.postgres.conftest import with_options
from tests.support import postgres_url

BACKENDS = ("memory", "sqlite", "postgresql")
MONDAY = datetime(2025, 6, 2, 7, tzinfo=UTC)  # 09:00 in Paris


class Clock:
    """The CRM's clock, moved by the test."""

    def __init__(self, start: datetime = MONDAY) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class Recorder:
    """Every event delivered after commit, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def crmcore_on_event(self, event: Event) -> None:
        self.events.append(event)

    def topics(self, aggregate_id: str | None = None) -> list[str]:
        return [e.topic for e in self.events if aggregate_id in (None, e.aggregate_id)]


def open_backend(kind: str, directory: Path) -> tuple[Storage, str | None]:
    """A fresh storage of one kind, and the PostgreSQL schema to drop afterwards."""
    if kind == "memory":
        return MemoryStorage(), None
    if kind == "sqlite":
        return SQLiteStorage(f"sqlite:///{directory}/crm-{uuid.uuid4().hex[:8]}.db"), None
    schema = f"crmcore_test_{uuid.uuid4().hex[:16]}"
    return PostgresStorage(with_options(postgres_url(), schema=schema)), schema


def drop_schema(schema: str | None) -> None:
    if schema is not None:
        with psycopg.connect(postgres_url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def drain(crm: CRM) -> None:
    while crm.dispatch_events():
        pass


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(backend: str, tmp_path: Path) -> Iterator[Storage]:
    store, schema = open_backend(backend, tmp_path)
    yield store
    store.close()
    drop_schema(schema)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def crm(storage: Storage, clock: Clock, recorder: Recorder) -> CRM:
    plugins = make_plugin_manager(load_entry_points=False)
    plugins.register(recorder, name="recorder")
    return CRM(storage, plugins=plugins, clock=clock)


def at_once(work: Callable[[], None], *, workers: int = 2, rounds: int = 3) -> None:
    """Run `work` `rounds` times in each of `workers` threads at once; any error fails the test."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            for _ in range(rounds):
                work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
