"""Which campaign a purchase is credited to: last touch, one campaign at most.

Rule (also for overlapping campaigns): among the campaigns that sent to the
customer at or before the purchase, and whose response window (from the send to
the campaign's `ends_at`) still held the purchase, the one whose send came last
wins; a tie at the same instant goes to the smaller campaign id, so the answer
never depends on the order touches are read in. A purchase no open window holds
is credited to none.

Attribution is for bookkeeping (which campaign "brought" an order). The lift a
campaign caused is measured separately and without it, by comparing target and
control over the window (`analysis`): credit assigned by a rule is not evidence
of cause.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs


@attrs.frozen
class Touch:
    """One campaign send to the customer, and when that campaign stops counting responses."""

    campaign_id: str
    at: datetime
    window_ends: datetime | None


def last_touch(purchased_at: datetime, touches: Iterable[Touch]) -> Touch | None:
    """The touch the purchase is credited to, or None."""
    open_touches = [
        t for t in touches if t.at <= purchased_at and (t.window_ends is None or purchased_at < t.window_ends)
    ]
    if not open_touches:
        return None
    by_id = sorted(open_touches, key=lambda t: t.campaign_id)
    return max(by_id, key=lambda t: t.at)  # the first of equal maxima: the smallest id
