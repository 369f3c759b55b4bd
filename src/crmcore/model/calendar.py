"""Business hours of a service point: weekly opening hours, public holidays, a time zone.

Only the data and its invariants live here; `crmcore.operational.calendars` does the
arithmetic (adding business time, measuring it between two instants).
"""

from __future__ import annotations

import itertools
import re
from datetime import date, datetime
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError

_CLOCK = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class CalendarError(ValidationError):
    """A calendar that cannot measure business time (no open hours, unknown time zone...)."""


def minute_of_day(value: object, field: str) -> int:
    """Minutes since local midnight for 'HH:MM' ('24:00' is the end of the day)."""
    found = _CLOCK.match(value) if isinstance(value, str) else None
    minutes = int(found[1]) * 60 + int(found[2]) if found else -1
    if not 0 <= minutes <= 24 * 60:
        raise CalendarError(field, value, "must be a local time 'HH:MM' between 00:00 and 24:00")
    return minutes


def _clock(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    minute_of_day(value, attribute.name)


@attrs.frozen
class OpeningHours:
    """One open stretch of one weekday (0 = Monday), in the calendar's local wall time."""

    weekday: int = attrs.field(validator=v.integer(0, 6))
    opens: str = attrs.field(validator=_clock)
    closes: str = attrs.field(validator=_clock)

    def __attrs_post_init__(self) -> None:
        if self.closing_minute <= self.opening_minute:
            raise CalendarError("closes", self.closes, f"must be later than opens ({self.opens})")

    @property
    def opening_minute(self) -> int:
        return minute_of_day(self.opens, "opens")

    @property
    def closing_minute(self) -> int:
        return minute_of_day(self.closes, "closes")


def _zone(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    from dateutil import tz

    if not isinstance(value, str) or not value or len(value) > 64 or tz.gettz(value) is None:
        raise CalendarError(attribute.name, value, "must be an IANA time zone such as 'Europe/Paris'")


def _hours(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not value:
        raise CalendarError(attribute.name, value, "a calendar needs at least one open stretch")
    for index, span in enumerate(value):
        if not isinstance(span, OpeningHours):
            raise CalendarError(f"{attribute.name}[{index}]", span, "must be OpeningHours")
    by_day = sorted(value, key=lambda s: (s.weekday, s.opening_minute))
    for earlier, later in itertools.pairwise(by_day):
        if earlier.weekday == later.weekday and later.opening_minute < earlier.closing_minute:
            raise CalendarError(attribute.name, later, f"overlaps {earlier}")


def _days(values: Any) -> tuple[Any, ...]:
    items = tuple(values or ())
    try:
        return tuple(sorted(set(items)))
    except TypeError:  # not comparable: let the validator name the odd one
        return items


def _holidays(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    for day in value:
        if not isinstance(day, date) or isinstance(day, datetime):
            raise CalendarError(attribute.name, day, "holidays must be dates")


@attrs.frozen
class BusinessCalendar:
    """When a service point works; every deadline promised there is counted in its hours."""

    timezone: str = attrs.field(validator=_zone)
    hours: tuple[OpeningHours, ...] = attrs.field(converter=v.as_tuple, validator=_hours)
    holidays: tuple[date, ...] = attrs.field(default=(), converter=_days, validator=_holidays)
    """Public holidays (local dates), closed all day; kept sorted."""

    @classmethod
    def weekly(
        cls, timezone: str, hours: dict[str, str], holidays: tuple[date, ...] = ()
    ) -> BusinessCalendar:
        """From a readable table: `{"mon-fri": "09:00-17:00", "sat": "10:00-12:00 14:00-16:00"}`."""
        spans: list[OpeningHours] = []
        for days, stretches in hours.items():
            for weekday in _weekdays(days):
                for stretch in stretches.split():
                    opens, _, closes = stretch.partition("-")
                    spans.append(OpeningHours(weekday, opens, closes))
        return cls(timezone, tuple(spans), holidays)


def _weekdays(text: str) -> list[int]:
    first, _, last = text.strip().lower().partition("-")
    if first not in WEEKDAYS or (last and last not in WEEKDAYS):
        raise CalendarError("hours", text, f"days must be names among {', '.join(WEEKDAYS)} or a range")
    start = WEEKDAYS.index(first)
    end = WEEKDAYS.index(last) if last else start
    if end < start:
        raise CalendarError("hours", text, "a range of days must run forwards (mon-fri)")
    return list(range(start, end + 1))
