"""Every sales test runs on memory, SQLite and a real PostgreSQL (own schema per storage)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from crmcore import CRM
from crmcore.plugins import make_plugin_manager
from crmcore.ports import Storage
from crmcore_adapters.storage.memory import MemoryStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.support import postgres_url

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def _postgres() -> Storage:
    from tests.postgres.conftest import Schemas

    schemas = Schemas(postgres_url())
    store = schemas.open()
    original = store.close

    def close() -> None:
        original()
        schemas.drop_all()

    store.close = close  # type: ignore[method-assign]
    return store


OPENERS: dict[str, Callable[[], Storage]] = {
    "memory": MemoryStorage,
    "sqlite": lambda: SQLiteStorage("sqlite:///:memory:"),
    "postgresql": _postgres,
}


@pytest.fixture(params=sorted(OPENERS))
def storage(request: pytest.FixtureRequest) -> Iterator[Storage]:
    store = OPENERS[request.param]()
    yield store
    store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def crm(storage: Storage, clock: Clock) -> CRM:
    return CRM(storage, plugins=make_plugin_manager(load_entry_points=False), clock=clock)
