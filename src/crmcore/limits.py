"""The limits of what crmcore accepts: part of the contract, the same on every backend.

Each limit is one named constant checked once, where the data enters; exceeding
it is a `LimitExceeded` naming the limit, so an application can tell "too big"
from "malformed" and a third-party backend never sees what one of the built-in
ones would refuse. docs/limits.md lists them with the reason for each value.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from crmcore.errors import SHOWN, LimitExceeded

RULE_LENGTH = 10_000
"""Characters in a rule's text (and in the canonical text of its JSON form)."""
RULE_DEPTH = 20
"""Nesting of a rule: each `not`, bracketed `and`/`or`, function call and aggregate is a level.

Every later stage recurses over the rule, the database's SQL parser included
(SQLite's gives up near 24 nested calls)."""
JSON_DEPTH = 6 * RULE_DEPTH + 8
"""Nesting of objects and arrays in a rule's JSON form (a level of the rule is a few of them)."""
RULE_NODES = 2_000
"""Nodes in a rule's tree: bounds the work a single rule can ask for."""
IN_VALUES = 200
"""Values in one `in (...)` list (each may cost the database a subquery)."""
RULE_NUMBER = 9 * Decimal(10) ** 14
"""A number in a rule is below this in absolute value: scaled to money's 4 decimal places it
still fits the 64-bit integers SQLite stores money in."""
RULE_AMOUNT = 100_000
"""The count in `3 months ago` and `last 90 days`, and the days of `birthday within`."""
MONEY = Decimal(10) ** 14
"""A money amount is below this in absolute value (storage keeps 4 decimal places exactly)."""
FIRST_YEAR = 1
LAST_YEAR = 9999
"""Instants and dates lie between year 1 and year 9999 (what Python and both databases hold)."""
INSTANT_MARGIN = timedelta(days=2)
"""Instants stay this far inside the calendar so any time zone's view of them is still a date."""
FIRST_INSTANT = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC) + INSTANT_MARGIN
LAST_INSTANT = datetime(LAST_YEAR, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) - INSTANT_MARGIN
FIRST_DAY = FIRST_INSTANT.date()
LAST_DAY = LAST_INSTANT.date()
STATEMENT_TIMEOUT_MS = 30_000
"""Default time a rule's query may run on PostgreSQL before it is cancelled (`?statement_timeout=`)."""


def at_most(limit: str, value: int | Decimal, maximum: int | Decimal, field: str) -> None:
    """Refuse `value` above `maximum` with a LimitExceeded naming `limit`."""
    if value > maximum:
        raise LimitExceeded(limit, field, value, maximum)


CALENDAR = f"years {FIRST_YEAR} to {LAST_YEAR}"


def in_calendar(moment: datetime, field: str) -> datetime:
    """An aware instant inside the supported calendar, so arithmetic on it cannot overflow."""
    try:
        inside = FIRST_INSTANT <= moment <= LAST_INSTANT  # aware comparison: no conversion, no overflow
    except TypeError:  # naive: the caller's own check says so
        return moment
    if not inside:
        raise LimitExceeded("instant", field, moment, CALENDAR)
    return moment


def day_in_calendar(day: date, field: str) -> date:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise LimitExceeded("date", field, day, CALENDAR)
    return day


__all__ = ["SHOWN", "LimitExceeded"]
