"""Cross-sell: association rules mined from baskets, and a next-best offer per customer.

A rule "A -> B" says how often B is in a basket that holds A: `support` (share of
baskets with both), `confidence` (share of A's baskets that hold B) and `lift`
(confidence over B's own share; above 1, A makes B likelier). The next-best
offer for a customer is the item of the strongest rule whose antecedent they
own and whose consequent they do not.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime

import attrs

from crmcore.errors import ValidationError
from crmcore.ports import UnitOfWork
from crmcore.scoring.summary import Period, every
from crmcore.sql.dialect import Dialect, Unsupported, dialect_of

LEVELS = ("product", "category")


def _items_sql(dialect: Dialect, level: str) -> str:
    """Distinct items of every purchase before a bound instant, by purchase id; `level` is
    one of LEVELS."""
    item = dialect.json_element_text("l", level)
    lines = dialect.json_elements("p.doc", "lines", "l")
    return dialect.sql(
        f"SELECT DISTINCT p.id, p.customer_id, {item} FROM purchases p, {lines} "  # noqa: S608
        f"WHERE p.ordered_at < ? ORDER BY p.id"
    )


@attrs.frozen
class Rule:
    antecedent: str
    consequent: str
    count: int
    support: float
    confidence: float
    lift: float


@attrs.frozen
class Offer:
    customer_id: str
    item: str
    rule: Rule

    def explain(self) -> dict[str, str | int | float]:
        return {"because": self.rule.antecedent, "support": self.rule.support,
                "confidence": self.rule.confidence, "lift": self.rule.lift}


def basket_items(
    uow: UnitOfWork, as_of: date | datetime, level: str = "product"
) -> Iterator[tuple[str, str, str]]:
    """(purchase id, customer id, item) for every distinct item of every purchase before `as_of`,
    grouped by purchase."""
    if level not in LEVELS:
        raise ValidationError("level", level, f"must be one of {LEVELS}")
    period = Period.as_of(as_of)
    dialect = dialect_of(uow)
    try:
        query = None if dialect is None else _items_sql(dialect, level)
    except Unsupported:
        query = None  # the dialect reads no JSON arrays: the same rows from Python
    if dialect is None or query is None:
        for purchase in sorted(every(uow, "purchases"), key=lambda p: p.id):
            if purchase.ordered_at < period.end:
                items = {getattr(line, level) for line in purchase.lines}
                for item in sorted(items):
                    yield purchase.id, purchase.customer_id, item
        return
    rows = uow.select(query, [dialect.instant(period.end)])  # type: ignore[attr-defined]
    for purchase_id, customer_id, item in rows:
        if item:
            yield str(purchase_id), str(customer_id), str(item)


def baskets(items: Iterable[tuple[str, str, str]]) -> Iterator[tuple[str, frozenset[str]]]:
    """(customer id, items) per purchase from rows grouped by purchase."""
    for (_purchase, customer_id), rows in itertools.groupby(items, key=lambda r: (r[0], r[1])):
        yield customer_id, frozenset(item for _, _, item in rows)


def mine_rules(
    baskets: Iterable[frozenset[str]], *, min_support: float = 0.01, min_confidence: float = 0.1
) -> list[Rule]:
    """Every one-item rule above both thresholds, strongest (confidence, then lift) first."""
    if not 0 <= min_support <= 1 or not 0 <= min_confidence <= 1:
        raise ValidationError("min_support/min_confidence", (min_support, min_confidence),
                              "must be shares between 0 and 1")
    singles: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    n = 0
    for basket in baskets:
        n += 1
        singles.update(basket)
        pairs.update(itertools.permutations(sorted(basket), 2))
    rules = []
    for (a, b), both in pairs.items():
        support, confidence = both / n, both / singles[a]
        if support >= min_support and confidence >= min_confidence:
            rules.append(Rule(a, b, both, support, confidence, confidence / (singles[b] / n)))
    return sorted(rules, key=lambda r: (-r.confidence, -r.lift, r.antecedent, r.consequent))


def next_best_offers(owned: Mapping[str, set[str] | frozenset[str]], rules: list[Rule]) -> dict[str, Offer]:
    """For each customer, the consequent of the strongest rule they qualify for and lack."""
    by_antecedent: dict[str, list[Rule]] = defaultdict(list)
    for rule in rules:
        by_antecedent[rule.antecedent].append(rule)
    offers = {}
    for customer_id, items in owned.items():
        candidates = [r for a in items for r in by_antecedent.get(a, ()) if r.consequent not in items]
        if candidates:
            best = min(candidates, key=lambda r: (-r.confidence, -r.lift, r.consequent, r.antecedent))
            offers[customer_id] = Offer(customer_id, best.consequent, best)
    return offers


def holdings(per_purchase: Iterable[tuple[str, frozenset[str]]]) -> dict[str, set[str]]:
    owned: dict[str, set[str]] = defaultdict(set)
    for customer_id, items in per_purchase:
        owned[customer_id] |= items
    return dict(owned)
