"""Per customer and currency purchase totals, kept in step with every purchase write.

The purchase summary (frequency, recency, T, monetary) needs, per customer and
currency, only: the first purchase day and its total, the last purchase day,
the number of distinct purchase days and the total spent. Storage keeps exactly
that in a small table (`purchase_totals`), written in the same transaction as
the purchase, so the summary of everything bought so far reads one row per
customer instead of scanning every purchase.

The incremental rule (`added`) covers a purchase on or after the customer's
last purchase day in that currency, by far the usual case; anything else (a
purchase dated earlier, a merge or unmerge moving purchases, an erasure, a bulk
import) recounts the customer's rows from the purchases (`recount`), so the
table always equals the from-scratch figures. Days are UTC days since
1970-01-01, as everywhere in `scoring.summary`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

import attrs

from crmcore import values as v
from crmcore.model import Purchase

EPOCH_DAY = date(1970, 1, 1)


def epoch_day(moment: datetime) -> int:
    """The UTC day of an instant, counted from 1970-01-01."""
    return (v.utc(moment, "ordered_at").date() - EPOCH_DAY).days


@attrs.frozen
class PurchaseTotal:
    """One customer's purchases in one currency, folded."""

    customer_id: str
    currency: str
    first_day: int
    first_day_total: Decimal
    """What the first purchase day's purchases add up to (the summary leaves it out of the
    repeat value)."""
    last_day: int
    last_at: datetime
    """The latest purchase instant: a summary up to an earlier instant cannot use the row."""
    days: int
    """Distinct purchase days."""
    total: Decimal


def added(current: PurchaseTotal | None, purchase: Purchase) -> PurchaseTotal | None:
    """The row after one more purchase, or None when only a recount can say (the purchase is
    dated before the customer's last purchase day in its currency)."""
    day, amount = epoch_day(purchase.ordered_at), purchase.amount
    if current is None:
        return PurchaseTotal(purchase.customer_id, purchase.currency, day, amount, day,
                             purchase.ordered_at, 1, amount)
    if day < current.last_day:
        return None
    return attrs.evolve(
        current,
        first_day_total=current.first_day_total + (amount if day == current.first_day else 0),
        last_day=day, last_at=max(current.last_at, purchase.ordered_at),
        days=current.days + (day > current.last_day), total=current.total + amount,
    )


def recount(purchases: Iterable[Purchase]) -> list[PurchaseTotal]:
    """The rows of these purchases from scratch, in (customer, currency) order."""
    by_key: dict[tuple[str, str], dict[int, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    latest: dict[tuple[str, str], datetime] = {}
    for purchase in purchases:
        key = (purchase.customer_id, purchase.currency)
        by_key[key][epoch_day(purchase.ordered_at)] += purchase.amount
        latest[key] = max(latest.get(key, purchase.ordered_at), purchase.ordered_at)
    rows = []
    for (customer_id, currency), days in sorted(by_key.items()):
        first, last = min(days), max(days)
        rows.append(PurchaseTotal(customer_id, currency, first, days[first], last,
                                  latest[customer_id, currency], len(days),
                                  sum(days.values(), Decimal(0))))
    return rows
