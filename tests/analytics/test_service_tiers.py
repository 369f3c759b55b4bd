"""Service quality per customer tier, and the gap between what customers expected and
what they perceived, on every backend (SQL and Python agree)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import crmcore
from crmcore import Channel, Customer


def test_quality_per_tier_and_expectation_gap(crm: crmcore.CRM) -> None:
    start = datetime(2024, 1, 10, tzinfo=UTC)
    crm.bulk_import([Customer.new(c, id=c, tier=t, created_at=start) for c, t in
                     (("ann", "gold"), ("bob", "gold"), ("cyd", "silver"), ("dan", None))])
    log = crm.interactions.log
    log("ann", channel=Channel.PHONE, direction="inbound", at=start, satisfaction=4, expectation=5)
    log("bob", channel=Channel.PHONE, direction="inbound", at=start, satisfaction=5, expectation=3)
    log("bob", channel=Channel.EMAIL, direction="inbound", at=start, satisfaction=2)  # no expectation
    log("cyd", channel=Channel.PHONE, direction="inbound", at=start, satisfaction=3, expectation=5)
    log("dan", channel=Channel.PHONE, direction="inbound", at=start, nps=9)
    crm.cases.open("cyd", crmcore.CaseKind.COMPLAINT, "slow", channel=Channel.PHONE,
                   sla=timedelta(days=1))
    figures = {q.tier: q for q in crm.analytical.service_quality(by=("tier",))}
    assert set(figures) == {"gold", "silver", None}
    gold, silver = figures["gold"], figures["silver"]
    assert gold.interactions == 3 and gold.csat == pytest.approx(100 * 2 / 3)
    assert gold.gap == pytest.approx(((4 - 5) + (5 - 3)) / 2) and gold.counts["gap_answers"] == 2
    assert silver.gap == -2 and silver.complaint_rate == 100
    assert figures[None].gap is None and figures[None].nps == 100
    both = crm.analytical.service_quality(by=("tier", "channel"))
    assert {(q.tier, q.channel) for q in both} == {
        ("gold", "phone"), ("gold", "email"), ("silver", "phone"), (None, "phone")}
    everyone = crm.analytical.service_quality(by=())
    assert everyone[0].gap == pytest.approx((-1 + 2 - 2) / 3) and everyone[0].tier is None
