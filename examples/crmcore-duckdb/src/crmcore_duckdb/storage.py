"""DuckDB storage: `duckdb:///path/to/crm.duckdb` (or `duckdb://` for a private in-memory base).

Built the way any third party would build it: the repositories, rows and outbox
are crmcore's shared SQL (`crmcore_adapters.storage.sql`), the spelling is the
`DuckDB` dialect, and the unit of work hands that dialect to the core, so
segments and analytics compile for DuckDB.

DuckDB is an analytical engine with one writer at a time: transactions take
turns on one connection's cursors, which also makes a stale write a plain
`ConflictError` from the shared `UPDATE ... WHERE version = ?`.

URL options: `threads` (DuckDB worker threads), and `memory_limit`.
"""

from __future__ import annotations

import contextvars
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb

from crmcore.errors import IntegrityError, StorageError, ValidationError
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.ports import Storage
from crmcore_adapters.storage import sql, totals
from crmcore_duckdb.dialect import DUCKDB

DIALECT = DUCKDB
BULK_BATCH = 5_000
_WRITES = ("INSERT", "UPDATE", "DELETE")
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)
"""A write that returns rows: its result is those rows, left for `fetchone`, not a count."""
_READS = ("SELECT", "WITH", "EXPLAIN", "PRAGMA")
"""Statements a read-only transaction may run (by their first word)."""

MIGRATIONS: tuple[tuple[sql.Step, ...], ...] = (
    (
        """CREATE TABLE customers (
            id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, kind VARCHAR NOT NULL,
            name VARCHAR NOT NULL, tier VARCHAR, lifecycle VARCHAR NOT NULL, country VARCHAR,
            birth_date VARCHAR, language VARCHAR, service_point VARCHAR,
            created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, doc VARCHAR NOT NULL)""",
        "CREATE TABLE customer_emails (email VARCHAR PRIMARY KEY, customer_id VARCHAR NOT NULL)",
        """CREATE TABLE customer_phones (phone VARCHAR NOT NULL, customer_id VARCHAR NOT NULL,
            PRIMARY KEY (phone, customer_id))""",
        """CREATE TABLE customer_external_ids (source VARCHAR NOT NULL, external_id VARCHAR NOT NULL,
            customer_id VARCHAR NOT NULL, PRIMARY KEY (source, external_id))""",
        """CREATE TABLE interactions (
            id VARCHAR PRIMARY KEY, customer_id VARCHAR NOT NULL, channel VARCHAR NOT NULL,
            family VARCHAR NOT NULL, direction VARCHAR NOT NULL, occurred_at BIGINT NOT NULL,
            service_point VARCHAR, agent VARCHAR, outcome VARCHAR, satisfaction INTEGER,
            nps INTEGER, case_id VARCHAR, reference VARCHAR, doc VARCHAR NOT NULL)""",
        """CREATE TABLE purchases (
            id VARCHAR PRIMARY KEY, customer_id VARCHAR NOT NULL, ordered_at BIGINT NOT NULL,
            channel VARCHAR, service_point VARCHAR, currency VARCHAR NOT NULL,
            total BIGINT NOT NULL, doc VARCHAR NOT NULL)""",
        """CREATE TABLE cases (
            id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, customer_id VARCHAR NOT NULL,
            kind VARCHAR NOT NULL, status VARCHAR NOT NULL, priority INTEGER NOT NULL,
            opened_at BIGINT NOT NULL, sla_due BIGINT, resolved_at BIGINT, channel VARCHAR,
            service_point VARCHAR, agent VARCHAR, contacts INTEGER NOT NULL, doc VARCHAR NOT NULL)""",
        """CREATE TABLE opportunities (
            id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, customer_id VARCHAR NOT NULL,
            stage VARCHAR NOT NULL, kind VARCHAR NOT NULL, opened_at BIGINT NOT NULL,
            owner VARCHAR, doc VARCHAR NOT NULL)""",
        "CREATE TABLE campaigns (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, doc VARCHAR NOT NULL)",
        """CREATE TABLE campaign_members (
            campaign_id VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, grp VARCHAR NOT NULL,
            status VARCHAR NOT NULL, "at" BIGINT NOT NULL, doc VARCHAR NOT NULL,
            PRIMARY KEY (campaign_id, customer_id))""",
        """CREATE TABLE service_points (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL,
            kind VARCHAR NOT NULL, doc VARCHAR NOT NULL)""",
        "CREATE TABLE agents (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, doc VARCHAR NOT NULL)",
        "CREATE TABLE teams (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, doc VARCHAR NOT NULL)",
        "CREATE SEQUENCE outbox_seq START 1",
        """CREATE TABLE outbox (
            seq BIGINT PRIMARY KEY DEFAULT nextval('outbox_seq'), id VARCHAR NOT NULL UNIQUE,
            topic VARCHAR NOT NULL, aggregate_id VARCHAR NOT NULL, occurred_at BIGINT NOT NULL,
            available_at BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            delivered_to VARCHAR NOT NULL DEFAULT '[]', last_error VARCHAR,
            done INTEGER NOT NULL DEFAULT 0, doc VARCHAR NOT NULL)""",
        "CREATE TABLE segments (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, doc VARCHAR NOT NULL)",
        """CREATE TABLE segment_members (segment_id VARCHAR NOT NULL, customer_id VARCHAR NOT NULL,
            since BIGINT NOT NULL, PRIMARY KEY (segment_id, customer_id))""",
        """CREATE TABLE segment_runs (segment_id VARCHAR NOT NULL, "at" BIGINT NOT NULL,
            rule_version INTEGER NOT NULL, size INTEGER NOT NULL, entered INTEGER NOT NULL,
            "left" INTEGER NOT NULL, PRIMARY KEY (segment_id, "at"))""",
        """CREATE TABLE scores (scorer VARCHAR NOT NULL, customer_id VARCHAR NOT NULL,
            as_of BIGINT NOT NULL, value DOUBLE NOT NULL, label VARCHAR, doc VARCHAR NOT NULL,
            PRIMARY KEY (scorer, customer_id, as_of))""",
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "INSERT INTO schema_version VALUES (0)",
    ),
    # crmcore's operational records: the case escalation's next check, tasks, accounts and
    # their members, the automation log
    (
        "ALTER TABLE cases ADD COLUMN next_check BIGINT",
        """CREATE TABLE tasks (
            id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, owner VARCHAR, status VARCHAR NOT NULL,
            due_at BIGINT, reminder_due BIGINT, created_at BIGINT NOT NULL, customer_id VARCHAR,
            account_id VARCHAR, case_id VARCHAR, opportunity_id VARCHAR, doc VARCHAR NOT NULL)""",
        """CREATE TABLE accounts (
            id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, kind VARCHAR NOT NULL,
            name VARCHAR NOT NULL, parent_id VARCHAR, tier VARCHAR, owner VARCHAR,
            doc VARCHAR NOT NULL)""",
        """CREATE TABLE account_members (account_id VARCHAR NOT NULL, customer_id VARCHAR NOT NULL,
            role VARCHAR NOT NULL, PRIMARY KEY (account_id, customer_id))""",
        """CREATE TABLE automation_runs (
            id VARCHAR PRIMARY KEY, rule VARCHAR NOT NULL, event_id VARCHAR NOT NULL,
            customer_id VARCHAR, "at" BIGINT NOT NULL, outcome VARCHAR NOT NULL,
            doc VARCHAR NOT NULL, UNIQUE (rule, event_id))""",
    ),
    # crmcore's sales records: pipelines, leads, catalogue, quotes, exchange rates, stage history
    (
        "CREATE TABLE pipelines (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, doc VARCHAR NOT NULL)",
        """CREATE TABLE leads (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL,
            status VARCHAR NOT NULL, doc VARCHAR NOT NULL)""",
        "CREATE TABLE products (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL, doc VARCHAR NOT NULL)",
        """CREATE TABLE price_books (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL,
            currency VARCHAR NOT NULL, tier VARCHAR, doc VARCHAR NOT NULL)""",
        """CREATE TABLE quotes (id VARCHAR PRIMARY KEY, version BIGINT NOT NULL,
            customer_id VARCHAR NOT NULL, opportunity_id VARCHAR NOT NULL, status VARCHAR NOT NULL,
            doc VARCHAR NOT NULL)""",
        """CREATE TABLE exchange_rates (base VARCHAR NOT NULL, quote VARCHAR NOT NULL,
            day VARCHAR NOT NULL, value VARCHAR NOT NULL, PRIMARY KEY (base, quote, day))""",
        """CREATE TABLE opportunity_history (opportunity_id VARCHAR NOT NULL, seq INTEGER NOT NULL,
            "at" BIGINT NOT NULL, pipeline VARCHAR NOT NULL, stage VARCHAR NOT NULL,
            probability DOUBLE, close_date VARCHAR, currency VARCHAR, amount BIGINT, owner VARCHAR,
            team VARCHAR, PRIMARY KEY (opportunity_id, seq))""",
    ),
    # crmcore's data lifecycle: field history, merge journals, erasure tombstones
    (
        "CREATE SEQUENCE history_seq START 1",
        """CREATE TABLE history (seq BIGINT PRIMARY KEY DEFAULT nextval('history_seq'),
            kind VARCHAR NOT NULL, aggregate_id VARCHAR NOT NULL, version BIGINT NOT NULL,
            op VARCHAR NOT NULL, "at" BIGINT NOT NULL, diff VARCHAR NOT NULL, actor VARCHAR)""",
        """CREATE TABLE merges (id VARCHAR PRIMARY KEY, survivor_id VARCHAR NOT NULL,
            merged_id VARCHAR NOT NULL, "at" BIGINT NOT NULL, doc VARCHAR NOT NULL)""",
        'CREATE TABLE erasures (id VARCHAR PRIMARY KEY, "at" BIGINT NOT NULL)',
    ),
    # crmcore's account primary contacts in the member index, and stored configuration
    (
        "ALTER TABLE account_members ADD COLUMN is_primary BOOLEAN DEFAULT false",
        """UPDATE account_members SET is_primary = true WHERE EXISTS (
            SELECT 1 FROM accounts AS a,
              unnest(CAST(json_extract(a.doc, '$.members') AS JSON[])) AS m(v)
            WHERE a.id = account_members.account_id
              AND json_extract_string(m.v, '$.customer_id') = account_members.customer_id
              AND json_extract_string(m.v, '$.primary') = 'true')""",
        """CREATE TABLE configurations (kind VARCHAR NOT NULL, name VARCHAR NOT NULL,
            version BIGINT NOT NULL, "at" BIGINT NOT NULL, actor VARCHAR, doc VARCHAR,
            PRIMARY KEY (kind, name, version))""",
    ),
    # crmcore's purchase totals per customer and currency, kept with every purchase write;
    # no key or index: DuckDB refuses to delete and insert one key in a transaction, and
    # scans a column fast without one
    (
        """CREATE TABLE purchase_totals (customer_id VARCHAR NOT NULL, currency VARCHAR NOT NULL,
            first_day INTEGER NOT NULL, first_day_total BIGINT NOT NULL,
            last_day INTEGER NOT NULL, last_at BIGINT NOT NULL, days INTEGER NOT NULL,
            total BIGINT NOT NULL)""",
        totals.recount_sql(DIALECT),
    ),
    # crmcore's true as-of: each customer change keeps the row it superseded
    (
        "CREATE SEQUENCE customer_states_seq START 1",
        """CREATE TABLE customer_states (seq BIGINT PRIMARY KEY DEFAULT nextval('customer_states_seq'),
            "at" BIGINT NOT NULL, op VARCHAR NOT NULL, customer_id VARCHAR NOT NULL, version BIGINT,
            kind VARCHAR, name VARCHAR, tier VARCHAR, lifecycle VARCHAR, country VARCHAR,
            birth_date VARCHAR, language VARCHAR, service_point VARCHAR, created_at BIGINT,
            updated_at BIGINT, doc VARCHAR)""",
        'CREATE INDEX customer_states_customer ON customer_states (customer_id, "at", seq)',
        sql.backfill_states,
    ),
    # crmcore's as-of: each state row also says since when it was valid (DuckDB alters no
    # table an index depends on: the index is dropped and made again around the change)
    (
        "DROP INDEX customer_states_customer",
        "ALTER TABLE customer_states ADD COLUMN since BIGINT",
        sql.backfill_since,
        'CREATE INDEX customer_states_customer ON customer_states (customer_id, "at", seq)',
    ),
    # crmcore's round-robin turns, shared by every process assigning from this base
    (
        "CREATE TABLE assignment_turns (pool VARCHAR PRIMARY KEY, turn BIGINT NOT NULL)",
    ),
    # operational: a counter of staff changes, raised with each one, so an index of the
    # staff kept by a process is reused while the counter stands (StaffGeneration)
    (
        "CREATE TABLE staff_generation (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "generation BIGINT NOT NULL)",
        "INSERT INTO staff_generation (id, generation) VALUES (1, 0)",
    ),
    # crmcore's as-of: today's customer row says since when it is valid (the customers as
    # of an instant read it instead of looking for later states); DuckDB scans the states
    # by column, so no index of their day
    (
        "ALTER TABLE customers ADD COLUMN since BIGINT",
        sql.backfill_current_since,
    ),
)
"""Migration N brings the schema from version N to N+1."""


class Cursor:
    """A DuckDB cursor as the shared SQL expects a DB-API cursor: DuckDB answers a write with
    a one-row result holding the count of rows it touched, which becomes `rowcount` (unless
    the write asks for rows back with RETURNING)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, readonly: bool = False) -> None:
        self.con = con
        self.readonly = readonly
        self.rowcount = -1

    def execute(self, statement: str, params: Sequence[Any] = ()) -> Cursor:
        if self.readonly and not statement.lstrip()[:8].upper().startswith(_READS):
            raise StorageError("duckdb: a read-only transaction tried to write")
        self.con.execute(statement, list(params))
        if statement.lstrip()[:6].upper() in _WRITES and not _RETURNING.search(statement):
            row = self.con.fetchone()
            self.rowcount = -1 if row is None else int(row[0])
        return self

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> Cursor:
        """`rowcount` becomes the rows touched by all of them together (as sqlite3 and
        psycopg count), so a batch of versioned UPDATEs can tell a stale one."""
        if self.readonly:
            raise StorageError("duckdb: a read-only transaction tried to write")
        batch = [list(row) for row in rows]
        if not batch:  # DuckDB refuses an empty batch
            return self
        if statement.lstrip()[:6].upper() not in ("UPDATE", "DELETE"):
            self.con.executemany(statement, batch)
            self.rowcount = -1
            return self
        touched = 0
        for row in batch:  # DuckDB's executemany runs one statement a row too, and counts none
            touched += self.execute(statement, row).rowcount
        self.rowcount = touched
        return self

    def fetchone(self) -> Any:
        return self.con.fetchone()

    def fetchall(self) -> list[Any]:
        return self.con.fetchall()


class DuckDBStorage:
    """Storage in one DuckDB database file (or in memory); transactions take turns."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        raw = parts.netloc + parts.path
        path = raw[1:] if raw.startswith("/") else raw
        if path and path != ":memory:" and not Path(path).parent.exists():
            raise ValidationError("url", url, f"directory {str(Path(path).parent)!r} does not exist")
        config: dict[str, Any] = {}
        for name in ("threads", "memory_limit"):
            if name in options:
                config[name] = options[name]
        try:
            self._con = duckdb.connect(path or ":memory:", config=config)
        except duckdb.Error as exc:
            raise StorageError(f"cannot open {url}: {exc}") from None
        self._gate = threading.Lock()
        self._open: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"crmcore_duckdb_{id(self)}", default=False
        )
        self.migrate()

    def __repr__(self) -> str:
        return f"<DuckDBStorage {self.url}>"

    def migrate(self) -> int:
        """Bring the schema up to date; safe to run again."""
        with self._begin() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'")
            version = 0
            if cur.fetchone()[0]:
                cur.execute("SELECT version FROM schema_version")
                version = int(cur.fetchone()[0])
            for number, statements in enumerate(MIGRATIONS[version:], start=version):
                for statement in statements:
                    sql.run_step(cur, DIALECT, statement)
                cur.execute("UPDATE schema_version SET version = ?", (number + 1,))
            return len(MIGRATIONS)

    @contextmanager
    def _begin(self, readonly: bool = False) -> Iterator[Cursor]:
        if self._open.get():
            raise StorageError("a transaction is already open in this context (thread or task)")
        with self._gate:
            token = self._open.set(True)
            try:
                yield from self._run(readonly)
            finally:
                self._open.reset(token)

    def _run(self, readonly: bool) -> Iterator[Cursor]:
        try:
            con = self._con.cursor()
            con.execute("BEGIN TRANSACTION")
        except duckdb.Error as exc:
            raise StorageError(f"cannot begin a transaction on {self.url}: {exc}") from None
        try:
            try:
                yield Cursor(con, readonly)
            except BaseException as exc:
                con.execute("ROLLBACK")
                if isinstance(exc, duckdb.ConstraintException):
                    raise IntegrityError(f"{self.url}: {exc}") from None
                if isinstance(exc, duckdb.Error):
                    raise StorageError(f"{self.url}: {exc}") from None
                raise
            try:
                con.execute("COMMIT")
            except duckdb.Error as exc:
                raise StorageError(f"commit failed on {self.url}: {exc}") from None
        finally:
            con.close()

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[sql.SqlUnitOfWork]:
        """Transactions take turns; a read-only one refuses any statement but a read."""
        with self._begin(readonly) as cur:
            yield sql.SqlUnitOfWork(cur, DIALECT, keyed_totals=False)  # purchase_totals has no key

    def bulk_import(self, items: Iterable[Any]) -> int:
        count = 0
        with self._begin() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS bulk_owners (customer_id VARCHAR NOT NULL)")
            cur.execute("DELETE FROM bulk_owners")
            for statement, rows, records in sql.bulk_statements(DIALECT, items, BULK_BATCH):
                DIALECT.executemany(cur, statement, rows)
                count += records
            sql.finish_import(cur, DIALECT)
            cur.execute("DELETE FROM bulk_owners")
        return count

    def close(self) -> None:
        try:
            self._con.close()
        except duckdb.Error as exc:  # pragma: no cover - closing twice is harmless in DuckDB
            raise StorageError(f"cannot close {self.url}: {exc}") from None


def open_storage(url: str) -> Storage:
    """The registered factory; its return type makes mypy prove the adapter fits the port."""
    return DuckDBStorage(url)


@hookimpl
def crmcore_register_storage() -> list[Adapter]:
    return [Adapter("duckdb", open_storage)]



