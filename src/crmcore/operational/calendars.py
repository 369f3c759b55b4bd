"""Business-time arithmetic: add business hours to an instant, measure them between two.

A stretch of opening hours runs, in real (UTC) time, from the first instant the local
wall clock shows its opening time to the first instant it shows its closing time. So
on the night clocks go forward a stretch 01:00-04:00 lasts two real hours, on the night
they go back it lasts four, and a stretch that opens inside the skipped hour opens when
the clock jumps over it: no hour is ever lost or counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from dateutil import tz

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.calendar import BusinessCalendar, CalendarError

Interval = tuple[datetime, datetime]
ONE_DAY = timedelta(days=1)
_CACHE_LIMIT = 4096

ALWAYS_OPEN = BusinessCalendar.weekly("UTC", {"mon-sun": "00:00-24:00"})
"""The calendar of a service point that never closes (and of cases with no service point)."""


class BusinessClock:
    """Business time on one calendar; cheap to keep, it caches the days it has worked out."""

    def __init__(self, calendar: BusinessCalendar) -> None:
        zone = tz.gettz(calendar.timezone)
        if zone is None:  # the model refuses such a calendar; a stored one is trusted
            raise CalendarError("timezone", calendar.timezone, "is not a known time zone")
        self.calendar = calendar
        self.zone: tzinfo = zone
        self._spans: dict[int, list[tuple[int, int]]] = {day: [] for day in range(7)}
        for span in sorted(calendar.hours, key=lambda s: s.opening_minute):
            self._spans[span.weekday].append((span.opening_minute, span.closing_minute))
        self._days: dict[date, tuple[Interval, ...]] = {}
        self._holidays = frozenset(calendar.holidays)

    def add(self, start: datetime, duration: timedelta) -> datetime:
        """The earliest instant by which `duration` of business time has passed since `start`."""
        start = v.utc(start, "start").astimezone(UTC)
        if not isinstance(duration, timedelta) or duration < timedelta(0):
            raise ValidationError("duration", duration, "must be a non-negative timedelta")
        remaining = duration
        if remaining == timedelta(0):
            return start
        for opens, closes in self._intervals_from(start):
            opens = max(opens, start)
            if remaining <= closes - opens:
                return opens + remaining
            remaining -= closes - opens
        raise AssertionError("unreachable: the calendar has open hours every week")

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Business time between two instants (`end` must not be before `start`)."""
        start = v.utc(start, "start").astimezone(UTC)
        end = v.utc(end, "end").astimezone(UTC)
        if end < start:
            raise ValidationError("end", end, f"is before start ({start.isoformat()})")
        total = timedelta(0)
        for opens, closes in self._intervals_from(start):
            if opens >= end:
                break
            total += min(closes, end) - max(opens, start)
        return total

    def is_open(self, moment: datetime) -> bool:
        moment = v.utc(moment, "moment").astimezone(UTC)
        for opens, _closes in self._intervals_from(moment):
            return opens <= moment
        return False  # pragma: no cover - the generator never ends

    def intervals(self, day: date) -> tuple[Interval, ...]:
        """The open stretches of one local day, as UTC instants, in order."""
        found = self._days.get(day)
        if found is None:
            found = self._work_out(day)
            if len(self._days) >= _CACHE_LIMIT:
                self._days.clear()
            self._days[day] = found
        return found

    def _intervals_from(self, moment: datetime) -> Iterator[Interval]:
        """Every open stretch that ends after `moment`, in order, without end."""
        day = moment.astimezone(self.zone).date() - ONE_DAY
        while True:
            for interval in self.intervals(day):
                if interval[1] > moment:
                    yield interval
            day += ONE_DAY

    def _work_out(self, day: date) -> tuple[Interval, ...]:
        if day in self._holidays:
            return ()
        merged: list[Interval] = []
        for opening, closing in self._spans[day.weekday()]:
            opens, closes = self._reach(day, opening), self._reach(day, closing)
            if closes <= opens:
                continue  # a stretch wholly inside the hour the clocks skip
            if merged and opens <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(closes, merged[-1][1]))
            else:
                merged.append((opens, closes))
        return tuple(merged)

    def _reach(self, day: date, minute: int) -> datetime:
        """The first instant the local wall clock shows `minute` past midnight of `day`."""
        wall = datetime.combine(day, time()) + timedelta(minutes=minute)
        local = wall.replace(tzinfo=self.zone)
        if tz.datetime_exists(local):
            return local.replace(fold=0).astimezone(UTC)  # fold 0: the first of a repeated hour
        # `wall` falls in the hour skipped when clocks go forward: find the jump instant
        low = wall.replace(tzinfo=UTC) - timedelta(hours=15)
        high = wall.replace(tzinfo=UTC) + timedelta(hours=13)
        while high - low > timedelta(microseconds=1):
            middle = low + (high - low) / 2
            if middle.astimezone(self.zone).replace(tzinfo=None) >= wall:
                high = middle
            else:
                low = middle
        return high


def clock(calendar: BusinessCalendar | None) -> BusinessClock:
    """The clock of a calendar; no calendar means open around the clock in UTC."""
    return BusinessClock(calendar or ALWAYS_OPEN)
