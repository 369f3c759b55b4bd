"""Service quality per service point, channel and period: CSAT, NPS, complaint rate,
first-contact resolution and SLA compliance.

- CSAT: share of satisfaction answers (1-5) that are 4 or 5, in percent.
- NPS: percent promoters (9-10) minus percent detractors (0-6).
- complaint rate: complaints opened per 100 interactions.
- first-contact resolution: percent of resolved cases closed at their first contact.
- SLA compliance: percent of cases with a deadline met, counting a case still open
  past its deadline as missed.
- gap: mean of perception minus expectation (satisfaction - expectation, both 1-5)
  over the answers that carry both scores, the SERVQUAL reading: below 0, the
  service falls short of what customers expected.

Interactions are grouped by their own channel and service point and dated by
when they happened; cases by theirs and dated by when they were opened. The tier
is the customer's tier now (the record does not keep past tiers). SQL storage
aggregates in the database.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from contextlib import suppress
from datetime import date, datetime
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model import Case, CaseKind, CaseStatus, Interaction
from crmcore.ports import UnitOfWork
from crmcore.scoring.summary import Period, every
from crmcore.sql.dialect import Dialect, Unsupported, dialect_of

DIMENSIONS = ("service_point", "channel", "period")
"""The default grouping; "tier" (the customer's) may be asked for as well."""
ALL_DIMENSIONS = (*DIMENSIONS, "tier")
PERIODS = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}


@attrs.frozen
class Quality:
    """The figures of one group; None where the group has nothing to measure."""

    service_point: str | None
    channel: str | None
    period: str | None
    interactions: int = 0
    csat: float | None = None
    nps: float | None = None
    complaint_rate: float | None = None
    first_contact_resolution: float | None = None
    sla_compliance: float | None = None
    counts: dict[str, int] = attrs.field(factory=dict)
    """The raw counts behind the figures (answers, promoters, cases, ...)."""
    tier: str | None = None
    gap: float | None = None
    """Mean perception minus expectation where surveys carry both (see the module)."""

    def explain(self) -> dict[str, str | int | float]:
        return dict(self.counts)


_COUNTS = ("interactions", "rated", "satisfied", "nps_answers", "promoters", "detractors",
           "gap_answers", "gap_sum", "cases", "complaints", "resolved", "first_contact", "with_sla",
           "sla_met")
_INTERACTION_COUNTS = 8


def _pct(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def _figures(key: tuple[str | None, ...], c: dict[str, int]) -> Quality:
    return Quality(
        key[0], key[1], key[2], tier=key[3],
        gap=c["gap_sum"] / c["gap_answers"] if c["gap_answers"] else None,
        interactions=c["interactions"],
        csat=_pct(c["satisfied"], c["rated"]),
        nps=None if not c["nps_answers"] else 100 * (c["promoters"] - c["detractors"]) / c["nps_answers"],
        complaint_rate=_pct(c["complaints"], c["interactions"]),
        first_contact_resolution=_pct(c["first_contact"], c["resolved"]),
        sla_compliance=_pct(c["sla_met"], c["with_sla"]),
        counts=dict(c),
    )


def _check(by: Sequence[str], period: str) -> None:
    for name in by:
        if name not in ALL_DIMENSIONS:
            raise ValidationError("by", name, f"must be among {ALL_DIMENSIONS}")
    if period not in PERIODS:
        raise ValidationError("period", period, f"must be one of {sorted(PERIODS)}")


def _interaction_counts(i: Interaction) -> dict[str, int]:
    both = i.satisfaction is not None and i.expectation is not None
    return {
        "interactions": 1,
        "rated": i.satisfaction is not None, "satisfied": (i.satisfaction or 0) >= 4,
        "nps_answers": i.nps is not None, "promoters": i.nps is not None and i.nps >= 9,
        "detractors": i.nps is not None and i.nps <= 6,
        "gap_answers": both, "gap_sum": (i.satisfaction or 0) - (i.expectation or 0) if both else 0,
    }


def _case_counts(c: Case, end: datetime) -> dict[str, int]:
    resolved = c.resolved_at is not None and c.resolved_at < end
    met = c.sla_due is not None and resolved and c.resolved_at <= c.sla_due  # type: ignore[operator]
    decided = c.sla_due is not None and (resolved or c.sla_due < end)
    closed = resolved and c.status is not CaseStatus.OPEN
    return {
        "cases": 1, "complaints": c.kind is CaseKind.COMPLAINT,
        "resolved": closed, "first_contact": closed and c.contacts == 1,
        "with_sla": decided, "sla_met": met,
    }


def _python(uow: UnitOfWork, by: Sequence[str], period: str, since: datetime | None,
            end: datetime) -> Iterable[tuple[tuple[Any, ...], dict[str, int]]]:
    fmt = PERIODS[period]
    tiers = {c.id: c.tier for c in every(uow, "customers")} if "tier" in by else {}

    def key(service_point: str | None, channel: Any, at: datetime, customer_id: str) -> tuple[Any, ...]:
        full = {"service_point": service_point, "channel": None if channel is None else str(channel),
                "period": at.strftime(fmt), "tier": tiers.get(customer_id)}
        return tuple(full[d] if d in by else None for d in ALL_DIMENSIONS)

    for i in every(uow, "interactions"):
        if (since is None or i.occurred_at >= since) and i.occurred_at < end:
            yield key(i.service_point, i.channel, i.occurred_at, i.customer_id), _interaction_counts(i)
    for c in every(uow, "cases"):
        if (since is None or c.opened_at >= since) and c.opened_at < end:
            yield key(c.service_point, c.channel, c.opened_at, c.customer_id), _case_counts(c, end)


def _sql(uow: Any, dialect: Dialect, by: Sequence[str], period: str, since: datetime | None,
         end: datetime) -> list[tuple[tuple[Any, ...], dict[str, int]]]:
    """Both aggregations, read whole before any is used (so a dialect that cannot spell
    them raises `Unsupported` before anything is counted)."""
    mark = dialect.placeholder

    def keys(column: str) -> str:
        bucket = dialect.period(f"t.{column}", period) if "period" in by else "NULL"
        chosen = {"service_point": "t.service_point", "channel": "t.channel", "period": bucket,
                  "tier": "c.tier"}
        return ", ".join(chosen[d] if d in by else "NULL" for d in ALL_DIMENSIONS)

    def window(column: str) -> tuple[str, list[Any]]:
        where, params = f"t.{column} < {mark}", [dialect.instant(end)]
        if since is not None:
            where += f" AND t.{column} >= {mark}"
            params.append(dialect.instant(since))
        return where, params

    def source(table: str) -> str:
        joined = " LEFT JOIN customers AS c ON c.id = t.customer_id" if "tier" in by else ""
        return f"{table} AS t{joined}"

    found: list[tuple[tuple[Any, ...], dict[str, int]]] = []
    expectation = dialect.json_integer("t.doc", "expectation")
    both = f"t.satisfaction IS NOT NULL AND {expectation} IS NOT NULL"
    where, params = window("occurred_at")
    interactions = uow.select(
        f"SELECT {keys('occurred_at')}, COUNT(*), COUNT(t.satisfaction), "  # noqa: S608
        "SUM(CASE WHEN t.satisfaction >= 4 THEN 1 ELSE 0 END), COUNT(t.nps), "
        "SUM(CASE WHEN t.nps >= 9 THEN 1 ELSE 0 END), SUM(CASE WHEN t.nps <= 6 THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {both} THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {both} THEN t.satisfaction - {expectation} ELSE 0 END) "
        f"FROM {source('interactions')} WHERE {where} GROUP BY 1, 2, 3, 4",
        params,
    )
    for row in interactions:
        found.append((tuple(row[:4]),
                      dict(zip(_COUNTS[:_INTERACTION_COUNTS], map(int, row[4:]), strict=True))))
    where, params = window("opened_at")
    done = f"(t.resolved_at IS NOT NULL AND t.resolved_at < {mark})"
    cases = uow.select(
        f"SELECT {keys('opened_at')}, COUNT(*), "  # noqa: S608
        "SUM(CASE WHEN t.kind = 'complaint' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {done} AND t.status <> 'open' THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN {done} AND t.status <> 'open' AND t.contacts = 1 THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN t.sla_due IS NOT NULL AND ({done} OR t.sla_due < {mark}) THEN 1 ELSE 0 END), "
        f"SUM(CASE WHEN t.sla_due IS NOT NULL AND {done} AND t.resolved_at <= t.sla_due "
        f"THEN 1 ELSE 0 END) FROM {source('cases')} WHERE {where} GROUP BY 1, 2, 3, 4",
        [dialect.instant(end)] * 5 + params,
    )
    for row in cases:
        found.append((tuple(row[:4]),
                      dict(zip(_COUNTS[_INTERACTION_COUNTS:], map(int, row[4:]), strict=True))))
    return found


def service_quality(
    uow: UnitOfWork,
    as_of: date | datetime,
    *,
    by: Sequence[str] = DIMENSIONS,
    period: str = "month",
    since: datetime | None = None,
) -> list[Quality]:
    """The figures of each group (service point, channel, period: any of them) up to `as_of`."""
    _check(by, period)
    since = None if since is None else v.utc(since, "since")
    end = Period.as_of(as_of).end
    dialect = dialect_of(uow)
    rows: Iterable[tuple[tuple[Any, ...], dict[str, int]]] | None = None
    if dialect is not None:
        with suppress(Unsupported):  # no calendar periods or JSON reads: the same figures from Python
            rows = _sql(uow, dialect, by, period, since, end)
    if rows is None:
        rows = _python(uow, by, period, since, end)
    totals: dict[tuple[Any, ...], dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTS, 0))
    for key, counts in rows:
        group = totals[key]
        for name, count in counts.items():
            group[name] += int(count)
    return [_figures(key, totals[key]) for key in sorted(totals, key=lambda k: tuple(map(str, k)))]
