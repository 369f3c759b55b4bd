"""Response analysis: did the campaign change behaviour, by how much, at what cost?

A randomised comparison of the target group with the control group over the
response window, per stratum and overall, measured the same way in both groups
(control members got nothing to click or reply to, so only what both could do counts):

- **responded**: bought, or contacted the company inbound (a reply, a click on a
  campaign link, a call...) inside the window, unsubscribes excepted;
- **converted**: bought inside the window (in the campaign's currency);
- **revenue**: per member, what they spent inside the window in that currency (zero if nothing).

Only members the send run judged eligible are compared (sent, failed or held);
members skipped for consent, caps or suppression are excluded from both groups
alike, so the comparison stays fair (intention to treat among the reachable).
`population="assigned"` compares everyone as drawn at launch instead.
Counting runs in SQL on SQLite and PostgreSQL (one grouped query), in Python on
other storages; both give the same numbers. The statistics are in `stats`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.marketing import stats
from crmcore.model import Campaign, CampaignMember, Direction, MemberGroup, MemberStatus
from crmcore.ports import UnitOfWork
from crmcore.sql.dialect import Dialect, Unsupported, dialect_of

ANALYSED = (
    MemberStatus.SENT,
    MemberStatus.HELD,
    MemberStatus.FAILED,
    MemberStatus.RESPONDED,
    MemberStatus.CONVERTED,
)
"""Statuses of members the send run judged eligible: the ones compared (population "reachable")."""
POPULATIONS = {"reachable": ANALYSED, "assigned": tuple(MemberStatus)}
"""Whom to compare: the reachable (default), or everyone as assigned at launch, sent or not
(an A/A rehearsal on history, or intention to treat with no regard to eligibility)."""
NOT_A_RESPONSE = "unsubscribed"


@attrs.frozen
class Tally:
    """Raw counts of one group (in one stratum)."""

    members: int = 0
    responders: int = 0
    converters: int = 0
    revenue: float = 0.0
    revenue_squares: float = 0.0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.members + other.members,
            self.responders + other.responders,
            self.converters + other.converters,
            self.revenue + other.revenue,
            self.revenue_squares + other.revenue_squares,
        )

    @property
    def moments(self) -> stats.Moments:
        return stats.Moments(self.members, self.revenue, self.revenue_squares)


@attrs.frozen
class Rate:
    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else 0.0

    def __str__(self) -> str:
        return f"{self.value:.2%} ({self.successes}/{self.n}, 95% CI {self.low:.2%}..{self.high:.2%})"


@attrs.frozen
class Lift:
    """Target rate minus control rate (absolute), and target / control (relative)."""

    target: Rate
    control: Rate
    difference: float
    low: float
    high: float
    p_value: float
    relative: float | None
    relative_low: float | None
    relative_high: float | None
    confidence: float

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha

    def explain(self, what: str) -> str:
        relative = (
            ""
            if self.relative is None
            else (
                f"; relative {self.relative - 1:+.1%}"
                + (
                    ""
                    if self.relative_low is None or self.relative_high is None
                    else f" ({self.relative_low - 1:+.1%}..{self.relative_high - 1:+.1%})"
                )
            )
        )
        verdict = (
            "a real difference"
            if self.significant(1 - self.confidence)
            else "not distinguishable from no effect"
        )
        return (
            f"{what}: target {self.target}, control {self.control}; lift {self.difference:+.2%} "
            f"({self.confidence:.0%} CI {self.low:+.2%}..{self.high:+.2%}, Newcombe){relative}; "
            f"p = {self.p_value:.3g}: {verdict}"
        )


def lift(target: tuple[int, int], control: tuple[int, int], confidence: float = 0.95) -> Lift:
    """Compare two (successes, members) pairs; see `stats` for the methods."""
    (x1, n1), (x2, n2) = target, control
    if n1 == 0 or n2 == 0:
        raise ValidationError("members", (n1, n2), "both groups need members to compare")
    low, high = stats.newcombe(x1, n1, x2, n2, confidence)
    ratio = stats.ratio_interval(x1, n1, x2, n2, confidence)
    relative = (x1 / n1) / (x2 / n2) if x2 else None
    return Lift(
        Rate(x1, n1, *stats.wilson(x1, n1, confidence)),
        Rate(x2, n2, *stats.wilson(x2, n2, confidence)),
        x1 / n1 - x2 / n2,
        low,
        high,
        stats.two_proportion_p(x1, n1, x2, n2),
        relative,
        None if ratio is None else ratio[0],
        None if ratio is None else ratio[1],
        confidence,
    )


MIN_BUYERS = 30


@attrs.frozen
class RevenueLift:
    """Revenue per member, target minus control, by Welch's t (see `stats`)."""

    currency: str
    target_mean: float
    control_mean: float
    difference: float
    low: float
    high: float
    p_value: float
    buyers: tuple[int, int]
    confidence: float

    @property
    def reliable(self) -> bool:
        """False while a group has fewer than 30 buyers: skewed spend then needs more data."""
        return min(self.buyers) >= MIN_BUYERS

    def explain(self) -> str:
        caution = "" if self.reliable else f" (fewer than {MIN_BUYERS} buyers in a group: treat with caution)"
        return (
            f"revenue per member: target {self.target_mean:,.2f}, control {self.control_mean:,.2f} "
            f"{self.currency}; difference {self.difference:+,.2f} ({self.confidence:.0%} CI "
            f"{self.low:+,.2f}..{self.high:+,.2f}, Welch), p = {self.p_value:.3g}{caution}"
        )


def revenue_lift(target: Tally, control: Tally, currency: str, confidence: float = 0.95) -> RevenueLift:
    if target.members < 2 or control.members < 2:
        raise ValidationError("members", (target.members, control.members), "each group needs two members")
    difference, low, high, p = stats.welch(target.moments, control.moments, confidence)
    return RevenueLift(
        currency,
        target.moments.mean,
        control.moments.mean,
        difference,
        low,
        high,
        p,
        (target.converters, control.converters),
        confidence,
    )


@attrs.frozen
class Figures:
    """Everything measured for one stratum (or for the whole campaign)."""

    target: Tally
    control: Tally
    response: Lift
    conversion: Lift
    revenue: RevenueLift
    budget: v.Money | None

    @property
    def incremental_conversions(self) -> float:
        """Conversions the campaign caused in the target group (estimate)."""
        return self.conversion.difference * self.target.members

    @property
    def incremental_revenue(self) -> v.Money:
        amount = Decimal(str(round(self.revenue.difference * self.target.members, 2)))
        return v.Money(amount, self.revenue.currency)

    @property
    def cost_per_incremental_conversion(self) -> v.Money | None:
        """Budget / incremental conversions; None without a budget or without a positive effect."""
        if self.budget is None or self.incremental_conversions <= 0:
            return None
        per = self.budget.amount / Decimal(str(self.incremental_conversions))
        return v.Money(per.quantize(Decimal("0.01")), self.budget.currency)

    def explain(self) -> str:
        lines = [
            f"members: {self.target.members} target, {self.control.members} control",
            self.response.explain("response"),
            self.conversion.explain("conversion"),
            self.revenue.explain(),
            f"incremental: {self.incremental_conversions:+.1f} conversions, "
            f"{self.incremental_revenue} revenue",
        ]
        if self.budget is not None:
            cost = self.cost_per_incremental_conversion
            lines.append(
                f"budget {self.budget}: "
                + (
                    f"{cost} per incremental conversion"
                    if cost is not None
                    else "no incremental conversion to charge it to"
                )
            )
        return "\n".join(lines)


@attrs.frozen
class Report:
    """The campaign's measured effect: overall, and per stratum when the holdout was stratified."""

    campaign_id: str
    window: tuple[datetime, datetime]
    overall: Figures
    strata: Mapping[str, Figures | None]
    """Per stratum; None where a group is too small to compare."""
    engine: str
    confidence: float

    def explain(self) -> str:
        start, end = self.window
        head = (
            f"campaign {self.campaign_id}, responses from {start:%Y-%m-%d %H:%M} to "
            f"{end:%Y-%m-%d %H:%M} UTC (counted in {self.engine})"
        )
        parts = [head, self.overall.explain()]
        for name, figures in sorted(self.strata.items()):
            parts.append(
                f"-- stratum {name!r}: "
                + ("too small to compare" if figures is None else "\n" + figures.explain())
            )
        return "\n".join(parts)


def window(campaign: Campaign, now: datetime) -> tuple[datetime, datetime]:
    start = campaign.starts_at or campaign.launched_at
    if start is None:
        raise ValidationError("campaign", campaign.id, "has not been launched: nothing to analyse")
    end = campaign.ends_at or now
    return start, max(start, min(end, now))


def tallies(
    uow: UnitOfWork, campaign: Campaign, start: datetime, end: datetime, *, engine: str = "auto",
    population: str = "reachable",
) -> tuple[dict[tuple[str, str], Tally], str]:
    """Counts by (group, stratum), and the engine that counted them ("sql" or "python")."""
    if population not in POPULATIONS:
        raise ValidationError("population", population, f"must be one of {', '.join(POPULATIONS)}")
    statuses = POPULATIONS[population]
    if engine not in ("auto", "python"):
        raise ValidationError("engine", engine, 'must be "auto" or "python"')
    dialect = dialect_of(uow) if engine == "auto" else None
    if dialect is not None:
        try:
            return _sql_tallies(uow, campaign, start, end, dialect, statuses), "sql"
        except Unsupported:
            pass  # the dialect cannot spell it: the same tallies in Python
    return _python_tallies(uow, campaign, start, end, statuses), "python"


def currency_of(campaign: Campaign) -> str:
    return campaign.budget.currency if campaign.budget is not None else "EUR"


def analysis_sql(dialect: Dialect, statuses: int = len(ANALYSED)) -> str:
    """The one grouped query (parameters: start, end, currency, start, end, campaign id, statuses).

    Spend and contacts are aggregated once over the window and joined to the
    members (hash joins), which beats a lookup per member once a campaign is a
    sizeable part of the base.
    """
    d = dialect
    ph = d.placeholder
    stratum = d.json_text("m.doc", "stratum")
    revenue = f"{d.cast('sum(total)', 'real')} / {10 ** d.money_scale}.0"
    listed = ", ".join(ph for _ in range(statuses))
    return (  # constants and placeholders only; every value is bound
        f"WITH spend AS (SELECT customer_id, {revenue} AS revenue "  # noqa: S608
        f"FROM purchases WHERE ordered_at >= {ph} AND ordered_at < {ph} AND currency = {ph} "
        "GROUP BY customer_id), "
        "contacted AS (SELECT DISTINCT customer_id FROM interactions "
        f"WHERE occurred_at >= {ph} AND occurred_at < {ph} AND direction = 'inbound' "
        f"AND (outcome IS NULL OR outcome <> '{NOT_A_RESPONSE}')) "
        f"SELECT m.grp, {stratum}, count(*), "
        "sum(CASE WHEN s.customer_id IS NOT NULL OR k.customer_id IS NOT NULL THEN 1 ELSE 0 END), "
        "sum(CASE WHEN s.customer_id IS NOT NULL THEN 1 ELSE 0 END), "
        "sum(coalesce(s.revenue, 0)), sum(coalesce(s.revenue, 0) * coalesce(s.revenue, 0)) "
        "FROM campaign_members m LEFT JOIN spend s ON s.customer_id = m.customer_id "
        "LEFT JOIN contacted k ON k.customer_id = m.customer_id "
        f"WHERE m.campaign_id = {ph} AND m.status IN ({listed}) GROUP BY m.grp, {stratum}"
    )


def _sql_tallies(
    uow: UnitOfWork, campaign: Campaign, start: datetime, end: datetime, d: Dialect,
    statuses: tuple[MemberStatus, ...],
) -> dict[tuple[str, str], Tally]:
    params: Sequence[Any] = (
        d.instant(start),
        d.instant(end),
        currency_of(campaign),
        d.instant(start),
        d.instant(end),
        campaign.id,
        *(str(s) for s in statuses),
    )
    rows: list[tuple[Any, ...]] = uow.select(analysis_sql(d, len(statuses)), params)  # type: ignore[attr-defined]
    return {
        (str(group), str(stratum or "")): Tally(
            int(n), int(r), int(c), float(total or 0), float(squares or 0)
        )
        for group, stratum, n, r, c, total, squares in rows
    }


def _members(uow: UnitOfWork, campaign_id: str, page: int = 1000) -> Iterator[CampaignMember]:
    after: str | None = None
    while True:
        found = uow.campaign_members.page(campaign_id, after=after, limit=page)
        if not found:
            return
        yield from found
        after = found[-1].customer_id


def _python_tallies(
    uow: UnitOfWork, campaign: Campaign, start: datetime, end: datetime, statuses: tuple[MemberStatus, ...]
) -> dict[tuple[str, str], Tally]:
    currency = currency_of(campaign)
    found: dict[tuple[str, str], Tally] = {}
    for member in _members(uow, campaign.id):
        if member.status not in statuses:
            continue
        bought = [
            p
            for p in uow.purchases.for_customer(member.customer_id, since=start)
            if start <= p.ordered_at < end and p.currency == currency
        ]
        revenue = float(sum((p.total.amount for p in bought), Decimal(0)))
        contacted = any(
            start <= i.occurred_at < end and i.direction is Direction.INBOUND and i.outcome != NOT_A_RESPONSE
            for i in uow.interactions.for_customer(member.customer_id, since=start, limit=None)
        )
        key = (str(member.group), member.stratum)
        found[key] = found.get(key, Tally()) + Tally(
            1, int(bool(bought) or contacted), int(bool(bought)), revenue, revenue * revenue
        )
    return found


def figures(target: Tally, control: Tally, campaign: Campaign, confidence: float) -> Figures:
    return Figures(
        target,
        control,
        lift((target.responders, target.members), (control.responders, control.members), confidence),
        lift((target.converters, target.members), (control.converters, control.members), confidence),
        revenue_lift(target, control, currency_of(campaign), confidence),
        campaign.budget,
    )


def report(
    campaign: Campaign,
    counted: Mapping[tuple[str, str], Tally],
    engine: str,
    span: tuple[datetime, datetime],
    confidence: float = 0.95,
) -> Report:
    target_name, control_name = str(MemberGroup.TARGET), str(MemberGroup.CONTROL)
    strata = sorted({stratum for _, stratum in counted})
    total = {
        g: sum((counted.get((g, s), Tally()) for s in strata), Tally()) for g in (target_name, control_name)
    }
    overall = figures(total[target_name], total[control_name], campaign, confidence)
    per: dict[str, Figures | None] = {}
    if strata != [""]:
        for stratum in strata:
            target, control = (
                counted.get((target_name, stratum), Tally()),
                counted.get((control_name, stratum), Tally()),
            )
            try:
                per[stratum] = figures(target, control, campaign, confidence)
            except ValidationError:
                per[stratum] = None
    return Report(campaign.id, span, overall, per, engine, confidence)
