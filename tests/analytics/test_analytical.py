"""The analytical facade end to end on every storage backend."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import crmcore
from crmcore import CaseKind, Channel, OrderLine, Purchase, Stage
from crmcore.scoring.clv import FitError
from crmcore.scoring.datasets import cdnow
from tests.analytics.conftest import BACKENDS, cdnow_dir, open_backend

START = datetime(2024, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=BACKENDS)
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[crmcore.CRM, Clock]]:
    clock = Clock()
    for crm in open_backend(request.param, tmp_path, clock):
        yield crm, clock


def buy(crm: crmcore.CRM, customer: str, day: int, *products: str, price: str = "10") -> None:
    crm.purchases.record(Purchase(
        id=crmcore.values.new_id(), customer_id=customer, ordered_at=START + timedelta(days=day),
        lines=[OrderLine(p, crmcore.Money(Decimal(price), "EUR"), category=p.split("-")[0])
               for p in products],
    ))


def customers(crm: crmcore.CRM, *ids: str) -> None:
    for cid in ids:
        crm.customers.add(crmcore.Customer.new(cid.title(), id=cid, created_at=START))


def test_rfm_repurchase_and_next_offers(shop: tuple[crmcore.CRM, Clock]) -> None:
    crm, _ = shop
    customers(crm, "ann", "bob", "cyd", "dan")
    for day in (0, 10, 20, 30):
        buy(crm, "ann", day, "phone", "case", price="100")
    buy(crm, "bob", 0, "phone", "case")
    buy(crm, "bob", 5, "phone")
    buy(crm, "cyd", 1, "phone")
    buy(crm, "dan", 2, "case", "charger")
    as_of = date(2024, 2, 10)

    scores = {s.customer_id: s for s in crm.analytical.rfm(as_of)}
    assert set(scores) == {"ann", "bob", "cyd", "dan"}
    assert scores["ann"].r == 5 and scores["ann"].f == 5 and scores["ann"].m == 5
    assert scores["ann"].segment == "champions"
    assert scores["cyd"].frequency == 1 and scores["ann"].frequency == 4
    assert scores["ann"].recency_days == 10

    due = {r.customer_id: r for r in crm.analytical.repurchase(as_of)}
    assert due["ann"].interval_days == 10 and due["ann"].due == date(2024, 2, 10)
    assert due["ann"].overdue_days == 0
    assert due["bob"].interval_days == 5 and due["bob"].due == date(2024, 1, 11)
    assert due["cyd"].due is None

    rules = {(r.antecedent, r.consequent): r for r in crm.analytical.cross_sell_rules(as_of)}
    phone_case = rules[("phone", "case")]
    assert phone_case.count == 5 and phone_case.support == pytest.approx(5 / 8)
    assert phone_case.confidence == pytest.approx(5 / 7)
    assert phone_case.lift == pytest.approx((5 / 7) / (6 / 8))
    offers = crm.analytical.next_offers(as_of)
    assert offers["cyd"].item == "case"  # owns a phone
    assert offers["dan"].item == "phone"
    assert "ann" not in offers or offers["ann"].item not in {"phone", "case"}
    for offer in offers.values():
        assert offer.rule.antecedent != offer.item
    by_category = crm.analytical.next_offers(as_of, level="category")
    assert by_category["cyd"].item == "case"


def test_lifetime_value_churn_alerts_and_stored_scores(crm: crmcore.CRM) -> None:
    crm.bulk_import(cdnow(cdnow_dir() / "CDNOW_sample.txt"))
    as_of = datetime(1997, 10, 1, tzinfo=UTC)
    valuation = crm.analytical.clv(as_of)
    assert len(valuation) == 2357
    assert all(0 <= p <= 1 for p in valuation.p_alive)
    assert (valuation.clv >= 0).all()
    best = int(valuation.clv.argmax())
    assert valuation.explain(best)["expected_purchases"] > 1

    seen: list[crmcore.Event] = []

    class Listener:
        @crmcore.hookimpl
        def crmcore_on_event(self, event: crmcore.Event, crm: crmcore.CRM) -> None:
            if event.topic == "churn.alert":
                seen.append(event)

    crm.plugins.register(Listener())
    try:
        alerts = crm.analytical.churn_alerts(as_of, threshold=0.3)
        assert alerts, "CDNOW has valuable customers who stopped buying"
        values = sorted(valuation.as_dict().values())
        assert all(a.p_alive < 0.3 for a in alerts)
        assert [a.value for a in alerts] == sorted((a.value for a in alerts), reverse=True)
        assert {e.aggregate_id for e in seen} == {a.customer_id for a in alerts}
        assert seen[0].payload["p_alive"] < 0.3
        again = crm.analytical.churn_alerts(as_of + timedelta(days=7), threshold=0.3)
        first = {a.customer_id for a in alerts}
        fresh = [e.aggregate_id for e in seen[len(alerts):]]
        assert sorted(fresh) == sorted(a.customer_id for a in again if a.customer_id not in first)
        assert len({e.aggregate_id for e in seen}) == len(seen), "no customer is alerted twice"
        stored = crm.analytical.latest_scores(alerts[0].customer_id)
        assert stored["p_alive"].value < 0.3
        assert values
    finally:
        crm.plugins.unregister(name=None, plugin=next(
            p for p in crm.plugins.get_plugins() if isinstance(p, Listener)))

    written = crm.analytical.score(as_of, ["clv", "rfm"])
    assert written == {"clv": 2 * 2357, "rfm": 2357}
    latest = crm.analytical.latest_scores("cdnow-0001")
    assert latest["rfm"].label and latest["clv"].details["expected_spend"] > 0
    assert crm.analytical.next_offer("cdnow-0001") is None


def test_lead_scoring_learns_from_won_and_lost(shop: tuple[crmcore.CRM, Clock]) -> None:
    crm, clock = shop
    customers(crm, "ann")
    opps = crm.opportunities
    history = [({"industry": "bank", "size": "large"}, Stage.WON)] * 4 + [
        ({"industry": "bank", "size": "small"}, Stage.WON),
        ({"industry": "retail", "size": "small"}, Stage.LOST),
        ({"industry": "retail", "size": "small"}, Stage.LOST),
        ({"industry": "retail", "size": "large"}, Stage.LOST),
        ({"industry": "bank", "size": "small"}, Stage.LOST),
    ]
    for attributes, outcome in history:
        made = opps.open("ann", "deal", attributes=attributes)
        clock.now += timedelta(days=1)
        opps.move(made.id, outcome)
    good = opps.open("ann", "big bank", attributes={"industry": "bank", "size": "large"})
    poor = opps.open("ann", "small shop", attributes={"industry": "retail", "size": "small"})
    novel = opps.open("ann", "unknown", attributes={"industry": "space"})
    ranked = crm.analytical.lead_score()
    assert isinstance(ranked, list)
    assert ranked[0].opportunity_id == good.id
    by_id = {s.opportunity_id: s for s in ranked}
    assert by_id[good.id].probability > 0.8 > 0.2 > by_id[poor.id].probability
    assert by_id[good.id].explain()["industry=bank"] == pytest.approx((6 / 7) / (2 / 6))
    assert "industry=space" not in by_id[novel.id].factors
    single = crm.analytical.lead_score(good.id)
    assert not isinstance(single, list) and single.probability == by_id[good.id].probability


def test_service_quality_per_point_channel_and_month(shop: tuple[crmcore.CRM, Clock]) -> None:
    crm, clock = shop
    customers(crm, "ann", "bob")
    log = crm.interactions.log
    log("ann", channel=Channel.PHONE, direction="inbound", at=START, service_point="paris-cc",
        satisfaction=5, nps=10)
    log("ann", channel=Channel.PHONE, direction="inbound", at=START + timedelta(days=1),
        service_point="paris-cc", satisfaction=2, nps=3)
    log("bob", channel=Channel.PHONE, direction="inbound", at=START + timedelta(days=2),
        service_point="paris-cc", satisfaction=4, nps=8)
    log("bob", channel=Channel.PHONE, direction="inbound", at=START + timedelta(days=3),
        service_point="paris-cc")
    log("bob", channel=Channel.VISIT, direction="inbound", at=START + timedelta(days=40),
        service_point="lyon", satisfaction=5)
    first = crm.cases.open("ann", CaseKind.COMPLAINT, "broken", channel=Channel.PHONE,
                           service_point="paris-cc", sla=timedelta(days=1))
    second = crm.cases.open("bob", CaseKind.REQUEST, "info", channel=Channel.PHONE,
                            service_point="paris-cc", sla=timedelta(days=1), contacts=2)
    crm.cases.open("bob", CaseKind.COMPLAINT, "late", channel=Channel.PHONE,
                   service_point="paris-cc", sla=timedelta(hours=1))
    clock.now = START + timedelta(hours=5)
    crm.cases.resolve(first.id, "fixed")
    clock.now = START + timedelta(days=3)
    crm.cases.resolve(second.id, "answered")

    figures = crm.analytical.service_quality(date(2024, 3, 1))
    groups = {(q.service_point, q.channel, q.period): q for q in figures}
    paris = groups[("paris-cc", "phone", "2024-01")]
    assert paris.interactions == 4
    assert paris.csat == pytest.approx(100 * 2 / 3)
    assert paris.nps == pytest.approx(0.0)  # one promoter, one detractor, one passive
    assert paris.complaint_rate == pytest.approx(100 * 2 / 4)
    assert paris.first_contact_resolution == pytest.approx(50.0)
    assert paris.sla_compliance == pytest.approx(100 / 3)
    lyon = groups[("lyon", "visit", "2024-02")]
    assert lyon.csat == 100 and lyon.nps is None and lyon.sla_compliance is None

    overall = crm.analytical.service_quality(date(2024, 3, 1), by=())
    assert len(overall) == 1 and overall[0].interactions == 5
    assert overall[0].counts["complaints"] == 2
    early = crm.analytical.service_quality(datetime(2024, 1, 1, 2, tzinfo=UTC), by=("channel",))
    assert {q.channel: q.sla_compliance for q in early} == {"phone": 0.0}
    with pytest.raises(crmcore.ValidationError):
        crm.analytical.service_quality(by=("weather",))


def test_a_plugin_scorer_is_run_stored_and_read_back(shop: tuple[crmcore.CRM, Clock]) -> None:
    crm, _ = shop
    customers(crm, "ann", "bob")
    buy(crm, "ann", 0, "phone")

    class Loyalty:
        name = "loyalty"

        def score(self, crm: crmcore.CRM, as_of: datetime) -> list[crmcore.model.Score]:
            return [crmcore.model.Score(c.id, self.name, as_of, len(c.name), "named", {"why": "length"})
                    for c in crm.customers.list()]

    class Plugin:
        @crmcore.hookimpl
        def crmcore_register_scorers(self) -> list[object]:
            return [Loyalty()]

    crm.plugins.register(Plugin(), name="loyalty-plugin")
    try:
        assert {"rfm", "clv", "next_purchase", "next_offer", "loyalty"} <= set(crm.analytical.scorers())
        when = datetime(2024, 2, 1, tzinfo=UTC)
        assert crm.analytical.score(when, ["loyalty", "rfm", "next_offer"]) == {
            "loyalty": 2, "rfm": 1, "next_offer": 0}
        latest = crm.analytical.latest_scores("ann")
        assert latest["loyalty"].value == 3 and latest["loyalty"].details == {"why": "length"}
        assert latest["rfm"].label == "hibernating"  # a lone buyer scores 1-1-1
        assert crm.analytical.latest_scores("ann", as_of=when - timedelta(days=1)) == {}
        with pytest.raises(crmcore.ValidationError):
            crm.analytical.score(when, ["nonsense"])
    finally:
        crm.plugins.unregister(name="loyalty-plugin")


def test_next_offer_is_read_from_the_stored_snapshot(shop: tuple[crmcore.CRM, Clock]) -> None:
    crm, _ = shop
    customers(crm, "ann", "bob", "cyd")
    buy(crm, "ann", 0, "phone", "case")
    buy(crm, "bob", 1, "phone", "case")
    buy(crm, "cyd", 2, "phone")
    when = datetime(2024, 2, 1, tzinfo=UTC)
    assert crm.analytical.next_offer("cyd") is None
    crm.analytical.score(when, ["next_offer"])
    offer = crm.analytical.next_offer("cyd")
    assert offer is not None and offer.label == "case" and offer.details["because"] == "phone"
    assert offer.value == pytest.approx(2 / 3)


def test_the_summary_keeps_one_currency_when_asked(crm: crmcore.CRM) -> None:
    from crmcore.exchange import Rate, RateTable
    from crmcore.scoring.summary import MixedCurrencies, summarize, summary_of

    customers(crm, "ann", "bob", "\U0001f600", "zoë")
    bought = []
    for day, who, currency, price in [(0, "ann", "EUR", "10"), (0, "ann", "USD", "99"),
                                      (3, "ann", "EUR", "20"), (3, "ann", "EUR", "5"),
                                      (4, "bob", "USD", "7"), (9, "ann", "USD", "1"),
                                      (1, "\U0001f600", "USD", "2"), (2, "zoë", "USD", "3")]:
        bought.append(Purchase(
            id=crmcore.values.new_id(), customer_id=who, ordered_at=START + timedelta(days=day, hours=1),
            lines=[OrderLine("x", crmcore.Money(Decimal(price), currency))]))
    crm.bulk_import(bought)
    as_of = START + timedelta(days=9)  # the USD purchase of day 9 comes one hour later
    rates = RateTable([Rate("EUR", "USD", START.date(), Decimal("1.5"))])
    with crm.reading() as uow:
        eur = summarize(uow, as_of, unit_days=1, currency="EUR")
        with pytest.raises(MixedCurrencies, match="EUR, USD"):
            summarize(uow, as_of, unit_days=1)
        usd = summarize(uow, as_of, unit_days=1, currency="USD", rates=rates)
    assert eur.customer_ids == ["ann"] and eur.currency == "EUR" and not eur.converted
    assert (eur.frequency[0], eur.recency[0], eur.T[0], eur.monetary[0], eur.total[0]) == (
        1, 3, 8, 25, 35)
    reference = summary_of(bought, as_of, unit_days=1, currency="USD", rates=rates)
    # ids in code-point order on every backend, as in Python
    assert usd.customer_ids == reference.customer_ids == ["ann", "bob", "zoë", "\U0001f600"]
    # ann: 10 EUR + 99 USD, 25 EUR, then 1 USD (one hour after as_of: left out)
    assert list(usd.total) == list(reference.total) == [15 + 99 + 37.5, 7.0, 3.0, 2.0]
    assert list(usd.monetary) == [37.5, 0.0, 0.0, 0.0]
    assert usd.currency == "USD" and usd.converted


def test_segment_rules_read_the_stored_scores(shop: tuple[crmcore.CRM, Clock]) -> None:
    crm, clock = shop
    customers(crm, "ann", "bob", "cyd", "dan")
    for day in (0, 10, 20, 30):
        buy(crm, "ann", day, "phone", price="100")
    buy(crm, "bob", 1, "phone")
    buy(crm, "cyd", 2, "phone", price="50")
    when = datetime(2024, 2, 10, tzinfo=UTC)
    clock.now = when
    crm.analytical.score(when, ["rfm"])
    scores = {s.customer_id: s for s in crm.analytical.rfm(when)}
    assert scores["ann"].segment == "champions"
    champions = crm.customers.ids_matching('score.rfm.label = "champions"', as_of=when)
    assert champions == sorted(c for c, s in scores.items() if s.segment == "champions")
    strong = crm.customers.ids_matching("score.rfm > 3", as_of=when)
    assert strong == sorted(c for c, s in scores.items() if s.value > 3) and "dan" not in strong
    assert crm.customers.ids_matching("score.rfm > 3", as_of=when - timedelta(days=1)) == []


def test_all_scorers_run_those_that_can(shop: tuple[crmcore.CRM, Clock]) -> None:
    """No repeat purchase has a value, so there is nothing to fit spend on: CLV is refused
    whatever the optimiser does with so few buyers, and the other scorers still run."""
    crm, clock = shop
    customers(crm, "ann", "bob", "cyd")
    for cid, day in (("ann", 0), ("bob", 1), ("cyd", 2)):
        buy(crm, cid, day, "phone", price="50")
        buy(crm, cid, day + 7, "case", price="0")
    when = datetime(2024, 2, 10, tzinfo=UTC)
    clock.now = when
    with pytest.raises(FitError):
        crm.analytical.clv(when)
    with pytest.raises(FitError):
        crm.analytical.score(when, ["clv"])
    everything = crm.analytical.score(when)
    assert "clv" not in everything and everything["rfm"] == 3
