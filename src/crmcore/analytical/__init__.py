"""Analytical CRM: scores and service-quality figures computed from the stored history.

Heavy aggregation runs in the database when storage speaks SQL (see
`crmcore.scoring.summary`); lifetime value needs the `analytics` extra (numpy,
scipy). Scores are stored as dated snapshots that segment rules can read.

Money figures are in one currency: the only one the purchases use, the one asked
for (`currency=`), or everything converted into it (`currency=` with `rates=`,
any `crmcore.exchange.ExchangeRates`). `reporting(currency, rates, margins=)` sets
the default for every call, the scorers included; with a `MarginRule`, RFM monetary
and CLV are on margin instead of revenue (see `scoring.margin`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING

from crmcore.errors import MissingExtra, ValidationError
from crmcore.exchange import ExchangeRates
from crmcore.model import Customer, Opportunity, Score
from crmcore.scoring import arguments, cross_sell
from crmcore.scoring.churn import ChurnAlert, churn_alerts
from crmcore.scoring.churn import check as check_churn
from crmcore.scoring.cohorts import ChurnRate, Cohort, churn_rates, cohort_table
from crmcore.scoring.cross_sell import Offer, Rule
from crmcore.scoring.horizon import CALENDAR_MONTH, Horizon
from crmcore.scoring.intervals import Repurchase, repurchase_intervals
from crmcore.scoring.lead import LeadModel, LeadScore
from crmcore.scoring.margin import MarginRow, MarginRule, margin_summary, margins_by
from crmcore.scoring.rfm import RFM, SEGMENTS, rfm
from crmcore.scoring.service_quality import DIMENSIONS, Quality, service_quality
from crmcore.scoring.summary import MixedCurrencies, Period, Summary, currencies, every, summarize

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.scoring.clv import LifetimeModel, Valuation
    from crmcore.scoring.registry import Scorer

When = date | datetime
log = logging.getLogger(__name__)


class Analytical:
    """The analytical family of a CRM."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm
        self.currency: str | None = None
        self.rates: ExchangeRates | None = None
        self.margins: MarginRule | None = None

    def reporting(self, currency: str | None, rates: ExchangeRates | None = None, *,
                  margins: MarginRule | None = None) -> None:
        """The currency money figures default to, and the rates that convert into it
        (None, None: each figure in the purchases' one currency, a mix refused); with
        `margins`, customer value is measured on margin."""
        arguments.currency(currency)
        arguments.rates(rates)
        arguments.instance(margins, MarginRule, "margins")
        if rates is not None and currency is None:
            raise ValidationError("currency", None, "name the currency the rates convert into")
        self.currency, self.rates, self.margins = currency, rates, margins

    def _as_of(self, as_of: When | None) -> When:
        return self.crm.clock() if as_of is None else as_of

    def _money(self, currency: str | None, rates: ExchangeRates | None) -> tuple[str | None,
                                                                                ExchangeRates | None]:
        if currency is None and rates is None:
            return self.currency, self.rates
        return currency, rates

    def summary(self, as_of: When | None = None, *, unit_days: float = 7.0,
                currency: str | None = None, rates: ExchangeRates | None = None,
                margins: MarginRule | None = None) -> Summary:
        """Frequency, recency, T and mean repeat value of every buyer, in one currency (see
        `scoring.summary`); on margin with `margins` (or the reporting default)."""
        currency, rates = self._money(currency, rates)
        margins = arguments.instance(margins, MarginRule, "margins") or self.margins
        with self.crm.reading() as uow:
            if margins is not None:
                return margin_summary(uow, self._as_of(as_of), margins, unit_days=unit_days,
                                      currency=currency, rates=rates)
            return summarize(uow, self._as_of(as_of), unit_days=unit_days, currency=currency,
                             rates=rates)

    def margin_report(self, as_of: When | None = None, *, rule: MarginRule | None = None,
                level: str = "category") -> list[MarginRow]:
        """Revenue and margin per category (or product) and currency."""
        rule = arguments.instance(rule, MarginRule, "rule")
        with self.crm.reading() as uow:
            return margins_by(uow, self._as_of(as_of), rule or self.margins or MarginRule(),
                              level=level)

    def currencies(self, as_of: When | None = None) -> list[str]:
        """The currencies purchases were made in up to `as_of`."""
        with self.crm.reading() as uow:
            return currencies(uow, self._as_of(as_of))

    def rfm(self, as_of: When | None = None, *, bins: int = 5,
            segments: Mapping[str, str] = SEGMENTS, currency: str | None = None,
            rates: ExchangeRates | None = None, margins: MarginRule | None = None) -> list[RFM]:
        """RFM scores (1..bins) and segment of every buyer, as of an instant; monetary in
        one currency (each RFM names it), on margin with `margins`.

        With purchases in several currencies and no currency chosen (here or by
        `reporting`), each currency's buyers are scored among themselves, on that
        currency's purchases: ranks never compare two currencies, and a customer who
        bought in two currencies is scored in each.
        """
        try:
            base = self.summary(as_of, unit_days=1, currency=currency, rates=rates, margins=margins)
        except MixedCurrencies:
            scored = [score for code in self.currencies(as_of)
                      for score in self.rfm(as_of, bins=bins, segments=segments, currency=code,
                                            margins=margins)]
            return sorted(scored, key=lambda s: (s.customer_id, s.currency or ""))
        return rfm(base, bins=bins, segments=segments)

    def fit_clv(self, as_of: When | None = None, *, unit_days: float = 7.0,
                counts: str = "bg/nbd", currency: str | None = None,
                rates: ExchangeRates | None = None, margins: MarginRule | None = None) -> LifetimeModel:
        """Fit BG/NBD (or Pareto/NBD) and Gamma-Gamma on the history up to `as_of` (spend
        on margin with `margins`)."""
        from crmcore.scoring.clv import LifetimeModel

        base = self.summary(as_of, unit_days=unit_days, currency=currency, rates=rates,
                            margins=margins)
        return LifetimeModel.fit(base, counts=counts)

    def clv(self, as_of: When | None = None, *, model: LifetimeModel | None = None,
            periods: int = 12, period: str | float = CALENDAR_MONTH, discount: float = 0.01,
            level: float | None = None, currency: str | None = None,
            rates: ExchangeRates | None = None, margins: MarginRule | None = None) -> Valuation:
        """P(alive), expected purchases and spend, and discounted CLV of every buyer over
        `periods` periods of `period` (calendar months by default; see `scoring.horizon`),
        with delta-method intervals at `level` when asked.

        Without a `model`, BG/NBD and Gamma-Gamma are fitted on the same history (in
        weeks); with one, the summary is taken in the model's unit and currency.
        """
        from crmcore.scoring.clv import require

        require()
        horizon = Horizon(periods, period, discount)
        model = self._model(model)
        if model is not None and currency is None and rates is None and self.rates is None:
            currency = model.currency
        base = self.summary(as_of, unit_days=7.0 if model is None else model.unit_days,
                            currency=currency, rates=rates, margins=margins)
        return self._value(base, model, horizon=horizon, level=level)

    def clv_by_currency(self, as_of: When | None = None, *, periods: int = 12,
                        period: str | float = CALENDAR_MONTH,
                        discount: float = 0.01) -> dict[str, Valuation]:
        """One fit and valuation per currency, on that currency's purchases alone: what a
        report shows when no rates are at hand (a currency too thin to fit is left out
        and logged)."""
        from crmcore.scoring.clv import FitError

        found = {}
        for code in self.currencies(as_of):
            try:
                found[code] = self.clv(as_of, periods=periods, period=period, discount=discount,
                                       currency=code)
            except FitError as error:
                log.warning("no lifetime value in %s: %s", code, error)
        return found

    @staticmethod
    def _model(model: LifetimeModel | None) -> LifetimeModel | None:
        from crmcore.scoring.clv import LifetimeModel

        return arguments.instance(model, LifetimeModel, "model")

    @staticmethod
    def _value(base: Summary, model: LifetimeModel | None, *, horizon: Horizon | None = None,
               level: float | None = None) -> Valuation:
        from crmcore.scoring.clv import LifetimeModel

        model = model or LifetimeModel.fit(base)
        return model.value(base, horizon=horizon, level=level)

    def churn_alerts(
        self, as_of: datetime | None = None, threshold: float = 0.3, *,
        model: LifetimeModel | None = None, min_value: float | None = None,
        top_share: float = 0.2, emit: bool = True,
    ) -> list[ChurnAlert]:
        """Valuable customers whose P(alive) is under `threshold`, most valuable first.

        With `emit`, every customer's P(alive) is stored as a `p_alive` snapshot and a
        `churn.alert` event goes out for each customer who has just fallen under the
        threshold (not for those already under it at their previous snapshot).
        """
        moment = Period.as_of(self._as_of(as_of)).end
        check_churn(threshold, top_share, min_value)
        model = self._model(model)
        currency = None if model is None or self.rates is not None else model.currency
        base = self.summary(moment, unit_days=7.0 if model is None else model.unit_days,
                            currency=currency)
        if not len(base):
            return []
        valuation = self._value(base, model)
        alerts = churn_alerts(base, valuation.p_alive.tolist(), threshold=threshold,
                                    min_value=min_value, top_share=top_share)
        if not emit:
            return alerts
        with self.crm.transaction() as uow:
            # under the threshold at the last snapshot (or in a run at this instant): told already
            earlier = {a.customer_id: uow.scores.latest(a.customer_id, "p_alive", moment)
                       for a in alerts}
            uow.scores.put(
                Score(cid, "p_alive", moment, float(valuation.p_alive[i]), None, valuation.explain(i))
                for i, cid in enumerate(valuation.customer_ids)
            )
            for alert in alerts:
                before = earlier[alert.customer_id]
                if before is None or before.value >= threshold:
                    self.crm.emit("churn.alert", alert.customer_id, as_of=moment.isoformat(),
                                  threshold=threshold, **alert.explain())
        return alerts

    def cohorts(self, as_of: When | None = None, *, currency: str | None = None,
                rates: ExchangeRates | None = None) -> list[Cohort]:
        """Retention and revenue by acquisition month and months since (see `scoring.cohorts`);
        revenue per currency, or converted with the reporting rates."""
        currency, rates = self._money(arguments.currency(currency), arguments.rates(rates))
        with self.crm.reading() as uow:
            return cohort_table(uow, self._as_of(as_of), currency=currency if rates else None,
                                rates=rates)

    def churn_rates(self, as_of: When | None = None, *, window: int = 3,
                    segment: Callable[[Customer], str | None] | None = None) -> list[ChurnRate]:
        """Monthly churn rate, for everyone and per tier (or per `segment(customer)`)."""
        with self.crm.reading() as uow:
            return churn_rates(uow, self._as_of(as_of), window=window, segment=segment)

    def repurchase(self, as_of: When | None = None) -> list[Repurchase]:
        """Each buyer's typical repurchase interval and the day the next purchase is due."""
        with self.crm.reading() as uow:
            days = summarize(uow, self._as_of(as_of), unit_days=1, amounts=False)
        return repurchase_intervals(days)

    def cross_sell_rules(self, as_of: When | None = None, *, level: str = "product",
                         min_support: float = 0.01, min_confidence: float = 0.1) -> list[Rule]:
        """Association rules between items bought together (support, confidence, lift)."""
        with self.crm.reading() as uow:
            found = cross_sell.baskets(cross_sell.basket_items(uow, self._as_of(as_of), level))
            return cross_sell.mine_rules((items for _, items in found), min_support=min_support,
                                         min_confidence=min_confidence)

    def next_offers(self, as_of: When | None = None, *, level: str = "product",
                    min_support: float = 0.01, min_confidence: float = 0.1) -> dict[str, Offer]:
        """The next-best offer of every customer a rule applies to; never an item they own."""
        moment = self._as_of(as_of)
        with self.crm.reading() as uow:
            per_purchase = list(cross_sell.baskets(cross_sell.basket_items(uow, moment, level)))
        rules = cross_sell.mine_rules((items for _, items in per_purchase), min_support=min_support,
                                      min_confidence=min_confidence)
        return cross_sell.next_best_offers(cross_sell.holdings(per_purchase), rules)

    def lead_model(self) -> LeadModel:
        """Naive Bayes learned from every won and lost opportunity."""
        return LeadModel.train(self._opportunities())

    def lead_score(self, opportunity_id: str | None = None, *,
                   model: LeadModel | None = None) -> LeadScore | list[LeadScore]:
        """The probability of winning one opportunity, or of every open one (best first)."""
        model = model or self.lead_model()
        if opportunity_id is not None:
            return model.score(self.crm.opportunities.get(opportunity_id))
        scored = [model.score(o) for o in self._opportunities() if not o.is_closed]
        return sorted(scored, key=lambda s: (-s.probability, s.opportunity_id))

    def _opportunities(self) -> list[Opportunity]:
        with self.crm.reading() as uow:
            return list(every(uow, "opportunities"))

    def service_quality(self, as_of: When | None = None, *,
                        by: Sequence[str] = DIMENSIONS, period: str = "month",
                        since: datetime | None = None) -> list[Quality]:
        """CSAT, NPS, complaint rate, first-contact resolution and SLA compliance per group."""
        with self.crm.reading() as uow:
            return service_quality(uow, self._as_of(as_of), by=by, period=period,
                                                   since=since)

    # ---- stored snapshots ----

    def scorers(self) -> dict[str, Scorer]:
        from crmcore.scoring.registry import scorers

        return scorers(self.crm.plugins)

    def score(self, as_of: datetime | None = None, names: Iterable[str] | None = None) -> dict[str, int]:
        """Run scorers and store their snapshots; returns how many each wrote.

        Scorers named in `names` must succeed. With all of them (the default), one that
        cannot run here (its extra is not installed, or the data has no fit yet) is left
        out of the result and logged, so the others still run.
        """
        from crmcore.scoring.clv import FitError

        moment = Period.as_of(self._as_of(as_of)).end
        known = self.scorers()
        chosen = list(known) if names is None else list(names)
        for name in chosen:
            if name not in known:
                raise ValidationError("names", name, f"no such scorer; known: {sorted(known)}")
        written = {}
        for name in chosen:
            try:
                results = list(known[name].score(self.crm, moment))
            except (MissingExtra, FitError, MixedCurrencies) as exc:
                if names is not None:
                    raise
                log.warning("scorer %s skipped: %s", name, exc)
                continue
            with self.crm.transaction() as uow:
                written[name] = uow.scores.put(results)
        return written

    def latest_scores(self, customer_id: str, as_of: datetime | None = None) -> dict[str, Score]:
        """The newest snapshot of every score of a customer, by score name."""
        with self.crm.reading() as uow:
            return {s.scorer: s for s in uow.scores.for_customer(customer_id, as_of)}

    def next_offer(self, customer_id: str, as_of: datetime | None = None) -> Score | None:
        """The stored next-best offer of a customer (label: the item), if one was scored."""
        with self.crm.reading() as uow:
            return uow.scores.latest(customer_id, "next_offer", as_of)

