"""Every storage backend, real servers included, for the import and export tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import crmcore
from tests.analytics.conftest import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[crmcore.CRM]:
    yield from open_backend(request.param, tmp_path)


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
def sql_crm(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[crmcore.CRM]:
    """SQLite and PostgreSQL only: the backends a company imports into."""
    yield from open_backend(request.param, tmp_path)
