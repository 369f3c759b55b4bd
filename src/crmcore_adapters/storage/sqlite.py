"""SQLite storage: the embedded default (`sqlite:///path/to/crm.db`).

WAL journal, pooled connections (read-only transactions never take the write
lock; writes begin IMMEDIATE so writers queue), schema migrations tracked in
`PRAGMA user_version`. Instants are integer microseconds since the epoch (UTC)
and money integer 1/10,000ths, so comparisons and sums in SQL are exact.
"""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crmcore.errors import IntegrityError, StorageError, ValidationError
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.ports import Storage
from crmcore.sql import SQLITE
from crmcore.values import MONEY_SCALE, new_id
from crmcore_adapters.storage import sql, totals

SCALE = 10**MONEY_SCALE


DIALECT = SQLITE

MIGRATIONS: tuple[tuple[sql.Step, ...], ...] = (
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
    # operational: the escalation ladder's next check on cases, tasks, accounts and their
    # members, the automation log
    (
        "ALTER TABLE cases ADD COLUMN next_check INTEGER",
        "CREATE INDEX cases_next_check ON cases (next_check, id)",
        "CREATE INDEX cases_agent ON cases (agent, status)",
        """CREATE TABLE tasks (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, owner TEXT, status TEXT NOT NULL,
            due_at INTEGER, reminder_due INTEGER, created_at INTEGER NOT NULL, customer_id TEXT,
            account_id TEXT, case_id TEXT, opportunity_id TEXT, doc TEXT NOT NULL)""",
        "CREATE INDEX tasks_owner ON tasks (owner, status, due_at)",
        "CREATE INDEX tasks_due ON tasks (status, due_at)",
        "CREATE INDEX tasks_reminder ON tasks (reminder_due, id)",
        """CREATE TABLE accounts (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
            parent_id TEXT, tier TEXT, owner TEXT, doc TEXT NOT NULL)""",
        "CREATE INDEX accounts_parent ON accounts (parent_id)",
        """CREATE TABLE account_members (account_id TEXT NOT NULL, customer_id TEXT NOT NULL,
            role TEXT NOT NULL, PRIMARY KEY (account_id, customer_id)) WITHOUT ROWID""",
        "CREATE INDEX account_members_customer ON account_members (customer_id)",
        """CREATE TABLE automation_runs (
            id TEXT PRIMARY KEY, rule TEXT NOT NULL, event_id TEXT NOT NULL, customer_id TEXT,
            at INTEGER NOT NULL, outcome TEXT NOT NULL, doc TEXT NOT NULL,
            UNIQUE (rule, event_id))""",
    ),
    # sales: pipelines, leads, catalogue, quotes, exchange rates, opportunity stage history
    (
        "CREATE TABLE pipelines (id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)",
        """CREATE TABLE leads (id TEXT PRIMARY KEY, version INTEGER NOT NULL, status TEXT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE TABLE products (id TEXT PRIMARY KEY, version INTEGER NOT NULL, doc TEXT NOT NULL)",
        """CREATE TABLE price_books (id TEXT PRIMARY KEY, version INTEGER NOT NULL,
            currency TEXT NOT NULL, tier TEXT, doc TEXT NOT NULL)""",
        """CREATE TABLE quotes (id TEXT PRIMARY KEY, version INTEGER NOT NULL,
            customer_id TEXT NOT NULL, opportunity_id TEXT NOT NULL, status TEXT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX quotes_customer ON quotes (customer_id)",
        """CREATE TABLE exchange_rates (base TEXT NOT NULL, quote TEXT NOT NULL, day TEXT NOT NULL,
            value TEXT NOT NULL, PRIMARY KEY (base, quote, day)) WITHOUT ROWID""",
        """CREATE TABLE opportunity_history (opportunity_id TEXT NOT NULL, seq INTEGER NOT NULL,
            at INTEGER NOT NULL, pipeline TEXT NOT NULL, stage TEXT NOT NULL, probability REAL,
            close_date TEXT, currency TEXT, amount INTEGER, owner TEXT, team TEXT,
            PRIMARY KEY (opportunity_id, seq)) WITHOUT ROWID""",
        # the steps of opportunities stored before this migration, as sales.history.rows makes them
        """INSERT INTO opportunity_history (opportunity_id, seq, at, pipeline, stage, probability,
            close_date, currency, amount, owner, team)
            SELECT o.id, h.key,
              CAST(strftime('%s', json_extract(h.value, '$.at')) AS INTEGER) * 1000000
                + CASE WHEN instr(json_extract(h.value, '$.at'), '.') > 0 THEN CAST(substr(
                    json_extract(h.value, '$.at'), instr(json_extract(h.value, '$.at'), '.') + 1, 6)
                    AS INTEGER) ELSE 0 END,
              'default', json_extract(h.value, '$.stage'),
              CASE json_extract(h.value, '$.stage') WHEN 'qualification' THEN 0.1
                WHEN 'needs_analysis' THEN 0.25 WHEN 'proposal' THEN 0.5
                WHEN 'negotiation' THEN 0.75 WHEN 'won' THEN 1.0 WHEN 'lost' THEN 0.0 END,
              NULL, json_extract(o.doc, '$.amount.currency'),
              CAST(round(json_extract(o.doc, '$.amount.amount') * 10000) AS INTEGER), o.owner, NULL
            FROM opportunities o, json_each(o.doc, '$.history') h""",
    ),
    # lifecycle: field history, merge journals, erasure tombstones
    (
        """CREATE TABLE history (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,
            aggregate_id TEXT NOT NULL, version INTEGER NOT NULL, op TEXT NOT NULL,
            at INTEGER NOT NULL, diff TEXT NOT NULL, actor TEXT)""",
        "CREATE INDEX history_aggregate ON history (kind, aggregate_id, seq)",
        "CREATE INDEX history_at ON history (kind, at)",
        """CREATE TABLE merges (id TEXT PRIMARY KEY, survivor_id TEXT NOT NULL,
            merged_id TEXT NOT NULL, at INTEGER NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX merges_survivor ON merges (survivor_id)",
        "CREATE INDEX merges_merged ON merges (merged_id)",
        "CREATE TABLE erasures (id TEXT PRIMARY KEY, at INTEGER NOT NULL)",
    ),
    # analytics: the purchase summary reads this index alone, never the wide table rows
    ("CREATE INDEX purchases_summary ON purchases (customer_id, ordered_at, currency, total)",),
    # operational: which member is an account's primary contact (segment rules pick a
    # customer's account by it), and stored configuration (SLA policies, automation rules,
    # mail templates), every version kept
    (
        "ALTER TABLE account_members ADD COLUMN is_primary INTEGER NOT NULL DEFAULT 0",
        """UPDATE account_members SET is_primary = 1 WHERE EXISTS (
            SELECT 1 FROM accounts AS a, json_each(a.doc, '$.members') AS m
            WHERE a.id = account_members.account_id
              AND json_extract(m.value, '$.customer_id') = account_members.customer_id
              AND json_extract(m.value, '$.primary') = 1)""",
        """CREATE TABLE configurations (kind TEXT NOT NULL, name TEXT NOT NULL,
            version INTEGER NOT NULL, at INTEGER NOT NULL, actor TEXT, doc TEXT,
            PRIMARY KEY (kind, name, version)) WITHOUT ROWID""",
    ),
    # analytics: per customer and currency purchase totals, kept with every purchase write
    (
        """CREATE TABLE purchase_totals (customer_id TEXT NOT NULL, currency TEXT NOT NULL,
            first_day INTEGER NOT NULL, first_day_total INTEGER NOT NULL,
            last_day INTEGER NOT NULL, last_at INTEGER NOT NULL, days INTEGER NOT NULL,
            total INTEGER NOT NULL, PRIMARY KEY (customer_id, currency)) WITHOUT ROWID""",
        "CREATE INDEX purchase_totals_last ON purchase_totals (last_at)",
        totals.recount_sql(DIALECT),
    ),
    # lifecycle: each customer change keeps the row it superseded (true as-of in SQL)
    (
        """CREATE TABLE customer_states (seq INTEGER PRIMARY KEY AUTOINCREMENT, at INTEGER NOT NULL,
            op TEXT NOT NULL, customer_id TEXT NOT NULL, version INTEGER, kind TEXT, name TEXT,
            tier TEXT, lifecycle TEXT, country TEXT, birth_date TEXT, language TEXT,
            service_point TEXT, created_at INTEGER, updated_at INTEGER, doc TEXT)""",
        "CREATE INDEX customer_states_customer ON customer_states (customer_id, at, seq)",
        "CREATE INDEX customer_states_at ON customer_states (at)",
        "CREATE INDEX customer_states_op ON customer_states (op, at)",
        sql.backfill_states,
    ),
    # lifecycle: each state row also says since when it was valid, so the customers as of an
    # instant are one range read of (at, since), not a first-later-change lookup per customer
    (
        "ALTER TABLE customer_states ADD COLUMN since INTEGER",
        sql.backfill_since,
        "CREATE INDEX customer_states_valid ON customer_states (at, since)",
        "DROP INDEX customer_states_at",
    ),
    # lifecycle: only removals are looked up by op (customers as of an instant); indexing
    # just those spares every customer change an index entry and a page written at commit
    (
        "DROP INDEX customer_states_op",
        "CREATE INDEX customer_states_removed ON customer_states (at) WHERE op = 'removed'",
    ),
    # operational: round-robin turns, shared by every process assigning from this base
    (
        "CREATE TABLE assignment_turns (pool TEXT PRIMARY KEY, turn INTEGER NOT NULL) WITHOUT ROWID",
    ),
    # operational: a counter of staff changes, raised with each one, so an index of the
    # staff kept by a process is reused while the counter stands (StaffGeneration)
    (
        "CREATE TABLE staff_generation (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "generation INTEGER NOT NULL)",
        "INSERT INTO staff_generation (id, generation) VALUES (1, 0)",
    ),
    # lifecycle: PostgreSQL keeps the text arrays rules test as jsonb columns; SQLite 3.40
    # has no binary JSON, so nothing here (kept so both lists number their versions alike)
    (),
    # lifecycle: the customers as of an instant without reading half of the states: the
    # states by the day of their "at" (one seek per later day finds exactly the rows valid
    # then, `lifecycle.states`), and today's row says since when it is valid (no anti-join)
    (
        f"CREATE INDEX customer_states_day ON customer_states ({DIALECT.epoch_day('at')}, since, at)",
        "DROP INDEX customer_states_valid",
        "ALTER TABLE customers ADD COLUMN since INTEGER",
        sql.backfill_current_since,
    ),
    # lifecycle: PostgreSQL's day index also carries the columns rules test, for reads from
    # the index alone; SQLite's rules read the document for tags, so nothing here
    (),
    # lifecycle: a customer change's history row holds the row it superseded (`kept`, `since`,
    # `was_*`; `SqlUnitOfWork(states_in_history=True)`): a change writes three B-trees fewer
    # (the states' table, its customer index, `history_at`), each a page at commit.
    # `customer_states` becomes a view of those rows, writable through its triggers (a
    # state inserted joins the earliest change of its customer, instant and op that holds
    # none, as each change kept its state), and the states move over that way, oldest first.
    # The view has no `kind` term (only customer changes keep one) and
    # `history_aggregate` leads with the id: a read of one customer's states seeks the id,
    # never walks `history_at` (kind, at), which SQLite (no statistics) took for `max("at")`.
    # `history_at` keeps the changes that kept no state: the others are found by their day
    (
        "ALTER TABLE history ADD COLUMN kept INTEGER",
        "ALTER TABLE history ADD COLUMN since INTEGER",
        "ALTER TABLE history ADD COLUMN was_version INTEGER",
        "ALTER TABLE history ADD COLUMN was_kind TEXT",
        "ALTER TABLE history ADD COLUMN was_name TEXT",
        "ALTER TABLE history ADD COLUMN was_tier TEXT",
        "ALTER TABLE history ADD COLUMN was_lifecycle TEXT",
        "ALTER TABLE history ADD COLUMN was_country TEXT",
        "ALTER TABLE history ADD COLUMN was_birth_date TEXT",
        "ALTER TABLE history ADD COLUMN was_language TEXT",
        "ALTER TABLE history ADD COLUMN was_service_point TEXT",
        "ALTER TABLE history ADD COLUMN was_created_at INTEGER",
        "ALTER TABLE history ADD COLUMN was_updated_at INTEGER",
        "ALTER TABLE history ADD COLUMN was_doc TEXT",
        "ALTER TABLE customer_states RENAME TO customer_states_moved",
        sql.check_states_pair,
        """CREATE VIEW customer_states AS SELECT seq, "at", op, aggregate_id AS customer_id,
            was_version AS version, was_kind AS kind, was_name AS name, was_tier AS tier,
            was_lifecycle AS lifecycle, was_country AS country, was_birth_date AS birth_date,
            was_language AS language, was_service_point AS service_point,
            was_created_at AS created_at, was_updated_at AS updated_at, was_doc AS doc, since
            FROM history WHERE kept = 1""",
        """CREATE TRIGGER customer_states_insert INSTEAD OF INSERT ON customer_states BEGIN
            SELECT RAISE(ABORT, 'a customer state matches no change in history') WHERE NOT EXISTS (
              SELECT 1 FROM history WHERE kind = 'customer' AND aggregate_id = NEW.customer_id
                AND "at" = NEW."at" AND op = NEW.op AND kept IS NULL);
            UPDATE history SET kept = 1, since = NEW.since, was_version = NEW.version,
              was_kind = NEW.kind, was_name = NEW.name, was_tier = NEW.tier,
              was_lifecycle = NEW.lifecycle, was_country = NEW.country,
              was_birth_date = NEW.birth_date, was_language = NEW.language,
              was_service_point = NEW.service_point, was_created_at = NEW.created_at,
              was_updated_at = NEW.updated_at, was_doc = NEW.doc
            WHERE seq = (SELECT min(seq) FROM history WHERE kind = 'customer'
              AND aggregate_id = NEW.customer_id AND "at" = NEW."at" AND op = NEW.op AND kept IS NULL);
          END""",
        """CREATE TRIGGER customer_states_update INSTEAD OF UPDATE ON customer_states BEGIN
            UPDATE history SET since = NEW.since, was_version = NEW.version, was_kind = NEW.kind,
              was_name = NEW.name, was_tier = NEW.tier, was_lifecycle = NEW.lifecycle,
              was_country = NEW.country, was_birth_date = NEW.birth_date,
              was_language = NEW.language, was_service_point = NEW.service_point,
              was_created_at = NEW.created_at, was_updated_at = NEW.updated_at, was_doc = NEW.doc
            WHERE seq = OLD.seq;
          END""",
        """CREATE TRIGGER customer_states_delete INSTEAD OF DELETE ON customer_states BEGIN
            UPDATE history SET kept = NULL, since = NULL, was_version = NULL, was_kind = NULL,
              was_name = NULL, was_tier = NULL, was_lifecycle = NULL, was_country = NULL,
              was_birth_date = NULL, was_language = NULL, was_service_point = NULL,
              was_created_at = NULL, was_updated_at = NULL, was_doc = NULL
            WHERE seq = OLD.seq;
          END""",
        """INSERT INTO customer_states ("at", op, customer_id, version, kind, name, tier, lifecycle,
            country, birth_date, language, service_point, created_at, updated_at, doc, since)
          SELECT "at", op, customer_id, version, kind, name, tier, lifecycle, country, birth_date,
            language, service_point, created_at, updated_at, doc, since
          FROM customer_states_moved ORDER BY seq""",
        "DROP TABLE customer_states_moved",
        "DROP INDEX IF EXISTS history_aggregate",  # (IF EXISTS: a test replays this migration)
        "CREATE INDEX history_aggregate ON history (aggregate_id, kind, seq)",
        f"CREATE INDEX history_states_day ON history ({DIALECT.epoch_day('at')}, since, at) WHERE kept = 1",
        "DROP INDEX IF EXISTS history_at",
        'CREATE INDEX history_at ON history (kind, "at") WHERE kept IS NULL',  # the others: by their day
        "CREATE INDEX history_states_removed ON history (at) WHERE kept = 1 AND op = 'removed'",
    ),
    # analytics: purchases_summary (customer_id, ordered_at, ...) serves every read the
    # narrower purchases_customer served; and the latest purchase (`latest()`, asked by a
    # summary that then reads every row of purchase_totals anyway) is a scan of one row per
    # customer, not an index every purchase write moves (PostgreSQL keeps that one: its
    # summary has no time to spare). Two B-trees fewer for each purchase written.
    ("DROP INDEX IF EXISTS purchases_customer",  # (IF EXISTS: tests replay the migrations)
     "DROP INDEX IF EXISTS purchase_totals_last"),
)
"""Migration N brings the schema from version N to N+1; never edit one that has shipped."""

BULK_BATCH = 5_000
WRITER_CACHE_MB = 64
"""The page cache of a writing connection (SQLite's default: 2 MB). A write of many
records in several transactions (an import's batches and regions) inserts into the
indexes in key order, not file order, and folds purchase totals by customer: with 2 MB
the same index pages are evicted, spilled and read back by every transaction (about a
third of a CSV import of 200,000 purchases went to that); 64 MB keeps them. The pages
are allocated as they are used, and a connection keeps them between transactions."""


class SQLiteStorage:
    """Storage on one SQLite file; safe to share between threads and asyncio tasks.

    Each transaction borrows a connection from a bounded pool and gives it back:
    read-only transactions come from a pool of `query_only` connections and begin
    DEFERRED, so in WAL mode they read a snapshot and never wait for a writer;
    write transactions begin IMMEDIATE, so writers queue instead of failing
    half-way. URL options: `timeout` (seconds a writer waits for the lock, and a
    transaction for a free connection; default 30), `pool_max` (connections
    per kind, default 8) and `cache_mb` (the page cache of each writing connection,
    default `WRITER_CACHE_MB`).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        parts = urlsplit(url)
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        raw_path = parts.netloc + parts.path
        path = raw_path[1:] if raw_path.startswith("/") else raw_path
        self._timeout = _option(url, options, "timeout", 30.0)
        size = max(1, int(_option(url, options, "pool_max", 8)))
        self._cache_kib = int(_option(url, options, "cache_mb", WRITER_CACHE_MB) * 1024)
        if not path or path == ":memory:":
            self._target = f"file:crmcore-{new_id()}?mode=memory&cache=shared"
            self._uri = True
        else:
            _usable_file(url, Path(path))
            self._target = path
            self._uri = False
        self._writers = Pool(self._connect, size, self._timeout, url)
        self._readers = Pool(lambda: self._connect(readonly=True), size, self._timeout, url)
        # an in-memory base lives as long as one connection to it: the only one, so its
        # transactions take turns (a file base lets SQLite's own locking do this)
        self._memory = self._connect() if self._uri else None
        self._turn = threading.Lock()
        self._open: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"crmcore_sqlite_{id(self)}", default=False
        )
        """Whether this context (thread or asyncio task) has a transaction open here."""
        self.migrate()

    def __repr__(self) -> str:
        return f"<SQLiteStorage {self.url}>"

    def _connect(self, *, readonly: bool = False) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self._target, uri=self._uri, isolation_level=None, check_same_thread=False,
                timeout=self._timeout,
            )
            if not self._uri:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            if readonly:
                conn.execute("PRAGMA query_only = ON")
            else:  # a negative size is in KiB; SQLite allocates the pages as they are used
                conn.execute(f"PRAGMA cache_size = {-self._cache_kib:d}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open {self.url}: {exc}") from None
        return conn

    def migrate(self) -> int:
        """Bring the schema up to date; safe to run again and from several processes."""
        with self._begin(readonly=False) as cur:
            version = cur.execute("PRAGMA user_version").fetchone()[0]
            for number, statements in enumerate(MIGRATIONS[version:], start=version):
                for statement in statements:
                    sql.run_step(cur, DIALECT, statement)
                cur.execute(f"PRAGMA user_version = {number + 1:d}")
            return int(cur.execute("PRAGMA user_version").fetchone()[0])

    def _acquire(self, readonly: bool) -> sqlite3.Connection:
        if self._memory is None:
            return (self._readers if readonly else self._writers).acquire()
        if not self._turn.acquire(timeout=self._timeout):
            raise StorageError(f"{self.url}: busy: no transaction slot within {self._timeout} s")
        if readonly:
            self._memory.execute("PRAGMA query_only = ON")
        return self._memory

    def _release(self, conn: sqlite3.Connection, readonly: bool) -> None:
        if self._memory is None:
            (self._readers if readonly else self._writers).release(conn)
            return
        if readonly:
            conn.execute("PRAGMA query_only = OFF")
        self._turn.release()

    @contextmanager
    def _begin(self, *, readonly: bool) -> Iterator[sqlite3.Cursor]:
        """One transaction on a borrowed connection, in this context only."""
        if self._open.get():
            raise StorageError("a transaction is already open in this context (thread or task)")
        conn = self._acquire(readonly)
        token = self._open.set(True)
        try:
            cur = conn.cursor()
            try:
                cur.execute("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot begin a transaction on {self.url}: {exc}") from None
            try:
                yield cur
            except BaseException as exc:
                conn.rollback()
                raise _translated(exc, self.url) from None
            try:
                conn.commit()
            except sqlite3.Error as exc:
                conn.rollback()
                raise StorageError(f"commit failed on {self.url}: {exc}") from None
        finally:
            self._open.reset(token)
            self._release(conn, readonly)

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[sql.SqlUnitOfWork]:
        with self._begin(readonly=readonly) as cur:
            yield sql.SqlUnitOfWork(cur, DIALECT, states_in_history=True)  # migration 16

    def bulk_import(self, items: Iterable[Any]) -> int:
        count = 0
        with self._begin(readonly=False) as cur:
            cur.execute("CREATE TEMP TABLE IF NOT EXISTS bulk_owners (customer_id TEXT NOT NULL)")
            cur.execute("DELETE FROM bulk_owners")
            for statement, rows, records in sql.bulk_statements(DIALECT, items, BULK_BATCH):
                cur.executemany(statement, rows)
                count += records
            sql.finish_import(cur, DIALECT)
            cur.execute("DELETE FROM bulk_owners")
        return count

    def close(self) -> None:
        self._writers.close()
        self._readers.close()
        if self._memory is not None:
            self._memory.close()


class Pool:
    """At most `size` connections of one kind; each serves one transaction at a time and
    idles in the pool between them, so threads that come and go leave nothing open."""

    def __init__(
        self, connect: Callable[[], sqlite3.Connection], size: int, timeout: float, url: str
    ) -> None:
        self._connect = connect
        self._size = size
        self._timeout = timeout
        self._url = url
        self._idle: list[sqlite3.Connection] = []
        self._opened = 0
        self._closed = False
        self._ready = threading.Condition()

    def acquire(self) -> sqlite3.Connection:
        with self._ready:
            if not self._ready.wait_for(
                lambda: self._closed or self._idle or self._opened < self._size, self._timeout
            ):
                raise StorageError(
                    f"{self._url}: all {self._size} connections busy for {self._timeout} s"
                )
            if self._closed:
                raise StorageError(f"{self._url}: the storage is closed")
            if self._idle:
                return self._idle.pop()
            self._opened += 1
        try:
            return self._connect()
        except BaseException:
            with self._ready:
                self._opened -= 1
                self._ready.notify()
            raise

    def release(self, conn: sqlite3.Connection) -> None:
        with self._ready:
            if self._closed or conn.in_transaction:
                conn.close()
                self._opened -= 1
            else:
                self._idle.append(conn)
            self._ready.notify()

    @property
    def open_connections(self) -> int:
        return self._opened

    def close(self) -> None:
        with self._ready:
            self._closed = True
            for conn in self._idle:
                conn.close()
            self._opened -= len(self._idle)
            self._idle.clear()
            self._ready.notify_all()


def _translated(exc: BaseException, url: str) -> BaseException:
    """The crmcore error for a driver error met inside a transaction (others pass as they are)."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    if isinstance(exc, sqlite3.OperationalError) and "readonly" in str(exc):
        return StorageError(f"{url}: a read-only transaction tried to write")
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"{url}: {exc}")
    return exc


def _option(url: str, options: dict[str, str], name: str, default: float) -> float:
    try:
        value = float(options.get(name, default))
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e9:
        raise ValidationError("url", url, f"{name} must be a non-negative number")
    return value


def _usable_file(url: str, path: Path) -> None:
    """Refuse, naming the path, what SQLite could only fail on later with its own error."""
    try:
        if not path.parent.exists():
            raise ValidationError("url", url, f"directory {str(path.parent)!r} does not exist")
        if path.is_dir():
            raise ValidationError("url", url, f"{str(path)!r} is a directory, not a database file")
    except OSError as exc:  # a name too long, a loop of links, no permission to look
        raise ValidationError("url", url, f"{str(path)!r} cannot be used: {exc.strerror}") from None


def open_storage(url: str) -> Storage:
    """The registered factory; its return type makes mypy prove the adapter fits the port."""
    return SQLiteStorage(url)


@hookimpl
def crmcore_register_storage() -> list[Adapter]:
    return [Adapter("sqlite", open_storage)]
