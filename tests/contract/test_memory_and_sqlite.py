"""The shipped storage contract, run against the in-memory and SQLite adapters."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from crmcore.ports import Storage
from crmcore.testing.contract import StorageContract
from crmcore_adapters.storage.memory import MemoryStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage


class TestMemoryStorage(StorageContract):
    one_transaction_at_a_time = True

    def open_storage(self) -> Storage:
        return MemoryStorage()


class TestSQLiteInMemory(StorageContract):
    one_transaction_at_a_time = True

    def open_storage(self) -> Storage:
        return SQLiteStorage("sqlite:///:memory:")


class TestSQLiteFile(StorageContract):
    """On a WAL file, where separate threads hold separate connections."""

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.counter = itertools.count()

    def open_storage(self) -> Storage:
        return SQLiteStorage(f"sqlite:///{self.directory}/crm{next(self.counter)}.db")
