"""The migration that brings in `customer_states` rebuilds, from the diffs alone, the very
rows the storage keeps when it writes: checked by emptying the table of a base written
through the CRM and backfilling it again, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.lifecycle import states
from crmcore.model import Customer
from crmcore_adapters.storage import sql
from crmcore_adapters.storage import sqlite as sqlite_adapter
from tests.lifecycle.conftest import T0, Clock, storage_url


@pytest.fixture(params=["sqlite://", "postgresql"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    clock = Clock()
    opened = crmcore.open(storage_url(request), clock=clock)
    opened.test_clock = clock  # type: ignore[attr-defined]
    yield opened
    opened.close()


def kept_rows(uow: Any) -> list[tuple[Any, ...]]:
    uow.cur.execute('SELECT "at", since, op, customer_id, version, tier, created_at, doc '
                    "FROM customer_states ORDER BY seq")
    return [(*row[:-1], None if row[-1] is None else
             row[-1] if isinstance(row[-1], dict) else json.loads(row[-1]))
            for row in uow.cur.fetchall()]


def test_backfill_rebuilds_the_rows_kept_on_write(crm: crmcore.CRM) -> None:
    clock: Clock = crm.test_clock  # type: ignore[attr-defined]
    crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0))
    crm.customers.add(Customer.new("Old", id="old", tier="gold", created_at=T0 - timedelta(days=400)))
    crm.bulk_import([Customer.new("Imp", id="imp", tier="bronze", created_at=T0, updated_at=T0)])
    for hours, (who, fields) in enumerate([("ann", {"tier": "gold"}), ("imp", {"tags": {"vip"}}),
                                           ("ann", {"name": "Ann B"}), ("old", {"tier": None})], 1):
        clock.now = T0 + timedelta(hours=hours)
        crm.customers.change(who, **fields)
    clock.now = T0 + timedelta(hours=9)
    crm.customers.remove(crm.customers.get("old"))
    with crm.transaction() as uow:
        d = uow.dialect  # type: ignore[attr-defined]
        live = kept_rows(uow)
        uow.cur.execute("DELETE FROM customer_states")  # type: ignore[attr-defined]
        sql.backfill_states(uow.cur, uow.dialect, page=2)  # type: ignore[attr-defined]
        rebuilt = kept_rows(uow)
    assert len(live) == 6  # "old" added with an earlier created_at, 4 changes, 1 removal
    assert sorted(rebuilt, key=repr) == sorted(live, key=repr)
    by_customer = [row[3] for row in rebuilt]
    assert by_customer.index("ann") < by_customer.index("imp")  # one customer after another...
    ann = [row for row in rebuilt if row[3] == "ann"]
    assert [row[5] for row in ann] == ["silver", "gold"]  # ...each oldest first
    assert [row[1] for row in ann] == [d.instant(states.EARLIEST), ann[0][0]]  # valid since


def refilled(crm: crmcore.CRM, read: Callable[[Any], list[tuple[Any, ...]]], clear: str,
             backfill: Callable[[Any, Any], None]) -> tuple[list[tuple[Any, ...]], Any]:
    """What the write path kept (`read`), checked equal to what the migration's `backfill`
    gives once `clear` has emptied it; returns it and the dialect."""
    with crm.transaction() as uow:
        d = uow.dialect  # type: ignore[attr-defined]
        live = read(uow)
        uow.cur.execute(clear)  # type: ignore[attr-defined]
        backfill(uow.cur, d)  # type: ignore[attr-defined]
        assert read(uow) == live
    return live, d


def test_since_backfill_gives_each_row_the_latest_earlier_change(crm: crmcore.CRM) -> None:
    """The migration that adds `since` to rows kept without it: the greatest "at" of the
    customer's earlier rows, as the write path keeps it, even when the clock went back."""
    clock: Clock = crm.test_clock  # type: ignore[attr-defined]
    crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0 - timedelta(days=9)))
    crm.customers.add(Customer.new("Bob", id="bob", created_at=T0))
    for hours, who in [(3, "ann"), (1, "ann"), (2, "bob"), (5, "ann")]:  # ann's clock goes back once
        clock.now = T0 + timedelta(hours=hours)
        crm.customers.change(who, name=f"{who} {hours}")
    live, d = refilled(crm, kept_rows, "UPDATE customer_states SET since = NULL", sql.backfill_since)
    hours = [row[1] for row in live if row[3] == "ann"]
    assert hours == [d.instant(x) for x in (states.EARLIEST, T0, T0 + timedelta(hours=3),
                                             T0 + timedelta(hours=3))]


def current_since(uow: Any) -> list[tuple[Any, ...]]:
    uow.cur.execute("SELECT id, since FROM customers ORDER BY id")
    return [tuple(row) for row in uow.cur.fetchall()]


def test_current_since_backfill_gives_each_customer_their_latest_state(crm: crmcore.CRM) -> None:
    """The migration that adds `since` to today's rows: the greatest "at" of the customer's
    states, as the write path keeps it (the clock going back, a removal and a restore by
    unmerging, an erasure), NULL for a customer who kept none (an import, a plain addition)."""
    clock: Clock = crm.test_clock  # type: ignore[attr-defined]
    crm.customers.add(Customer.new("Ann", id="ann", created_at=T0 - timedelta(days=9)))
    crm.customers.add(Customer.new("Bob", id="bob", created_at=T0))
    crm.customers.add(Customer.new("Cid", id="cid", created_at=T0 - timedelta(days=9)))
    crm.customers.add(Customer.new("Dan", id="dan", created_at=T0 - timedelta(days=9)))
    crm.bulk_import([Customer.new("Imp", id="imp", created_at=T0, updated_at=T0)])
    for hours, who in [(3, "ann"), (1, "ann"), (2, "bob"), (4, "cid"), (5, "dan")]:
        clock.now = T0 + timedelta(hours=hours)
        crm.customers.change(who, name=f"{who} {hours}")
    clock.now = T0 + timedelta(hours=6)
    merge = crm.lifecycle.merge("ann", "cid")
    clock.now = T0 + timedelta(hours=7)
    crm.lifecycle.unmerge(merge.id)
    crm.lifecycle.erase_person("dan")
    live, d = refilled(crm, current_since, "UPDATE customers SET since = NULL", sql.backfill_current_since)
    at = {who: d.instant(T0 + timedelta(hours=hours)) for who, hours in [("ann", 7), ("cid", 7), ("bob", 2)]}
    assert live == [("ann", at["ann"]), ("bob", at["bob"]), ("cid", at["cid"]), ("imp", None)]


def test_a_database_kept_states_before_since_migrates(tmp_path: Path) -> None:
    """An SQLite file written before `since` existed: opening it runs the migration, which
    gives the kept rows their span, and as-of rules read them."""
    path = tmp_path / "old.db"
    clock = Clock()
    with crmcore.open(f"sqlite:///{path}", clock=clock) as crm:
        crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0))
        for hours, tier in [(1, "gold"), (2, "bronze")]:
            clock.now = T0 + timedelta(hours=hours)
            crm.customers.change("ann", tier=tier)
        with crm.transaction() as uow:
            live = kept_rows(uow)
    since = next(n for n, steps in enumerate(sqlite_adapter.MIGRATIONS) if sql.backfill_since in steps)
    assert since == len(sqlite_adapter.MIGRATIONS) - 9, "undo the later migrations below too"
    with sqlite3.connect(path) as conn:  # back to the schema before the migration
        # the later ones, newest first (the rule columns' and the covering index's are
        # PostgreSQL's alone)
        conn.execute("CREATE INDEX purchases_customer ON purchases (customer_id, ordered_at)")
        conn.execute("CREATE INDEX purchase_totals_last ON purchase_totals (last_at)")
        states_out_of_history(conn)
        conn.execute("ALTER TABLE customers DROP COLUMN since")
        conn.execute("CREATE INDEX customer_states_valid ON customer_states (at, since)")
        conn.execute("DROP INDEX customer_states_day")
        conn.execute("DROP TABLE staff_generation")
        conn.execute("DROP TABLE assignment_turns")
        conn.execute("DROP INDEX customer_states_removed")
        conn.execute("CREATE INDEX customer_states_op ON customer_states (op, at)")
        conn.execute("DROP INDEX customer_states_valid")
        conn.execute("ALTER TABLE customer_states DROP COLUMN since")
        conn.execute("CREATE INDEX customer_states_at ON customer_states (at)")
        conn.execute(f"PRAGMA user_version = {since}")
    conn.close()
    with crmcore.open(f"sqlite:///{path}", clock=clock) as crm:
        with crm.transaction() as uow:
            assert kept_rows(uow) == live
            assert current_since(uow) == [("ann", uow.dialect.instant(T0 + timedelta(hours=2)))]  # type: ignore[attr-defined]
        half = T0 + timedelta(minutes=90)
        assert crm.customers.ids_matching('tier = "gold"', as_of=half) == ["ann"]
        assert crm.customers.ids_matching('tier = "gold"') == []


def _migration_with(step: str, migrations: Sequence[tuple[Any, ...]]) -> int:
    """The number of the migration that runs `step` (the schema version before it)."""
    return next(n for n, steps in enumerate(migrations) if any(isinstance(s, str) and s.startswith(step)
                                                                for s in steps))


def states_out_of_history(conn: sqlite3.Connection) -> None:
    """Undo SQLite's migration that keeps the customer states in their changes' history
    rows: `customer_states` a table of its own again, with the indexes it had before."""
    names = ", ".join(('seq', '"at"', "op", "customer_id", *states.COLUMNS[1:], "since"))
    rows = conn.execute(f"SELECT {names} FROM customer_states ORDER BY seq").fetchall()
    conn.execute("DROP VIEW customer_states")  # its triggers with it
    conn.execute("DROP INDEX history_states_day")
    conn.execute("DROP INDEX history_states_removed")
    conn.execute("DROP INDEX history_aggregate")
    conn.execute("CREATE INDEX history_aggregate ON history (kind, aggregate_id, seq)")
    conn.execute("DROP INDEX history_at")
    conn.execute("CREATE INDEX history_at ON history (kind, at)")
    for column in ("kept", "since", *sql.WAS):
        conn.execute(f"ALTER TABLE history DROP COLUMN {column}")
    created = _migration_with("CREATE TABLE customer_states", sqlite_adapter.MIGRATIONS)
    conn.execute(str(sqlite_adapter.MIGRATIONS[created][0]))
    conn.execute("ALTER TABLE customer_states ADD COLUMN since INTEGER")
    conn.executemany(f"INSERT INTO customer_states ({names}) VALUES ({', '.join('?' * len(rows[0]))})",
                     rows)
    conn.execute("CREATE INDEX customer_states_customer ON customer_states (customer_id, at, seq)")
    conn.execute("CREATE INDEX customer_states_removed ON customer_states (at) WHERE op = 'removed'")
    conn.execute(f"CREATE INDEX customer_states_day ON customer_states "
                 f"({sqlite_adapter.DIALECT.epoch_day('at')}, since, at)")


def filenode(uow: Any) -> int:
    uow.cur.execute("SELECT pg_relation_filenode('customers')")
    return int(uow.cur.fetchone()[0])


def test_a_postgres_base_kept_states_before_current_since_migrates(
        fresh_postgres_url: Callable[[], str]) -> None:
    """A PostgreSQL base written before `customers.since` existed: the migration fills it
    by rewriting the table (not by an UPDATE, which would leave a dead version of every
    changed row), and as-of rules read it."""
    from crmcore_adapters.storage import postgres as postgres_adapter

    url, clock = fresh_postgres_url(), Clock()
    with crmcore.open(url, clock=clock) as crm:
        crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0))
        crm.bulk_import([Customer.new("Imp", id="imp", tier="gold", created_at=T0, updated_at=T0)])
        for hours, tier in [(1, "gold"), (2, "bronze")]:
            clock.now = T0 + timedelta(hours=hours)
            crm.customers.change("ann", tier=tier)
        with crm.transaction() as uow:
            live = current_since(uow)
            # back to the schema before the migration (the one with the day index), the later
            # one (the covering day index, the index on since) undone first; the last is
            # SQLite's alone (its states moved into history)
            uow.cur.execute("DROP INDEX customer_states_valid_at")  # type: ignore[attr-defined]
            uow.cur.execute("DROP INDEX customer_states_valid_at_wide")  # type: ignore[attr-defined]
            uow.cur.execute("ALTER TABLE customers DROP COLUMN since")  # type: ignore[attr-defined]
            uow.cur.execute("CREATE INDEX customer_states_valid ON customer_states (at, since)")  # type: ignore[attr-defined]
            before = _migration_with("CREATE INDEX customer_states_day", postgres_adapter.MIGRATIONS)
            uow.cur.execute("UPDATE schema_version SET version = %s", (before,))  # type: ignore[attr-defined]
            file = filenode(uow)
    assert live == [("ann", T0 + timedelta(hours=2)), ("imp", None)]
    with crmcore.open(url, clock=clock) as crm:
        with crm.transaction() as uow:
            assert current_since(uow) == live
            assert filenode(uow) != file  # a new file holding the rows, none left dead
        assert crm.customers.ids_matching('tier = "gold"', as_of=T0 + timedelta(minutes=90)) == ["ann", "imp"]
        assert crm.customers.ids_matching('tier = "gold"') == ["imp"]


@pytest.mark.parametrize("how", ["bulk_import", "add_many", "add"])
def test_a_removed_id_added_again_is_not_read_before_it_came_back(crm: crmcore.CRM, how: str) -> None:
    """A customer removed, then added again under the same id by a bulk import, a batch
    (the CSV import's `add_many`) or one `add`, not by `restore`: as of an instant before the removal
    the customer is the state kept then, once, not also today's row (found in review)."""
    clock: Clock = crm.test_clock  # type: ignore[attr-defined]
    crm.customers.add(Customer.new("Ann", id="ann", created_at=T0))
    clock.tick(hours=1)
    crm.customers.change("ann", tier="gold")
    clock.tick(hours=1)
    crm.customers.remove(crm.customers.get("ann"))
    clock.tick(hours=1)
    back = Customer("ann", "Ann", tier="silver", created_at=T0 - timedelta(days=30), updated_at=clock.now)
    if how == "bulk_import":
        crm.bulk_import([back])
    elif how == "add":
        crm.customers.add(back)
    else:
        with crm.transaction() as uow:
            uow.customers.add_many([back])
    then = T0 + timedelta(minutes=90)
    assert [(c.id, c.tier) for c in crm.customers.matching('tier = "gold" or tier = "silver"', as_of=then)] \
        == [("ann", "gold")]
    assert crm.customers.ids_matching('tier = "silver"', as_of=then) == []
    assert crm.customers.ids_matching('tier = "silver"') == ["ann"]
