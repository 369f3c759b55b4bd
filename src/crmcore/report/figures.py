"""The figures behind the report, computed from a CRM and kept small.

Every figure is aggregated here (counts per month, histogram bins, the top of a
list), so a chart's data is a few hundred rows however large the base is. A figure
that cannot be had (the `analytics` extra is missing, too little history to fit)
is a `Missing` with the reason, shown in the report in the chart's place.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

import attrs

from crmcore.errors import CRMError
from crmcore.model import Stage
from crmcore.ports import UnitOfWork
from crmcore.ports.storage import SqlUnitOfWork
from crmcore.scoring.summary import every
from crmcore.sql.dialect import Unsupported, dialect_of

if TYPE_CHECKING:
    from crmcore.crm import CRM

Rows = list[dict[str, Any]]
TOP = 20
"""Rows of the churn-risk list and items of the next-offer chart."""
CAMPAIGNS = 8
"""Campaigns in the lift chart: the most recently launched."""


@attrs.frozen
class Missing:
    reason: str


@attrs.frozen
class Figures:
    as_of: datetime
    customers: int
    lifecycle_by_month: Rows | Missing
    tiers: Rows | Missing
    rfm_grid: Rows | Missing
    clv_histogram: Rows | Missing
    churn_risk: Rows | Missing
    repurchase_due: Rows | Missing
    next_offers: Rows | Missing
    quality_by_channel: Rows | Missing
    quality_by_point: Rows | Missing
    pipeline: Rows | Missing
    campaign_lift: Rows | Missing = Missing("not computed")


def _guard(compute: Callable[[], Rows]) -> Rows | Missing:
    try:
        return compute()
    except CRMError as exc:
        return Missing(str(exc))


def gather(crm: CRM, as_of: datetime | None = None) -> Figures:
    """Every figure of the report, as of an instant (default: the CRM's clock)."""
    moment = as_of or crm.clock()
    analytical = crm.analytical
    by_month: collections.Counter[tuple[str, str]] = collections.Counter()
    tiers: collections.Counter[tuple[str, str]] = collections.Counter()
    count = 0
    with crm.reading() as uow:
        for month, stage, tier, n in customer_counts(uow):
            count += n
            by_month[month, stage] += n
            tiers[tier or "(none)", stage] += n
    lifecycle = [{"month": m, "lifecycle": s, "customers": n} for (m, s), n in sorted(by_month.items())]
    tier_rows = [{"tier": t, "lifecycle": s, "customers": n} for (t, s), n in sorted(tiers.items())]

    def rfm() -> Rows:
        # one currency's buyers (the most numerous), as the CLV chart: with several currencies
        # and no reporting currency each is scored apart, and two currencies' spend never mix
        scores = analytical.rfm(moment)
        buyers = collections.Counter(score.currency for score in scores)
        main = min(buyers, key=lambda code: (-buyers[code], code or "")) if buyers else None
        cells: dict[tuple[int, int], list[float]] = collections.defaultdict(list)
        for score in scores:
            if score.currency == main:
                cells[score.r, score.f].append(score.monetary)
        return [{"recency": r, "frequency": f, "customers": len(m), "mean_spend": round(sum(m) / len(m), 2),
                 "currency": main or ""} for (r, f), m in sorted(cells.items())]

    valuation: list[Any] = []

    def clv() -> Rows:
        # one currency's customers (the largest): lifetime values of two currencies never mix
        values = analytical.clv_by_currency(moment)
        if not values:
            raise CRMError("no currency has enough purchase history to fit a lifetime-value model")
        main = max(values, key=lambda code: len(values[code].customer_ids))
        valuation.append(analytical.fit_clv(moment, currency=main))
        return _histogram([float(x) for x in values[main].clv])

    def churn() -> Rows:
        if not valuation:
            raise CRMError("no lifetime-value model (see the CLV chart)")
        alerts = analytical.churn_alerts(moment, model=valuation[0], emit=False)[:TOP]
        names = {}
        with crm.reading() as uow:
            for alert in alerts:
                found = uow.customers.find(alert.customer_id)
                names[alert.customer_id] = found.name if found else alert.customer_id
        return [{"customer": names[a.customer_id], "customer_id": a.customer_id,
                 "p_alive": round(a.p_alive, 3), "value": round(a.value, 2),
                 "since_last": round(a.since_last, 1)} for a in alerts]

    def repurchase() -> Rows:
        weeks: collections.Counter[int] = collections.Counter()
        for item in analytical.repurchase(moment):
            if item.due is not None:
                weeks[max(-8, min(12, math.floor((item.due - moment.date()).days / 7)))] += 1
        return [{"week": w, "label": _week_label(w), "customers": n} for w, n in sorted(weeks.items())]

    def offers() -> Rows:
        counts = collections.Counter(o.item for o in analytical.next_offers(moment).values())
        return [{"item": item, "customers": n} for item, n in counts.most_common(TOP)]

    def quality(dimension: str) -> Rows:
        rows = analytical.service_quality(moment, by=(dimension, "period"), period="month",
                                          since=moment - timedelta(days=365))
        return [{dimension: getattr(q, dimension) or "(none)", "month": q.period, "contacts": q.interactions,
                 "csat": q.csat, "nps": q.nps, "sla": q.sla_compliance} for q in rows]

    def pipeline() -> Rows:
        counts: collections.Counter[str] = collections.Counter()
        amounts: dict[str, Decimal] = collections.defaultdict(Decimal)
        with crm.reading() as uow:
            for o in every(uow, "opportunities"):
                counts[str(o.stage)] += 1
                if o.amount is not None:
                    amounts[f"{o.stage}|{o.amount.currency}"] += o.amount.amount
        return [{"stage": str(s), "order": i, "opportunities": counts[str(s)],
                 "amounts": ", ".join(f"{amounts[k]:,.0f} {k.split('|')[1]}" for k in sorted(amounts)
                                      if k.startswith(f"{s}|"))}
                for i, s in enumerate(Stage)]

    return Figures(
        moment, count, lifecycle, tier_rows, _guard(rfm), _guard(clv), _guard(churn), _guard(repurchase),
        _guard(offers), _guard(lambda: quality("channel")), _guard(lambda: quality("service_point")),
        _guard(pipeline), _guard(lambda: campaign_lift(crm, moment)),
    )


def campaign_lift(crm: CRM, moment: datetime) -> Rows:
    """Response and conversion lift (target rate minus control rate, in percentage points)
    with its confidence interval, for the campaigns launched most recently before `moment`,
    each measured over its response window so far (`crm.marketing.analyse`): among the
    members the send reached, or, for a campaign that reached nobody (an A/A rehearsal on
    history), among everyone assigned at launch."""
    with crm.reading() as uow:
        launched = sorted((c for c in every(uow, "campaigns")
                           if c.launched_at is not None and c.launched_at <= moment),
                          key=lambda c: (c.launched_at, c.id), reverse=True)[:CAMPAIGNS]
    rows: Rows = []
    for campaign in launched:
        result = None
        for population in ("reachable", "assigned"):
            try:
                result = crm.marketing.analyse(campaign.id, population=population)
                break
            except CRMError:  # too few members in a group to compare
                continue
        if result is None:
            continue
        overall = result.overall
        for measure, lift in (("response", overall.response), ("conversion", overall.conversion)):
            rows.append({
                "campaign": campaign.name, "campaign_id": campaign.id, "measure": measure,
                "label": f"{campaign.name}: {measure}",
                "lift": round(100 * lift.difference, 3), "low": round(100 * lift.low, 3),
                "high": round(100 * lift.high, 3), "target": round(100 * lift.target.value, 3),
                "control": round(100 * lift.control.value, 3), "p_value": round(lift.p_value, 4),
                "significant": lift.significant(1 - lift.confidence),
                "members": f"{overall.target.members:,} / {overall.control.members:,}",
                "confidence": f"{lift.confidence:.0%}", "population": population,
            })
    if not rows:
        raise CRMError("no launched campaign with a target and a control group to compare")
    return rows


def customer_counts(uow: UnitOfWork) -> list[tuple[str, str, str | None, int]]:
    """(month created, lifecycle, tier, customers): counted in the database when it speaks SQL,
    so a large base is not loaded record by record."""
    dialect = dialect_of(uow)
    try:
        month = None if dialect is None else dialect.period("created_at", "month")
    except Unsupported:
        month = None
    if month is not None:
        rows = cast(SqlUnitOfWork, uow).select(
            f"SELECT {month}, lifecycle, tier, count(*) FROM customers GROUP BY 1, 2, 3")  # noqa: S608
        return [(str(m), str(lc), None if t is None else str(t), int(n)) for m, lc, t, n in rows]
    counted: collections.Counter[tuple[str, str, str | None]] = collections.Counter(
        (f"{c.created_at:%Y-%m}", str(c.lifecycle), c.tier) for c in every(uow, "customers"))
    return [(*key, n) for key, n in counted.items()]


def _week_label(week: int) -> str:
    if week <= -8:
        return "8+ weeks overdue"
    if week < 0:
        return f"{-week} week{'s' if week < -1 else ''} overdue"
    if week >= 12:
        return "in 12+ weeks"
    return "this week" if week == 0 else f"in {week} week{'s' if week > 1 else ''}"


def _histogram(values: list[float], bins: int = 30) -> Rows:
    """Equal-width bins up to the 99th percentile (a few whales would squash the rest), then the tail."""
    if not values:
        return []
    ordered = sorted(values)
    top = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    low = min(0.0, ordered[0])
    width = (top - low) / bins or 1.0
    counts = [0] * (bins + 1)
    for x in ordered:
        counts[min(bins, int((x - low) / width))] += 1
    return [{"from": round(low + i * width, 2), "to": round(low + (i + 1) * width, 2),
             "tail": i == bins, "customers": n} for i, n in enumerate(counts) if n]
