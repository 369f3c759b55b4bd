"""SQLite storage: the embedded default (`sqlite:///path/to/crm.db`).

WAL journal, one connection per thread, every transaction `BEGIN IMMEDIATE`
so writers queue instead of failing half-way, schema migrations tracked in
`PRAGMA user_version`. Instants are integer microseconds since the epoch (UTC)
and money integer 1/10,000ths, so comparisons and sums in SQL are exact.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crmcore.errors import IntegrityError, StorageError, ValidationError
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.ports import Storage
from crmcore.values import MONEY_SCALE, from_micros, new_id, to_micros
from crmcore_adapters.storage import sql

SCALE = 10**MONEY_SCALE


DIALECT = sql.Dialect(
    name="sqlite",
    param="?",
    instant=to_micros,
    from_instant=from_micros,
    money=lambda amount: int(amount * SCALE),
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE customers (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
            tier TEXT, lifecycle TEXT NOT NULL, country TEXT, birth_date TEXT, language TEXT,
            service_point TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE TABLE customer_emails (email TEXT PRIMARY KEY, customer_id TEXT NOT NULL)",
        """CREATE TABLE customer_phones (phone TEXT NOT NULL, customer_id TEXT NOT NULL,
            PRIMARY KEY (phone, customer_id)) WITHOUT ROWID""",
        """CREATE TABLE customer_external_ids (source TEXT NOT NULL, external_id TEXT NOT NULL,
            customer_id TEXT NOT NULL, PRIMARY KEY (source, external_id)) WITHOUT ROWID""",
        "CREATE INDEX customer_emails_customer ON customer_emails (customer_id)",
        "CREATE INDEX customer_phones_customer ON customer_phones (customer_id)",
        "CREATE INDEX customer_external_ids_customer ON customer_external_ids (customer_id)",
        """CREATE TABLE interactions (
            id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, channel TEXT NOT NULL,
            family TEXT NOT NULL, direction TEXT NOT NULL, occurred_at INTEGER NOT NULL,
            service_point TEXT, agent TEXT, outcome TEXT, satisfaction INTEGER, nps INTEGER,
            case_id TEXT, reference TEXT, doc TEXT NOT NULL)""",
        "CREATE INDEX interactions_customer ON interactions (customer_id, occurred_at)",
        "CREATE INDEX interactions_reference ON interactions (reference)",
        """CREATE TABLE purchases (
            id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, ordered_at INTEGER NOT NULL,
            channel TEXT, service_point TEXT, currency TEXT NOT NULL, total INTEGER NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX purchases_customer ON purchases (customer_id, ordered_at)",
        """CREATE TABLE cases (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, customer_id TEXT NOT NULL,
            kind TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,
            opened_at INTEGER NOT NULL, sla_due INTEGER, resolved_at INTEGER, channel TEXT,
            service_point TEXT, agent TEXT, contacts INTEGER NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX cases_customer ON cases (customer_id, status)",
        """CREATE TABLE opportunities (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, customer_id TEXT NOT NULL,
            stage TEXT NOT NULL, kind TEXT NOT NULL, opened_at INTEGER NOT NULL, owner TEXT,
            doc TEXT NOT NULL)""",
        "CREATE INDEX opportunities_customer ON opportunities (customer_id)",
        "CREATE TABLE campaigns (id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)",
        """CREATE TABLE campaign_members (
            campaign_id TEXT NOT NULL, customer_id TEXT NOT NULL, grp TEXT NOT NULL,
            status TEXT NOT NULL, at INTEGER NOT NULL, doc TEXT NOT NULL,
            PRIMARY KEY (campaign_id, customer_id)) WITHOUT ROWID""",
        """CREATE TABLE service_points (id TEXT PRIMARY KEY, version INTEGER NOT NULL,
            kind TEXT NOT NULL, doc TEXT NOT NULL)""",
        "CREATE TABLE agents (id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)",
        "CREATE TABLE teams (id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)",
        """CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL,
            aggregate_id TEXT NOT NULL, occurred_at INTEGER NOT NULL,
            available_at INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
            delivered_to TEXT NOT NULL DEFAULT '[]', last_error TEXT,
            done INTEGER NOT NULL DEFAULT 0, doc TEXT NOT NULL)""",
        "CREATE INDEX outbox_pending ON outbox (done, available_at)",
        """CREATE TABLE segments (id TEXT PRIMARY KEY, version INTEGER NOT NULL,
            doc TEXT NOT NULL)""",
        """CREATE TABLE segment_members (segment_id TEXT NOT NULL, customer_id TEXT NOT NULL,
            since INTEGER NOT NULL, PRIMARY KEY (segment_id, customer_id)) WITHOUT ROWID""",
        """CREATE TABLE segment_runs (segment_id TEXT NOT NULL, at INTEGER NOT NULL,
            rule_version INTEGER NOT NULL, size INTEGER NOT NULL, entered INTEGER NOT NULL,
            "left" INTEGER NOT NULL, PRIMARY KEY (segment_id, at)) WITHOUT ROWID""",
        """CREATE TABLE scores (scorer TEXT NOT NULL, customer_id TEXT NOT NULL,
            as_of INTEGER NOT NULL, value REAL NOT NULL, label TEXT, doc TEXT NOT NULL,
            PRIMARY KEY (scorer, customer_id, as_of)) WITHOUT ROWID""",
        "CREATE INDEX scores_customer ON scores (customer_id, scorer, as_of)",
    ),
    # analytics: the purchase summary reads this index alone, never the wide table rows
    ("CREATE INDEX purchases_summary ON purchases (customer_id, ordered_at, currency, total)",),
)
"""Migration N brings the schema from version N to N+1; never edit one that has shipped."""

BULK_BATCH = 5_000


class SQLiteStorage:
    """Storage on one SQLite file; safe to share between threads of one process."""

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        raw_path = parts.netloc + parts.path
        path = raw_path[1:] if raw_path.startswith("/") else raw_path
        try:
            self._timeout = float(options.get("timeout", "30"))
        except ValueError:
            raise ValidationError("url", url, "timeout must be a number of seconds") from None
        if not path or path == ":memory:":
            self._target = f"file:crmcore-{new_id()}?mode=memory&cache=shared"
            self._uri = True
            self._keeper: sqlite3.Connection | None = self._connect()
        else:
            if not Path(path).parent.exists():
                raise ValidationError("url", url, f"directory {str(Path(path).parent)!r} does not exist")
            self._target = path
            self._uri = False
            self._keeper = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._gate = threading.Lock()
        self._owner: int | None = None
        self.migrate()

    def __repr__(self) -> str:
        return f"<SQLiteStorage {self.url}>"

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target, uri=self._uri, isolation_level=None, check_same_thread=False,
                timeout=self._timeout,
            )
            if not self._uri:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.url}: {exc}") from None
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (opened on first use); an in-memory base has just one."""
        if self._keeper is not None:
            return self._keeper
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def migrate(self) -> int:
        """Bring the schema up to date; safe to run again and from several processes."""
        with self._begin() as cur:
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            for number, statements in enumerate(MIGRATIONS[version:], start=version):
                for statement in statements:
                    cur.execute(statement)
                cur.execute(f"PRAGMA user_version = {number + 1:d}")
            return int(cur.execute("PRAGMA user_version").fetchone()[0])

    @contextmanager
    def _serialised(self) -> Iterator[None]:
        """An in-memory base shares one connection, so its transactions take turns here
        (a file base lets SQLite's own locking and busy timeout do this)."""
        if self._keeper is None:
            yield
            return
        if self._owner == threading.get_ident():
            raise StorageError("a transaction is already open on this thread")
        with self._gate:
            self._owner = threading.get_ident()
            try:
                yield
            finally:
                self._owner = None

    @contextmanager
    def _begin(self) -> Iterator[sqlite3.Cursor]:
        with self._serialised():
            yield from self._begin_on(self.connection())

    def _begin_on(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Cursor]:
        if conn.in_transaction:
            raise StorageError("a transaction is already open on this thread")
        cur = conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot begin a transaction on {self.url}: {exc}") from None
        try:
            yield cur
        except BaseException as exc:
            conn.rollback()
            if isinstance(exc, sqlite3.IntegrityError):
                raise IntegrityError(str(exc)) from None
            if isinstance(exc, sqlite3.Error):
                raise StorageError(f"{self.url}: {exc}") from None
            raise
        try:
            conn.commit()
        except sqlite3.Error as exc:
            conn.rollback()
            raise StorageError(f"commit failed on {self.url}: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[sql.SqlUnitOfWork]:
        with self._begin() as cur:
            yield sql.SqlUnitOfWork(cur, DIALECT)

    def bulk_import(self, items: Iterable[Any]) -> int:
        count = 0
        with self._begin() as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS bulk_owners (customer_id TEXT NOT NULL)")
            cur.execute("DELETE FROM bulk_owners")
            for statement, rows, records in sql.bulk_statements(DIALECT, items, BULK_BATCH):
                cur.executemany(statement, rows)
                count += records
            sql.check_owners(cur)
            cur.execute("DELETE FROM bulk_owners")
        return count

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            if self._keeper is not None:
                self._keeper.close()
                self._keeper = None
        self._local = threading.local()


def open_storage(url: str) -> Storage:
    """The registered factory; its return type makes mypy prove the adapter fits the port."""
    return SQLiteStorage(url)


@hookimpl
def crmcore_register_storage() -> list[Adapter]:
    return [Adapter("sqlite", open_storage)]
