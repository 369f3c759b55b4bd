"""crmcore's shipped conformance suites, unchanged, against the DuckDB plugin, opened the
way a user opens it: by URL, through the `crmcore` entry point this package installs."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

import crmcore
from crmcore.plugins import adapters, make_plugin_manager
from crmcore.ports import Storage
from crmcore.segments.functions import BUILTINS
from crmcore.sql import dialect_of
from crmcore.testing.analytics import AnalyticsContract
from crmcore.testing.contract import StorageContract
from crmcore.testing.rules import RuleFunctionContract
from crmcore_duckdb import DUCKDB


def test_the_entry_point_registers_the_scheme() -> None:
    assert "duckdb" in adapters(make_plugin_manager(), "crmcore_register_storage")
    with crmcore.open("duckdb://") as crm, crm.transaction() as uow:
        assert dialect_of(uow) is DUCKDB


def _open(url: str) -> Storage:
    return crmcore.open(url).storage


class TestDuckDBInMemory(StorageContract):
    one_transaction_at_a_time = True

    def open_storage(self) -> Storage:
        return _open("duckdb://")


class TestDuckDBFile(StorageContract):
    one_transaction_at_a_time = True

    @pytest.fixture(autouse=True)
    def _directory(self, tmp_path: Path) -> None:
        self.directory = tmp_path
        self.counter = itertools.count()

    def open_storage(self) -> Storage:
        return _open(f"duckdb:///{self.directory}/crm{next(self.counter)}.duckdb")


class TestDuckDBAnalytics(AnalyticsContract):
    """Segments, RFM, lifetime value, service quality and offers: the same as on SQLite."""

    def open_storage(self) -> Storage:
        return _open("duckdb://")


def test_rules_run_in_duckdb_sql_except_custom_attributes() -> None:
    """The analytics suite proves the answers; this proves they come from DuckDB's SQL."""
    from crmcore.segments import explain
    from crmcore.synthetic import AS_OF
    from crmcore.testing.analytics import RULES

    with crmcore.open("duckdb://") as crm, crm.transaction() as uow:
        engines = {rule: explain(uow, rule, as_of=AS_OF).engine for rule in RULES}
    assert engines.pop("attributes.loyalty_points > 100") == "sql+python"
    assert set(engines.values()) == {"sql"}, engines


class TestBuiltinFunctionsOnDuckDB(RuleFunctionContract):
    """The built-in rule functions' SQL (borrowed from PostgreSQL) means their Python on DuckDB."""

    functions = BUILTINS

    def open_storage(self) -> Storage:
        return _open("duckdb://")
