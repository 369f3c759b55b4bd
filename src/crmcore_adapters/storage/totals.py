"""`purchase_totals` in SQL: one row per customer and currency, written in the transaction of
every purchase write (see `crmcore.scoring.totals` for what the columns hold and why).

A purchase on or after the customer's last purchase day in its currency updates the row in
place with one statement; any other write (an earlier purchase, a customer's first, a merge
or unmerge, an erasure, a bulk import) recounts the customers it touched from the purchases
with one set-based statement, the same one that backfills the table when it is created.
A batch of new purchases (`count_in_many`, what an import's batches write, in any date
order) is folded in place too, one upsert per customer, currency and day for the lot.
Every value is a bound parameter; the SQL is built from the dialect's constants.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from crmcore.model import Purchase
from crmcore.scoring.totals import PurchaseTotal, epoch_day
from crmcore.sql.dialect import Cursor, Dialect

COLUMNS = ("customer_id", "currency", "first_day", "first_day_total", "last_day", "last_at",
           "days", "total")


def recount_sql(dialect: Dialect, scope: str = "") -> str:
    """INSERT the rows of the purchases matching `scope` (a condition on `p`, written with
    `?`; empty: every purchase) from scratch, the first day's total looked up per row."""
    d = dialect
    first = d.epoch_day("g.first_at")
    where = f"WHERE {scope} " if scope else ""
    # built from the dialect's constants only; every value is a bound parameter
    return d.sql(
        f"INSERT INTO purchase_totals ({', '.join(COLUMNS)}) "  # noqa: S608
        f"SELECT g.customer_id, g.currency, {first}, "
        "(SELECT SUM(q.total) FROM purchases AS q WHERE q.customer_id = g.customer_id "
        f"AND q.currency = g.currency AND q.ordered_at >= {d.day_start(first)} "
        f"AND q.ordered_at < {d.day_start(first + ' + 1')}), "
        f"{d.epoch_day('g.last_at')}, g.last_at, g.days, g.spent FROM ("
        f"SELECT p.customer_id, p.currency, COUNT(DISTINCT {d.day_key('p.ordered_at')}) AS days, "
        "MIN(p.ordered_at) AS first_at, MAX(p.ordered_at) AS last_at, SUM(p.total) AS spent "
        f"FROM purchases AS p {where}GROUP BY p.customer_id, p.currency) AS g"
    )


IN_BATCH = 500
"""Customer ids bound in one `IN (...)` list: however many a write touched, each statement
stays within every driver's limit on bound parameters."""


def recount(cur: Cursor, dialect: Dialect, customer_ids: Sequence[str]) -> None:
    """Rebuild these customers' rows from their purchases."""
    for start in range(0, len(customer_ids), IN_BATCH):
        chunk = customer_ids[start:start + IN_BATCH]
        marks = ", ".join("?" for _ in chunk)
        cur.execute(dialect.sql(f"DELETE FROM purchase_totals WHERE customer_id IN ({marks})"),  # noqa: S608
                    chunk)
        cur.execute(recount_sql(dialect, f"p.customer_id IN ({marks})"), chunk)


def recount_imported(cur: Cursor, dialect: Dialect) -> None:
    """After a bulk import: rebuild the rows of every customer it added records to (listed
    in the import's `bulk_owners` table)."""
    owners = "customer_id IN (SELECT customer_id FROM bulk_owners)"
    cur.execute(f"DELETE FROM purchase_totals WHERE {owners}")  # noqa: S608
    cur.execute(recount_sql(dialect, "p." + owners))


def count_in(cur: Cursor, dialect: Dialect, purchase: Purchase) -> None:
    """One more purchase: updated in place when it falls on or after the last purchase day
    (`scoring.totals.added`), recounted otherwise."""
    day, amount = epoch_day(purchase.ordered_at), dialect.money(purchase.amount)
    at = dialect.instant(purchase.ordered_at)
    cur.execute(dialect.sql(
        "UPDATE purchase_totals SET "
        "first_day_total = first_day_total + CASE WHEN first_day = ? THEN ? ELSE 0 END, "
        "days = days + CASE WHEN last_day < ? THEN 1 ELSE 0 END, last_day = ?, "
        "last_at = CASE WHEN last_at < ? THEN ? ELSE last_at END, total = total + ? "
        "WHERE customer_id = ? AND currency = ? AND last_day <= ?"),
        (day, amount, day, day, at, at, amount, purchase.customer_id, purchase.currency, day))
    if cur.rowcount != 1:
        recount(cur, dialect, [purchase.customer_id])


class Bought(Protocol):
    """What the totals read of a purchase (a `Purchase`, or an import's encoded row)."""

    @property
    def customer_id(self) -> str: ...
    @property
    def currency(self) -> str: ...
    @property
    def ordered_at(self) -> datetime: ...
    @property
    def amount(self) -> Decimal: ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fold_in_sql(dialect: Dialect) -> str:
    """Count one customer's purchases of one day in one currency into their row: the row
    written if it is the first, else updated in place. Only the distinct-days count needs
    the stored purchases, and only for a day strictly between the row's first and last
    day: an index seek for one purchase on that day, not a recount of the customer."""
    d = dialect
    old, new = "purchase_totals", "excluded"
    day = f"{new}.first_day"
    # built from the dialect's constants only; every value is a bound parameter
    return d.sql(
        f"INSERT INTO purchase_totals ({', '.join(COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, 1, ?) "  # noqa: S608
        "ON CONFLICT (customer_id, currency) DO UPDATE SET "
        f"first_day_total = CASE WHEN {old}.first_day > {day} THEN {new}.first_day_total "
        f"WHEN {old}.first_day = {day} THEN {old}.first_day_total + {new}.first_day_total "
        f"ELSE {old}.first_day_total END, "
        f"first_day = CASE WHEN {old}.first_day > {day} THEN {day} ELSE {old}.first_day END, "
        f"days = {old}.days + CASE WHEN {day} < {old}.first_day OR {day} > {old}.last_day THEN 1 "
        f"WHEN {day} = {old}.first_day OR {day} = {old}.last_day THEN 0 "
        "WHEN EXISTS (SELECT 1 FROM purchases AS p WHERE p.customer_id = excluded.customer_id "
        f"AND p.ordered_at >= {d.day_start(day)} AND p.ordered_at < {d.day_start(day + ' + 1')} "
        "AND p.currency = excluded.currency) THEN 0 ELSE 1 END, "
        f"last_day = CASE WHEN {old}.last_day < {day} THEN {day} ELSE {old}.last_day END, "
        f"last_at = CASE WHEN {old}.last_at < {new}.last_at THEN {new}.last_at ELSE {old}.last_at END, "
        f"total = {old}.total + {new}.total"
    )


def count_in_many(cur: Cursor, dialect: Dialect, purchases: Iterable[Bought]) -> None:
    """New purchases counted in, before they are inserted (`fold_in_sql` looks for the
    purchases stored before them): summed per customer, currency and day in Python, then
    one statement for the lot, in any date order; recounting every customer an import's
    batch touched read all their earlier purchases again and cost more than the inserts."""
    days: dict[tuple[str, str, int], list[Any]] = {}
    for purchase in purchases:
        key = (purchase.customer_id, purchase.currency, (purchase.ordered_at - _EPOCH).days)
        found = days.get(key)
        if found is None:
            days[key] = [purchase.amount, purchase.ordered_at]
        else:
            found[0] += purchase.amount
            found[1] = max(found[1], purchase.ordered_at)
    rows = []
    for (customer, currency, day), (amount, last_at) in days.items():
        money = dialect.money(amount)
        rows.append((customer, currency, day, money, day, dialect.instant(last_at), money))
    dialect.executemany(cur, fold_in_sql(dialect), rows)


def count_in_days(cur: Cursor, dialect: Dialect, days: Sequence[tuple[str, str, int, int, int, int]]) -> None:
    """`count_in_many` for new purchases already summed per customer, currency and day
    (`EncodedPurchases.days`: amounts in 1/10,000ths with their decimal places, instants
    in microseconds), bound through the dialect's batch conversions."""
    moneys = dialect.money_of([day[3] for day in days], [day[4] for day in days])
    instants = dialect.instants_of([day[5] for day in days])
    rows = [(customer, currency, day, money, day, at, money)
            for (customer, currency, day, *_), money, at in zip(days, moneys, instants, strict=True)]
    dialect.executemany(cur, fold_in_sql(dialect), rows)


def forget(cur: Cursor, dialect: Dialect, customer_id: str) -> None:
    cur.execute(dialect.sql("DELETE FROM purchase_totals WHERE customer_id = ?"), (customer_id,))


class SqlPurchaseTotals:
    """The rows as values (what tests compare with a recount; the summary reads the table
    with its own query)."""

    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def all(self, currency: str | None = None) -> builtins.list[PurchaseTotal]:
        where, params = ("WHERE currency = ? ", [currency]) if currency is not None else ("", [])
        self.cur.execute(self.d.sql(
            f"SELECT {', '.join(COLUMNS)} FROM purchase_totals {where}"  # noqa: S608
            f"ORDER BY customer_id{self.d.text_order}, currency{self.d.text_order}"), params)
        return [self._row(row) for row in self.cur.fetchall()]

    def latest(self) -> datetime | None:
        self.cur.execute("SELECT MAX(last_at) FROM purchase_totals")
        found = self.cur.fetchone()[0]
        return None if found is None else self.d.from_instant(found)

    def _row(self, row: Iterable[Any]) -> PurchaseTotal:
        customer_id, currency, first, first_total, last, last_at, days, total = row
        return PurchaseTotal(str(customer_id), str(currency), int(first),
                             self.d.exact_money(first_total), int(last),
                             self.d.from_instant(last_at), int(days), self.d.exact_money(total))
