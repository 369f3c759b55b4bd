"""The sales storage contract on memory, SQLite (in memory and on a WAL file) and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from crmcore.ports import Storage
from crmcore.testing.sales import SalesStorageContract
from crmcore_adapters.storage.memory import MemoryStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.sales.conftest import OPENERS


class TestMemorySales(SalesStorageContract):
    def open_storage(self) -> Storage:
        return MemoryStorage()


class TestSQLiteSales(SalesStorageContract):
    def open_storage(self) -> Storage:
        return SQLiteStorage("sqlite:///:memory:")


class TestSQLiteFileSales(SalesStorageContract):
    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> Iterator[None]:
        self.directory = tmp_path
        self.counter = itertools.count()
        yield

    def open_storage(self) -> Storage:
        return SQLiteStorage(f"sqlite:///{self.directory}/crm{next(self.counter)}.db")


@pytest.mark.postgres
class TestPostgresSales(SalesStorageContract):
    def open_storage(self) -> Storage:
        return OPENERS["postgresql"]()
