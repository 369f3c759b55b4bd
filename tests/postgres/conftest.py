"""A real PostgreSQL server for these tests, and an isolated schema per storage opened.

The server comes from CRMCORE_TEST_POSTGRES_URL (scripts/test.sh exports it). Without
it, or when it does not answer, tests skip on a developer's machine and fail under CI.
Every storage lives in a fresh schema (`?schema=crmcore_test_<hex>`), dropped afterwards.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from crmcore_adapters.storage.postgres import PostgresStorage
from tests.support import postgres_url


def with_options(url: str, **options: str) -> str:
    """The URL with these query options added (or replaced)."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit(parts._replace(query=urlencode({**query, **options})))


class Schemas:
    """Hands out fresh schema names on one server and drops them all at the end."""

    def __init__(self, url: str) -> None:
        self.server = url
        self.created: list[str] = []

    def url(self, **options: str) -> str:
        name = f"crmcore_test_{uuid.uuid4().hex[:16]}"
        self.created.append(name)
        return with_options(self.server, schema=name, **options)

    def open(self, **options: str) -> PostgresStorage:
        return PostgresStorage(self.url(**options))

    def drop_all(self) -> None:
        with psycopg.connect(self.server, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        self.created.clear()


@pytest.fixture
def schemas() -> Iterator[Schemas]:
    made = Schemas(postgres_url())
    yield made
    made.drop_all()


@pytest.fixture
def storage(schemas: Schemas) -> Iterator[PostgresStorage]:
    store = schemas.open()
    yield store
    store.close()


@pytest.fixture
def admin() -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A separate autocommit connection, to watch and disturb the storage's sessions."""
    with psycopg.connect(postgres_url(), autocommit=True) as conn:
        yield conn


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll until the condition holds; fail the test if it never does."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {seconds}s")
        time.sleep(0.01)


def sessions(admin: psycopg.Connection[Any], application: str, state: str | None = None) -> list[int]:
    """Backend pids of one storage's sessions (told apart by application_name)."""
    rows = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND (%s::text IS NULL "
        "OR state = %s OR wait_event_type = %s)",
        (application, state, state, state),
    ).fetchall()
    return [int(row[0]) for row in rows]


class OnPostgres:
    """Mix into a shipped contract class: every storage it opens gets a fresh schema on the
    test server, and the class drops them all when it is done."""

    schemas: Schemas

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _schemas(cls) -> Iterator[None]:
        cls.schemas = Schemas(postgres_url())
        yield
        cls.schemas.drop_all()

    def open_storage(self) -> PostgresStorage:
        return PostgresStorage(self.schemas.url())
