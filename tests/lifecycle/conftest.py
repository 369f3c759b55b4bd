"""Backends for the lifecycle tests: memory and SQLite always, PostgreSQL from
CRMCORE_TEST_POSTGRES_URL (skipped on a developer's machine without it, failing under CI)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

import crmcore
from tests.support import postgres_url

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def tick(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def fresh_postgres_url() -> Iterator[Callable[[], str]]:
    """Hands out URLs of fresh schemas on the test server, dropped at the end of the test."""
    server = postgres_url()
    made: list[str] = []

    def url() -> str:
        made.append(f"crmcore_life_{uuid.uuid4().hex[:12]}")
        return f"{server}{'&' if '?' in server else '?'}schema={made[-1]}"

    yield url
    with psycopg.connect(server, autocommit=True) as conn:
        for schema in made:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def storage_url(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("fresh_postgres_url")())
    if request.param == "sqlite-file":
        return f"sqlite:///{request.getfixturevalue('tmp_path')}/crm.db"
    return str(request.param)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def crm(request: pytest.FixtureRequest, clock: Clock) -> Iterator[crmcore.CRM]:
    opened = crmcore.open(storage_url(request), clock=clock)
    yield opened
    opened.close()
