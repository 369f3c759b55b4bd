"""How far to trust the forecast: what it said at each month's start against what closed.

For every month in a range, the forecast as of the month's first instant for
deals expected to close that month (weighted, commit, best case) is set against
what was won with a close date in that month, as known at the month's end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import attrs
from dateutil.relativedelta import relativedelta

from crmcore.errors import ValidationError
from crmcore.sales.forecast import ForecastLine
from crmcore.sales.query import month

Forecaster = Callable[[datetime], list[ForecastLine]]


@attrs.frozen
class BacktestMonth:
    month: str
    currency: str
    weighted: Decimal
    commit: Decimal
    best_case: Decimal
    won: Decimal
    """What was won with a close date in that month, as known at the month's end."""

    @property
    def error(self) -> Decimal:
        """Forecast minus outcome: above zero, the weighted forecast promised too much."""
        return self.weighted - self.won


def months(start: date, end: date) -> Iterator[datetime]:
    """First instants (UTC) of every month from `start`'s to `end`'s, inclusive."""
    if end < start:
        raise ValidationError("end", end, "must not be before start")
    moment = datetime(start.year, start.month, 1, tzinfo=UTC)
    while moment.date() <= end:
        yield moment
        moment += relativedelta(months=1)


def backtest(forecast: Forecaster, start: date, end: date) -> list[BacktestMonth]:
    found = []
    for first in months(start, end):
        label = month(first.date())
        said = _per_currency(forecast(first), label)
        came = _per_currency(forecast(first + relativedelta(months=1)), label)
        for currency in sorted(set(said) | set(came)):
            before = said.get(currency)
            after = came.get(currency)
            zero = Decimal(0)
            found.append(BacktestMonth(
                label or "", currency,
                before.weighted if before else zero, before.commit if before else zero,
                before.best_case if before else zero, after.won if after else zero,
            ))
    return found


def _per_currency(lines: Iterable[ForecastLine], period: str | None) -> dict[str, ForecastLine]:
    return {line.currency: line for line in lines if line.period == period}


def mean_absolute_error(results: Iterable[BacktestMonth]) -> dict[str, Decimal]:
    """Mean |weighted - won| per currency over the months."""
    errors: dict[str, list[Decimal]] = {}
    for result in results:
        errors.setdefault(result.currency, []).append(abs(result.error))
    return {c: sum(e, Decimal(0)) / len(e) for c, e in sorted(errors.items())}
