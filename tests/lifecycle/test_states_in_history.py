"""SQLite keeps each customer state in its change's `history` row, `customer_states` a view
of them: the states' `since` stays the greatest earlier "at" (as the Python engine
rewinds), the reads of the view seek the indexes meant for them on a base without
statistics, and a base whose states cannot all pair with a change refuses to migrate,
naming the first."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.errors import IntegrityError
from crmcore.lifecycle import states
from crmcore.model import Customer
from crmcore_adapters.storage import sql
from crmcore_adapters.storage import sqlite as sqlite_adapter
from tests.lifecycle.conftest import T0, Clock, storage_url


def hours(n: float) -> Any:
    return T0 + timedelta(hours=n)


@pytest.mark.parametrize("url", ["memory://", "sqlite://", "postgresql"], indirect=False)
def test_a_customer_added_again_after_the_clock_went_back_is_read_once(
        request: pytest.FixtureRequest, url: str) -> None:
    """Removed at 22:00, added again at 17:00 (the clock went back; a plain add keeps no
    state), changed at 18:00 and 19:00: as of 18:30 she is the removed record alone, as
    the Python engine's rewind says (her latest state, 22:00, outranks the changes)."""
    request.param = url  # type: ignore[attr-defined]
    clock = Clock()
    with crmcore.open(storage_url(request), clock=clock) as crm:
        crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0))
        clock.now = hours(10)
        crm.customers.remove(crm.customers.get("ann"))
        clock.now = hours(5)
        crm.customers.add(Customer.new("Ann", id="ann", tier="bronze"))
        for at, tier in ((6, "gold"), (7, None)):
            clock.now = hours(at)
            crm.customers.change("ann", tier=tier)
        answers = {t: [crm.customers.ids_matching(f'tier = "{tier}"', as_of=hours(t))
                       for tier in ("silver", "bronze", "gold")] for t in (5.5, 6.5, 7.5, 11)}
    assert answers == {5.5: [["ann"], [], []], 6.5: [["ann"], [], []], 7.5: [["ann"], [], []],
                       11: [[], [], []]}


def plan(uow: Any, query: str, params: tuple[Any, ...] = ()) -> str:
    uow.cur.execute(f"EXPLAIN QUERY PLAN {query}", params)
    return " ".join(str(row[-1]) for row in uow.cur.fetchall())


def test_reads_of_the_states_use_their_indexes_without_statistics(tmp_path: Path) -> None:
    """Changes spread over a year, no ANALYZE (crmcore never runs it): an as-of read seeks
    the day index, one customer's states the id, the removed ones their partial index;
    none walks `history_at` (kind, at), which the planner takes for a kind's max("at")."""
    clock = Clock()
    with crmcore.open(f"sqlite:///{tmp_path}/crm.db", clock=clock) as crm:
        crm.bulk_import([Customer.new(f"C{n}", id=f"c{n:03d}", created_at=T0, updated_at=T0)
                         for n in range(60)])
        for day in range(0, 360, 3):
            clock.now = T0 + timedelta(days=day)
            crm.customers.change(f"c{day % 60:03d}", tier=("gold", "silver")[day % 2])
        crm.customers.remove(crm.customers.get("c001"))
        with crm.transaction() as uow:
            d = uow.dialect  # type: ignore[attr-defined]
            at = T0 + timedelta(days=5)
            days = states.days(uow.select, d, at, in_history=states.in_history(uow))  # type: ignore[attr-defined]
            asof = states.customers_at(lambda value: "?", at, d, days)
            marks = asof.count("?")
            after = uow.history._after  # type: ignore[attr-defined]
            found = {
                "as of": plan(uow, asof, tuple(range(marks))),
                "since": plan(uow, sql._SINCE_MOVE, (1, "c002", 1, 1, "c002", 1)),
                "kept": plan(uow, sql._HISTORY_KEEP, tuple(range(sql._HISTORY_KEEP.count("?")))),
                "since of": plan(uow, f"{sql._SINCE_OF} WHERE id IN (?) AND {sql._KEPT_STATES}", ("c002",)),
                "removed": plan(uow, "SELECT customer_id FROM customer_states WHERE op = 'removed'"),
                "of": plan(uow, "SELECT seq FROM history WHERE kind = ? AND aggregate_id = ? ORDER BY seq",
                           ("customer", "c002")),
                "days": plan(uow, f"SELECT max({d.epoch_day('at')}) FROM history WHERE kept = 1"),
                "after": plan(uow, *after(sql.SqlHistory.COLUMNS, "customer", at, "")),
                "changed": plan(uow, *after("1", "customer", at, " LIMIT 1")),
                "changed case": plan(uow, *after("1", "case", at, " LIMIT 1")),
            }
    assert "history_states_day" in found["as of"], found
    for read in ("since", "kept", "since of", "of"):
        assert "history_aggregate (aggregate_id=?" in found[read], (read, found[read])
    assert "history_states_removed" in found["removed"], found
    assert "history_states_day" in found["days"], found
    for read in ("after", "changed"):  # the changes that kept no state, then those that did
        assert "history_at (kind=? AND at>?)" in found[read] and "history_states_day" in found[read]
    assert "history_at (kind=? AND at>?)" in found["changed case"], found
    for read, text in found.items():  # no walk of (kind, at) for one customer, no full read
        assert not re.search(r"SCAN history(?! USING)", text), (read, text)
        if read not in ("after", "changed", "changed case"):
            assert "history_at" not in text, (read, text)


def test_a_state_with_no_change_to_go_to_stops_the_migration_naming_it(tmp_path: Path) -> None:
    """A base from before the move holding a state no change pairs with (written by hand):
    opening it refuses, naming the customer, instant and op, and leaves the base as it was."""
    from tests.lifecycle.test_states_backfill import states_out_of_history

    path, clock = tmp_path / "old.db", Clock()
    with crmcore.open(f"sqlite:///{path}", clock=clock) as crm:
        crm.customers.add(Customer.new("Ann", id="ann", tier="silver", created_at=T0))
        clock.now = hours(1)
        crm.customers.change("ann", tier="gold")
    moved = next(n for n, steps in enumerate(sqlite_adapter.MIGRATIONS) if sql.check_states_pair in steps)
    with sqlite3.connect(path) as conn:
        states_out_of_history(conn)
        conn.execute("INSERT INTO customer_states (\"at\", since, op, customer_id, version, doc) "
                     "SELECT \"at\", since, op, customer_id, version, doc FROM customer_states")
        conn.execute(f"PRAGMA user_version = {moved}")
    conn.close()
    with pytest.raises(IntegrityError) as refused:
        crmcore.open(f"sqlite:///{path}", clock=clock)
    assert "'ann'" in str(refused.value) and hours(1).isoformat() in str(refused.value)
    assert "updated" in str(refused.value)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (moved,)
        kind = conn.execute("SELECT type FROM sqlite_master WHERE name = 'customer_states'").fetchone()
        assert kind == ("table",)
        assert conn.execute("SELECT count(*) FROM customer_states").fetchone() == (2,)
    conn.close()
