"""A CRM per backend for the hardening tests: memory, SQLite and PostgreSQL (a fresh schema)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import psycopg
import pytest

import crmcore
from tests.support import postgres_url

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
BACKENDS = ["memory://", "sqlite://", "postgresql"]


def open_backend(name: str, **options: str) -> tuple[crmcore.CRM, str | None]:
    """A CRM on `name` (the PostgreSQL one in a new schema, returned for dropping)."""
    if name != "postgresql":
        return crmcore.open(name, clock=lambda: NOW), None
    schema = f"crmcore_hard_{uuid.uuid4().hex[:12]}"
    query = "&".join(f"{k}={v}" for k, v in {"schema": schema, **options}.items())
    server = postgres_url()
    return crmcore.open(f"{server}{'&' if '?' in server else '?'}{query}", clock=lambda: NOW), schema


def drop(schema: str | None) -> None:
    if schema is not None:
        with psycopg.connect(postgres_url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    """One CRM per backend for a whole module (the corpus runs thousands of cases on it)."""
    crm, schema = open_backend(request.param, query_timeout="2000")
    try:
        yield crm
    finally:
        crm.close()
        drop(schema)
