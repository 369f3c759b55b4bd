"""Cycle analytics from the stage history, as of any instant.

- time in stage: mean days an opportunity spent in each open stage (counting the
  stay under way up to the instant), over those that entered it;
- funnel: how many reached each stage, where reaching a stage means reaching it or
  any later one (a skipped stage was passed through), so counts never grow down the
  stages; lost opportunities count at the furthest open stage they reached;
- win rate: won / (won + lost) among those closed by the instant;
- mean cycle: days from opening to winning, over the won;
- sales velocity per currency: open deals x mean won amount x win rate / mean cycle
  (money per day);
- slipped: open opportunities whose expected close date was pushed later, and by how
  many days in all.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import attrs

from crmcore.model import Pipeline
from crmcore.ports import UnitOfWork
from crmcore.sales.query import SqlPlan, Step, cents, plan, steps

DAY = 86_400.0


@attrs.frozen
class StageFigures:
    stage: str
    reached: int
    converted: float | None
    """Share of those that reached this stage that reached the next (None: none reached it)."""
    mean_days: float | None
    """Mean days in this stage over those that entered it (None for won, or none entered)."""


@attrs.frozen
class Cycle:
    pipeline: str
    as_of: datetime
    stages: tuple[StageFigures, ...]
    open: int
    won: int
    lost: int
    mean_cycle_days: float | None
    won_amounts: dict[str, Decimal]
    open_by_currency: dict[str, int]
    won_by_currency: dict[str, int]
    slipped: int
    slipped_days: float

    @property
    def win_rate(self) -> float | None:
        closed = self.won + self.lost
        return self.won / closed if closed else None

    @property
    def velocity(self) -> dict[str, Decimal]:
        """Money per day the pipeline is expected to turn into, per currency (to the cent)."""
        rate, days = self.win_rate, self.mean_cycle_days
        if not rate or not days:
            return {}
        found = {}
        for currency, won in sorted(self.won_amounts.items()):
            mean_won = won / self.won_by_currency[currency]
            found[currency] = cents(self.open_by_currency.get(currency, 0) * mean_won
                                    * Decimal(repr(rate)) / Decimal(repr(days)))
        return found

    def funnel(self) -> dict[str, int]:
        return {s.stage: s.reached for s in self.stages}


@attrs.frozen
class _Raw:
    """What each engine measures; `Cycle` is built from it the same way for both."""

    days: dict[str, tuple[int, float]]
    """open stage -> (opportunities that entered it, total days in it)."""
    furthest: dict[int, int]
    """furthest stage rank -> opportunities."""
    outcomes: dict[tuple[str, str | None], tuple[int, Decimal, float]]
    """(open|won|lost, currency) -> (count, sum of amounts, sum of days since opening)."""
    slipped: int
    slipped_days: float


def cycle(uow: UnitOfWork, pipeline: Pipeline, as_of: datetime) -> Cycle:
    sql = plan(uow, as_of, pipeline.id)
    raw = _python(steps(uow, as_of, pipeline.id), pipeline, as_of) if sql is None else (
        _sql(uow, sql, pipeline))
    return _figures(raw, pipeline, as_of)


def _ranks(pipeline: Pipeline) -> dict[str, int]:
    return {name: rank for rank, name in enumerate(pipeline.order[:-1])}  # lost has no rank


def _sql(uow: UnitOfWork, sql: SqlPlan, pipeline: Pipeline) -> _Raw:
    open_ = "stage NOT IN ('won', 'lost')"
    ranks = _ranks(pipeline)
    end = sql.instant(sql.as_of)
    days = sql.run(uow, (
        f"SELECT stage, count(DISTINCT opportunity_id), "  # noqa: S608
        f"sum({sql.days('COALESCE(next_at, ?)', 'taken_at')}) FROM h WHERE {open_} GROUP BY stage"
    ), [end])
    whens = " ".join("WHEN ? THEN ?" for _ in ranks)
    furthest = sql.run(uow, (
        f"SELECT r, count(*) FROM (SELECT opportunity_id, max(CASE stage {whens} END) AS r "  # noqa: S608
        "FROM h GROUP BY opportunity_id) f WHERE r IS NOT NULL GROUP BY r"
    ), [x for pair in ranks.items() for x in pair], needs=())
    outcomes = sql.run(uow, (
        "SELECT CASE WHEN stage IN ('won', 'lost') THEN stage ELSE 'open' END, currency, "  # noqa: S608
        f"count(*), sum(amount), sum({sql.days('taken_at', 'opened_at')}) "
        "FROM h WHERE next_at IS NULL GROUP BY 1, 2"
    ), needs=("next_at", "opened_at"))
    slipped = sql.run(uow, (
        f"SELECT count(DISTINCT opportunity_id), sum({sql.date_days('close_date', 'prev_close')}) "  # noqa: S608
        f"FROM h WHERE {open_} AND close_date > prev_close"
    ), needs=("prev_close",))
    return _Raw(
        {str(stage): (int(n), float(total or 0)) for stage, n, total in days},
        {int(r): int(n) for r, n in furthest},
        {(str(kind), currency): (int(n), sql.money(amount), float(total or 0))
         for kind, currency, n, amount, total in outcomes},
        int(slipped[0][0] or 0), float(slipped[0][1] or 0),
    )


def _python(found: Iterable[Step], pipeline: Pipeline, as_of: datetime) -> _Raw:
    ranks = _ranks(pipeline)
    days: dict[str, tuple[set[str], float]] = defaultdict(lambda: (set(), 0.0))
    furthest: dict[str, int | None] = {}
    outcomes: dict[tuple[str, str | None], tuple[int, Decimal, float]] = {}
    slipped: set[str] = set()
    slipped_days = 0.0
    for step in found:
        row = step.row
        oid = row.opportunity_id
        rank = ranks.get(row.stage)
        held = furthest.get(oid)
        furthest[oid] = held if rank is None else rank if held is None else max(held, rank)
        is_open = row.stage not in ("won", "lost")
        if is_open:
            who, total = days[row.stage]
            stay = ((step.next_at or as_of) - row.at).total_seconds() / DAY
            days[row.stage] = (who | {oid}, total + stay)
            if row.close_date and step.prev_close and row.close_date > step.prev_close:
                slipped.add(oid)
                slipped_days += (row.close_date - step.prev_close).days
        if step.current:
            kind = row.stage if not is_open else "open"
            n, amount, since = outcomes.get((kind, row.currency), (0, Decimal(0), 0.0))
            outcomes[(kind, row.currency)] = (
                n + 1, amount + (row.amount or 0),
                since + (row.at - step.opened_at).total_seconds() / DAY)
    counted: dict[int, int] = defaultdict(int)
    for rank in furthest.values():
        if rank is not None:
            counted[rank] += 1
    return _Raw({s: (len(who), total) for s, (who, total) in days.items()}, dict(counted),
                outcomes, len(slipped), slipped_days)


def _figures(raw: _Raw, pipeline: Pipeline, as_of: datetime) -> Cycle:
    names = pipeline.order[:-1]
    reached = [sum(n for rank, n in raw.furthest.items() if rank >= index) for index in range(len(names))]
    stages = []
    for index, name in enumerate(names):
        entered, total = raw.days.get(name, (0, 0.0))
        nxt = reached[index + 1] if index + 1 < len(names) else None
        stages.append(StageFigures(
            name, reached[index],
            None if nxt is None or not reached[index] else nxt / reached[index],
            total / entered if entered else None,
        ))
    count: dict[str, int] = defaultdict(int)
    amounts: dict[str, Decimal] = {}
    won_n: dict[str, int] = {}
    open_n: dict[str, int] = {}
    won_days = 0.0
    for (kind, currency), (n, amount, since) in raw.outcomes.items():
        count[kind] += n
        if kind == "won":
            won_days += since
            if currency is not None:
                amounts[currency] = amount
                won_n[currency] = n
        elif kind == "open" and currency is not None:
            open_n[currency] = n
    return Cycle(pipeline.id, as_of, tuple(stages), count["open"], count["won"], count["lost"],
                 won_days / count["won"] if count["won"] else None, amounts, open_n, won_n,
                 raw.slipped, raw.slipped_days)
