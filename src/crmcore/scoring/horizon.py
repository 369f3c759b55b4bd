"""The horizon of a lifetime value: how many periods, how long each is, and the discount.

The period length is stated, never implied, and travels with every valuation:

- `CALENDAR_MONTH` (the default): period k ends k calendar months after the last
  day of the history (so a month is 28 to 31 days, as a finance team counts it);
- `LIFETIMES_MONTH`: 4.345 weeks (30.415 days), the convention of the `lifetimes`
  package's `customer_lifetime_value(..., freq="W")`;
- any positive number of days (e.g. 30.0, lifetimes' `freq="D"`).

Discounting is per period: the purchases of period k are worth (1 + discount)^-k.
"""

from __future__ import annotations

import math
from datetime import date

import attrs
from dateutil.relativedelta import relativedelta

from crmcore.errors import ValidationError

CALENDAR_MONTH = "calendar month"
LIFETIMES_MONTH = "4.345 weeks"
LIFETIMES_MONTH_DAYS = 4.345 * 7


MAX_PERIODS = 1200
"""A hundred years of months: a horizon is a forecast, and each period costs a column."""


def _length(value: str | float) -> str | float:
    if isinstance(value, str) and value in (CALENDAR_MONTH, LIFETIMES_MONTH):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise ValidationError("period", value,
                              f"must be {CALENDAR_MONTH!r}, {LIFETIMES_MONTH!r} or a number of days > 0")
    return float(value)


def periods_of(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PERIODS:
        raise ValidationError("periods", value, f"must be a whole number from 1 to {MAX_PERIODS}")
    return value


def discount_of(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1 < value < math.inf:
        raise ValidationError("discount", value, "must be a finite number > -1")
    return float(value)


@attrs.frozen
class Horizon:
    periods: int = attrs.field(default=12, converter=periods_of)
    period: str | float = attrs.field(default=CALENDAR_MONTH, converter=_length)
    discount: float = attrs.field(default=0.01, converter=discount_of)
    """Per period."""

    def ends(self, through: date, unit_days: float) -> list[float]:
        """The end of each period, in the model's time unit from the last day of the history."""
        if self.period == CALENDAR_MONTH:
            return [(through + relativedelta(months=k) - through).days / unit_days
                    for k in range(1, self.periods + 1)]
        days = LIFETIMES_MONTH_DAYS if self.period == LIFETIMES_MONTH else float(self.period)
        return [k * days / unit_days for k in range(1, self.periods + 1)]

    def weights(self) -> list[float]:
        return [(1.0 + self.discount) ** -k for k in range(1, self.periods + 1)]

    def describe(self) -> str:
        if self.period == CALENDAR_MONTH:
            length = f"{self.periods} calendar months"
        else:
            days = self.period if isinstance(self.period, str) else f"{self.period:g} days"
            length = f"{self.periods} periods of {days}"
        return f"{length}, discounted {self.discount:.2%} a period"
