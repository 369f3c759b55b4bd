"""The per-customer purchase summary every "buy till you die" model is fitted on.

For each customer who bought before the end of the period: `frequency` (repeat
purchase days), `recency` (time from the first to the last purchase day), `T`
(time from the first purchase day to the last day of the period), `monetary`
(the mean value of the repeat purchase days, 0 without any) and `total` (all
spend). Purchases of one customer on one UTC day count as one purchase (the
CDNOW rule); times are in a configurable unit (7 days for CDNOW's weeks).

Money is never added across currencies: a summary is of one currency, either
because every purchase is in it (checked in the same pass), because the others
are left out (`currency=`), or because every purchase day is converted to it at
that day's rate (`currency=` with `rates=`, see `crmcore.exchange`).

Storage keeps per customer and currency totals in step with every purchase write
(`scoring.totals`): the summary of everything bought so far (no purchase at or
after the end of the period, e.g. as of now) reads those, one row per customer
and currency, without touching the purchases. A summary the totals cannot answer
(a cutoff before the latest purchase, such as a calibration period; a
conversion; purchase days across currencies) is aggregated from the purchases:
in SQL with one aggregation query, never by loading every purchase; in Python
for the memory adapter. `Summary.source` says which. A conversion reads one
total per customer, day and currency (not every purchase) and converts in
Python, the one place conversion is done.
"""

from __future__ import annotations

import array
import itertools
import math
import operator
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.exchange import ExchangeRates, convert
from crmcore.model import Purchase
from crmcore.ports import UnitOfWork
from crmcore.scoring import arguments
from crmcore.scoring.bulk import paused_collection
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
    currency: str | None = None
    """What `monetary` and `total` are in (None: no purchase at all)."""
    converted: bool = False
    """True when amounts in other currencies were converted into `currency` at their day's rate."""
    measure: str = "revenue"
    """What the money figures measure: "revenue", or "margin" (see `scoring.margin`)."""
    source: str = "purchases"
    """Where the figures were read: "purchase_totals" (the totals kept with every purchase
    write: everything bought so far) or "purchases" (aggregated from them: a cutoff before
    the latest purchase, a conversion, margins)."""

    def explain(self) -> dict[str, str | int | float | bool | None]:
        """What the summary is of and where it was read."""
        return {"customers": len(self), "end": self.period.end.isoformat(),
                "unit_days": self.period.unit_days, "currency": self.currency,
                "converted": self.converted, "measure": self.measure, "source": self.source}

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
        cls, period: Period, rows: Iterable[Sequence[Any]], scale: float = 1.0,
        *, currency: str | None = None, converted: bool = False, source: str = "purchases",
    ) -> Summary:
        """Build from rows starting (customer id, purchase days, first day, last day, total,
        repeat total), days counted from the epoch, amounts in units of 1/`scale` (further
        columns are ignored). The repeat total of a customer with one purchase day is 0."""
        table = rows if isinstance(rows, list) else list(rows)
        # a column at a time (itemgetter in C): transposing with zip(*rows) is ten times slower
        ids, days, firsts, lasts, spent, repeat = (list(map(operator.itemgetter(k), table))
                                                   for k in range(6))
        units = itertools.repeat(period.unit_days)
        scales = itertools.repeat(scale)
        # map() over C functions: several times faster than a loop for a million customers
        repeats = list(map((1).__rsub__, days))
        return cls(
            period, list(map(str, ids)),
            _doubles(repeats),
            _doubles(map(operator.truediv, map(operator.sub, lasts, firsts), units)),
            _doubles(map(operator.truediv, map(period.through_day.__sub__, firsts), units)),
            # repeat total / scale / max(repeats, 1): 0 for a single purchase day
            _doubles(map(operator.truediv, map(operator.truediv, repeat, scales),
                         map(max, repeats, itertools.repeat(1)))),
            _doubles(map(operator.truediv, spent, itertools.repeat(scale))),
            currency, converted, source=source,
        )


# ---- SQL push-down ----


def _dialect(dialect: str | Dialect) -> Dialect:
    if isinstance(dialect, Dialect):
        return dialect
    if dialect not in BUILTIN:
        raise ValidationError("dialect", dialect, f"no summary query for it; known: {sorted(BUILTIN)}")
    return BUILTIN[dialect]


def summary_sql(dialect: str | Dialect, *, currency: bool = False) -> str:
    """Purchases grouped by customer in one pass along the (customer, time, currency, total)
    covering index, and the first purchase day's value looked up by an index range per
    customer: repeat value is total minus that. First and last instants are turned into
    days once per customer; the lowest and highest currency code come out of the same
    pass, so a mix of currencies is seen without a second scan. Parameters: the end of the
    period and (optionally) the currency, twice over. Rows come in no promised order: the
    caller sorts them by id in Python (code-point order on every backend, and cheaper
    than a second sort in the database, since they mostly arrive in index order already)."""
    d = _dialect(dialect)

    def where(table: str) -> str:
        return f"{table}.ordered_at < ?" + (f" AND {table}.currency = ?" if currency else "")

    first = d.epoch_day("g.first_at")
    # built from the dialect's constants only; every value is a bound parameter
    repeat = (
        "spent - (SELECT SUM(q.total) FROM purchases AS q WHERE q.customer_id = g.customer_id "  # noqa: S608
        f"AND q.ordered_at >= {d.day_start(first)} "
        f"AND q.ordered_at < {d.day_start(first + ' + 1')} AND {where('q')})"
    )
    return d.sql(
        f"SELECT customer_id, days, {first}, {d.epoch_day('g.last_at')}, "  # noqa: S608
        f"{d.money_number('spent')}, {d.money_number(repeat)}, low, high FROM ("
        f"SELECT p.customer_id, COUNT(DISTINCT {d.day_key('p.ordered_at')}) AS days, "
        "MIN(p.ordered_at) AS first_at, MAX(p.ordered_at) AS last_at, SUM(p.total) AS spent, "
        "MIN(p.currency) AS low, MAX(p.currency) AS high "
        f"FROM purchases AS p WHERE {where('p')} GROUP BY p.customer_id) AS g"
    )


def day_totals_sql(dialect: str | Dialect) -> str:
    """One total per customer, purchase day and currency, in customer and day order: what a
    conversion needs (rates are per day). Parameter: the end of the period."""
    d = _dialect(dialect)
    return d.sql(
        f"SELECT customer_id, {d.epoch_day('ordered_at')} AS day, currency, SUM(total) "  # noqa: S608
        "FROM purchases WHERE ordered_at < ? GROUP BY customer_id, day, currency "
        "ORDER BY customer_id, day"
    )


class MixedCurrencies(ValidationError):
    """The purchases are in several currencies and no one currency was chosen."""


def _one_currency(found: Iterable[tuple[str, str]]) -> str | None:
    """The one currency of (lowest, highest) code pairs, or MixedCurrencies naming the mix."""
    codes = set(itertools.chain.from_iterable(found))
    if len(codes) > 1:
        raise MixedCurrencies(
            "currency", None,
            f"the purchases are in {', '.join(sorted(codes))}: keep one (currency=) or convert "
            "them to one (currency= with rates=); amounts of two currencies are never added")
    return next(iter(codes), None)


def _sql_summary(uow: Any, dialect: Dialect, period: Period, currency: str | None,
                 amounts: bool) -> Summary:
    end = dialect.instant(period.end)
    params: list[Any] = [end] if currency is None else [end, currency]
    rows = uow.select(summary_sql(dialect, currency=currency is not None), params * 2)
    rows.sort(key=operator.itemgetter(0))
    if not amounts:
        return _without_amounts(Summary.from_days(period, rows))
    code = currency or _one_currency(zip(map(operator.itemgetter(6), rows),
                                         map(operator.itemgetter(7), rows), strict=True))
    return Summary.from_days(period, rows, 10.0**dialect.money_scale, currency=code)


def _from_totals(uow: Any, dialect: Dialect | None, period: Period, currency: str | None,
                 amounts: bool) -> Summary | None:
    """The summary read from the kept totals, or None when they cannot answer it: a purchase
    at or after the end of the period, or purchase days of several currencies together."""
    kept = getattr(uow, "purchase_totals", None)
    if kept is None:
        return None
    latest = kept.latest()
    if latest is not None and latest >= period.end:
        return None
    with paused_collection():  # a million fetched rows: see scoring.bulk
        return _read_totals(uow, kept, dialect, period, currency, amounts)


def _read_totals(uow: Any, kept: Any, dialect: Dialect | None, period: Period, currency: str | None,
                 amounts: bool) -> Summary | None:
    if dialect is None:
        totals = kept.all(currency)
        codes = {t.currency for t in totals}
    elif currency is None:  # which currencies there are, before a million rows are read
        codes = {str(row[0]) for row in uow.select("SELECT DISTINCT currency FROM purchase_totals")}
    else:
        codes = {currency}
    if len(codes) > 1:
        if not amounts:  # one customer's days in two currencies may coincide: the purchases say
            return None
        _one_currency((code, code) for code in codes)  # raises MixedCurrencies, naming them
    if dialect is not None and amounts:
        return _computed_totals(uow, dialect, period, currency or next(iter(codes), None), currency)
    if dialect is None:
        rows = [(t.customer_id, t.days, t.first_day, t.last_day, float(t.total),
                 float(t.total - t.first_day_total)) for t in totals]
        scale = 1.0
    else:
        where, params = (" WHERE currency = ?", [currency]) if currency is not None else ("", [])
        rows = uow.select(dialect.sql(
            f"SELECT customer_id, days, first_day, last_day, {dialect.money_number('total')}, "  # noqa: S608
            f"{dialect.money_number('total - first_day_total')} FROM purchase_totals{where}"), params)
        scale = 10.0**dialect.money_scale
    rows.sort(key=operator.itemgetter(0))
    if not amounts:
        return attrs.evolve(_without_amounts(Summary.from_days(period, rows)),
                            source="purchase_totals")
    return Summary.from_days(period, rows, scale, currency=currency or next(iter(codes), None),
                             source="purchase_totals")


def _computed_totals(uow: Any, dialect: Dialect, period: Period, code: str | None,
                     currency: str | None) -> Summary:
    """The summary's columns computed by the database from the totals, as `Summary.from_days`
    computes them (the same IEEE operations in the same order), so Python only collects them:
    a million customers cost one fetch, not a fetch and five passes."""
    unit, scale = float(period.unit_days), float(10**dialect.money_scale)
    bind = dialect.placeholder
    repeats = "CASE WHEN days > 1 THEN days - 1 ELSE 1 END"
    where, params = (f" WHERE currency = {bind}", [currency]) if currency is not None else ("", [])
    rows = uow.select(
        f"SELECT customer_id, days - 1, (last_day - first_day) / {bind}, "  # noqa: S608
        f"({bind} - first_day) / {bind}, "
        f"({dialect.money_number('total - first_day_total')}) / {bind} / ({repeats}), "
        f"({dialect.money_number('total')}) / {bind} FROM purchase_totals{where}",
        [unit, period.through_day, unit, scale, scale, *params])
    rows.sort(key=operator.itemgetter(0))
    frequency, recency, age, monetary, total = (_doubles(map(operator.itemgetter(k), rows))
                                                for k in range(1, 6))
    return Summary(period, list(map(operator.itemgetter(0), rows)), frequency, recency, age,
                   monetary, total, code, source="purchase_totals")


def _without_amounts(summary: Summary) -> Summary:
    """Purchase days only: amounts of several currencies are not figures, so they go."""
    nothing = _doubles(itertools.repeat(math.nan, len(summary)))
    return attrs.evolve(summary, monetary=nothing, total=_doubles(nothing), currency=None)


def currencies(uow: UnitOfWork, as_of: date | datetime) -> list[str]:
    """The currencies of the purchases before `as_of`, in code order."""
    period = Period.as_of(as_of)
    dialect = dialect_of(uow)
    kept = getattr(uow, "purchase_totals", None)
    latest = None if kept is None else kept.latest()
    everything = kept is not None and (latest is None or latest < period.end)
    if dialect is None:
        if everything:
            return sorted({row.currency for row in kept.all()})  # type: ignore[union-attr]
        return sorted({p.currency for p in every(uow, "purchases") if p.ordered_at < period.end})
    if everything:  # the kept totals: one row per customer and currency, not every purchase
        rows = uow.select("SELECT DISTINCT currency FROM purchase_totals")  # type: ignore[attr-defined]
    else:
        rows = uow.select(  # type: ignore[attr-defined]
            dialect.sql("SELECT DISTINCT currency FROM purchases WHERE ordered_at < ?"),
            [dialect.instant(period.end)])
    return sorted(str(row[0]) for row in rows)


# ---- Python, for storage without SQL ----


def every(uow: UnitOfWork, attribute: str, page: int = 1000) -> Iterator[Any]:
    """Every record of one repository (purchases, interactions, cases...) in id order, read a
    page at a time so a large table is never held whole."""
    repo = getattr(uow, attribute)
    after: str | None = None
    while batch := repo.list(after=after, limit=page):
        yield from batch
        after = batch[-1].id


DayTotal = tuple[str, int, str, Decimal]
"""(customer id, day since the epoch, currency, total of that customer's purchases that day)."""


def python_day_totals(purchases: Iterable[Purchase], period: Period) -> list[DayTotal]:
    """The day totals of purchases in hand, in customer and day order."""
    found: dict[tuple[str, int, str], Decimal] = defaultdict(Decimal)
    for purchase in purchases:
        if purchase.ordered_at < period.end:
            day = (purchase.ordered_at.date() - EPOCH_DAY).days
            found[purchase.customer_id, day, purchase.currency] += purchase.total.amount
    return [(c, d, code, amount) for (c, d, code), amount in sorted(found.items())]


def rows_of_day_totals(
    day_totals: Iterable[DayTotal], *, currency: str | None = None,
    rates: ExchangeRates | None = None,
) -> tuple[list[tuple[str, int, int, int, float, float]], str | None]:
    """Summary rows and their currency from day totals in customer order.

    Without `rates`, `currency` keeps that currency's purchases only, and None requires
    a single currency; with `rates`, every amount is converted into `currency` at the
    rate of its own day before anything is added.
    """
    if rates is not None and currency is None:
        raise ValidationError("currency", None, "name the currency to convert into")
    by_customer: dict[str, dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    seen: set[str] = set()
    for customer_id, day, code, amount in day_totals:
        if rates is not None and code != currency:
            on = EPOCH_DAY + timedelta(days=day)
            amount = convert(v.Money(amount, code), currency, on, rates).amount  # type: ignore[arg-type]
        elif currency is not None and code != currency:
            continue
        else:
            seen.add(code)
        by_customer[customer_id][day] += amount
    found = currency or _one_currency((code, code) for code in seen)
    rows = []
    for customer_id in sorted(by_customer):
        days = by_customer[customer_id]
        first, last = min(days), max(days)
        spent = sum(days.values(), Decimal(0))
        rows.append((customer_id, len(days), first, last, float(spent), float(spent - days[first])))
    return rows, found


def stored_day_totals(uow: UnitOfWork, period: Period) -> list[DayTotal]:
    """The day totals of the stored purchases before the end of `period`: one aggregation
    in SQL, a paged pass in Python without it."""
    dialect = dialect_of(uow)
    if dialect is not None:
        with suppress(Unsupported):  # no day arithmetic in this dialect: the same totals from Python
            sql = day_totals_sql(dialect)
            return [
                (str(c), int(d), str(code), dialect.exact_money(amount))
                for c, d, code, amount in uow.select(  # type: ignore[attr-defined]
                    sql, [dialect.instant(period.end)])
            ]
    return python_day_totals(every(uow, "purchases"), period)


def python_rows(
    purchases: Iterable[Purchase], period: Period, currency: str | None = None
) -> list[tuple[str, int, int, int, float, float]]:
    """The summary rows computed in Python: the reference the SQL must agree with."""
    return rows_of_day_totals(python_day_totals(purchases, period), currency=currency)[0]


def summarize(
    uow: UnitOfWork,
    as_of: date | datetime,
    *,
    unit_days: float = 7.0,
    currency: str | None = None,
    rates: ExchangeRates | None = None,
    amounts: bool = True,
) -> Summary:
    """The summary of every customer who bought before `as_of` (see `Period.as_of`), in one
    currency: the only one there is, `currency` alone, or everything converted into
    `currency` with `rates`. A mix of currencies without either raises MixedCurrencies.

    `amounts=False` asks for purchase days only (any currency, `monetary` and `total` NaN):
    what repurchase intervals need.
    """
    period = Period.as_of(as_of, unit_days)
    currency, rates = arguments.currency(currency), arguments.rates(rates)
    dialect = dialect_of(uow)
    if rates is None and (kept := _from_totals(uow, dialect, period, currency, amounts)) is not None:
        return kept
    if dialect is not None and rates is None:
        with suppress(Unsupported):  # no day arithmetic in this dialect: the same figures from Python
            return _sql_summary(uow, dialect, period, currency, amounts)
    day_totals = stored_day_totals(uow, period)
    if not amounts:
        keep = [(c, d, "", amount) for c, d, _, amount in day_totals]
        return _without_amounts(Summary.from_days(period, rows_of_day_totals(keep)[0]))
    rows, found = rows_of_day_totals(day_totals, currency=currency, rates=rates)
    return Summary.from_days(period, rows, currency=found, converted=rates is not None)


def summary_of(
    purchases: Sequence[Purchase], as_of: date | datetime, *, unit_days: float = 7.0,
    currency: str | None = None, rates: ExchangeRates | None = None,
) -> Summary:
    """The summary of purchases already in hand (tests, small imports)."""
    period = Period.as_of(as_of, unit_days)
    currency, rates = arguments.currency(currency), arguments.rates(rates)
    rows, found = rows_of_day_totals(python_day_totals(purchases, period), currency=currency,
                                     rates=rates)
    return Summary.from_days(period, rows, currency=found, converted=rates is not None)
