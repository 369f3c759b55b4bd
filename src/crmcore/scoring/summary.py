"""The per-customer purchase summary every "buy till you die" model is fitted on.

For each customer who bought before the end of the period: `frequency` (repeat
purchase days), `recency` (time from the first to the last purchase day), `T`
(time from the first purchase day to the last day of the period), `monetary`
(the mean value of the repeat purchase days, 0 without any) and `total` (all
spend). Purchases of one customer on one UTC day count as one purchase (the
CDNOW rule); times are in a configurable unit (7 days for CDNOW's weeks).

SQL storage computes it with one aggregation query, never by loading every
purchase; the memory adapter gets the same figures from Python.
"""

from __future__ import annotations

import array
import itertools
import operator
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model import Purchase
from crmcore.ports import UnitOfWork
from crmcore.sql.dialect import BUILTIN, Dialect, Unsupported, dialect_of

EPOCH_DAY = date(1970, 1, 1)


@attrs.frozen
class Period:
    """Purchases strictly before `end` count; ages are measured in whole days up to `through`."""

    end: datetime
    through: date
    unit_days: float

    @classmethod
    def as_of(cls, moment: date | datetime, unit_days: float = 7.0) -> Period:
        """A date is the last day counted (inclusive); an instant counts what came before it."""
        if isinstance(unit_days, bool) or not isinstance(unit_days, int | float) or not unit_days > 0:
            raise ValidationError("unit_days", unit_days, "must be a positive number of days")
        if isinstance(moment, datetime):
            end = v.utc(moment, "as_of")
            return cls(end, (end - timedelta(microseconds=1)).date(), float(unit_days))
        if isinstance(moment, date):
            return cls(datetime.combine(moment + timedelta(days=1), time(), UTC), moment,
                       float(unit_days))
        raise ValidationError("as_of", moment, "must be a date or an aware datetime")

    @property
    def through_day(self) -> int:
        return (self.through - EPOCH_DAY).days


def _doubles(values: Iterable[float] = ()) -> array.array[float]:
    return array.array("d", values)


@attrs.frozen(eq=False)
class Summary:
    """Columns, one row per customer in id order; arrays so numpy can view them without copying."""

    period: Period
    customer_ids: list[str]
    frequency: array.array[float]
    recency: array.array[float]
    T: array.array[float]
    monetary: array.array[float]
    total: array.array[float]

    def __len__(self) -> int:
        return len(self.customer_ids)

    def row(self, index: int) -> dict[str, float | str]:
        return {
            "customer_id": self.customer_ids[index], "frequency": self.frequency[index],
            "recency": self.recency[index], "T": self.T[index],
            "monetary": self.monetary[index], "total": self.total[index],
        }

    def since_last(self, index: int) -> float:
        """Time from the customer's last purchase day to the end of the period."""
        return self.T[index] - self.recency[index]

    @classmethod
    def from_days(
        cls, period: Period, rows: Iterable[tuple[Any, ...]], money: Callable[[Any], float] = float,
    ) -> Summary:
        """Build from rows (customer id, purchase days, first day, last day, total, repeat
        total), days counted from the epoch; `money` turns a stored amount into a float."""
        columns = list(zip(*rows, strict=True)) or [()] * 6
        ids, days, firsts, lasts, spent, repeat = columns
        units = itertools.repeat(period.unit_days)
        # map() over C functions: several times faster than a loop for a million customers
        return cls(
            period, list(map(str, ids)),
            _doubles(map((1).__rsub__, days)),
            _doubles(map(operator.truediv, map(operator.sub, lasts, firsts), units)),
            _doubles(map(operator.truediv, map(period.through_day.__sub__, firsts), units)),
            _doubles(money(r) / (n - 1) if n > 1 else 0.0 for n, r in zip(days, repeat, strict=True)),
            _doubles(map(money, spent)),
        )


# ---- SQL push-down ----


def _dialect(dialect: str | Dialect) -> Dialect:
    if isinstance(dialect, Dialect):
        return dialect
    if dialect not in BUILTIN:
        raise ValidationError("dialect", dialect, f"no summary query for it; known: {sorted(BUILTIN)}")
    return BUILTIN[dialect]


def summary_sql(dialect: str | Dialect, *, currency: bool = False) -> str:
    """Purchases grouped by customer in one pass along the (customer, time) index, and the
    first purchase day's value looked up by an index range per customer: repeat value is
    total minus that. Parameters: the end of the period and (optionally) the currency,
    twice over."""
    d = _dialect(dialect)

    def where(table: str) -> str:
        return f"{table}.ordered_at < ?" + (f" AND {table}.currency = ?" if currency else "")

    day = d.epoch_day("p.ordered_at")
    # built from the dialect's constants only; every value is a bound parameter
    return d.sql(
        "SELECT customer_id, days, first_day, last_day, spent, spent - ("  # noqa: S608
        "SELECT SUM(q.total) FROM purchases AS q WHERE q.customer_id = g.customer_id "
        f"AND q.ordered_at >= {d.day_start('g.first_day')} "
        f"AND q.ordered_at < {d.day_start('g.first_day + 1')} AND {where('q')}"
        ") FROM ("
        f"SELECT p.customer_id, COUNT(DISTINCT {day}) AS days, MIN({day}) AS first_day, "
        f"MAX({day}) AS last_day, SUM(p.total) AS spent FROM purchases AS p WHERE {where('p')} "
        f"GROUP BY p.customer_id) AS g ORDER BY customer_id"
    )


def _sql_summary(uow: Any, dialect: Dialect, period: Period, currency: str | None) -> Summary:
    end = dialect.instant(period.end)
    params: list[Any] = [end] if currency is None else [end, currency]
    rows = uow.select(summary_sql(dialect, currency=currency is not None), params * 2)
    return Summary.from_days(period, rows, dialect.from_money)


# ---- Python, for storage without SQL ----


def every(uow: UnitOfWork, attribute: str, page: int = 1000) -> Iterator[Any]:
    """Every record of one repository (purchases, interactions, cases...) in id order, read a
    page at a time so a large table is never held whole."""
    repo = getattr(uow, attribute)
    after: str | None = None
    while batch := repo.list(after=after, limit=page):
        yield from batch
        after = batch[-1].id


def python_rows(
    purchases: Iterable[Purchase], period: Period, currency: str | None = None
) -> list[tuple[str, int, int, int, float, float]]:
    """The summary rows computed in Python: the reference the SQL must agree with."""
    by_day: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for purchase in purchases:
        if purchase.ordered_at >= period.end or (currency and purchase.currency != currency):
            continue
        day = (purchase.ordered_at.date() - EPOCH_DAY).days
        by_day[purchase.customer_id][day] += purchase.total.amount
    rows = []
    for customer_id in sorted(by_day):
        days = by_day[customer_id]
        first, last = min(days), max(days)
        spent = sum(days.values(), Decimal(0))
        rows.append((customer_id, len(days), first, last, float(spent), float(spent - days[first])))
    return rows


def summarize(
    uow: UnitOfWork,
    as_of: date | datetime,
    *,
    unit_days: float = 7.0,
    currency: str | None = None,
) -> Summary:
    """The summary of every customer who bought before `as_of` (see `Period.as_of`).

    Amounts of different currencies are added as they are; pass `currency` to
    keep one.
    """
    period = Period.as_of(as_of, unit_days)
    dialect = dialect_of(uow)
    if dialect is not None:
        try:
            return _sql_summary(uow, dialect, period, currency)
        except Unsupported:
            pass  # the dialect has no day arithmetic: the same figures from Python
    return Summary.from_days(period, python_rows(every(uow, "purchases"), period, currency))


def summary_of(
    purchases: Sequence[Purchase], as_of: date | datetime, *, unit_days: float = 7.0
) -> Summary:
    """The summary of purchases already in hand (tests, small imports)."""
    period = Period.as_of(as_of, unit_days)
    return Summary.from_days(period, python_rows(purchases, period))
