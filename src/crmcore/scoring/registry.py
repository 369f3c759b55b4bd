"""Scorers: the built-in ones and those plugins contribute through `crmcore_register_scorers`.

A scorer has a `name` and `score(crm, as_of)`, which returns `Score` snapshots
(value, label and the `details` that explain it) for the customers it rates as
of that instant; `Analytical.score` stores them, and segment rules read them.
A plugin's scorer with a built-in's name replaces the built-in.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs

from crmcore.errors import PluginError
from crmcore.model import Score

if TYPE_CHECKING:
    import pluggy

    from crmcore.crm import CRM


@runtime_checkable
class Scorer(Protocol):
    @property
    def name(self) -> str: ...

    def score(self, crm: CRM, as_of: datetime) -> Iterable[Score]:
        """Snapshots as of `as_of`, each with `details` that explain it."""
        ...


@attrs.frozen
class RfmScorer:
    """Label: the RFM segment; value: the mean of the three scores.

    RFM ranks customers within one currency (`Analytical.rfm`). When the purchases are
    in several currencies and no reporting currency converts them, a customer who bought
    in two is scored in each, and a snapshot is keyed by (customer, scorer, instant): so
    each currency's scores are stored under a scorer of their own, `rfm_<code>` (e.g.
    `rfm_eur`), and `rfm` holds one per customer, those of the currency the customer
    bought in on the most days (the lower code on a tie), its `details` naming the
    currency and every currency the customer bought in. One currency (or a reporting
    currency): `rfm` only.
    """

    name: str = "rfm"

    def score(self, crm: CRM, as_of: datetime) -> Iterator[Score]:
        scores = crm.analytical.rfm(as_of)
        mixed = len({item.currency for item in scores}) > 1
        for customer_id, group in itertools.groupby(scores, key=operator.attrgetter("customer_id")):
            items = list(group)
            main = min(items, key=lambda item: (-item.frequency, item.currency or ""))
            details = main.explain()
            if mixed:
                details["currencies"] = ",".join(sorted(item.currency or "" for item in items))
            yield Score(customer_id, self.name, as_of, main.value, main.segment, details)
            if mixed:
                for item in items:
                    yield Score(customer_id, f"{self.name}_{(item.currency or '').lower()}", as_of,
                                item.value, item.segment, item.explain())


@attrs.frozen
class LifetimeValueScorer:
    """CLV (value) from BG/NBD and Gamma-Gamma; also writes each customer's `p_alive`."""

    name: str = "clv"

    def score(self, crm: CRM, as_of: datetime) -> Iterator[Score]:
        valuation = crm.analytical.clv(as_of)
        for i, customer_id in enumerate(valuation.customer_ids):
            details = valuation.explain(i)
            yield Score(customer_id, self.name, as_of, float(valuation.clv[i]), None, details)
            yield Score(customer_id, "p_alive", as_of, float(valuation.p_alive[i]), None, details)


@attrs.frozen
class RepurchaseScorer:
    """Value: days past the due date of the next purchase; label: that date."""

    name: str = "next_purchase"

    def score(self, crm: CRM, as_of: datetime) -> Iterator[Score]:
        for item in crm.analytical.repurchase(as_of):
            if item.due is not None:
                yield Score(item.customer_id, self.name, as_of, item.overdue_days or 0,
                            item.due.isoformat(), item.explain())


@attrs.frozen
class NextOfferScorer:
    """Label: the item to offer; value: the confidence of the rule behind it."""

    name: str = "next_offer"

    def score(self, crm: CRM, as_of: datetime) -> Iterator[Score]:
        for offer in crm.analytical.next_offers(as_of).values():
            yield Score(offer.customer_id, self.name, as_of, offer.rule.confidence, offer.item[:100],
                        offer.explain())


BUILT_IN: tuple[Scorer, ...] = (RfmScorer(), LifetimeValueScorer(), RepurchaseScorer(), NextOfferScorer())


def scorers(pm: pluggy.PluginManager) -> dict[str, Scorer]:
    """Every scorer by name: the built-ins, then the plugins' (which may replace them)."""
    found: dict[str, Scorer] = {s.name: s for s in BUILT_IN}
    for contributed in pm.hook.crmcore_register_scorers():
        for scorer in contributed:
            if not isinstance(scorer, Scorer) or not isinstance(scorer.name, str):
                raise PluginError(f"{scorer!r} is not a scorer: it needs a name and score(crm, as_of)")
            found[scorer.name] = scorer
    return found
