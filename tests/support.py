"""Helpers shared by the test suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest

import crmcore


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip on a developer's machine; fail under CI=true, so a green CI means it ran."""
    if in_ci():
        pytest.fail(f"required backend unavailable under CI: {reason}", pytrace=False)
    pytest.skip(reason)


POSTGRES_ENV = "CRMCORE_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The test PostgreSQL server's URL, after checking it answers (else `unavailable`)."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        unavailable(f"{POSTGRES_ENV} is not set; point it at a PostgreSQL server to run these tests")
    try:
        import psycopg
    except ImportError as exc:
        unavailable(f"psycopg is not installed, so PostgreSQL cannot be reached: {exc}")
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        unavailable(f"PostgreSQL at {POSTGRES_ENV} does not answer: {exc}")
    return url


@contextmanager
def open_crm(kind: str, directory: Path, **options: Any) -> Iterator[crmcore.CRM]:
    """A fresh, empty CRM on one backend ("memory", "sqlite" in `directory`, or "postgresql"
    in a schema of its own, dropped afterwards); `options` go to `crmcore.open`."""
    schemas = None
    if kind == "memory":
        url = "memory://"
    elif kind == "sqlite":
        url = f"sqlite:///{directory / 'crm.db'}"
    else:
        from tests.postgres.conftest import Schemas

        schemas = Schemas(postgres_url())
        url = schemas.url()
    crm = crmcore.open(url, **options)
    try:
        yield crm
    finally:
        crm.close()
        if schemas is not None:
            schemas.drop_all()
