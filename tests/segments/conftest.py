"""Backends for the segment tests: memory and SQLite always, PostgreSQL from
CRMCORE_TEST_POSTGRES_URL (skipped on a developer's machine without it, failing under CI)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tests.support import postgres_url


@pytest.fixture
def fresh_postgres_url() -> Iterator[Callable[[], str]]:
    """Hands out URLs of fresh schemas on the test server, dropped at the end of the test."""
    server = postgres_url()
    made: list[str] = []

    def url() -> str:
        made.append(f"crmcore_seg_{uuid.uuid4().hex[:12]}")
        return f"{server}{'&' if '?' in server else '?'}schema={made[-1]}"

    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def open_url(request: pytest.FixtureRequest) -> str:
    """The storage URL for a test parametrised with "memory://", "sqlite://" or "postgresql"."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_postgres_url")())
    return str(request.param)
