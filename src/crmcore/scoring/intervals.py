"""Purchase intervals: how often each customer buys again, and when the next purchase is due.

The typical interval is the mean gap between purchase days, (last - first) /
repeats, read straight off the summary; a customer with a single purchase day
has none yet.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from crmcore.scoring.summary import Summary


@attrs.frozen
class Repurchase:
    customer_id: str
    last_purchase: date
    purchases: int
    """Purchase days so far."""
    interval_days: float | None
    due: date | None
    overdue_days: int | None
    """Days past the due date at the end of the period (negative: not yet due)."""

    def explain(self) -> dict[str, str | int | float]:
        found: dict[str, str | int | float] = {
            "last_purchase": self.last_purchase.isoformat(), "purchases": self.purchases,
        }
        if self.interval_days is not None and self.due is not None:
            found.update(interval_days=self.interval_days, due=self.due.isoformat(),
                         overdue_days=self.overdue_days or 0)
        return found


def repurchase_intervals(summary: Summary) -> list[Repurchase]:
    """Each summarised customer's interval and due date, in the summary's order."""
    period = summary.period
    unit = period.unit_days
    out = []
    for i, customer_id in enumerate(summary.customer_ids):
        idle = round((summary.T[i] - summary.recency[i]) * unit)
        last = period.through - timedelta(days=idle)
        repeats = int(summary.frequency[i])
        if not repeats:
            out.append(Repurchase(customer_id, last, 1, None, None, None))
            continue
        interval = round(summary.recency[i] * unit) / repeats
        due = last + timedelta(days=round(interval))
        out.append(Repurchase(customer_id, last, repeats + 1, interval, due,
                              (period.through - due).days))
    return out
