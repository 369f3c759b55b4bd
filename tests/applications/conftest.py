"""A CRM URL per real backend for the application tests: a SQLite file, and a fresh
PostgreSQL schema (dropped afterwards)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postgres.conftest import Schemas
from tests.support import postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/crm.db"
        return
    schemas = Schemas(postgres_url())
    yield schemas.url()
    schemas.drop_all()
