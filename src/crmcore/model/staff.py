"""Staff and ownership: who owns a record, and why they were given it.

Staff users are `Agent`s grouped in `Team`s (in `crmcore.model.places`, shared with call
routing); they are never customers. An `Assignment` is the explanation kept with a record
each time an owner is chosen for it, by a rule or by hand.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from crmcore import values as v
from crmcore.model.places import Agent, Team

__all__ = ["Agent", "Assignment", "Team"]


@attrs.frozen
class Assignment:
    """Who was chosen, by which rule, and the reason in words a supervisor can read."""

    agent: str = attrs.field(validator=v.check(v.name))
    rule: str = attrs.field(validator=v.check(v.name))
    reason: str = attrs.field(validator=v.is_text(500))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    team: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
