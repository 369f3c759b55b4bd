"""Churn alerts: valuable customers whose probability of still being a customer has fallen
below a threshold (the "about to switch provider" alarm)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from crmcore.errors import ValidationError
from crmcore.scoring import arguments

if TYPE_CHECKING:
    from crmcore.scoring.summary import Summary


@attrs.frozen
class ChurnAlert:
    customer_id: str
    p_alive: float
    value: float
    """What the customer has been worth: total spend so far."""
    since_last: float
    """Time since the last purchase, in the summary's unit."""
    currency: str | None = None
    """What `value` is in (it goes out with the `churn.alert` event: never a bare number)."""
    measure: str = "revenue"

    def explain(self) -> dict[str, str | int | float]:
        found: dict[str, str | int | float] = {
            "p_alive": self.p_alive, "value": self.value, "since_last": self.since_last}
        if self.currency is not None:
            found["currency"] = self.currency
        if self.measure != "revenue":
            found["measure"] = self.measure
        return found


def check(threshold: float, top_share: float, min_value: float | None = None) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise ValidationError("threshold", threshold, "must be a probability between 0 and 1")
    if isinstance(top_share, bool) or not isinstance(top_share, int | float) or not 0 < top_share <= 1:
        raise ValidationError("top_share", top_share, "must be in (0, 1]")
    if min_value is not None:
        arguments.finite(min_value, "min_value")


def churn_alerts(
    summary: Summary,
    p_alive: Sequence[float],
    *,
    threshold: float = 0.3,
    min_value: float | None = None,
    top_share: float = 0.2,
) -> list[ChurnAlert]:
    """Customers under `threshold` whose value is at least `min_value` (default: the value
    that puts a customer in the top `top_share` of all), most valuable first."""
    check(threshold, top_share, min_value)
    if len(p_alive) != len(summary):
        raise ValidationError("p_alive", len(p_alive), f"needs one value per customer ({len(summary)})")
    values = list(summary.total)
    if min_value is None:
        ranked = sorted(values, reverse=True)
        min_value = ranked[max(0, int(len(ranked) * top_share) - 1)] if ranked else 0.0
    alerts = [
        ChurnAlert(customer_id, float(p_alive[i]), values[i], summary.since_last(i), summary.currency,
                   summary.measure)
        for i, customer_id in enumerate(summary.customer_ids)
        if p_alive[i] < threshold and values[i] >= min_value
    ]
    return sorted(alerts, key=lambda a: (-a.value, a.customer_id))
