"""Customers as they were at an instant, as one SQL relation (true as-of in SQL).

SQL storages keep, beside each customer change in `history`, the customer's row as it
was just *before* the change (`customer_states`: the `customers` columns and document,
or no document when the change was the addition; SQLite stores it in the change's own
`history` row and reads it through a view, `SqlUnitOfWork(states_in_history=True)`), with the span
it was valid for:
`since` (the latest earlier change of that customer, or `EARLIEST`) up to `at` (the
change that superseded it). Today's row says since when it is valid too
(`customers.since`: the greatest `at` of the customer's states, NULL when they kept
none, e.g. a bulk import), written in the statement that keeps the state. The customer
as of `t` is then:

- the state row valid at `t` (`since <= t < at`), when they changed after `t` (no
  document: they did not exist yet);
- otherwise today's row (`customers.since` is NULL or `<= t`: they have not changed
  since; this also covers records that came in without history, exactly as the Python
  engine's rewind).

`since` is the greatest `at` of the customer's earlier rows, so the row valid at `t` is
exactly their first change after `t`: the Python engine's rewind (`history.rewind`, newest
change undone first) read forwards, so both engines agree by construction.

Finding the valid states is a stabbing query (`since <= t < at`), which no B-tree on
(at, since) answers without reading every row changed after `t` (half of them for a
middle instant). The states are therefore indexed by the day of their `at`
(`Dialect.epoch_day`) then `since`, `at`: in every day after `t`'s, the rows with
`since <= t` are exactly the valid ones (a row changed after `t` and valid since before
it spans `t`), so one index seek per day (`Dialect.one_of` over `days`; one range past
`SEEKS` days) reads the valid rows and, in `t`'s own day, the day's earlier changes,
dropped by `at` within the index.
Today's rows are tested on the row (`customers.since`), not against the states (an
anti-join). The relation has the columns of `customers` and stands in for it in a
compiled segment rule (`segments.sql.plan`); figures in benchmarks/README.md.
"""

# ruff: noqa: S608 - identifiers are the constants below; the instant is a bound parameter
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crmcore.sql.dialect import Dialect

TABLE = "customer_states"
COLUMNS = ("id", "version", "kind", "name", "tier", "lifecycle", "country", "birth_date",
           "language", "service_point", "created_at", "updated_at", "doc")
"""The `customers` columns, in the order a state row holds them (`id` as `customer_id`)."""

EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
"""`since` of a customer's first state row: valid from the beginning of time."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEEKS = 4_096
"""Days sought one by one at most (eleven years); a longer span (odd clocks) is read as one
range of the index: every row changed in it, the valid ones kept by `since`."""


def day(moment: datetime) -> int:
    """Whole days from 1970-01-01 to `moment` (UTC, floored), as `Dialect.epoch_day` counts
    the day of a stored instant: the states are indexed by the day of their "at"."""
    return (moment - EPOCH).days


def days(select: Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]], dialect: Dialect,
         at: datetime, *, in_history: bool = False) -> range:
    """The days whose states may be valid at `at`: from its day (or the first change's, if
    later) to the latest customer change's. Every state's "at" is its change's (`history`).
    `in_history` (`in_history(uow)`): the states are history rows, whose days their
    index gives (the first and last, one seek each) where `history_at` has none of them."""
    when = dialect.quote("at")
    if in_history:  # the kept states' days, from their index
        of, where = dialect.epoch_day(when), "kept = 1"
    else:
        of, where = when, "kind = 'customer'"
    ends = (f"(SELECT {end}({of}) FROM history WHERE {where})" for end in ("min", "max"))
    rows = select(f"SELECT {', '.join(ends)}", ())  # one index seek each (min and max together: a scan)
    first, last = rows[0] if rows else (None, None)
    if first is None or last is None:
        return range(0)

    def day_of(value: Any) -> int:
        return int(value) if in_history else day(dialect.from_instant(value))

    return range(max(day(at), day_of(first)), day_of(last) + 1)


def _kept(alias: str, columns: Sequence[str]) -> str:
    """The state row's columns as the `customers` columns. The id is an expression, not the
    indexed column: SQLite would otherwise merge the union in id order by reading every
    state row along the (customer_id, at, seq) index, instead of seeking the instant."""
    return ", ".join(f"coalesce({alias}.customer_id, '') AS id" if c == "id" else f"{alias}.{c} AS {c}"
                     for c in columns)


def customers_at(bind: Callable[[Any], str], at: datetime, dialect: Dialect,
                 within: Sequence[int]) -> str:
    """SQL for the `customers` relation as of `at` (bound with `bind`), its states read
    from the days `within` (`days`); the columns are `COLUMNS` and `Dialect.rule_columns`."""
    when, t = dialect.quote("at"), bind(dialect.instant(at))
    columns = (*COLUMNS, *dialect.rule_columns)
    current = ", ".join(f"c0.{c}" for c in columns)
    on = dialect.epoch_day(f"s.{when}")
    sought = (dialect.one_of(on, within, bind) if len(within) <= SEEKS
              else f"({on} BETWEEN {bind(within[0])} AND {bind(within[-1])})")
    valid = f"{sought} AND s.since <= {t} AND s.{when} > {t} AND s.doc IS NOT NULL"
    kept = "".join(f" UNION ALL SELECT {_kept('s', columns)} FROM {TABLE} AS s WHERE {valid}"
                   + (f" AND {part}" if part else "") for part in dialect.state_parts("s."))
    return f"SELECT {current} FROM customers AS c0 WHERE (c0.since IS NULL OR c0.since <= {t})" + kept


def in_history(uow: Any) -> bool:
    """Whether the storage keeps each state in its change's `history` row (SQLite)."""
    return getattr(getattr(uow, "history", None), "states_in_history", False) is True


def kept(uow: Any) -> bool:
    """Whether the storage keeps superseded customer rows (`History.keeps_states`), so an
    as-of rule runs in SQL over `customers_at` instead of rewinding in Python."""
    return getattr(getattr(uow, "history", None), "keeps_states", False) is True


def relation(at: datetime, dialect: Dialect, within: Sequence[int]) -> Callable[[Callable[[Any], str]], str]:
    """`customers_at` as of `at`, as a relation for `segments.sql.plan`."""
    return lambda bind: customers_at(bind, at, dialect, within)
