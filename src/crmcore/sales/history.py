"""Stage history as rows: one per step of every opportunity, the ground of every forecast
and cycle figure.

SQL storage keeps these rows in the `opportunity_history` table, written with the
opportunity (a step, once written, is never rewritten, so the owner and team recorded
with it are those of its day). Storage without SQL computes the same rows from the
opportunities themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime
from decimal import Decimal

import attrs

from crmcore.model import Opportunity
from crmcore.model.sales import default_probability


@attrs.frozen
class HistoryRow:
    opportunity_id: str
    seq: int
    at: datetime
    pipeline: str
    stage: str
    probability: float | None
    close_date: date | None
    currency: str | None
    amount: Decimal | None
    owner: str | None
    team: str | None


def rows(opportunity: Opportunity, start: int = 0) -> Iterator[HistoryRow]:
    """The opportunity's steps from number `start` on. A step recorded without a probability
    or an amount (every step stored before pipelines existed) takes the default pipeline's
    probability and the opportunity's amount."""
    for seq, change in enumerate(opportunity.history[start:], start=start):
        probability = change.probability
        if probability is None and opportunity.pipeline == "default":
            probability = default_probability(change.stage)
        amount = change.amount if change.amount is not None else opportunity.amount
        yield HistoryRow(
            opportunity.id, seq, change.at, opportunity.pipeline, str(change.stage), probability,
            change.close_date, None if amount is None else amount.currency,
            None if amount is None else amount.amount, opportunity.owner, opportunity.team,
        )


def all_rows(opportunities: Iterable[Opportunity]) -> Iterator[HistoryRow]:
    for opportunity in opportunities:
        yield from rows(opportunity)
