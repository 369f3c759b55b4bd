"""The explanation kept with a record each time an owner is chosen for it.

A module of its own so that every model that has an owner (customers, opportunities,
accounts, cases) can hold one without importing the staff and their places.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v


@attrs.frozen
class Assignment:
    """Who was chosen, by which rule, and the reason in words a supervisor can read."""

    agent: str = attrs.field(validator=v.check(v.name))
    rule: str = attrs.field(validator=v.check(v.name))
    reason: str = attrs.field(validator=v.is_text(500))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    team: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
