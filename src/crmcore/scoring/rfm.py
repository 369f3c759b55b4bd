"""RFM: recency, frequency and monetary scores (quantiles, 1 to 5) and the named segments.

A score depends only on where a customer's figure falls among everyone's, with
ties scored alike, so it is a function of the data and not of its order:
`score = min(bins, 1 + floor(bins * share of the other customers strictly worse))`,
computed in numpy when it is installed (see `scoring.ranks`).
"""

from __future__ import annotations

import functools
import itertools
import operator
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from crmcore.errors import ValidationError
from crmcore.scoring import arguments
from crmcore.scoring.bulk import paused_collection
from crmcore.scoring.ranks import numpy_or_none, numpy_scores, quantile_scores

if TYPE_CHECKING:
    from crmcore.scoring.summary import Summary

__all__ = ["OTHER", "RFM", "SEGMENTS", "compile_segments", "quantile_scores", "rfm", "segment_of"]

SEGMENTS: Mapping[str, str] = {
    "[1-2][1-2].": "hibernating",
    "[1-2][3-4].": "at_risk",
    "[1-2]5.": "cannot_lose_them",
    "3[1-2].": "about_to_sleep",
    "33.": "need_attention",
    "[3-4][4-5].": "loyal_customers",
    "41.": "promising",
    "51.": "new_customers",
    "[4-5][2-3].": "potential_loyalists",
    "5[4-5].": "champions",
}
"""The usual segments on the recency and frequency scores: pattern on the code "RFM" -> name.

The first pattern that matches the whole code wins; pass another map to use
your own (e.g. one that looks at the monetary digit too)."""

OTHER = "other"
"""The segment of a code no pattern matches."""


class RFM(NamedTuple):
    """One customer's scores (a named tuple: a base of millions is scored in a blink)."""

    customer_id: str
    recency_days: float
    """Days since the last purchase day."""
    frequency: int
    """Purchase days."""
    monetary: float
    """Total spend, in `currency` (on margin instead when the summary is of margins)."""
    r: int
    f: int
    m: int
    segment: str
    currency: str | None = None
    measure: str = "revenue"
    """What `monetary` measures: "revenue" or "margin"."""

    @property
    def code(self) -> str:
        return f"{self.r}{self.f}{self.m}"

    @property
    def value(self) -> float:
        """One number to rank by: the mean of the three scores."""
        return (self.r + self.f + self.m) / 3

    def explain(self) -> dict[str, str | int | float]:
        found: dict[str, str | int | float] = {
            "recency_days": self.recency_days, "frequency": self.frequency,
            "monetary": self.monetary, "r": self.r, "f": self.f, "m": self.m, "code": self.code,
        }
        if self.currency is not None:
            found["currency"] = self.currency
        if self.measure != "revenue":
            found["measure"] = self.measure
        return found


def compile_segments(segments: Mapping[str, str]) -> list[tuple[re.Pattern[str], str]]:
    compiled = []
    for pattern, name in arguments.mapping(segments, "segments").items():
        try:
            compiled.append((re.compile(pattern), name))
        except re.error as exc:
            raise ValidationError(f"segments[{pattern!r}]", pattern, f"is not a pattern: {exc}") from None
        if not isinstance(name, str) or not name:
            raise ValidationError(f"segments[{pattern!r}]", name, "must be a segment name")
    return compiled


def segment_of(code: str, segments: list[tuple[re.Pattern[str], str]]) -> str:
    return next((name for pattern, name in segments if pattern.fullmatch(code)), OTHER)


def rfm(summary: Summary, *, bins: int = 5, segments: Mapping[str, str] = SEGMENTS) -> list[RFM]:
    """Every summarised customer's RFM scores and segment, in the summary's order."""
    rules = compile_segments(segments)
    with paused_collection():
        return _scored(summary, bins, rules)


def _scored(summary: Summary, bins: int, rules: list[tuple[re.Pattern[str], str]]) -> list[RFM]:
    """The scores ranked in numpy when it is installed, else in Python: the same scores and
    segments (`tests/analytics/test_ranks.py`), numpy several times faster on a million."""
    if numpy_or_none() is None:
        recency, frequency, r, f, m, segments = _python_columns(summary, bins, rules)
    else:
        recency, frequency, r, f, m, segments = _numpy_columns(summary, bins, rules)
    # every field given, in order: tuple.__new__ builds each in C (RFM() would run Python)
    return list(map(functools.partial(tuple.__new__, RFM), zip(
        summary.customer_ids, recency, frequency, summary.total, r, f, m, segments,
        itertools.repeat(summary.currency), itertools.repeat(summary.measure))))


Columns = tuple[list[float], list[int], list[int], list[int], list[int], list[str]]
"""Days since the last purchase, purchase days, the r, f and m scores and the segment."""


def _python_columns(summary: Summary, bins: int, rules: list[tuple[re.Pattern[str], str]]) -> Columns:
    unit = summary.period.unit_days
    # a column at a time with map() over C functions: a million customers in a few seconds
    recency = list(map(round, map(operator.mul, map(operator.sub, summary.T, summary.recency),
                                  itertools.repeat(unit)), itertools.repeat(6)))
    frequency = list(map((1).__add__, map(int, summary.frequency)))
    r = quantile_scores(recency, bins, higher_is_better=False, field="recency")
    f = quantile_scores(frequency, bins, field="frequency")
    m = quantile_scores(list(summary.total), bins, field="monetary")
    codes = list(map("{}{}{}".format, r, f, m))
    # at most bins^3 codes: match each once, not once per customer
    named = {code: segment_of(code, rules) for code in set(codes)}
    return recency, frequency, r, f, m, list(map(named.__getitem__, codes))


def _numpy_columns(summary: Summary, bins: int, rules: list[tuple[re.Pattern[str], str]]) -> Columns:
    """The same columns from numpy: the same IEEE operations, then round(x, 6) as Python
    does it. Days since the last purchase are whole days, give or take the error of the
    unit's arithmetic (e.g. x/7*7): within 1e-7 of a whole k, round(x, 6) is k exactly, so
    those are taken from rint; Python rounds only the others (none, from a stored summary)."""
    np = numpy_or_none()
    idle = (np.asarray(summary.T, dtype=np.float64) - np.asarray(summary.recency, dtype=np.float64)) \
        * summary.period.unit_days
    whole = np.rint(idle)
    near = np.abs(idle - whole) < 1e-7
    idle = np.where(near, whole, idle)
    if not near.all():
        odd = np.flatnonzero(~near)
        idle[odd] = list(map(round, idle[odd].tolist(), itertools.repeat(6)))
    days = np.asarray(summary.frequency, dtype=np.float64).astype(np.int64) + 1
    total = np.asarray(summary.total, dtype=np.float64)
    r, f, m = (numpy_scores(column, bins, better, name) for column, better, name in (
        (idle, False, "recency"), (days, True, "frequency"), (total, True, "monetary")))
    # each (r, f, m) that occurs named once, in a table indexed by the three digits
    side = bins + 1
    key = (r * side + f) * side + m
    names = np.empty(side**3, dtype=object)
    for k in np.flatnonzero(np.bincount(key, minlength=side**3)).tolist():
        names[k] = segment_of(f"{k // side**2}{k // side % side}{k % side}", rules)
    return idle.tolist(), days.tolist(), r.tolist(), f.tolist(), m.tolist(), names[key].tolist()
