"""Business-time arithmetic: laws checked by hypothesis, and an independent oracle that
walks real minutes with the standard library's zoneinfo (not dateutil)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore.errors import CRMError
from crmcore.model.calendar import BusinessCalendar, CalendarError, OpeningHours
from crmcore.operational.calendars import BusinessClock

ZONES = ("UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
         "America/Santiago", "Pacific/Chatham")
# Instants around the DST changes of 2025 in those zones, so hypothesis lands on them often.
CHANGES = (datetime(2025, 3, 30, 1, tzinfo=UTC), datetime(2025, 10, 26, 1, tzinfo=UTC),
           datetime(2025, 3, 9, 7, tzinfo=UTC), datetime(2025, 11, 2, 6, tzinfo=UTC),
           datetime(2025, 4, 5, 15, tzinfo=UTC), datetime(2025, 10, 4, 15, tzinfo=UTC),
           datetime(2025, 4, 6, 3, tzinfo=UTC), datetime(2025, 9, 7, 4, tzinfo=UTC))


@st.composite
def spans(draw: st.DrawFn) -> OpeningHours:
    weekday = draw(st.integers(0, 6))
    opens = draw(st.integers(0, 24 * 4 - 1)) * 15
    closes = draw(st.integers(opens // 15 + 1, 24 * 4)) * 15
    return OpeningHours(weekday, f"{opens // 60:02d}:{opens % 60:02d}",
                        f"{closes // 60:02d}:{closes % 60:02d}")


def _disjoint(items: list[OpeningHours]) -> list[OpeningHours]:
    kept: list[OpeningHours] = []
    for span in items:
        if all(k.weekday != span.weekday or span.closing_minute <= k.opening_minute
               or k.closing_minute <= span.opening_minute for k in kept):
            kept.append(span)
    return kept


@st.composite
def calendars(draw: st.DrawFn) -> BusinessCalendar:
    hours = _disjoint(draw(st.lists(spans(), min_size=1, max_size=10)))
    holidays = draw(st.lists(st.dates(date(2025, 1, 1), date(2025, 12, 31)), max_size=30))
    return BusinessCalendar(draw(st.sampled_from(ZONES)), tuple(hours), tuple(holidays))


@st.composite
def instants(draw: st.DrawFn) -> datetime:
    """A minute near a DST change, or anywhere in 2025."""
    if draw(st.booleans()):
        base = draw(st.sampled_from(CHANGES))
        return base + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 364 * 1440)))


durations = st.integers(0, 60 * 24 * 40).map(lambda m: timedelta(minutes=m))


@given(calendars(), instants(), durations)
def test_adding_then_measuring_gives_the_duration_back(
    calendar: BusinessCalendar, start: datetime, duration: timedelta
) -> None:
    clock = BusinessClock(calendar)
    end = clock.add(start, duration)
    assert end >= start
    assert clock.elapsed(start, end) == duration


@given(calendars(), instants(), instants())
def test_measuring_then_adding_reaches_the_earliest_such_instant(
    calendar: BusinessCalendar, a: datetime, b: datetime
) -> None:
    start, end = min(a, b), max(a, b)
    clock = BusinessClock(calendar)
    spent = clock.elapsed(start, end)
    reached = clock.add(start, spent)
    assert reached <= end and clock.elapsed(start, reached) == spent
    if clock.is_open(end - timedelta(microseconds=1)) and spent:
        assert reached == end


@given(calendars(), instants(), instants(), instants())
def test_business_time_adds_up_and_never_exceeds_real_time(
    calendar: BusinessCalendar, a: datetime, b: datetime, c: datetime
) -> None:
    first, middle, last = sorted((a, b, c))
    clock = BusinessClock(calendar)
    assert clock.elapsed(first, last) == clock.elapsed(first, middle) + clock.elapsed(middle, last)
    assert clock.elapsed(first, last) <= last - first


@given(st.sampled_from(ZONES), instants(), instants())
def test_open_around_the_clock_is_real_time_across_dst(zone: str, a: datetime, b: datetime) -> None:
    clock = BusinessClock(BusinessCalendar.weekly(zone, {"mon-sun": "00:00-24:00"}))
    start, end = min(a, b), max(a, b)
    assert clock.elapsed(start, end) == end - start
    assert clock.add(start, end - start) == end


def _first_reach(zone: ZoneInfo, wall: datetime) -> datetime:
    """The first UTC minute at which the wall clock shows `wall` or later (scanning minutes)."""
    moment = wall.replace(tzinfo=UTC) - timedelta(hours=15)
    while moment.astimezone(zone).replace(tzinfo=None) < wall:
        moment += timedelta(minutes=1)
    return moment


def _oracle(calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """Business minutes between two minute-aligned instants, counted one by one."""
    zone = ZoneInfo(calendar.timezone)
    open_at: list[tuple[datetime, datetime]] = []
    day = start.astimezone(zone).date() - timedelta(days=1)
    while day <= end.astimezone(zone).date() + timedelta(days=1):
        if day not in calendar.holidays:
            midnight = datetime(day.year, day.month, day.day)
            for span in calendar.hours:
                if span.weekday == day.weekday():
                    open_at.append((
                        _first_reach(zone, midnight + timedelta(minutes=span.opening_minute)),
                        _first_reach(zone, midnight + timedelta(minutes=span.closing_minute)),
                    ))
        day += timedelta(days=1)
    minutes = 0
    moment = start
    while moment < end:
        minutes += any(o <= moment < c for o, c in open_at)
        moment += timedelta(minutes=1)
    return timedelta(minutes=minutes)


@settings(max_examples=60)
@given(calendars(), instants(), st.integers(0, 2 * 1440))
def test_elapsed_agrees_with_counting_minutes_in_zoneinfo(
    calendar: BusinessCalendar, start: datetime, length: int
) -> None:
    end = start + timedelta(minutes=length)
    assert BusinessClock(calendar).elapsed(start, end) == _oracle(calendar, start, end)


def test_a_weekday_calendar_in_paris_skips_nights_weekends_and_holidays() -> None:
    clock = BusinessClock(BusinessCalendar.weekly(
        "Europe/Paris", {"mon-fri": "09:00-12:00 13:00-17:00"}, holidays=(date(2025, 5, 1),)
    ))
    wednesday_4pm = datetime(2025, 4, 30, 16, tzinfo=ZoneInfo("Europe/Paris"))
    due = clock.add(wednesday_4pm, timedelta(hours=3))  # 1 h on Wednesday, Thursday is 1 May
    assert due == datetime(2025, 5, 2, 11, tzinfo=ZoneInfo("Europe/Paris"))
    friday_4pm = datetime(2025, 5, 2, 16, tzinfo=ZoneInfo("Europe/Paris"))
    assert clock.add(friday_4pm, timedelta(hours=2)) == datetime(
        2025, 5, 5, 10, tzinfo=ZoneInfo("Europe/Paris"))


def test_the_night_clocks_go_forward_lasts_an_hour_less() -> None:
    clock = BusinessClock(BusinessCalendar.weekly("Europe/Paris", {"sun": "01:00-04:00"}))
    day = clock.intervals(date(2025, 3, 30))
    assert [c - o for o, c in day] == [timedelta(hours=2)]
    autumn = clock.intervals(date(2025, 10, 26))
    assert [c - o for o, c in autumn] == [timedelta(hours=4)]
    inside_gap = BusinessClock(BusinessCalendar.weekly("Europe/Paris", {"sun": "02:30-05:00"}))
    (opens, closes), = inside_gap.intervals(date(2025, 3, 30))
    assert opens == datetime(2025, 3, 30, 1, tzinfo=UTC) and closes - opens == timedelta(hours=2)


@pytest.mark.parametrize("build", [
    lambda: BusinessCalendar("Europe/Paris", ()),
    lambda: BusinessCalendar.weekly("Europe/Paris", {}),
    lambda: BusinessCalendar.weekly("Mars/Olympus", {"mon": "09:00-17:00"}),
    lambda: BusinessCalendar.weekly("", {"mon": "09:00-17:00"}),
    lambda: BusinessCalendar.weekly("UTC", {"mon": "17:00-09:00"}),
    lambda: BusinessCalendar.weekly("UTC", {"mon": "09:00-25:00"}),
    lambda: BusinessCalendar.weekly("UTC", {"mon": "09:00-12:00 11:00-14:00"}),
    lambda: BusinessCalendar.weekly("UTC", {"fri-mon": "09:00-12:00"}),
    lambda: BusinessCalendar.weekly("UTC", {"funday": "09:00-12:00"}),
])
def test_a_calendar_that_cannot_measure_time_is_refused(build: object) -> None:
    with pytest.raises(CalendarError):
        build()  # type: ignore[operator]


def test_negative_durations_and_backward_spans_are_refused() -> None:
    clock = BusinessClock(BusinessCalendar.weekly("UTC", {"mon-fri": "09:00-17:00"}))
    now = datetime(2025, 1, 6, 10, tzinfo=UTC)
    with pytest.raises(CRMError):
        clock.add(now, timedelta(seconds=-1))
    with pytest.raises(CRMError):
        clock.elapsed(now, now - timedelta(seconds=1))
    with pytest.raises(CRMError):
        clock.add(datetime(2025, 1, 6, 10), timedelta(hours=1))  # naive on purpose
