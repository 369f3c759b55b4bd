"""Lead scoring: naive Bayes learned from won and lost opportunities (as Odoo does it).

Each categorical fact about an opportunity (its `attributes`, `source`, `kind`,
`product`) shifts the odds of winning by how much more often it came with won
than with lost deals (Laplace-smoothed); facts never seen in training shift
nothing. The score is the probability of winning, and `explain` lists every
fact's factor.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import attrs

from crmcore.errors import ValidationError
from crmcore.model import Opportunity, Stage


def features(opportunity: Opportunity) -> dict[str, str]:
    """The categorical facts scored: the opportunity's attributes plus source, kind, product."""
    found = {str(k): str(v) for k, v in opportunity.attributes.items()}
    found["kind"] = str(opportunity.kind)
    if opportunity.source:
        found["source"] = opportunity.source
    if opportunity.product:
        found["product"] = opportunity.product
    return found


@attrs.frozen
class LeadScore:
    opportunity_id: str
    customer_id: str
    probability: float
    factors: dict[str, float]
    """Feature=value -> its likelihood ratio P(value | won) / P(value | lost)."""

    def explain(self) -> dict[str, str | int | float]:
        return {name: round(ratio, 6) for name, ratio in self.factors.items()}


@attrs.frozen
class LeadModel:
    won: int
    lost: int
    counts: dict[str, dict[str, tuple[int, int]]]
    """feature -> value -> (won, lost) counts."""

    @classmethod
    def train(cls, opportunities: Iterable[Opportunity]) -> LeadModel:
        """Learn from the closed opportunities (won or lost); open ones are ignored."""
        won = lost = 0
        counts: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
        for opportunity in opportunities:
            if opportunity.stage not in (Stage.WON, Stage.LOST):
                continue
            outcome = 0 if opportunity.stage == Stage.WON else 1
            won, lost = won + (outcome == 0), lost + (outcome == 1)
            for name, value in features(opportunity).items():
                counts[name][value][outcome] += 1
        if not won or not lost:
            raise ValidationError("opportunities", (won, lost),
                                  "lead scoring needs both won and lost opportunities to learn from")
        frozen = {f: {v: (c[0], c[1]) for v, c in vals.items()} for f, vals in counts.items()}
        return cls(won, lost, frozen)

    def ratio(self, feature: str, value: str) -> float | None:
        seen = self.counts.get(feature, {})
        if value not in seen:
            return None
        k = len(seen)
        won, lost = seen[value]
        return ((won + 1) / (self.won + k)) / ((lost + 1) / (self.lost + k))

    def score(self, opportunity: Opportunity) -> LeadScore:
        log_odds = math.log((self.won + 1) / (self.lost + 1))
        factors = {}
        for name, value in sorted(features(opportunity).items()):
            ratio = self.ratio(name, value)
            if ratio is not None:
                factors[f"{name}={value}"] = ratio
                log_odds += math.log(ratio)
        probability = 1 / (1 + math.exp(-log_odds)) if log_odds > -700 else 0.0
        return LeadScore(opportunity.id, opportunity.customer_id, probability, factors)
