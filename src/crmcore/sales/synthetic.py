"""A synthetic sales pipeline with a known shape, for tests and benchmarks.

Opportunities open over a year, move through their pipeline (sometimes skipping a
stage), have their close dates pushed or pulled, and end won, lost or still open;
amounts are in two currencies, owners and teams vary.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from crmcore.model import DEFAULT_PIPELINE, Opportunity, Pipeline
from crmcore.values import Money

START = datetime(2024, 1, 1, tzinfo=UTC)
OWNERS = ("ann", "bob", "cho", "dev")
TEAMS = {"ann": "north", "bob": "north", "cho": "south", "dev": "south"}


def opportunities(n: int, *, seed: int = 7, pipeline: Pipeline = DEFAULT_PIPELINE,
                  changes: int = 5, customers: int = 500) -> Iterator[Opportunity]:
    """`n` opportunities with up to `changes` steps after opening each."""
    rng = random.Random(seed)
    names = [s.name for s in pipeline.stages]
    for index in range(n):
        at = START + timedelta(seconds=rng.randrange(365 * 86_400))
        owner = rng.choice(OWNERS)
        currency = "EUR" if rng.random() < 0.7 else "USD"
        amount = Money(Decimal(rng.randrange(10_000, 5_000_000)) / 100, currency)
        close = (at + timedelta(days=rng.randrange(10, 120))).date()
        first = pipeline.stages[0]
        opportunity = Opportunity.open(
            f"o{index:08d}", f"c{index % customers:06d}", "deal", at, pipeline=pipeline.id,
            stage=first.name, probability=first.probability, amount=amount, close_date=close,
            owner=owner, team=TEAMS[owner],
        )
        rank = 0
        for _ in range(changes):
            at += timedelta(seconds=rng.randrange(3_600, 30 * 86_400))
            roll = rng.random()
            if roll < 0.2:
                close += timedelta(days=rng.randrange(-5, 30))
                opportunity = opportunity.revise(at, close_date=close)
                continue
            if roll < 0.3:
                stage = "lost"
            elif rank + 1 >= len(names) or roll > 0.93:
                stage = "won"
            else:
                rank = min(len(names) - 1, rank + (2 if roll > 0.85 else 1))
                stage = names[rank]
            opportunity = opportunity.move_to(stage, at, owner,
                                              probability=pipeline.probability(stage))
            if opportunity.is_closed:
                break
        yield opportunity
