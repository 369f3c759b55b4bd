"""The forecast: what the pipeline stood at, as of an instant, by close month and owner or team.

For every opportunity, its step as of the instant says its stage, probability,
amount and expected close date. Per (month, owner or team, currency): `won` (closed
won), `pipeline` (every open amount), `best_case` and `commit` (open amounts whose
probability reaches the thresholds), and `weighted` (amount times probability).
Amounts stay in their currency; `in_currency` converts with dated rates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal

import attrs

from crmcore.errors import ValidationError
from crmcore.exchange import ExchangeRates, convert
from crmcore.ports import UnitOfWork
from crmcore.sales.query import SqlPlan, Step, cents, month, plan, steps
from crmcore.values import Money

BY = ("owner", "team")
FIGURES = ("won", "pipeline", "best_case", "commit", "weighted")


@attrs.frozen
class ForecastLine:
    period: str | None
    """Close month, YYYY-MM (None: no close date yet)."""
    who: str | None
    """Owner or team (None when not set, or when not grouped)."""
    currency: str
    count: int
    won: Decimal
    pipeline: Decimal
    best_case: Decimal
    commit: Decimal
    weighted: Decimal

    def money(self, figure: str) -> Money:
        return Money(getattr(self, figure), self.currency)


def _check(by: str | None, commit: float, best_case: float) -> None:
    if by is not None and by not in BY:
        raise ValidationError("by", by, f"must be one of {BY} or None")
    for name, value in (("commit", commit), ("best_case", best_case)):
        if not 0 <= value <= 1:
            raise ValidationError(name, value, "must be a probability between 0 and 1")
    if best_case > commit:
        raise ValidationError("best_case", best_case, "must not exceed the commit threshold")


def forecast(uow: UnitOfWork, as_of: datetime, *, pipeline: str | None = None,
             by: str | None = "owner", commit: float = 0.7,
             best_case: float = 0.4) -> list[ForecastLine]:
    """Forecast lines ordered by period, who and currency (periods None last)."""
    _check(by, commit, best_case)
    sql = plan(uow, as_of, pipeline)
    if sql is None:
        lines = _python(steps(uow, as_of, pipeline), by, commit, best_case)
    else:
        lines = _sql(uow, sql, by, commit, best_case)
    return sorted(lines, key=_order)


def _sql(uow: UnitOfWork, sql: SqlPlan, by: str | None, commit: float,
         best_case: float) -> list[ForecastLine]:
    open_ = "stage NOT IN ('won', 'lost')"
    rows = sql.run(uow, (
        f"SELECT {sql.month('close_date')}, {by or 'NULL'}, currency, count(*), "  # noqa: S608
        "sum(CASE WHEN stage = 'won' THEN amount ELSE 0 END), "
        f"sum(CASE WHEN {open_} THEN amount ELSE 0 END), "
        f"sum(CASE WHEN {open_} AND probability >= ? THEN amount ELSE 0 END), "
        f"sum(CASE WHEN {open_} AND probability >= ? THEN amount ELSE 0 END), "
        f"sum(CASE WHEN {open_} THEN amount * {sql.exact('probability')} ELSE 0 END) "
        "FROM h WHERE next_at IS NULL AND amount IS NOT NULL AND stage <> 'lost' "
        "GROUP BY 1, 2, 3"
    ), [best_case, commit])
    return [
        ForecastLine(period, who, currency, int(count), sql.money(won), sql.money(pipe),
                     sql.money(best), sql.money(com), cents(sql.money(weighted)))
        for period, who, currency, count, won, pipe, best, com, weighted in rows
    ]


def _order(line: ForecastLine) -> tuple[bool, str, bool, str, str]:
    return (line.period is None, line.period or "", line.who is None, line.who or "", line.currency)


def _python(found: Iterable[Step], by: str | None, commit: float,
            best_case: float) -> list[ForecastLine]:
    sums: dict[tuple[str | None, str | None, str], list[Decimal]] = defaultdict(
        lambda: [Decimal(0)] * 6)
    for step in found:
        row = step.row
        if not step.current or row.amount is None or row.currency is None or row.stage == "lost":
            continue
        key = (month(row.close_date), getattr(row, by) if by else None, row.currency)
        acc = sums[key]
        acc[0] += 1
        if row.stage == "won":
            acc[1] += row.amount
            continue
        acc[2] += row.amount
        p = row.probability
        if p is not None:
            acc[3] += row.amount if p >= best_case else 0
            acc[4] += row.amount if p >= commit else 0
            acc[5] += row.amount * Decimal(repr(p))
    return [ForecastLine(period, who, currency, int(a[0]), a[1], a[2], a[3], a[4], cents(a[5]))
            for (period, who, currency), a in sums.items()]


def in_currency(lines: Iterable[ForecastLine], currency: str, on: date,
                rates: ExchangeRates) -> list[ForecastLine]:
    """The lines of each (period, who) converted to one currency at the rates of day `on`
    (each figure converted, rounded to the cent, then added)."""
    merged: dict[tuple[str | None, str | None], list[Decimal]] = defaultdict(
        lambda: [Decimal(0)] * 6)
    for line in lines:
        acc = merged[(line.period, line.who)]
        acc[0] += line.count
        for index, figure in enumerate(FIGURES, start=1):
            acc[index] += convert(line.money(figure), currency, on, rates).amount
    return sorted((ForecastLine(p, w, currency, int(a[0]), *a[1:]) for (p, w), a in merged.items()),
                  key=_order)


@attrs.frozen
class Attainment:
    who: str | None
    period: str
    quota: Money
    won: Money

    @property
    def share(self) -> float:
        return float(self.won.amount / self.quota.amount) if self.quota.amount else 0.0


def attainment(lines: Iterable[ForecastLine], quotas: Mapping[tuple[str | None, str], Money],
               on: date, rates: ExchangeRates) -> list[Attainment]:
    """Won against quota per (who, period); won amounts in other currencies are converted
    to the quota's at the rates of day `on`."""
    held = list(lines)
    found = []
    for (who, period), quota in sorted(quotas.items(), key=lambda q: (q[0][1], q[0][0] or "")):
        if quota.amount <= 0:
            raise ValidationError(f"quotas[{who!r}, {period!r}]", quota, "must be positive")
        won = Money.zero(quota.currency)
        for line in held:
            if line.who == who and line.period == period:
                won = won + convert(line.money("won"), quota.currency, on, rates)
        found.append(Attainment(who, period, quota, won))
    return found
