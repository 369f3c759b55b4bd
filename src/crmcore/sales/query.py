"""What forecasts and cycle analytics share: the stage history as of an instant.

In SQL, a CTE `h` holds every step taken at or before the instant with, as a query
needs them (joined by key), the next step's time (`next_at`, NULL for the step an opportunity stands
in), the previous close date and the time it opened; the figures are GROUP BYs over it. Without SQL
(the memory adapter) the same steps are built in Python from the opportunities.
Values are bound parameters; what differs by database is spelt by its `Dialect`.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs

from crmcore.ports import UnitOfWork
from crmcore.sales.history import HistoryRow, all_rows
from crmcore.scoring.summary import every
from crmcore.sql.dialect import Dialect, Unsupported, dialect_of

CENT = Decimal("0.01")

JOINED = {
    "next_at": ("n.at AS next_at", "LEFT JOIN opportunity_history n ON n.opportunity_id = "
                "o.opportunity_id AND n.seq = o.seq + 1 AND n.at <= ?", True),
    "prev_close": ("p.close_date AS prev_close", "LEFT JOIN opportunity_history p ON "
                   "p.opportunity_id = o.opportunity_id AND p.seq = o.seq - 1", False),
    "opened_at": ("f.at AS opened_at", "JOIN opportunity_history f ON f.opportunity_id = "
                  "o.opportunity_id AND f.seq = 0", False),
}
"""What a step is joined with, by primary key: the next step (if taken by the instant), the
previous one, the first. A query asks only for what it reads. (Steps are numbered 0, 1, ...
in time order. Joins by key beat window functions here: SQLite runs each window
function as one more pass over the rows.)"""


@attrs.frozen
class SqlPlan:
    """A query over the history CTE, for one dialect, with its parameters."""

    dialect: Dialect
    as_of: datetime
    pipeline: str | None

    def month(self, day: str) -> str:
        return self.dialect.date_month(day)

    def days(self, later: str, earlier: str) -> str:
        return self.dialect.days_between(later, earlier)

    def date_days(self, later: str, earlier: str) -> str:
        return self.dialect.dates_between(later, earlier)

    def exact(self, factor: str) -> str:
        return self.dialect.money_factor(factor)

    def cte(self, needs: Sequence[str]) -> tuple[str, list[Any]]:
        end = self.dialect.instant(self.as_of)
        columns = "".join(f", {JOINED[name][0]}" for name in needs)
        joins = "".join(f" {JOINED[name][1]}" for name in needs)
        params: list[Any] = [end for name in needs if JOINED[name][2]]
        params.append(end)
        where = "o.at <= ?"
        if self.pipeline is not None:
            params.append(self.pipeline)
            where += " AND o.pipeline = ?"
        return (
            "WITH h AS (SELECT o.opportunity_id, o.seq, o.at AS taken_at, o.stage, o.probability, "  # noqa: S608
            "o.close_date, o.currency, o.amount, o.owner, o.team"
            f"{columns} FROM opportunity_history o{joins} WHERE {where}) ",
            params,
        )

    def run(self, uow: UnitOfWork, body: str, params: Sequence[Any] = (),
            needs: Sequence[str] = ("next_at",)) -> list[tuple[Any, ...]]:
        cte, first = self.cte(needs)
        return uow.select(self.dialect.sql(cte + body), [*first, *params])  # type: ignore[attr-defined, no-any-return]

    def money(self, value: Any) -> Decimal:
        """A sum of stored amounts as an exact Decimal."""
        if value is None:
            return Decimal(0)
        return self.dialect.exact_money(Decimal(repr(value)) if isinstance(value, float) else value)

    def instant(self, moment: datetime) -> Any:
        return self.dialect.instant(moment)


def plan(uow: UnitOfWork, as_of: datetime, pipeline: str | None) -> SqlPlan | None:
    """The SQL plan when the storage's dialect spells what these queries need, else None:
    the same figures are then computed in Python."""
    dialect = dialect_of(uow)
    if dialect is None:
        return None
    try:
        dialect.date_month("d"), dialect.days_between("a", "b"), dialect.dates_between("a", "b")
        dialect.money_factor("p")
    except Unsupported:
        return None
    return SqlPlan(dialect, as_of, pipeline)


@attrs.frozen
class Step:
    """A history row as of an instant, with what the SQL window functions add."""

    row: HistoryRow
    next_at: datetime | None
    prev_close: date | None
    opened_at: datetime

    @property
    def current(self) -> bool:
        return self.next_at is None


def steps(uow: UnitOfWork, as_of: datetime, pipeline: str | None) -> Iterator[Step]:
    """The Python twin of the CTE: every step taken at or before `as_of`."""
    chosen = (o for o in every(uow, "opportunities") if pipeline is None or o.pipeline == pipeline)
    yield from steps_of(all_rows(chosen), as_of)


def steps_of(rows: Iterator[HistoryRow], as_of: datetime) -> Iterator[Step]:
    for _, group in itertools.groupby(rows, key=lambda r: r.opportunity_id):
        taken = [r for r in group if r.at <= as_of]
        if not taken:
            continue
        for index, row in enumerate(taken):
            after = taken[index + 1].at if index + 1 < len(taken) else None
            before = taken[index - 1].close_date if index else None
            yield Step(row, after, before, taken[0].at)


def cents(amount: Decimal) -> Decimal:
    from decimal import ROUND_HALF_EVEN

    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def month(day: date | None) -> str | None:
    return None if day is None else f"{day.year:04d}-{day.month:02d}"
