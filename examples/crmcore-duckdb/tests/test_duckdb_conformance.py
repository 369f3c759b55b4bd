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


def test_truthful_analytics_run_in_duckdb_sql() -> None:
    """The summary's one-pass SQL (per currency, days counted once) and the service-quality
    SQL (tier join, expectation read from the document) run in DuckDB and agree with SQLite."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from crmcore import CaseKind, Channel, Customer, Money, OrderLine, Purchase
    from crmcore.scoring import service_quality, summary

    start = datetime(2024, 1, 10, 23, 30, tzinfo=UTC)
    answers = []
    for url in ("duckdb://", "sqlite://"):
        with crmcore.open(url, clock=lambda: start + timedelta(days=30)) as crm:
            crm.bulk_import([Customer.new(c, id=c, tier=t, created_at=start) for c, t in
                             (("ann", "gold"), ("bob", "gold"), ("cyd", "silver"))])
            for n, (who, days, currency, price) in enumerate([
                ("ann", 0, "EUR", "10.50"), ("ann", 0.02, "EUR", "4"), ("ann", 3, "EUR", "7.25"),
                ("bob", 1, "USD", "20"), ("cyd", -400, "EUR", "1"), ("cyd", 2, "EUR", "3"),
            ]):
                line = OrderLine("p", Money(Decimal(price), currency))
                crm.purchases.record(Purchase(f"o{n}", who, start + timedelta(days=days), (line,)))
            log = crm.interactions.log
            log("ann", channel=Channel.PHONE, direction="inbound", at=start, satisfaction=4, expectation=5)
            log("bob", channel=Channel.PHONE, direction="inbound", at=start, satisfaction=5, expectation=3)
            log("cyd", channel=Channel.EMAIL, direction="inbound", at=start, satisfaction=2)
            crm.cases.open("cyd", CaseKind.COMPLAINT, "slow", channel=Channel.PHONE, sla=timedelta(days=1))
            end = datetime(2024, 3, 1, tzinfo=UTC)
            with crm.reading() as uow:
                dialect = dialect_of(uow)
                assert dialect is not None
                rows = sorted(uow.select(summary.summary_sql(dialect, currency=True),  # type: ignore[attr-defined]
                                         [dialect.instant(end), "EUR"] * 2))
                days = uow.select(summary.day_totals_sql(dialect), [dialect.instant(end)])  # type: ignore[attr-defined]
                quality = service_quality._sql(uow, dialect, ("tier", "channel"), "month", None, end)
            answers.append((
                [(r[0], int(r[1]), int(r[2]), int(r[3]), dialect.from_money(r[4]),
                  dialect.from_money(r[5]), r[6]) for r in rows],
                [(c, int(d), code, dialect.exact_money(amount)) for c, d, code, amount in days],
                sorted(quality, key=repr),
            ))
    duck, lite = answers
    assert duck == lite
    assert [r[:4] for r in duck[0]] == [("ann", 2, 19732, 19735), ("cyd", 2, 19332, 19734)]
    assert sum(counts.get("gap_sum", 0) for _, counts in duck[2]) == (4 - 5) + (5 - 3)


def test_sales_forecast_and_cycle_run_in_duckdb_sql_with_pythons_answers() -> None:
    """The sales queries take every database-specific spelling from the dialect, so a
    third-party dialect gets them in SQL, with the answers the Python engine gives."""
    from datetime import UTC, datetime

    from crmcore.sales import query, synthetic

    deals = list(synthetic.opportunities(400, seed=5))
    moment = datetime(2024, 9, 1, tzinfo=UTC)
    answers = []
    for url in ("duckdb://", "memory://"):
        with crmcore.open(url) as crm:
            with crm.transaction() as uow:
                for deal in deals:
                    uow.opportunities.add(deal)
                assert (query.plan(uow, moment, None) is not None) == (url == "duckdb://")
            answers.append((crm.sales.forecast(moment, by="owner"), crm.sales.cycle("default", moment)))
    (forecast, cycle), (python_forecast, python_cycle) = answers
    assert forecast == python_forecast and len(forecast) > 0
    for exact in ("open", "won", "lost", "won_amounts", "won_by_currency", "slipped"):
        assert getattr(cycle, exact) == getattr(python_cycle, exact), exact
    assert cycle.mean_cycle_days == pytest.approx(python_cycle.mean_cycle_days)
    assert cycle.slipped_days == pytest.approx(python_cycle.slipped_days)
    assert [s.mean_days for s in cycle.stages] == pytest.approx([s.mean_days for s in python_cycle.stages])
