"""The analytics conformance suite: segments and every analytical query, run through the
CRM on the storage under test, give the answers they give on crmcore's SQLite.

A storage that passes `StorageContract` stores and reads records; this suite proves
that what the core compiles for its SQL dialect (segment rules, the purchase
summary behind RFM and lifetime value, service quality, baskets) means the same
there. Both bases hold the same `crmcore.synthetic.SyntheticBase`.

    class TestMyAnalytics(AnalyticsContract):
        def open_storage(self) -> Storage:
            return MyStorage("mydb://...")
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest

import crmcore
from crmcore import CRM
from crmcore.exchange import Rate, RateTable
from crmcore.plugins import make_plugin_manager
from crmcore.ports import Storage
from crmcore.scoring.summary import MixedCurrencies, Summary
from crmcore.synthetic import AS_OF, SyntheticBase

RULES = (
    'tier in ("gold", "platinum")',
    'country = "FR" and kind = "person"',
    "tags contains \"newsletter\" and not (tags contains \"eco\")",
    "tags is empty or emails is empty",
    'name contains "an" and length(name) > 10',
    'lower(name) < "m"',
    "birthday within 30 days",
    "birth_date < 1970-01-01",
    "consent.newsletter.email",
    "sum(purchases.total, last 365 days) > 200",
    "count(purchases, last 90 days) = 0 and count(purchases) >= 3",
    "avg(purchases.total) > 60",
    "last(purchases) < 180 days ago",
    'count(interactions where family = "collaborative", last 365 days) >= 2',
    "max(interactions.satisfaction) <= 2",
    'count(cases where open and kind = "complaint") > 0',
    "attributes.loyalty_points > 100",
    "created_at >= 1 year ago or updated_at < 2 years ago",
)
"""Rules over every part of the language the synthetic base exercises."""


def _rows(found: list[Any]) -> list[Any]:
    return [repr(item) for item in found]


def _same_summary(got: Summary, expected: Summary) -> None:
    assert got.customer_ids == expected.customer_ids
    for column in ("frequency", "recency", "T", "monetary", "total"):
        assert list(getattr(got, column)) == pytest.approx(list(getattr(expected, column))), column


class AnalyticsContract:
    """Same members, summaries, RFM, lifetime values, service figures and offers as SQLite."""

    customers = 150
    """Size of the synthetic base (seed 7); keep it small, the checks compare it whole."""
    reference_url = "sqlite://"
    """Where the reference answers come from (opened through the installed plugins)."""

    def open_storage(self) -> Storage:
        raise NotImplementedError("return a fresh, empty storage")

    @pytest.fixture(scope="class")
    @classmethod
    def pair(cls) -> Iterator[tuple[CRM, CRM]]:
        """The base loaded on the storage under test and on the reference, once per class."""
        base = SyntheticBase(size=cls.customers, seed=7)
        subject = CRM(cls().open_storage(), plugins=make_plugin_manager(), clock=lambda: AS_OF)
        reference = crmcore.open(cls.reference_url, clock=lambda: AS_OF)
        try:
            for crm in (subject, reference):
                base.load(crm)
            yield subject, reference
        finally:
            subject.close()
            reference.close()

    @pytest.mark.parametrize("rule", RULES)
    def test_segments_have_the_same_members(self, pair: tuple[CRM, CRM], rule: str) -> None:
        subject, reference = pair
        expected = reference.customers.ids_matching(rule, as_of=AS_OF)
        assert subject.customers.ids_matching(rule, as_of=AS_OF) == expected, rule
        assert [c.id for c in subject.customers.iter_matching(rule, as_of=AS_OF)] == expected, rule

    def test_some_rules_select_some_but_not_all(self, pair: tuple[CRM, CRM]) -> None:
        """The rules above are not vacuous on this base."""
        _, reference = pair
        sizes = [len(reference.customers.ids_matching(rule, as_of=AS_OF)) for rule in RULES]
        assert sum(0 < size < self.customers for size in sizes) >= len(RULES) // 2, sizes

    @pytest.mark.parametrize("unit_days", [1, 7])
    def test_summary(self, pair: tuple[CRM, CRM], unit_days: int) -> None:
        """One summary per currency; a mix without a currency chosen is refused on both."""
        subject, reference = pair
        codes = reference.analytical.currencies(AS_OF)
        assert len(codes) > 1 and subject.analytical.currencies(AS_OF) == codes
        for crm in pair:
            with pytest.raises(MixedCurrencies):
                crm.analytical.summary(AS_OF, unit_days=unit_days)
        for code in codes:
            got = subject.analytical.summary(AS_OF, unit_days=unit_days, currency=code)
            expected = reference.analytical.summary(AS_OF, unit_days=unit_days, currency=code)
            assert len(expected) > 0 and got.currency == expected.currency == code
            _same_summary(got, expected)

    def test_summary_converted_and_an_earlier_instant(self, pair: tuple[CRM, CRM]) -> None:
        """Every purchase converted into one currency at its day's rate, and each currency alone."""
        subject, reference = pair
        earlier = AS_OF - timedelta(days=200)
        codes = reference.analytical.currencies(earlier)
        rates = RateTable([Rate(codes[0], code, date(1970, 1, 1), Decimal(n + 2) / 3)
                           for n, code in enumerate(codes[1:])])
        got = subject.analytical.summary(earlier, currency=codes[0], rates=rates)
        expected = reference.analytical.summary(earlier, currency=codes[0], rates=rates)
        assert got.converted and expected.converted and len(expected) > 0
        _same_summary(got, expected)
        for code in codes:
            got = subject.analytical.summary(earlier, currency=code)
            expected = reference.analytical.summary(earlier, currency=code)
            assert got.customer_ids == expected.customer_ids
            assert list(got.total) == pytest.approx(list(expected.total))

    def test_rfm(self, pair: tuple[CRM, CRM]) -> None:
        subject, reference = pair
        expected = reference.analytical.rfm(AS_OF)
        assert expected
        assert subject.analytical.rfm(AS_OF) == expected

    def test_lifetime_value(self, pair: tuple[CRM, CRM]) -> None:
        pytest.importorskip("scipy")
        subject, reference = pair
        got, expected = subject.analytical.clv_by_currency(AS_OF), reference.analytical.clv_by_currency(AS_OF)
        assert expected and got.keys() == expected.keys()
        for code, valuation in expected.items():
            assert got[code].customer_ids == valuation.customer_ids
            assert got[code].clv.tolist() == pytest.approx(valuation.clv.tolist(), rel=1e-6)

    def test_repurchase_intervals(self, pair: tuple[CRM, CRM]) -> None:
        subject, reference = pair
        assert _rows(subject.analytical.repurchase(AS_OF)) == _rows(reference.analytical.repurchase(AS_OF))

    @pytest.mark.parametrize(("by", "period"), [
        (("service_point", "channel", "period"), "month"),
        (("channel",), "day"),
        (("period",), "year"),
        (("tier", "channel"), "month"),
        ((), "month"),
    ])
    def test_service_quality(self, pair: tuple[CRM, CRM], by: tuple[str, ...], period: str) -> None:
        subject, reference = pair
        since = AS_OF - timedelta(days=400)
        expected = reference.analytical.service_quality(AS_OF, by=by, period=period, since=since)
        assert expected
        assert subject.analytical.service_quality(AS_OF, by=by, period=period, since=since) == expected

    @pytest.mark.parametrize("level", ["product", "category"])
    def test_cross_sell(self, pair: tuple[CRM, CRM], level: str) -> None:
        subject, reference = pair
        rules = reference.analytical.cross_sell_rules(AS_OF, level=level, min_support=0.005)
        assert subject.analytical.cross_sell_rules(AS_OF, level=level, min_support=0.005) == rules
        offers = reference.analytical.next_offers(AS_OF, level=level, min_support=0.005)
        assert subject.analytical.next_offers(AS_OF, level=level, min_support=0.005) == offers
