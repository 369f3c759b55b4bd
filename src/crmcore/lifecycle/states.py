"""Customers as they were at an instant, as one SQL relation (true as-of in SQL).

SQL storages keep, beside each customer change in `history`, the customer's row as it
was just *before* the change (`customer_states`: the `customers` columns and document,
or no document when the change was the addition). The customer as of `t` is then:

- the row superseded by their first change after `t`, when they changed after `t`
  (no document: they did not exist yet);
- otherwise today's row (they have not changed since; this also covers records that
  came in without history, e.g. a bulk import, exactly as the Python engine's rewind).

That is the Python engine's rewind (`history.rewind`, newest change undone first) read
forwards, so both engines agree by construction. The relation below has the columns of
`customers` and stands in for it in a compiled segment rule (`segments.sql.plan`).
Two spellings of one relation: one reads the few changes after `t` (a recent instant),
the other seeks each customer's first change after `t` in the (customer, at, seq) index
(an instant before most customers' last change), so neither reads every state row.
"""

# ruff: noqa: S608 - identifiers are the constants below; the instant is a bound parameter
from __future__ import annotations

from collections.abc import Callable
from typing import Any

TABLE = "customer_states"
COLUMNS = ("id", "version", "kind", "name", "tier", "lifecycle", "country", "birth_date",
           "language", "service_point", "created_at", "updated_at", "doc")
"""The `customers` columns, in the order a state row holds them (`id` as `customer_id`)."""

FEW = 20_000
"""Up to this many state rows after the instant (and fewer than customers), the relation
reads just those."""


def _kept(alias: str) -> str:
    return ", ".join(f"{alias}.{'customer_id' if c == 'id' else c} AS {c}" for c in COLUMNS)


def customers_at(bind: Callable[[Any], str], at: Any, quote: Callable[[str], str], *, few: bool) -> str:
    """SQL for the `customers` relation as of the stored instant `at` (bound with `bind`)."""
    when = quote("at")
    current = ", ".join(f"c0.{c}" for c in COLUMNS)
    if few:
        changed = f"SELECT x.customer_id FROM {TABLE} AS x WHERE x.{when} > {bind(at)}"
        first = (f"SELECT min(x.seq) FROM {TABLE} AS x WHERE x.{when} > {bind(at)} "
                 "GROUP BY x.customer_id")
        return (f"SELECT {current} FROM customers AS c0 WHERE c0.id NOT IN ({changed}) "
                f"UNION ALL SELECT {_kept('s')} FROM {TABLE} AS s "
                f"WHERE s.seq IN ({first}) AND s.doc IS NOT NULL")
    later = f"x.customer_id = {{id}} AND x.{when} > {{at}}"
    unchanged = later.format(id="c0.id", at=bind(at))
    removed = (f"SELECT r.customer_id AS id FROM {TABLE} AS r WHERE r.op = 'removed' "
               f"AND r.{when} > {bind(at)}")
    first = (f"SELECT (SELECT min(x.seq) FROM {TABLE} AS x WHERE {later.format(id='k.id', at=bind(at))}) "
             f"FROM (SELECT id FROM customers UNION ALL {removed}) AS k")
    return (f"SELECT {current} FROM customers AS c0 "
            f"WHERE NOT EXISTS (SELECT 1 FROM {TABLE} AS x WHERE {unchanged}) "
            f"UNION ALL SELECT {_kept('s')} FROM {TABLE} AS s "
            f"WHERE s.seq IN ({first}) AND s.doc IS NOT NULL")


def kept(uow: Any) -> bool:
    """Whether the storage keeps superseded customer rows (`History.keeps_states`), so an
    as-of rule runs in SQL over `customers_at` instead of rewinding in Python."""
    return getattr(getattr(uow, "history", None), "keeps_states", False) is True


def relation(uow: Any, at: Any, quote: Callable[[str], str], sql: Callable[[str], str]
             ) -> Callable[[Callable[[Any], str]], str]:
    """`customers_at` for this storage, spelt for as many changes as there are after `at`:
    reading the changes costs about one index entry each, seeking costs one seek per
    customer, so the changes are read when they are fewer than the customers (and than
    `FEW`). Both counts stop early: they never cost more than `FEW` rows."""
    later = f"SELECT count(*) FROM (SELECT 1 FROM {TABLE} WHERE {quote('at')} > ? LIMIT ?) AS p"
    changes = int(uow.select(sql(later), (at, FEW + 1))[0][0])
    few = changes <= FEW
    if few:
        people = "SELECT count(*) FROM (SELECT 1 FROM customers LIMIT ?) AS p"
        few = int(uow.select(sql(people), (changes + 1,))[0][0]) > changes
    return lambda bind: customers_at(bind, at, quote, few=few)
