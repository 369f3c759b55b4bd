"""Staff and ownership: who owns a record, and why they were given it.

Staff users are `Agent`s grouped in `Team`s (in `crmcore.model.places`, shared with call
routing); they are never customers. An `Assignment` is the explanation kept with a record
each time an owner is chosen for it, by a rule or by hand.
"""

from __future__ import annotations

from crmcore.model.ownership import Assignment
from crmcore.model.places import Agent, Team

__all__ = ["Agent", "Assignment", "Team"]
