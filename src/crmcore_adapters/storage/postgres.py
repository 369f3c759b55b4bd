"""PostgreSQL storage: the server-grade backend (`postgresql://user@host/db`).

A `psycopg_pool` connection pool shared by every thread; each transaction takes
one connection (checked before use, so after a server restart the next transaction
runs on a fresh one) and runs at READ COMMITTED: the shared SQL's
`UPDATE ... WHERE version = ?` waits for a concurrent writer and then finds the
version moved, so a stale write is a `ConflictError`, never a lost update.
Bulk imports stream through COPY; the outbox is claimed `FOR UPDATE SKIP LOCKED`
so several dispatchers drain it at once.

crmcore's own URL options are removed before the URL reaches libpq:
`schema` (created on first use, put first on the search_path), `statement_timeout`
(milliseconds; default 30,000 for interactive work, 0 turns it off; bulk imports
lift it), `query_timeout` (milliseconds a query compiled by the core, such as a
segment rule, may run; default 30000, 0 for none), `pool_min`, `pool_max` and
`pool_timeout` (seconds to wait for a free connection). Everything else (`sslmode`,
`connect_timeout`, ...) is libpq's.
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from crmcore import limits
from crmcore.errors import CRMError, IntegrityError, MissingExtra, StorageError, ValidationError
from crmcore.urls import redact as redact_url

try:
    import psycopg
    from psycopg import IsolationLevel
    from psycopg import errors as pg_errors
    from psycopg import sql as pg_sql
    from psycopg.types.json import Json
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError:  # the module still loads (it is an entry point); opening a URL says why not
    INSTALLED = False
else:
    INSTALLED = True
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.ports import Storage
from crmcore.sql import POSTGRESQL, PostgreSQL
from crmcore_adapters.storage import sql, totals


def _same(text: str) -> str:
    return text


class Psycopg(PostgreSQL):
    """PostgreSQL through psycopg: documents are bound as JSON (already serialised)."""

    def json_column(self, text: str) -> Any:
        return Json(text, dumps=_same)

    def insert_many(self, cursor: Any, sql_text: str, rows: Sequence[Sequence[Any]]) -> None:
        """Through COPY: a page of a sweep's events went in 40 % quicker than by a pipelined
        `executemany` (the server skips a statement's work per row)."""
        if rows:
            with cursor.copy(copy_sql(sql_text)) as copy:
                for row in rows:
                    copy.write_row(row)


DIALECT = Psycopg()

COPY_DIALECT = POSTGRESQL
"""For COPY, whose text format takes the JSON document as it is: no wrapper object per row."""

CLAIM_LOCK = "FOR UPDATE SKIP LOCKED"

TEXT = 'text COLLATE "C"'
"""Text compares and sorts by code point, as in SQLite and Python, whatever the database's locale
(so ids page the same everywhere and segment rules on text mean the same in SQL and in Python)."""

_RULE_ARRAYS = tuple((f"rule_{key}", key) for key in ("tags", "emails", "phones"))
"""`PostgreSQL.rule_columns` and the document key each is generated from."""
STATE_RULE_COLUMNS = ("customer_id", "kind", "tier", "lifecycle", "country", "created_at", "rule_tags")
"""The state columns the as-of day index carries beside its keys: what segment rules test
most (and `created_at`, which every as-of rule tests), bounded. Each one more costs every
read of the index (12 of them made the middle of the benchmark 20% slower than these 7); a
rule on another column (language, service point, birth date, name, e-mails, phones, the
document) reads the rows too."""

MIGRATIONS: tuple[tuple[sql.Step, ...], ...] = (
    (
        f"""CREATE TABLE customers (
            id {TEXT} PRIMARY KEY, version bigint NOT NULL, kind {TEXT} NOT NULL, name {TEXT} NOT NULL,
            tier {TEXT}, lifecycle {TEXT} NOT NULL, country {TEXT}, birth_date date, language {TEXT},
            service_point {TEXT}, created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
            doc json NOT NULL)""",
        f"CREATE TABLE customer_emails (email {TEXT} PRIMARY KEY, customer_id {TEXT} NOT NULL)",
        f"""CREATE TABLE customer_phones (phone {TEXT} NOT NULL, customer_id {TEXT} NOT NULL,
            PRIMARY KEY (phone, customer_id))""",
        f"""CREATE TABLE customer_external_ids (source {TEXT} NOT NULL, external_id {TEXT} NOT NULL,
            customer_id {TEXT} NOT NULL, PRIMARY KEY (source, external_id))""",
        "CREATE INDEX customer_emails_customer ON customer_emails (customer_id)",
        "CREATE INDEX customer_phones_customer ON customer_phones (customer_id)",
        "CREATE INDEX customer_external_ids_customer ON customer_external_ids (customer_id)",
        # Records a customer owns are keyed (customer_id, id) so they can be distributed by
        # customer (docs/scaling-postgres.md); UNIQUE (id) keeps ids unique on one server.
        f"""CREATE TABLE interactions (
            id {TEXT} NOT NULL UNIQUE, customer_id {TEXT} NOT NULL, channel {TEXT} NOT NULL,
            family {TEXT} NOT NULL, direction {TEXT} NOT NULL, occurred_at timestamptz NOT NULL,
            service_point {TEXT}, agent {TEXT}, outcome {TEXT}, satisfaction integer, nps integer,
            case_id {TEXT}, reference {TEXT}, doc json NOT NULL, PRIMARY KEY (customer_id, id))""",
        "CREATE INDEX interactions_customer ON interactions (customer_id, occurred_at)",
        "CREATE INDEX interactions_reference ON interactions (reference)",
        f"""CREATE TABLE purchases (
            id {TEXT} NOT NULL UNIQUE, customer_id {TEXT} NOT NULL, ordered_at timestamptz NOT NULL,
            channel {TEXT}, service_point {TEXT}, currency {TEXT} NOT NULL, total numeric NOT NULL,
            doc json NOT NULL, PRIMARY KEY (customer_id, id))""",
        "CREATE INDEX purchases_customer ON purchases (customer_id, ordered_at)",
        f"""CREATE TABLE cases (
            id {TEXT} NOT NULL UNIQUE, version bigint NOT NULL, customer_id {TEXT} NOT NULL,
            kind {TEXT} NOT NULL, status {TEXT} NOT NULL, priority integer NOT NULL,
            opened_at timestamptz NOT NULL, sla_due timestamptz, resolved_at timestamptz,
            channel {TEXT}, service_point {TEXT}, agent {TEXT}, contacts integer NOT NULL,
            doc json NOT NULL, PRIMARY KEY (customer_id, id))""",
        "CREATE INDEX cases_customer ON cases (customer_id, status)",
        f"""CREATE TABLE opportunities (
            id {TEXT} NOT NULL UNIQUE, version bigint NOT NULL, customer_id {TEXT} NOT NULL,
            stage {TEXT} NOT NULL, kind {TEXT} NOT NULL, opened_at timestamptz NOT NULL, owner {TEXT},
            doc json NOT NULL, PRIMARY KEY (customer_id, id))""",
        "CREATE INDEX opportunities_customer ON opportunities (customer_id)",
        f"CREATE TABLE campaigns (id {TEXT} PRIMARY KEY, version bigint NOT NULL, doc json NOT NULL)",
        f"""CREATE TABLE campaign_members (
            campaign_id {TEXT} NOT NULL, customer_id {TEXT} NOT NULL, grp {TEXT} NOT NULL,
            status {TEXT} NOT NULL, at timestamptz NOT NULL, doc json NOT NULL,
            PRIMARY KEY (campaign_id, customer_id))""",
        f"""CREATE TABLE service_points (id {TEXT} PRIMARY KEY, version bigint NOT NULL,
            kind {TEXT} NOT NULL, doc json NOT NULL)""",
        f"CREATE TABLE agents (id {TEXT} PRIMARY KEY, version bigint NOT NULL, doc json NOT NULL)",
        f"CREATE TABLE teams (id {TEXT} PRIMARY KEY, version bigint NOT NULL, doc json NOT NULL)",
        f"""CREATE TABLE outbox (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, id {TEXT} NOT NULL UNIQUE,
            topic {TEXT} NOT NULL, aggregate_id {TEXT} NOT NULL, occurred_at timestamptz NOT NULL,
            available_at timestamptz NOT NULL, attempts integer NOT NULL DEFAULT 0,
            delivered_to {TEXT} NOT NULL DEFAULT '[]', last_error {TEXT},
            done smallint NOT NULL DEFAULT 0, doc json NOT NULL)""",
        "CREATE INDEX outbox_pending ON outbox (done, available_at)",
        f"""CREATE TABLE segments (id {TEXT} PRIMARY KEY, version bigint NOT NULL,
            doc json NOT NULL)""",
        f"""CREATE TABLE segment_members (segment_id {TEXT} NOT NULL, customer_id {TEXT} NOT NULL,
            since timestamptz NOT NULL, PRIMARY KEY (segment_id, customer_id))""",
        f"""CREATE TABLE segment_runs (segment_id {TEXT} NOT NULL, at timestamptz NOT NULL,
            rule_version integer NOT NULL, size integer NOT NULL, entered integer NOT NULL,
            "left" integer NOT NULL, PRIMARY KEY (segment_id, at))""",
        f"""CREATE TABLE scores (scorer {TEXT} NOT NULL, customer_id {TEXT} NOT NULL,
            as_of timestamptz NOT NULL, value double precision NOT NULL, label {TEXT},
            doc json NOT NULL, PRIMARY KEY (scorer, customer_id, as_of))""",
        "CREATE INDEX scores_customer ON scores (customer_id, scorer, as_of)",
    ),
    # operational: the escalation ladder's next check on cases, tasks, accounts and their
    # members, the automation log
    (
        "ALTER TABLE cases ADD COLUMN next_check timestamptz",
        "CREATE INDEX cases_next_check ON cases (next_check, id)",
        "CREATE INDEX cases_agent ON cases (agent, status)",
        f"""CREATE TABLE tasks (
            id {TEXT} PRIMARY KEY, version bigint NOT NULL, owner {TEXT}, status {TEXT} NOT NULL,
            due_at timestamptz, reminder_due timestamptz, created_at timestamptz NOT NULL,
            customer_id {TEXT}, account_id {TEXT}, case_id {TEXT}, opportunity_id {TEXT},
            doc json NOT NULL)""",
        "CREATE INDEX tasks_owner ON tasks (owner, status, due_at)",
        "CREATE INDEX tasks_due ON tasks (status, due_at)",
        "CREATE INDEX tasks_reminder ON tasks (reminder_due, id)",
        f"""CREATE TABLE accounts (
            id {TEXT} PRIMARY KEY, version bigint NOT NULL, kind {TEXT} NOT NULL,
            name {TEXT} NOT NULL, parent_id {TEXT}, tier {TEXT}, owner {TEXT}, doc json NOT NULL)""",
        "CREATE INDEX accounts_parent ON accounts (parent_id)",
        f"""CREATE TABLE account_members (account_id {TEXT} NOT NULL, customer_id {TEXT} NOT NULL,
            role {TEXT} NOT NULL, PRIMARY KEY (account_id, customer_id))""",
        "CREATE INDEX account_members_customer ON account_members (customer_id)",
        f"""CREATE TABLE automation_runs (
            id {TEXT} PRIMARY KEY, rule {TEXT} NOT NULL, event_id {TEXT} NOT NULL,
            customer_id {TEXT}, at timestamptz NOT NULL, outcome {TEXT} NOT NULL,
            doc json NOT NULL, UNIQUE (rule, event_id))""",
    ),
    # sales: pipelines, leads, catalogue, quotes, exchange rates, opportunity stage history
    (
        f"CREATE TABLE pipelines (id {TEXT} PRIMARY KEY, version bigint NOT NULL, doc json NOT NULL)",
        f"""CREATE TABLE leads (id {TEXT} PRIMARY KEY, version bigint NOT NULL,
            status {TEXT} NOT NULL, doc json NOT NULL)""",
        f"CREATE TABLE products (id {TEXT} PRIMARY KEY, version bigint NOT NULL, doc json NOT NULL)",
        f"""CREATE TABLE price_books (id {TEXT} PRIMARY KEY, version bigint NOT NULL,
            currency {TEXT} NOT NULL, tier {TEXT}, doc json NOT NULL)""",
        f"""CREATE TABLE quotes (id {TEXT} NOT NULL UNIQUE, version bigint NOT NULL,
            customer_id {TEXT} NOT NULL, opportunity_id {TEXT} NOT NULL, status {TEXT} NOT NULL,
            doc json NOT NULL, PRIMARY KEY (customer_id, id))""",
        "CREATE INDEX quotes_customer ON quotes (customer_id)",
        f"""CREATE TABLE exchange_rates (base {TEXT} NOT NULL, quote {TEXT} NOT NULL,
            day date NOT NULL, value numeric NOT NULL, PRIMARY KEY (base, quote, day))""",
        f"""CREATE TABLE opportunity_history (opportunity_id {TEXT} NOT NULL, seq integer NOT NULL,
            at timestamptz NOT NULL, pipeline {TEXT} NOT NULL, stage {TEXT} NOT NULL,
            probability double precision, close_date date, currency {TEXT}, amount numeric,
            owner {TEXT}, team {TEXT}, PRIMARY KEY (opportunity_id, seq))""",
        # the steps of opportunities stored before this migration, as sales.history.rows makes them
        """INSERT INTO opportunity_history (opportunity_id, seq, at, pipeline, stage, probability,
            close_date, currency, amount, owner, team)
            SELECT o.id, h.n - 1, (h.step ->> 'at')::timestamptz, 'default', h.step ->> 'stage',
              CASE h.step ->> 'stage' WHEN 'qualification' THEN 0.1 WHEN 'needs_analysis' THEN 0.25
                WHEN 'proposal' THEN 0.5 WHEN 'negotiation' THEN 0.75 WHEN 'won' THEN 1.0
                WHEN 'lost' THEN 0.0 END,
              NULL, o.doc -> 'amount' ->> 'currency', (o.doc -> 'amount' ->> 'amount')::numeric,
              o.owner, NULL
            FROM opportunities o,
              json_array_elements(o.doc -> 'history') WITH ORDINALITY AS h(step, n)""",
    ),
    # lifecycle: field history, merge journals, erasure tombstones
    (
        f"""CREATE TABLE history (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            kind {TEXT} NOT NULL, aggregate_id {TEXT} NOT NULL, version bigint NOT NULL,
            op {TEXT} NOT NULL, at timestamptz NOT NULL, diff json NOT NULL, actor {TEXT})""",
        "CREATE INDEX history_aggregate ON history (kind, aggregate_id, seq)",
        "CREATE INDEX history_at ON history (kind, at)",
        f"""CREATE TABLE merges (id {TEXT} PRIMARY KEY, survivor_id {TEXT} NOT NULL,
            merged_id {TEXT} NOT NULL, at timestamptz NOT NULL, doc json NOT NULL)""",
        "CREATE INDEX merges_survivor ON merges (survivor_id)",
        "CREATE INDEX merges_merged ON merges (merged_id)",
        f"CREATE TABLE erasures (id {TEXT} PRIMARY KEY, at timestamptz NOT NULL)",
    ),
    # analytics: the purchase summary reads this index alone (an index-only scan)
    ("CREATE INDEX purchases_summary ON purchases (customer_id, ordered_at) INCLUDE (currency, total)",),
    # operational: which member is an account's primary contact (segment rules pick a
    # customer's account by it), and stored configuration, every version kept
    (
        "ALTER TABLE account_members ADD COLUMN is_primary boolean NOT NULL DEFAULT false",
        """UPDATE account_members AS am SET is_primary = true
            FROM accounts AS a, json_array_elements(a.doc -> 'members') AS m(v)
            WHERE a.id = am.account_id AND m.v ->> 'customer_id' = am.customer_id
              AND m.v ->> 'primary' = 'true'""",
        f"""CREATE TABLE configurations (kind {TEXT} NOT NULL, name {TEXT} NOT NULL,
            version bigint NOT NULL, at timestamptz NOT NULL, actor {TEXT}, doc json,
            PRIMARY KEY (kind, name, version))""",
    ),
    # analytics: per customer and currency purchase totals, kept with every purchase write
    (
        f"""CREATE TABLE purchase_totals (customer_id {TEXT} NOT NULL, currency {TEXT} NOT NULL,
            first_day integer NOT NULL, first_day_total numeric NOT NULL,
            last_day integer NOT NULL, last_at timestamptz NOT NULL, days integer NOT NULL,
            total numeric NOT NULL, PRIMARY KEY (customer_id, currency))""",
        "CREATE INDEX purchase_totals_last ON purchase_totals (last_at)",
        totals.recount_sql(DIALECT),
    ),
    # lifecycle: each customer change keeps the row it superseded (true as-of in SQL)
    (
        f"""CREATE TABLE customer_states (seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL, op {TEXT} NOT NULL, customer_id {TEXT} NOT NULL, version bigint,
            kind {TEXT}, name {TEXT}, tier {TEXT}, lifecycle {TEXT}, country {TEXT}, birth_date date,
            language {TEXT}, service_point {TEXT}, created_at timestamptz, updated_at timestamptz,
            doc json)""",
        "CREATE INDEX customer_states_customer ON customer_states (customer_id, at, seq)",
        "CREATE INDEX customer_states_at ON customer_states (at)",
        "CREATE INDEX customer_states_op ON customer_states (op, at)",
        sql.backfill_states,
    ),
    # lifecycle: each state row also says since when it was valid, so the customers as of an
    # instant are one range read of (at, since), not a first-later-change lookup per customer
    (
        "ALTER TABLE customer_states ADD COLUMN since timestamptz",
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
        f"CREATE TABLE assignment_turns (pool {TEXT} PRIMARY KEY, turn bigint NOT NULL)",
    ),
    # operational: a counter of staff changes, raised with each one, so an index of the
    # staff kept by a process is reused while the counter stands (StaffGeneration)
    (
        "CREATE TABLE staff_generation (id INTEGER PRIMARY KEY CHECK (id = 1), "
        "generation bigint NOT NULL)",
        "INSERT INTO staff_generation (id, generation) VALUES (1, 0)",
    ),
    # lifecycle: the text arrays segment rules test (`tags contains`), kept as jsonb beside
    # the exact json document (`Dialect.rule_columns`), so a rule reads them without parsing
    # the document again per row
    (
        *(f"ALTER TABLE {table} " + ", ".join(
            f"ADD COLUMN IF NOT EXISTS {column} jsonb GENERATED ALWAYS AS ((doc -> '{key}')::jsonb) STORED"
            for column, key in _RULE_ARRAYS)
          for table in ("customers", "customer_states")),
    ),
    # lifecycle: the customers as of an instant without reading half of the states (see
    # sqlite.MIGRATIONS). `since` is filled by rewriting the table (a type change USING the
    # customer's latest state) rather than by an UPDATE, which would leave a dead version
    # of every changed row for each scan of `customers` to read until a VACUUM FULL (a
    # CLUSTER in the same transaction keeps them: they are still visible to others)
    (
        f"CREATE INDEX customer_states_day ON customer_states ({DIALECT.epoch_day('at')}, since, at)",
        "DROP INDEX customer_states_valid",
        "ALTER TABLE customers ADD COLUMN since timestamptz",
        "CREATE FUNCTION pg_temp.crmcore_since_of(customer text) RETURNS timestamptz LANGUAGE sql "
        "STABLE AS 'SELECT max(x.at) FROM customer_states AS x WHERE x.customer_id = customer'",
        "ALTER TABLE customers ALTER COLUMN since TYPE timestamptz USING pg_temp.crmcore_since_of(id)",
        "DROP FUNCTION pg_temp.crmcore_since_of(text)",
    ),
    # lifecycle: the states valid at an instant read from an index alone: the day index also
    # holds the columns rules test (`STATE_RULE_COLUMNS`; states with more tags than fit an
    # entry in a second one, `Dialect.state_parts`), so a rule as of a middle instant
    # reads 17,000 index pages instead of 86,000 heap pages at a million customers; kept
    # index-only by vacuuming the (insert-mostly) states after 1% new rows, not 20%. Today's
    # rows valid at a past instant are found by `since` instead of a scan of `customers`.
    # The index builds hold writes to the states and customers until the migration commits
    # (about 45 s at a million customers with ten million states)
    (
        # spelled out, not built from STATE_RULE_COLUMNS and `state_parts`, which may change
        # after this has shipped (a test holds them to these indexes)
        "CREATE INDEX customer_states_valid_at ON customer_states "
        "(((at AT TIME ZONE 'UTC')::date - DATE '1970-01-01'), since, at) "
        "INCLUDE (customer_id, kind, tier, lifecycle, country, created_at, rule_tags) "
        "WHERE doc IS NOT NULL AND "
        "(CASE WHEN jsonb_typeof(rule_tags) = 'array' THEN jsonb_array_length(rule_tags) ELSE 0 END) <= 24",
        "CREATE INDEX customer_states_valid_at_wide ON customer_states "
        "(((at AT TIME ZONE 'UTC')::date - DATE '1970-01-01'), since, at) WHERE doc IS NOT NULL AND "
        "(CASE WHEN jsonb_typeof(rule_tags) = 'array' THEN jsonb_array_length(rule_tags) ELSE 0 END) > 24",
        "DROP INDEX customer_states_day",
        # a storage parameter of plain tables from PostgreSQL 13 (not of a partitioned one)
        "DO $$ BEGIN IF current_setting('server_version_num')::int >= 130000 AND (SELECT relkind "
        "FROM pg_class WHERE oid = 'customer_states'::regclass) = 'r' THEN ALTER TABLE customer_states "
        "SET (autovacuum_vacuum_insert_scale_factor = 0.01); END IF; END $$",
        "CREATE INDEX customers_since ON customers (since)",
    ),
    # lifecycle: SQLite keeps the customer states in their changes' history rows (a page
    # fewer per B-tree at commit); PostgreSQL keeps `customer_states`, so nothing here
    (),
    # analytics: purchases_summary (customer_id, ordered_at) INCLUDE (...) serves every read
    # the narrower purchases_customer served; one B-tree fewer for each purchase written
    ("DROP INDEX IF EXISTS purchases_customer",),  # (IF EXISTS: tests replay the migrations)
)
"""Migration N brings the schema from version N to N+1 (mirrors sqlite.MIGRATIONS)."""

BULK_BATCH = 5_000
RECONNECT = 5.0
"""Seconds the pool keeps reconnecting in the background; later it reconnects on demand."""
DEFAULT_STATEMENT_TIMEOUT = 30_000
"""Milliseconds an interactive statement may run before the server cancels it."""
OWN_OPTIONS = ("schema", "statement_timeout", "pool_min", "pool_max", "pool_timeout", "query_timeout")
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, \"]+)\) VALUES")


def copy_sql(insert: str) -> str:
    """The COPY that loads the same columns as one of the shared INSERT statements."""
    found = _INSERT.match(insert)
    if found is None:
        raise ValueError(f"not a shared INSERT statement: {insert!r}")
    return f"COPY {found[1]} ({found[2]}) FROM STDIN"


def _number(url: str, options: dict[str, str], name: str, default: float) -> float:
    try:
        value = float(options.get(name, default))
    except ValueError:
        value = -1.0
    if value < 0:
        raise ValidationError("url", redact(url), f"{name} must be a non-negative number")
    return value


def redact(url: str) -> str:
    """The URL with its password (in the authority or the query) hidden, for messages and repr."""
    return redact_url(url)


def _detail(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def translate(exc: psycopg.Error, where: str, *, lost: bool = False) -> CRMError:
    """The crmcore error for a driver error; the caller has rolled back already.

    `lost` says the connection broke, so the server went away or dropped the session.
    """
    detail = _detail(exc)
    if lost:
        return StorageError(f"{where}: lost the connection to the server: {detail}")
    if isinstance(exc, psycopg.IntegrityError):
        return IntegrityError(f"{where}: {detail}")
    if isinstance(exc, pg_errors.QueryCanceled):
        return StorageError(f"{where}: statement cancelled (statement_timeout?): {detail}")
    if isinstance(exc, pg_errors.SerializationFailure | pg_errors.DeadlockDetected):
        return StorageError(f"{where}: concurrent transactions collided, retry: {detail}")
    return StorageError(f"{where}: {detail}")


class PostgresStorage:
    """Storage on a PostgreSQL database; safe to share between threads and processes."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._where = redact(url)
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        own = {k: v for k, v in query if k in OWN_OPTIONS}
        self.schema = own.get("schema")
        if self.schema is not None and not _IDENTIFIER.fullmatch(self.schema):
            raise ValidationError(
                "url", self._where, "schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*)"
            )
        settings = [v for k, v in query if k == "options"] + ["-c TimeZone=UTC"]
        if self.schema is not None:
            settings.append(f"-c search_path={self.schema}")
        timeout = int(_number(url, own, "statement_timeout", DEFAULT_STATEMENT_TIMEOUT))
        if timeout:
            settings.append(f"-c statement_timeout={timeout}")
        self.query_timeout = int(_number(url, own, "query_timeout", limits.STATEMENT_TIMEOUT_MS))
        if timeout:
            self.query_timeout = min(self.query_timeout or timeout, timeout)
        conninfo = urlunsplit(parts._replace(
            scheme="postgresql",
            query=urlencode([(k, v) for k, v in query if k not in (*OWN_OPTIONS, "options")]),
        ))
        pool_max = int(_number(url, own, "pool_max", 10)) or 1
        wait = _number(url, own, "pool_timeout", 30)
        self._conninfo = conninfo
        self._options = " ".join(settings)
        self._suspect = False
        self._probe()
        self._pool = ConnectionPool(
            conninfo, min_size=min(int(_number(url, own, "pool_min", 1)), pool_max),
            max_size=pool_max, timeout=wait, kwargs={"options": self._options}, open=False,
            name=f"crmcore {self._where}", reconnect_timeout=RECONNECT,
        )
        self._open: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"crmcore_postgres_{id(self)}", default=False
        )
        try:
            self._pool.open(wait=True, timeout=wait)
            self.migrate()
        except BaseException as exc:
            self._pool.close()
            if isinstance(exc, PoolTimeout):
                raise StorageError(f"cannot connect to {self._where}: {_detail(exc)}") from None
            raise

    def __repr__(self) -> str:
        return f"<PostgresStorage {self._where}>"

    def migrate(self) -> int:
        """Bring the schema up to date; safe to run again and from several processes at once.

        A transaction-scoped advisory lock serialises concurrent migrators; DDL is
        transactional in PostgreSQL, so a failed migration leaves the previous version.
        An up-to-date schema is only read, so a role without CREATE rights can open it.
        """
        with self._begin() as cur:
            version = _version(cur)
            if version >= len(MIGRATIONS):
                return version
            # a step rewrites or backfills whole tables: it takes as long as the data does,
            # which the URL's statement_timeout (meant for the application's statements) is not
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                (f"crmcore.migrate:{self.schema or ''}",),
            )
            if self.schema is not None:
                cur.execute(
                    pg_sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(pg_sql.Identifier(self.schema))
                )
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
            version = _version(cur)
            for number, statements in enumerate(MIGRATIONS[version:], start=version):
                for statement in statements:
                    sql.run_step(cur, DIALECT, statement)
                cur.execute("DELETE FROM schema_version")
                cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (number + 1,))
            return max(version, len(MIGRATIONS))

    def _probe(self) -> None:
        """Connect once outside the pool: libpq's own reason (refused, bad password) at once."""
        try:
            psycopg.connect(self._conninfo, options=self._options).close()
        except psycopg.Error as exc:
            self._suspect = True
            raise StorageError(f"cannot connect to {self._where}: {_detail(exc)}") from None
        self._suspect = False

    def _connection(self) -> psycopg.Connection[Any]:
        """A pooled connection that answers.

        Each one is checked before use. After a failure the server is probed
        directly: while it is down every transaction fails at once with libpq's
        reason, instead of waiting out the pool's timeout; once it answers, every
        idle connection is checked, so the next transaction runs on a fresh one.
        """
        if self._suspect:
            self._probe()
            self._pool.check()
        for _ in range(2):
            try:
                conn = self._pool.getconn()
            except psycopg.Error as exc:  # PoolTimeout, PoolClosed
                raise StorageError(f"no connection to {self._where}: {_detail(exc)}") from None
            try:
                ConnectionPool.check_connection(conn)
            except psycopg.Error:
                self._pool.putconn(conn)
                self._probe()
                self._pool.check()
            else:
                return conn
        raise StorageError(f"{self._where}: the server does not answer")

    @contextmanager
    def _begin(self, *, readonly: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        if self._open.get():
            raise StorageError("a transaction is already open in this context (thread or task)")
        conn = self._connection()
        token = self._open.set(True)
        try:
            if conn.read_only != readonly:  # applied by psycopg at BEGIN: no round trip
                conn.read_only = readonly
                conn.isolation_level = IsolationLevel.REPEATABLE_READ if readonly else None
            with conn.cursor() as cur:
                try:
                    yield cur
                except BaseException as exc:
                    _rollback(conn)
                    if isinstance(exc, psycopg.Error):
                        raise self._failed(conn, exc, self._where) from None
                    raise
                try:
                    conn.commit()
                except psycopg.Error as exc:
                    _rollback(conn)
                    raise self._failed(conn, exc, f"{self._where}: commit not confirmed") from None
        finally:
            self._open.reset(token)
            self._pool.putconn(conn)

    def _failed(self, conn: psycopg.Connection[Any], exc: psycopg.Error, where: str) -> CRMError:
        if conn.broken:
            self._suspect = True  # the server may be gone: probe before the next transaction
        return translate(exc, where, lost=conn.broken)

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[sql.SqlUnitOfWork]:
        """READ COMMITTED for writes; `readonly` begins READ ONLY at REPEATABLE READ: one
        snapshot for the whole transaction, no lock a writer waits for, and (being read
        only) never a serialization failure."""
        with self._begin(readonly=readonly) as cur:
            yield _UnitOfWork(cur, DIALECT, CLAIM_LOCK, self.query_timeout)

    def bulk_import(self, items: Iterable[Any]) -> int:
        """COPY the records in, all in one transaction (see `Copies`).

        A COPY stays open as long as the stream feeds its table, so `statement_timeout`
        (meant for interactive statements) is lifted for this transaction only.
        """
        count = 0
        with self._begin() as cur:
            cur.execute("SET LOCAL statement_timeout = 0")
            cur.execute(
                'CREATE TEMP TABLE IF NOT EXISTS bulk_owners (customer_id text COLLATE "C" NOT NULL) '
                "ON COMMIT DELETE ROWS"
            )
            with Copies(cur) as copies:
                for statement, rows, records in sql.bulk_statements(COPY_DIALECT, items, BULK_BATCH):
                    copies.add(statement, rows)
                    count += records
            sql.finish_import(cur, DIALECT)
        return count

    def close(self) -> None:
        self._pool.close()


class _UnitOfWork(sql.SqlUnitOfWork):
    """The shared unit of work, with a time limit on the queries the core compiles (segment rules).

    A rule is untrusted input whose cost the database decides; `query_timeout`
    (milliseconds, 0 for none) cancels it there, and the rest of the transaction
    keeps the session's own `statement_timeout`.
    """

    def __init__(self, cur: psycopg.Cursor[Any], dialect: sql.Dialect, claim_lock: str, timeout: int) -> None:
        super().__init__(cur, dialect, claim_lock)
        self._timeout = timeout
        self._psycopg = cur

    def select(self, sql_text: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows in the binary format: the same Python values, and a million rows of numbers
        (an analytical summary) decoded about a third faster than from text."""
        if self._timeout:
            self.cur.execute("SELECT set_config('statement_timeout', %s, true)", (str(self._timeout),))
        self._psycopg.execute(sql_text, params, binary=True)
        rows: list[tuple[Any, ...]] = self._psycopg.fetchall()
        if self._timeout:
            self.cur.execute("SET LOCAL statement_timeout TO DEFAULT")
        return rows


class Copies:
    """Rows gathered per table and written BULK_BATCH at a time, through one COPY at a time.

    Memory stays bounded however the stream interleaves record types, and the COPY
    stays open while the same table follows, so the server digests one batch while
    the next is prepared instead of both sides waiting for each other batch by batch.
    """

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur
        self.pending: dict[str, list[tuple[Any, ...]]] = {}
        self.open = ExitStack()
        self.statement: str | None = None
        self.copy: psycopg.Copy | None = None

    def add(self, insert: str, rows: Iterable[tuple[Any, ...]]) -> None:
        statement = copy_sql(insert)
        waiting = self.pending.setdefault(statement, [])
        waiting.extend(rows)
        if len(waiting) >= BULK_BATCH:
            self._write(statement, waiting)
            self.pending[statement] = []

    def _write(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if statement != self.statement or self.copy is None:
            self.open.close()
            self.copy = self.open.enter_context(self.cur.copy(statement))
            self.statement = statement
        for row in rows:
            self.copy.write_row(row)

    def __enter__(self) -> Copies:
        return self

    def __exit__(self, *exc: Any) -> None:
        if exc[0] is not None:  # abort the open COPY with the error
            self.open.__exit__(*exc)
            return
        with self.open:
            for statement, rows in self.pending.items():
                if rows:
                    self._write(statement, rows)


def _version(cur: psycopg.Cursor[Any]) -> int:
    """The schema's migration number; 0 when crmcore has not created it yet."""
    cur.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    if not cur.fetchall()[0][0]:
        return 0
    return int(cur.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()[0][0])


def _rollback(conn: psycopg.Connection[Any]) -> None:
    """Roll back if the connection still can; a dead one is discarded by the pool."""
    if not conn.closed:
        with suppress(psycopg.Error):
            conn.rollback()


def open_storage(url: str) -> Storage:
    """The registered factory; its return type makes mypy prove the adapter fits the port."""
    if not INSTALLED:
        raise MissingExtra("PostgreSQL storage", "postgres")
    try:
        return PostgresStorage(url)
    except CRMError:
        raise
    except psycopg.Error as exc:
        raise translate(exc, f"cannot open {redact(url)}") from None


@hookimpl
def crmcore_register_storage() -> list[Adapter]:
    return [Adapter("postgresql", open_storage), Adapter("postgres", open_storage)]
