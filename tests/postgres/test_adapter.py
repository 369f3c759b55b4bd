"""Opening by URL, crmcore's own URL options, and the schema kept in step with SQLite."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import segments
from crmcore.errors import StorageError, ValidationError
from crmcore.events import Event
from crmcore.plugins import make_plugin_manager, open_adapter
from crmcore.testing.contract import T0, customer, interaction, purchase
from crmcore_adapters.storage import postgres, sql, sqlite
from crmcore_adapters.storage.postgres import PostgresStorage

from .conftest import Schemas, with_options

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_opened_by_scheme_through_the_entry_point(schemas: Schemas, scheme: str) -> None:
    url = schemas.url().replace("postgresql://", f"{scheme}://", 1)
    store = open_adapter(make_plugin_manager(), "storage", "crmcore_register_storage", url)
    try:
        assert isinstance(store, PostgresStorage)
        with store.transaction() as uow:
            assert uow.dialect.name == "postgresql"
            assert uow.customers.count() == 0
    finally:
        store.close()


def test_crm_open_round_trip(schemas: Schemas) -> None:
    crm = crmcore.open(schemas.url())
    try:
        ada = crm.customers.add(crmcore.Customer.new(name="Ada", emails=["Ada@Example.org"]))
        assert crm.customers.get(ada.id) == ada
        assert crm.customers.by_email("ada@example.org") == ada
    finally:
        crm.close()


def test_own_options_reach_the_session_not_libpq(schemas: Schemas) -> None:
    url = schemas.url(statement_timeout="1234", pool_min="0", pool_max="2", application_name="crm-x")
    schema = url.split("schema=")[1].split("&")[0]
    store = PostgresStorage(url)
    try:
        with store.transaction() as uow:
            rows = uow.select(
                "SELECT current_setting('statement_timeout'), current_schema(), "
                "current_setting('application_name'), current_setting('TimeZone')"
            )
        assert rows == [("1234ms", schema, "crm-x", "UTC")]
    finally:
        store.close()


def test_select_binds_parameters(storage: PostgresStorage) -> None:
    hostile = "x'); DROP TABLE customers; --"
    with storage.transaction() as uow:
        assert uow.select("SELECT %s::text, %s::int + 1", (hostile, 41)) == [(hostile, 42)]
        assert uow.customers.count() == 0


def test_segment_rules_run_without_jit_in_their_own_transaction(storage: PostgresStorage) -> None:
    """`Dialect.planner_settings` holds for the rule's transaction, not the session."""
    jit = "SELECT current_setting('jit')"
    with storage.transaction() as uow:
        server = uow.select(jit)
        uow.customers.add(customer(1, tags={"vip"}))
        uow.customers.add(customer(2))
        assert segments.select_ids(uow, 'tags contains "vip"', as_of=T0 + timedelta(days=1)) == ["c0001"]
        assert uow.select(jit) == [("off",)]
    with storage.transaction() as uow:
        assert uow.select(jit) == server


def test_rules_as_of_the_past_cost_index_reads_low_in_their_own_transaction(schemas: Schemas) -> None:
    """As of a past instant (customers changed since) a rule's transaction costs random
    page reads low (the valid states are clustered); a rule on today's customers keeps
    the server's planner, and so does the next transaction."""
    clock = [T0]
    cost = "SELECT current_setting('random_page_cost')"
    with crmcore.open(schemas.url(), clock=lambda: clock[0]) as crm:
        with crm.transaction() as uow:
            server = uow.select(cost)  # type: ignore[attr-defined]
        assert server != [("1.1",)]
        crm.customers.add(customer(1, tags={"vip"}))
        clock[0] = T0 + timedelta(hours=1)
        crm.customers.change("c0001", tags=set())
        with crm.transaction() as uow:
            assert segments.select_ids(uow, 'tags contains "vip"', as_of=clock[0]) == []
            assert uow.select(cost) == server  # type: ignore[attr-defined]
        with crm.transaction() as uow:
            assert segments.select_ids(uow, 'tags contains "vip"', as_of=T0) == ["c0001"]
            assert uow.select(cost) == [("1.1",)]  # type: ignore[attr-defined]
        with crm.transaction() as uow:
            assert uow.select(cost) == server  # type: ignore[attr-defined]
            assert [c.id for c in segments.select(uow, 'tags contains "vip"', as_of=T0)] == ["c0001"]
            assert uow.select(cost) == [("1.1",)]  # type: ignore[attr-defined]


def test_rules_as_of_the_past_can_be_read_from_the_day_index_alone(
        schemas: Schemas, monkeypatch: pytest.MonkeyPatch) -> None:
    """The states' day index carries the columns rules test (`postgres.STATE_RULE_COLUMNS`),
    so a rule on them as of a past instant can read the valid states by an index-only scan,
    and today's rows valid then are found by `customers.since` (each forced here: the
    planner scans tables this small)."""
    queries: list[tuple[str, tuple[object, ...]]] = []
    real = segments._select
    monkeypatch.setattr(segments, "_select", lambda uow, sql, params, **kw:
                        queries.append((sql, params)) or real(uow, sql, params, **kw))
    clock = [T0]
    rule = 'tier = "gold" and country = "FR" and tags contains "vip" and lifecycle = "customer"'
    with crmcore.open(schemas.url(), clock=lambda: clock[0]) as crm:
        for n in (1, 2):
            crm.customers.add(customer(n, tags={"vip"}, tier="gold", lifecycle="customer",
                                       addresses=(crmcore.PostalAddress("FR"),)))
        clock[0] = T0 + timedelta(hours=1)
        crm.customers.change("c0001", tier="silver")
        assert crm.customers.ids_matching(rule, as_of=T0 + timedelta(minutes=30)) == ["c0001", "c0002"]
        sql, params = queries[-1]

        def plan(*off: str) -> str:
            with crm.transaction() as uow:
                uow.select("SELECT " + ", ".join(  # type: ignore[attr-defined]
                    f"set_config('enable_{o}', 'off', true)" for o in off))
                return "\n".join(r[0] for r in uow.select("EXPLAIN " + sql, params))  # type: ignore[attr-defined]

        assert "Index Only Scan using customer_states_valid_at" in plan("seqscan", "bitmapscan")
        assert "Bitmap Index Scan on customers_since" in plan("seqscan")


def test_states_with_the_longest_indexed_values_or_more_tags_are_kept_and_read(schemas: Schemas) -> None:
    """Every column the states' day index carries at its longest (4-byte characters,
    `INDEXED_TAGS` tags of 64 characters) makes an entry the B-tree takes (it refuses past
    2,704 bytes, which would fail the write); a state with more tags is kept in the second
    index, and an as-of rule reads both."""
    from crmcore.sql.dialect import INDEXED_TAGS

    wide, clock = "\U0001d538", [T0]

    def tags(count: int) -> set[str]:  # 64 characters that do not compress
        return {"t" + hashlib.sha256(bytes([n])).hexdigest()[:63] for n in range(count)}

    longest = customer(1, id=wide * 64, kind="organisation", tier="t".ljust(64, "x"),
                       lifecycle="former_customer", language=wide * 35, service_point=wide * 64,
                       birth_date=date(1970, 1, 1), tags=tags(INDEXED_TAGS),
                       addresses=(crmcore.PostalAddress("FR"),))
    with crmcore.open(schemas.url(), clock=lambda: clock[0]) as crm:
        crm.customers.add(longest)
        crm.customers.add(customer(2, tags=tags(INDEXED_TAGS + 1)))
        clock[0] = T0 + timedelta(hours=1)
        for id in (longest.id, "c0002"):
            crm.customers.change(id, tags=set())
        rule = f'tags contains "{min(tags(1))}"'
        assert crm.customers.ids_matching(rule, as_of=T0 + timedelta(minutes=30)) == ["c0002", longest.id]
        assert crm.customers.ids_matching(rule) == []
        with crm.transaction() as uow:
            more = postgres.DIALECT.state_parts("")[1]
            assert uow.select(f"SELECT customer_id FROM customer_states "  # type: ignore[attr-defined]
                              f"WHERE doc IS NOT NULL AND {more}") == [("c0002",)]


def test_the_as_of_indexes_hold_what_the_code_says(storage: PostgresStorage) -> None:
    """The migration spells its indexes out; the columns the day index carries and the
    parts it splits the states into are still `STATE_RULE_COLUMNS` and `state_parts`."""
    narrow, wide = postgres.DIALECT.state_parts("")
    predicate = ("SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
                 "WHERE indexrelid = to_regclass(%s)")
    with storage.transaction() as uow:
        included = uow.select(
            "SELECT a.attname FROM pg_index AS i JOIN pg_attribute AS a ON a.attrelid = i.indexrelid "
            "WHERE i.indexrelid = to_regclass('customer_states_valid_at') AND a.attnum > i.indnkeyatts "
            "ORDER BY a.attnum")
        assert tuple(str(r[0]) for r in included) == postgres.STATE_RULE_COLUMNS
        for index, part in (("customer_states_valid_at", narrow), ("customer_states_valid_at_wide", wide)):
            uow.cur.execute(f"CREATE INDEX probe ON customer_states (since) "  # type: ignore[attr-defined]
                            f"WHERE doc IS NOT NULL AND {part}")
            assert uow.select(predicate, (index,)) == uow.select(predicate, ("probe",))
            uow.cur.execute("DROP INDEX probe")  # type: ignore[attr-defined]


def test_rule_columns_hold_the_documents_arrays_and_rules_read_them(schemas: Schemas) -> None:
    """`rule_tags`, `rule_emails`, `rule_phones` are the document's arrays as jsonb in
    `customers` and in every kept state (added, imported, changed, removed), and a
    rule's SQL tests them, today and as of an instant, with the Python engine's answer."""
    clock = [T0]
    with crmcore.open(schemas.url(), clock=lambda: clock[0]) as crm:
        crm.customers.add(customer(1, tags={"vip"}))
        crm.bulk_import([customer(2, phones=()), customer(3, tags={"vip", "b2b"})])
        clock[0] = T0 + timedelta(hours=1)
        crm.customers.change("c0001", tags=set(), emails=("new@example.org",))
        crm.customers.change("c0002", tags={"vip"}, phones=("+33123450002",))
        crm.customers.remove(crm.customers.get("c0003"))
        clock[0] = T0 + timedelta(hours=2)
        checked = ", ".join(
            f"count(*) FILTER (WHERE {column} IS DISTINCT FROM (doc -> '{column[5:]}')::jsonb)"
            for column in postgres.DIALECT.rule_columns)
        with crm.transaction() as uow:
            for table in ("customers", "customer_states"):
                assert uow.select(f"SELECT count(*), {checked} FROM {table}")[0][1:] == (0, 0, 0)
            rule = 'tags contains "vip" or tags is empty or emails contains "new@example.org"'
            for moment in (T0 + timedelta(minutes=30), clock[0]):
                assert "rule_tags" in str(segments.explain(uow, rule, as_of=moment).sql)
                assert (segments.select_ids(uow, rule, as_of=moment)
                        == segments.select_ids(uow, rule, as_of=moment, engine="python"))
        assert crm.customers.ids_matching('tags contains "vip"', as_of=T0 + timedelta(minutes=30)) == [
            "c0001", "c0003"]


@pytest.mark.parametrize(
    ("options", "message"),
    [({"schema": "bad name; DROP"}, "schema"), ({"schema": "Sales"}, "lower-case"),
     ({"statement_timeout": "soon"}, "statement_timeout"),
     ({"pool_max": "-1"}, "pool_max")],
)
def test_bad_options_name_the_option(schemas: Schemas, options: dict[str, str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PostgresStorage(with_options(schemas.server, **options))
    assert caught.value.field == "url" and message in caught.value.reason


def test_unreachable_server_is_a_storage_error_without_the_password() -> None:
    url = "postgresql://crm:s3cret@127.0.0.1:1/nowhere?connect_timeout=1&pool_timeout=1"
    with pytest.raises(StorageError) as caught:
        crmcore.open(url)
    assert "127.0.0.1:1" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    assert postgres.redact(url) == url.replace("s3cret", "***")


def test_copy_sql_follows_the_shared_insert() -> None:
    insert = "INSERT INTO customer_emails (email, customer_id) VALUES (?, ?)"
    assert postgres.copy_sql(insert) == "COPY customer_emails (email, customer_id) FROM STDIN"
    with pytest.raises(ValueError):
        postgres.copy_sql("DELETE FROM customers")


def _sqlite_schema() -> tuple[dict[str, set[str]], set[str]]:
    """Columns by table, and the names of the secondary indexes, of SQLite's migrations."""
    conn = sqlite3.connect(":memory:")
    for statements in sqlite.MIGRATIONS:
        for statement in statements:
            sql.run_step(conn.cursor(), sqlite.DIALECT, statement)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
    indexes = {r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    columns = {
        t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")}
        for t in tables if t != "sqlite_sequence"
    }
    return columns, indexes


def test_every_sqlite_table_and_column_exists_here(storage: PostgresStorage) -> None:
    with storage.transaction() as uow:
        rows = uow.select(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema()"
        )
        indexes = uow.select(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() "
            "AND indexname NOT LIKE '%%\\_pkey' AND indexname NOT LIKE '%%\\_id\\_key'"
        )
    found: dict[str, set[str]] = {}
    for table, column in rows:
        found.setdefault(str(table), set()).add(str(column))
    assert found.pop("schema_version") == {"version"}
    columns, secondary = _sqlite_schema()
    for table in ("customers", "customer_states"):  # PostgreSQL's own, for segment rules
        assert found[table] >= set(postgres.DIALECT.rule_columns)
        found[table] -= set(postgres.DIALECT.rule_columns)
    # SQLite's own: the states in their changes' rows (`customer_states` a view of them)
    assert columns["history"] >= {"kept", "since", *sql.WAS}
    columns["history"] -= {"kept", "since", *sql.WAS}
    assert found == columns
    # PostgreSQL's own, for as-of rules: the states' table indexes, the day index carrying
    # the columns rules test (in place of SQLite's history_states_day) and today's rows by
    # since; for the summary, the latest purchase by its index (SQLite scans for it)
    own = {"customer_states_customer", "customer_states_removed", "customer_states_valid_at",
           "customer_states_valid_at_wide", "customers_since", "purchase_totals_last"}
    sqlite_own = {"history_states_day", "history_states_removed"}
    assert {str(r[0]) for r in indexes} == (secondary - sqlite_own) | own
    assert len(postgres.MIGRATIONS) == len(sqlite.MIGRATIONS)


def test_text_sorts_by_code_point(storage: PostgresStorage) -> None:
    """Text is collated "C": ORDER BY, paging and rule comparisons ignore the database's locale."""
    with storage.transaction() as uow:
        rows = uow.select(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type = 'text'"
        )
    assert len(rows) > 50
    assert [r for r in rows if r[2] != "C"] == []


def test_migrate_twice_is_a_no_op(storage: PostgresStorage) -> None:
    assert storage.migrate() == len(postgres.MIGRATIONS)
    assert storage.migrate() == len(postgres.MIGRATIONS)
    with storage.transaction() as uow:
        assert uow.select("SELECT version FROM schema_version") == [(len(postgres.MIGRATIONS),)]


def _open_and_close(url: str) -> int:
    store = PostgresStorage(url)
    try:
        with store.transaction() as uow:
            return uow.customers.count()
    finally:
        store.close()


def test_processes_starting_at_once_migrate_once(schemas: Schemas) -> None:
    url = schemas.url()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_open_and_close, [url] * 4) == [0, 0, 0, 0]
    schema = url.split("schema=")[1].split("&")[0]
    with psycopg.connect(schemas.server) as conn:
        versions = conn.execute(f'SELECT version FROM "{schema}".schema_version').fetchall()
    assert versions == [(len(postgres.MIGRATIONS),)]


def test_a_failed_migration_leaves_the_previous_version(
    storage: PostgresStorage, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = len(postgres.MIGRATIONS)
    broken = (*postgres.MIGRATIONS, ("CREATE TABLE extra (id text)", "SELECT no_such_function()"))
    monkeypatch.setattr(postgres, "MIGRATIONS", broken)
    with pytest.raises(StorageError) as caught:
        storage.migrate()
    assert "no_such_function" in str(caught.value)
    with storage.transaction() as uow:
        assert uow.select("SELECT version FROM schema_version") == [(shipped,)]
        assert uow.select("SELECT to_regclass('extra') IS NULL") == [(True,)]


def test_a_bad_password_or_database_says_why_at_once(schemas: Schemas) -> None:
    url = with_options(schemas.server.rsplit("/", 1)[0] + "/no_such_database_here", password="hunter2")
    with pytest.raises(StorageError) as caught:
        PostgresStorage(url)
    assert "no_such_database_here" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_libpq_options_in_the_url_are_kept(schemas: Schemas) -> None:
    store = PostgresStorage(schemas.url(options="-c work_mem=7MB"))
    try:
        with store.transaction() as uow:
            assert uow.select("SELECT current_setting('work_mem')") == [("7MB",)]
    finally:
        store.close()


def test_a_closed_storage_refuses_with_a_storage_error(storage: PostgresStorage) -> None:
    storage.close()
    with pytest.raises(StorageError), storage.transaction():
        pass


ANY_ID = st.text(st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\u2028\u2029"),
                 min_size=1, max_size=8).filter(str.strip)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(ids=st.lists(ANY_ID, min_size=1, max_size=8, unique=True), after=ANY_ID)
def test_ids_sort_by_code_point_whatever_the_locale(
    storage: PostgresStorage, ids: list[str], after: str
) -> None:
    """Paging agrees with Python's (and SQLite's) order, for any text id."""
    with storage.transaction() as uow:
        for id in ids:
            uow.customers.add(customer(1, id=id, emails=(), phones=()))
        assert [c.id for c in uow.customers.list()] == sorted(ids)
        assert [c.id for c in uow.customers.list(after=after)] == sorted(i for i in ids if i > after)
        uow.select("DELETE FROM customers RETURNING id")


def test_an_application_role_without_create_rights_opens_a_migrated_schema(
    storage: PostgresStorage, schemas: Schemas
) -> None:
    role = f"crm_app_{uuid.uuid4().hex[:8]}"
    schema = storage.schema
    assert schema is not None
    grants = [
        f"CREATE ROLE {role} LOGIN",
        f"GRANT USAGE ON SCHEMA {schema} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    ]
    with psycopg.connect(schemas.server, autocommit=True) as admin:
        for grant in grants:
            admin.execute(grant)
        try:
            server = urlsplit(schemas.server)
            url = urlunsplit(server._replace(netloc=f"{role}@{server.hostname}:{server.port or 5432}"))
            app = PostgresStorage(with_options(url, schema=schema))
            try:
                with app.transaction() as uow:
                    uow.customers.add(customer(1))
                    uow.outbox.append(Event("customer.added", "c0001"))
                with app.transaction() as uow:
                    assert uow.customers.count() == 1
                    assert len(uow.outbox.claim(Event("x", "y").occurred_at, timedelta(minutes=1), 5)) == 1
                with pytest.raises(StorageError) as caught, app.transaction() as uow:
                    uow.select("CREATE TABLE intruder (id int)")
                assert "permission denied" in str(caught.value)
            finally:
                app.close()
        finally:
            admin.execute(f"DROP OWNED BY {role}")
            admin.execute(f"DROP ROLE {role}")


def test_the_documented_rekeying_for_citus_keeps_the_adapter_working(storage: PostgresStorage) -> None:
    """The non-Citus half of docs/scaling-postgres.md runs as written, and crmcore still works."""
    doc = (Path(__file__).parents[2] / "docs" / "scaling-postgres.md").read_text()
    statements = [
        s.strip() for line in doc.splitlines() if line.startswith("ALTER TABLE")
        for s in line.split(";") if s.strip()
    ]
    assert len(statements) == 8
    with storage.transaction() as uow:
        for statement in statements:
            uow.cur.execute(statement)
    with storage.transaction() as uow:
        ada = uow.customers.add(customer(1))
        uow.interactions.add(interaction(1, ada.id, T0))
        uow.purchases.add(purchase(1, ada.id, T0))
    with storage.transaction() as uow:
        assert [i.id for i in uow.interactions.for_customer(ada.id)] == ["i000001"]
        assert uow.purchases.get("p000001").customer_id == ada.id
        keys = uow.select(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE connamespace = current_schema()::regnamespace AND contype IN ('p', 'u') "
            "AND conrelid::regclass::text IN ('interactions', 'purchases', 'cases', 'opportunities')"
        )
    assert sorted(keys) == [(t, "PRIMARY KEY (customer_id, id)")
                            for t in ("cases", "interactions", "opportunities", "purchases")]


def test_without_the_postgres_extra_other_storages_still_open() -> None:
    """The entry point is loaded for every URL: it must import cleanly without psycopg."""
    script = (
        "import sys; sys.modules['psycopg'] = sys.modules['psycopg_pool'] = None\n"
        "import crmcore\n"
        "from crmcore.errors import MissingExtra\n"
        "crmcore.open('sqlite://').close()\n"
        "try:\n"
        "    crmcore.open('postgresql://crm@127.0.0.1/crm')\n"
        "except MissingExtra as exc:\n"
        "    print(exc.extra)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "postgres"
