"""Sales force automation: pipelines, leads, catalogue and quotes, forecasts and cycle analytics.

`crm.sales` gathers them. Forecasts and cycle figures are read from the stage
history as of any instant, computed in SQL where the storage speaks it; amounts
stay in their currency unless a reporting `currency` is asked for, and are then
converted with the company's dated rates (`crm.rates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING

from crmcore.sales import backtest as _backtest
from crmcore.sales import forecast as _forecast
from crmcore.sales.backtest import BacktestMonth
from crmcore.sales.cycle import Cycle, StageFigures, cycle
from crmcore.sales.forecast import Attainment, ForecastLine
from crmcore.sales.leads import Leads
from crmcore.sales.pipelines import Pipelines
from crmcore.sales.quotes import Catalogue, PriceList, Quotes
from crmcore.values import Money

if TYPE_CHECKING:
    from crmcore.crm import CRM

__all__ = [
    "Attainment",
    "BacktestMonth",
    "Catalogue",
    "Cycle",
    "ForecastLine",
    "Leads",
    "Pipelines",
    "PriceList",
    "Quotes",
    "Sales",
    "StageFigures",
]


class Sales:
    """The sales family of a CRM."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.pipelines = Pipelines(crm)
        self.leads = Leads(crm)
        self.catalogue = Catalogue(crm)
        self.quotes = Quotes(crm)

    def forecast(self, as_of: datetime | None = None, *, pipeline: str | None = None,
                 by: str | None = "owner", currency: str | None = None, commit: float = 0.7,
                 best_case: float = 0.4) -> list[ForecastLine]:
        """The pipeline as of an instant by close month and owner (or team, or None), per
        currency, or in `currency` at the rates of the instant's day."""
        moment = as_of or self.crm.clock()
        with self.crm.reading() as uow:
            lines = _forecast.forecast(uow, moment, pipeline=pipeline, by=by, commit=commit,
                                       best_case=best_case)
        if currency is None:
            return lines
        return _forecast.in_currency(lines, currency, moment.date(), self.crm.rates.table())

    def attainment(self, quotas: Mapping[tuple[str | None, str], Money], *,
                   as_of: datetime | None = None, by: str = "owner",
                   pipeline: str | None = None) -> list[Attainment]:
        """Won against quota for each (owner or team, YYYY-MM) in `quotas`."""
        moment = as_of or self.crm.clock()
        lines = self.forecast(moment, pipeline=pipeline, by=by)
        return _forecast.attainment(lines, quotas, moment.date(), self.crm.rates.table())

    def cycle(self, pipeline: str = "default", as_of: datetime | None = None) -> Cycle:
        """Time in stage, funnel, win rate, velocity and slipped close dates as of an instant."""
        chosen = self.pipelines.get(pipeline)
        with self.crm.reading() as uow:
            return cycle(uow, chosen, as_of or self.crm.clock())

    def backtest(self, start: date, end: date, *, pipeline: str | None = None,
                 commit: float = 0.7, best_case: float = 0.4) -> list[BacktestMonth]:
        """What the forecast said at each month's start against what was won that month."""
        return _backtest.backtest(
            lambda moment: self.forecast(moment, pipeline=pipeline, by=None, commit=commit,
                                         best_case=best_case),
            start, end,
        )

    def summary(self, as_of: datetime | None = None) -> list[str]:
        """Pipeline figures as text lines, for the demo and reports: per pipeline the funnel,
        win rate, cycle and velocity; then the weighted forecast per month and currency."""
        moment = as_of or self.crm.clock()
        out = []
        for pipeline in self.pipelines.list():
            figures = self.cycle(pipeline.id, moment)
            if not figures.stages[0].reached:
                continue
            funnel = " > ".join(f"{s.stage} {s.reached:,}" for s in figures.stages)
            out.append(f"pipeline {pipeline.id}: {funnel}")
            rate = "n/a" if figures.win_rate is None else f"{figures.win_rate:.0%}"
            days = "n/a" if figures.mean_cycle_days is None else f"{figures.mean_cycle_days:.0f} days"
            velocity = ", ".join(f"{Money(v, c)}/day" for c, v in figures.velocity.items()) or "n/a"
            out.append(f"  win rate {rate}, cycle {days}, velocity {velocity}, "
                       f"{figures.slipped:,} slipped close dates")
        for line in self.forecast(moment, by=None):
            if line.period is not None and line.period >= f"{moment.year:04d}-{moment.month:02d}":
                out.append(f"  forecast {line.period}: weighted {line.money('weighted')}, "
                           f"commit {line.money('commit')}, pipeline {line.money('pipeline')}")
        return out
