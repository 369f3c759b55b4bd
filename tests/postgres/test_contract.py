"""The shipped storage contract, unchanged, against a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmcore.ports import Storage
from crmcore.testing.contract import StorageContract

from .conftest import Schemas

pytestmark = pytest.mark.postgres


class TestPostgresStorage(StorageContract):
    """Every storage the contract opens gets its own schema, dropped after the test."""

    @pytest.fixture(autouse=True)
    def _schemas(self, schemas: Schemas) -> Iterator[None]:
        self.schemas = schemas
        yield

    def open_storage(self) -> Storage:
        return self.schemas.open()
