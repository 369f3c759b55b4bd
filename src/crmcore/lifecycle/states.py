"""Customers as they were at an instant, as one SQL relation (true as-of in SQL).

SQL storages keep, beside each customer change in `history`, the customer's row as it
was just *before* the change (`customer_states`: the `customers` columns and document,
or no document when the change was the addition), with the span it was valid for:
`since` (the latest earlier change of that customer, or `EARLIEST`) up to `at` (the
change that superseded it). The customer as of `t` is then:

- the state row valid at `t` (`since <= t < at`), when they changed after `t` (no
  document: they did not exist yet);
- otherwise today's row (they have not changed since; this also covers records that
  came in without history, e.g. a bulk import, exactly as the Python engine's rewind).

`since` is the greatest `at` of the customer's earlier rows, so the row valid at `t` is
exactly their first change after `t`: the Python engine's rewind (`history.rewind`, newest
change undone first) read forwards, so both engines agree by construction. The span makes
validity a test on the row alone: the rule's conditions filter the states as they are
read (by the (at, since) index or a scan, the planner's choice), and no per-customer
"first later change" is joined back to the states by key (a random heap read per
customer: 76-84x the current-state rule at a million customers on PostgreSQL, against
10-14x now; see benchmarks/README.md). The relation has the columns of `customers`
and stands in for it in a compiled segment rule (`segments.sql.plan`).
"""

# ruff: noqa: S608 - identifiers are the constants below; the instant is a bound parameter
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

TABLE = "customer_states"
COLUMNS = ("id", "version", "kind", "name", "tier", "lifecycle", "country", "birth_date",
           "language", "service_point", "created_at", "updated_at", "doc")
"""The `customers` columns, in the order a state row holds them (`id` as `customer_id`)."""

EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
"""`since` of a customer's first state row: valid from the beginning of time."""


def _kept(alias: str, columns: Sequence[str]) -> str:
    """The state row's columns as the `customers` columns. The id is an expression, not the
    indexed column: SQLite would otherwise merge the union in id order by reading every
    state row along the (customer_id, at, seq) index, instead of seeking the instant."""
    return ", ".join(f"coalesce({alias}.customer_id, '') AS id" if c == "id" else f"{alias}.{c} AS {c}"
                     for c in columns)


def customers_at(bind: Callable[[Any], str], at: Any, quote: Callable[[str], str],
                 extra: Sequence[str] = ()) -> str:
    """SQL for the `customers` relation as of the stored instant `at` (bound with `bind`);
    `extra` are columns both tables hold beyond `COLUMNS` (`Dialect.rule_columns`)."""
    when = quote("at")
    columns = (*COLUMNS, *extra)
    current = ", ".join(f"c0.{c}" for c in columns)
    return (f"SELECT {current} FROM customers AS c0 WHERE NOT EXISTS (SELECT 1 FROM {TABLE} AS x "
            f"WHERE x.customer_id = c0.id AND x.{when} > {bind(at)}) "
            f"UNION ALL SELECT {_kept('s', columns)} FROM {TABLE} AS s "
            f"WHERE s.{when} > {bind(at)} AND s.since <= {bind(at)} AND s.doc IS NOT NULL")


def kept(uow: Any) -> bool:
    """Whether the storage keeps superseded customer rows (`History.keeps_states`), so an
    as-of rule runs in SQL over `customers_at` instead of rewinding in Python."""
    return getattr(getattr(uow, "history", None), "keeps_states", False) is True


def relation(at: Any, quote: Callable[[str], str],
             extra: Sequence[str] = ()) -> Callable[[Callable[[Any], str]], str]:
    """`customers_at` as of the stored instant `at`, as a relation for `segments.sql.plan`."""
    return lambda bind: customers_at(bind, at, quote, extra)
