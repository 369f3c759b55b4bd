"""Cohorts and churn: who came when, who stayed, and what they spent.

Definitions (calendar months in UTC, purchases before `as_of`):

- A customer's cohort is the month of their first purchase.
- Month k of a cohort is the k-th calendar month after it (k = 0: the month itself).
- Retention in month k: the share of the cohort who bought in that month (1 at k = 0).
- Revenue in month k: what the cohort spent in that month, per currency (or converted
  into one currency at each day's rate, see `crmcore.exchange`); never a sum of two.
- Active at the end of a month: bought in the `window` months up to and including it.
  Churn rate of a month: customers active at the end of the month before and not at
  its end, over those active at the end of the month before.

Reads one total per customer, day and currency (`stored_day_totals`), never every purchase.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from crmcore.errors import ValidationError
from crmcore.exchange import ExchangeRates, convert
from crmcore.ports import UnitOfWork
from crmcore.scoring import arguments
from crmcore.scoring.summary import EPOCH_DAY, DayTotal, Period, every, stored_day_totals
from crmcore.sql.dialect import dialect_of
from crmcore.values import Money

Month = tuple[int, int]


def _month(day: int) -> Month:
    moment = EPOCH_DAY + timedelta(days=day)
    return moment.year, moment.month


def _months_between(start: Month, end: Month) -> int:
    return (end[0] - start[0]) * 12 + end[1] - start[1]


def _label(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


@attrs.frozen
class Cohort:
    month: str
    """The acquisition month, "YYYY-MM"."""
    customers: int
    active: list[int]
    """Customers who bought in month k, for k = 0 .. the last month before `as_of`."""
    revenue: list[dict[str, Decimal]]
    """What the cohort spent in month k, per currency."""

    @property
    def retention(self) -> list[float]:
        return [n / self.customers for n in self.active]


def cohort_table(
    uow: UnitOfWork, as_of: date | datetime, *, currency: str | None = None,
    rates: ExchangeRates | None = None,
) -> list[Cohort]:
    """Cohorts by acquisition month, oldest first (see the module's definitions). Revenue is
    per currency, or all in `currency` with `rates`."""
    currency, rates = arguments.currency(currency), arguments.rates(rates)
    if rates is not None and currency is None:
        raise ValidationError("currency", None, "name the currency to convert into")
    return cohorts_of(stored_day_totals(uow, Period.as_of(as_of)), Period.as_of(as_of).through,
                      currency=currency, rates=rates)


def cohorts_of(
    day_totals: list[DayTotal], through: date, *, currency: str | None = None,
    rates: ExchangeRates | None = None,
) -> list[Cohort]:
    """The cohort table of day totals in hand."""
    first: dict[str, int] = {}
    for customer_id, day, _, _ in day_totals:
        first[customer_id] = min(day, first.get(customer_id, day))
    last_month = (through.year, through.month)
    members: dict[Month, int] = defaultdict(int)
    for day in first.values():
        members[_month(day)] += 1
    active: dict[Month, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    revenue: dict[Month, dict[int, dict[str, Decimal]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Decimal)))
    for customer_id, day, code, amount in day_totals:
        cohort = _month(first[customer_id])
        k = _months_between(cohort, _month(day))
        active[cohort][k].add(customer_id)
        if rates is not None and currency is not None and code != currency:
            amount = convert(Money(amount, code), currency, EPOCH_DAY + timedelta(days=day), rates).amount
            code = currency
        revenue[cohort][k][code] += amount
    table = []
    for cohort in sorted(members):
        span = _months_between(cohort, last_month) + 1
        table.append(Cohort(
            _label(cohort), members[cohort], [len(active[cohort].get(k, ())) for k in range(span)],
            [dict(sorted(revenue[cohort].get(k, {}).items())) for k in range(span)]))
    return table


NO_SEGMENT = "(none)"
"""The segment of customers without one (no tier)."""


@attrs.frozen
class ChurnRate:
    month: str
    segment: str | None
    """The customers' segment (their tier by default), None for everyone."""
    active_before: int
    """Active at the end of the month before."""
    churned: int

    @property
    def rate(self) -> float | None:
        return self.churned / self.active_before if self.active_before else None


def churn_rates(
    uow: UnitOfWork, as_of: date | datetime, *, window: int = 3,
    segment: Callable[[Any], str | None] | None = None,
) -> list[ChurnRate]:
    """Churn rate of every month (see the module's definitions), for everyone (segment None)
    and per segment: the customer's tier unless `segment` maps a Customer to another label."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValidationError("window", window, "must be a whole number of months >= 1")
    arguments.function(segment, "segment")
    period = Period.as_of(as_of)
    months: dict[str, set[Month]] = defaultdict(set)
    for customer_id, day, _, _ in stored_day_totals(uow, period):
        months[customer_id].add(_month(day))
    labels = _segments(uow, segment)
    return churn_of(months, labels, (period.through.year, period.through.month), window)


def _segments(uow: UnitOfWork, segment: Callable[[Any], str | None] | None) -> Mapping[str, str | None]:
    if segment is None and dialect_of(uow) is not None:
        return {str(i): t for i, t in uow.select("SELECT id, tier FROM customers")}  # type: ignore[attr-defined]
    label = arguments.function(segment, "segment") or (lambda c: c.tier)
    found = {c.id: arguments.calling(label, "segment", c.id, c) for c in every(uow, "customers")}
    for customer_id, name in found.items():
        if name is not None and not isinstance(name, str):
            raise ValidationError("segment", customer_id, f"gave {name!r}: a label must be text or None")
    return found


def churn_of(
    months: Mapping[str, set[Month]], labels: Mapping[str, str | None], last: Month, window: int,
) -> list[ChurnRate]:
    """Churn per month and segment from each customer's purchase months."""
    if not months:
        return []
    start = min(min(m) for m in months.values())
    span = _months_between(start, last) + 1
    calendar = [_add(start, k) for k in range(span)]
    counts: dict[tuple[int, str | None], list[int]] = defaultdict(lambda: [0, 0])
    for customer_id, bought in months.items():
        index = sorted(_months_between(start, m) for m in bought)
        active = [False] * span
        for k in index:
            for j in range(k, min(k + window, span)):
                active[j] = True
        for k in range(1, span):
            if active[k - 1]:
                for group in (None, labels.get(customer_id) or NO_SEGMENT):
                    counts[k, group][0] += 1
                    counts[k, group][1] += not active[k]
    found = [ChurnRate(_label(calendar[k]), group, before, churned)
             for (k, group), (before, churned) in counts.items()]
    return sorted(found, key=lambda c: (c.month, c.segment is not None, c.segment or ""))


def _add(month: Month, k: int) -> Month:
    index = month[0] * 12 + month[1] - 1 + k
    return index // 12, index % 12 + 1
