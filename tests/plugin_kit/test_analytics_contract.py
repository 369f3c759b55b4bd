"""The shipped analytics suite against our own adapters: memory (the Python engines),
SQLite on a file, and PostgreSQL, each compared with SQLite in memory."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from crmcore.ports import Storage
from crmcore.testing.analytics import AnalyticsContract
from crmcore_adapters.storage.memory import MemoryStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.postgres.conftest import OnPostgres


class TestMemoryAnalytics(AnalyticsContract):
    def open_storage(self) -> Storage:
        return MemoryStorage()


class TestSQLiteFileAnalytics(AnalyticsContract):
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _directory(cls, tmp_path_factory: pytest.TempPathFactory) -> None:
        cls.directory = tmp_path_factory.mktemp("analytics")

    directory: Path
    counter = itertools.count()

    def open_storage(self) -> Storage:
        return SQLiteStorage(f"sqlite:///{self.directory}/crm{next(self.counter)}.db")


@pytest.mark.postgres
class TestPostgresAnalytics(OnPostgres, AnalyticsContract):
    """The analytics contract on the real PostgreSQL server."""
