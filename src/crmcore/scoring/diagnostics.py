"""Does the purchase model fit? The checks the BG/NBD and Pareto/NBD papers show.

- `calibration_holdout`: fit on the history up to one day, then compare the purchases
  each customer was expected to make afterwards with those they made, grouped by
  their calibration frequency (0, 1, ..., `censor`+): the papers' conditional
  expectations table.
- `tracking`: expected against actual repeat purchases of the calibration cohort per
  period, incremental and cumulative (the tracking plots' data).
- `goodness_of_fit`: a chi-square test of the calibration frequency histogram against
  P(X(T) = x) under BG/NBD, the customer's own T for each customer.

A purchase is a purchase day (the summary's rule); customers are those who bought
before the calibration end. These read one total per customer, day and currency
(`stored_day_totals`), not every purchase.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from crmcore.errors import ValidationError
from crmcore.exchange import ExchangeRates
from crmcore.ports import UnitOfWork
from crmcore.scoring.summary import (
    EPOCH_DAY,
    DayTotal,
    Period,
    Summary,
    rows_of_day_totals,
    stored_day_totals,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from crmcore.scoring.clv import BetaGeo, ParetoNBD


@attrs.frozen(eq=False)
class Holdout:
    """The calibration summary, and each of its customers' purchase days in the holdout."""

    calibration: Summary
    holdout_end: date
    """Last day of the holdout (inclusive)."""
    purchases: list[int]
    """Purchase days in the holdout, in the calibration summary's order."""
    duration: float
    """Length of the holdout, in the summary's time unit."""
    first_days: list[int]
    """Each customer's first purchase day (days since the epoch)."""
    repeat_days: dict[int, int]
    """Repeat purchase days of the calibration customers, counted per day, up to the holdout end."""


def calibration_holdout(
    uow: UnitOfWork, calibration_end: date | datetime, holdout_end: date | datetime, *,
    unit_days: float = 7.0, currency: str | None = None, rates: ExchangeRates | None = None,
) -> Holdout:
    """Split the history at `calibration_end` (see `Period.as_of`); the holdout runs to
    `holdout_end`. Money is handled as in `summarize`; counts take every currency."""
    calibration = Period.as_of(calibration_end, unit_days)
    holdout = Period.as_of(holdout_end, unit_days)
    if holdout.end <= calibration.end:
        raise ValidationError("holdout_end", holdout_end, "must come after the calibration end")
    everything = stored_day_totals(uow, holdout)
    before = calibration.through_day
    rows, found = rows_of_day_totals([t for t in everything if t[1] <= before],
                                     currency=currency, rates=rates)
    summary = Summary.from_days(calibration, rows, currency=found, converted=rates is not None)
    days = _days_by_customer(everything)
    first_days = [min(days[c]) for c in summary.customer_ids]
    repeat: dict[int, int] = defaultdict(int)
    for customer_id, first in zip(summary.customer_ids, first_days, strict=True):
        for day in days[customer_id]:
            if day > first:
                repeat[day] += 1
    later = [sum(1 for d in days[c] if d > before) for c in summary.customer_ids]
    return Holdout(summary, holdout.through, later, (holdout.through - calibration.through).days / unit_days,
                   first_days, dict(repeat))


def _days_by_customer(day_totals: Sequence[DayTotal]) -> dict[str, set[int]]:
    found: dict[str, set[int]] = defaultdict(set)
    for customer_id, day, _, _ in day_totals:
        found[customer_id].add(day)
    return found


@attrs.frozen
class HoldoutRow:
    frequency: str
    """Calibration repeat purchases: "0", "1", ... and the censored last group, e.g. "7+"."""
    customers: int
    actual: float
    """Mean purchases in the holdout."""
    expected: float
    """Mean purchases in the holdout the model expected, given each calibration history."""


def holdout_table(model: BetaGeo | ParetoNBD, holdout: Holdout, censor: int = 7) -> list[HoldoutRow]:
    """Expected against actual holdout purchases, by calibration frequency (censored at `censor`+)."""
    import numpy as np

    if isinstance(censor, bool) or not isinstance(censor, int) or censor < 1:
        raise ValidationError("censor", censor, "must be a whole number >= 1")
    s = holdout.calibration
    x = np.frombuffer(s.frequency, dtype=np.float64) if len(s) else np.zeros(0)
    expected = model.expected_purchases(holdout.duration, s.frequency, s.recency, s.T)
    actual = np.asarray(holdout.purchases, dtype=np.float64)
    group = np.minimum(x, censor).astype(int)
    rows = []
    for k in range(censor + 1):
        members = group == k
        if members.any():
            rows.append(HoldoutRow(f"{k}+" if k == censor else str(k), int(members.sum()),
                                   float(actual[members].mean()), float(expected[members].mean())))
    return rows


@attrs.frozen
class TrackingRow:
    start: date
    """First day of the period."""
    actual: int
    expected: float
    cumulative_actual: int
    cumulative_expected: float


def tracking(model: BetaGeo | ParetoNBD, holdout: Holdout, period_days: int = 7) -> list[TrackingRow]:
    """Repeat purchases of the calibration customers per period of `period_days`, from the
    first purchase day to the end of the holdout: actual, and expected from each customer's
    first purchase on (E[X(t)] summed over the cohort)."""
    import numpy as np

    if isinstance(period_days, bool) or not isinstance(period_days, int) or period_days < 1:
        raise ValidationError("period_days", period_days, "must be a whole number of days >= 1")
    if not holdout.first_days:
        return []
    unit = holdout.calibration.period.unit_days
    start = min(holdout.first_days)
    last = (holdout.holdout_end - EPOCH_DAY).days
    firsts, born = np.unique(np.asarray(holdout.first_days), return_counts=True)
    rows, total_actual, previous = [], 0, 0.0
    for begin in range(start, last + 1, period_days):
        end = min(begin + period_days, last + 1)  # exclusive
        actual = sum(holdout.repeat_days.get(d, 0) for d in range(begin, end))
        ages = np.maximum(end - firsts, 0) / unit  # from each first purchase day to the period's end
        cumulative = float(born @ model.expected_purchases_from_start(ages))
        total_actual += actual
        rows.append(TrackingRow(EPOCH_DAY + timedelta(days=begin), actual, cumulative - previous,
                                total_actual, cumulative))
        previous = cumulative
    return rows


@attrs.frozen
class GoodnessOfFit:
    """Pearson's chi-square of the calibration frequency histogram."""

    observed: list[int]
    """Customers with 0, 1, ..., `bins`-1 and `bins`+ repeat purchases."""
    expected: list[float]
    chi_square: float
    degrees_of_freedom: int
    p_value: float


def goodness_of_fit(model: BetaGeo, frequency: ArrayLike, T: ArrayLike, bins: int = 7) -> GoodnessOfFit:
    """Observed customers per calibration frequency against the sum over customers of
    P(X(T_i) = x); the last bin takes x >= `bins`. Degrees of freedom: bins - 4 (bins + 1
    cells, less one, less the four fitted parameters)."""
    import numpy as np
    from scipy.stats import chi2

    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 5:
        raise ValidationError("bins", bins, "must be a whole number >= 5 (four parameters are fitted)")
    from crmcore.scoring.clv import _arrays

    x, T = _arrays(frequency, T)
    if not x.size:
        raise ValidationError("frequency", x.size, "needs one or more customers, each with a T")
    for field, values, bad in (("frequency", x, ~np.isfinite(x) | (x < 0) | (x != np.floor(x))),
                               ("T", T, ~np.isfinite(T) | (T <= 0))):
        if bad.any():
            row = int(np.argmax(bad))
            raise ValidationError(f"{field}[{row}]", float(values[row]), "must be a whole number >= 0"
                                  if field == "frequency" else "must be a finite number > 0")
    observed = np.bincount(np.minimum(x, bins).astype(int), minlength=bins + 1)
    ages, counts = np.unique(T, return_counts=True)
    expected = np.zeros(bins + 1)
    for age, count in zip(ages, counts, strict=True):
        head = model.probability_of_purchases(list(range(bins)), float(age))
        expected[:bins] += count * head
        expected[bins] += count * max(0.0, 1.0 - float(head.sum()))
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = bins - 4
    return GoodnessOfFit([int(o) for o in observed], [float(e) for e in expected], statistic, dof,
                         float(chi2.sf(statistic, dof)))
