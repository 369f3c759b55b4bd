"""The instant a rule is evaluated as of, and the values its constants take then.

Both engines resolve constants here, once per evaluation, so "3 months ago" or
"today" can never mean two different things. Calendar arithmetic (python-dateutil)
is done in the time zone of the `as_of` given, then everything is UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from fractions import Fraction
from typing import Any

import attrs
from dateutil.relativedelta import relativedelta

from crmcore import limits
from crmcore import values as v
from crmcore.errors import LimitExceeded
from crmcore.segments import ast as a
from crmcore.segments.printer import _span
from crmcore.segments.schema import Type

BIRTHDAY_HORIZON = 366
"""`birthday within N days` for N beyond a year is the same as a year."""


@attrs.frozen
class Context:
    as_of: datetime = attrs.field()
    """Aware; its time zone says what `today` and calendar months mean."""

    @as_of.validator
    def _aware(self, attribute: attrs.Attribute[datetime], value: datetime) -> None:
        v.utc(value, attribute.name)

    @property
    def tz(self) -> tzinfo:
        return self.as_of.tzinfo or UTC

    @property
    def now(self) -> datetime:
        return self.as_of.astimezone(UTC)

    @property
    def today(self) -> date:
        return self.as_of.date()

    def back(self, amount: int, unit: str) -> datetime:
        """`amount unit` before the evaluation instant (calendar-wise for days and longer)."""
        try:
            if unit == "hours":
                moment = self.now - timedelta(hours=amount)
            else:
                moment = self.as_of - relativedelta(**{unit: amount})  # type: ignore[arg-type]
            return limits.in_calendar(moment, "rule").astimezone(UTC)
        except (OverflowError, ValueError) as exc:  # before year 1: no calendar to count in
            if isinstance(exc, LimitExceeded):
                raise
            raise LimitExceeded("instant", "rule", f"{_span(amount, unit)} before {self.as_of}",
                                limits.CALENDAR) from None

    def midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=self.tz).astimezone(UTC)

    def start(self, window: a.Last | a.Since | None) -> datetime | None:
        """The first instant a window lets in (None: no lower bound)."""
        if window is None:
            return None
        if isinstance(window, a.Last):
            return self.back(window.amount, window.unit)
        started: datetime = self.constant(window.start, Type.INSTANT)
        return started

    def constant(self, node: a.Term, domain: Type) -> Any:
        """The Python value of a constant term, read in the comparison's domain."""
        match node:
            case a.Text(value) | a.Bool(value):
                return value
            case a.Number(value):
                if domain is Type.REAL:
                    return int(value) if value == value.to_integral_value() else float(value)
                return Fraction(value)
            case a.Day() | a.Today():
                day = node.value if isinstance(node, a.Day) else self.today
                return self.midnight(day) if domain is Type.INSTANT else day
            case a.Instant(value):
                return self._instant(value.astimezone(UTC), domain)
            case a.Now():
                return self._instant(self.now, domain)
            case a.Ago(amount, unit):
                return self._instant(self.back(amount, unit), domain)
        raise TypeError(f"not a constant: {node!r}")

    def _instant(self, moment: datetime, domain: Type) -> date | datetime:
        return moment.astimezone(self.tz).date() if domain is Type.DATE else moment

    def birthdays(self, days: int) -> frozenset[str]:
        """The 'MM-DD' of every birth date whose next anniversary is within `days` days.

        Someone born on 29 February has their anniversary on the 28th in other years
        (as python-dateutil counts it).
        """
        found: set[str] = set()
        for offset in range(min(days, BIRTHDAY_HORIZON) + 1):
            day = self.today + timedelta(days=offset)
            found.add(day.strftime("%m-%d"))
            if day.month == 2 and day.day == 28 and (day + timedelta(days=1)).month == 3:
                found.add("02-29")
        return frozenset(found)
