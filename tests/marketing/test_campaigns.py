"""Designing and launching campaigns on every backend: bad input refused with nothing written,
the audience frozen as of the launch, the holdout auditable, the power checked."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

import crmcore
from crmcore.errors import NotFound, RuleError, ValidationError
from crmcore.marketing import UnderpoweredCampaign
from crmcore.model import MemberGroup, MemberStatus, Score
from crmcore.model.marketing import CampaignStatus
from crmcore.testing.pytest_plugin import EventLog
from tests.marketing.conftest import Clock, populate, purchase

TEXT = "Hello $first_name, spring is here: $link_shop"
LINKS = {"shop": "https://shop.example.org/spring"}


def create(crm: crmcore.CRM, id: str = "spring", **fields: Any) -> crmcore.Campaign:
    options: dict[str, Any] = dict(
        channel="email",
        rule='tier in ("gold", "silver")',
        subject="Spring, $first_name",
        text=TEXT,
        links=LINKS,
        control_fraction=0.2,
        seed="s1",
    )
    options.update(fields)
    return crm.marketing.create(id, "Spring", **options)


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"rule": None, "segment": "nope"}, NotFound),
        ({"rule": "tier ==== 1"}, RuleError),
        ({"control_fraction": 0.6}, ValidationError),
        ({"starts_at": "2026-04-01T00:00:00+00:00", "ends_at": "2026-03-01T00:00:00+00:00"}, ValidationError),
        ({"text": "Hi $link_missing"}, ValidationError),
        ({"text": "Hi ${broken"}, ValidationError),
        ({"channel": "phone"}, ValidationError),
        ({"stratify": "shoe_size"}, ValidationError),
        ({"baseline_rate": 0.1}, ValidationError),
    ],
)
def test_bad_designs_are_refused_and_nothing_is_stored(
    crm: crmcore.CRM, fields: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        create(crm, **fields)
    assert crm.campaigns.count() == 0


def test_an_empty_audience_is_refused_at_launch_and_the_campaign_stays_a_draft(crm: crmcore.CRM) -> None:
    populate(crm, 5)
    create(crm, rule='tier = "platinum"')
    with pytest.raises(ValidationError, match="selects nobody"):
        crm.marketing.launch("spring")
    assert crm.marketing.get("spring").status is CampaignStatus.DRAFT
    assert crm.marketing.counts("spring") == {}


def test_a_template_field_a_member_lacks_is_refused_before_anything_is_sent(crm: crmcore.CRM) -> None:
    customers = populate(crm, 6)
    crm.customers.change(customers[0].id, attributes={"pet": "cat"})
    create(crm, text="How is $pet? $link_shop")
    with pytest.raises(ValidationError, match=r"\$pet"):
        crm.marketing.launch("spring")
    assert crm.marketing.counts("spring") == {}


def test_launch_freezes_the_audience_as_of_its_instant(
    crm: crmcore.CRM, clock: Clock, events: EventLog
) -> None:
    populate(crm, 120)
    crm.segments.save("everyone", "Everyone", 'tier in ("gold", "silver")')
    create(crm, rule=None, segment="everyone", stratify="tier")
    launched = crm.marketing.launch("spring")
    assert launched.target + launched.control == 120
    assert launched.control == sum(c for _, c in launched.strata.values())
    for target, control in launched.strata.values():
        assert abs(control - 0.2 * (target + control)) <= 1
    clock.advance(hours=1)
    populate(crm, 3, first=1000, created=clock.at)  # customers who arrive later are not in the campaign
    members = crm.marketing.members("spring", limit=1000)
    assert len(members) == 120
    at = crm.marketing.get("spring").launched_at
    assert [m.customer_id for m in members] == sorted(
        crm.customers.ids_matching('tier in ("gold", "silver")', as_of=at)
    )
    assert {m.stratum for m in members} == {"gold", "silver"}
    assert crm.marketing.audit("spring") == []
    [event] = events.of("campaign.launched")
    assert event.payload["target"] == launched.target and event.payload["control"] == launched.control
    with pytest.raises(ValidationError, match="launched already"):
        crm.marketing.launch("spring")


def test_the_draw_can_be_recomputed_from_the_campaign_id_and_seed(crm: crmcore.CRM) -> None:
    populate(crm, 60)
    create(crm)
    create(crm, id="twin")
    crm.marketing.launch("spring")
    crm.marketing.launch("twin")

    def control(campaign: str) -> set[str]:
        return {m.customer_id for m in crm.marketing.members(campaign) if m.group is MemberGroup.CONTROL}

    assert len(control("spring")) == 12
    assert control("spring") != control("twin")  # the campaign id is part of the draw


def test_an_underpowered_campaign_is_refused_before_anything_is_sent(crm: crmcore.CRM) -> None:
    populate(crm, 200)
    create(crm, baseline_rate=0.05, minimum_lift=0.02)
    with pytest.raises(UnderpoweredCampaign) as refused:
        crm.marketing.launch("spring")
    assert refused.value.needed.control > 40 and "needs" in str(refused.value)
    assert crm.marketing.counts("spring") == {}
    create(crm, id="bold", baseline_rate=0.05, minimum_lift=0.4)
    assert crm.marketing.launch("bold").needed is not None


def test_campaign_results_are_readable_by_segment_rules(crm: crmcore.CRM) -> None:
    customers = populate(crm, 20)
    create(crm)
    crm.marketing.launch("spring")
    member = next(m for m in crm.marketing.members("spring") if m.group is MemberGroup.TARGET)
    with crm.transaction() as uow:
        import attrs

        uow.campaign_members.put(attrs.evolve(member, status=MemberStatus.RESPONDED))
    assert crm.customers.ids_matching('campaign_responded(id, "spring") = true') == [member.customer_id]
    controls = crm.customers.ids_matching('campaign_group(id, "spring") = "control"')
    assert len(controls) == 4 and member.customer_id not in controls
    assert crm.customers.ids_matching('campaign_converted(id, "spring") = true') == []
    assert len(crm.customers.ids_matching('campaign_status(id, "spring") = "selected"')) == len(customers) - 1


def test_analysis_counts_the_same_in_sql_and_python(crm: crmcore.CRM, clock: Clock) -> None:
    customers = populate(crm, 80)
    create(crm, stratify="tier", budget=crmcore.Money(Decimal(100)), ends_at=clock.at + timedelta(days=10))
    crm.marketing.launch("spring")
    members = crm.marketing.members("spring")
    with crm.transaction() as uow:
        import attrs

        for m in members:
            held = MemberStatus.HELD if m.group is MemberGroup.CONTROL else MemberStatus.SENT
            uow.campaign_members.put(attrs.evolve(m, status=held))
    clock.advance(days=1)
    for i, customer in enumerate(customers):
        if i % 3 == 0:
            crm.purchases.record(purchase(customer.id, Decimal(i + 1), clock.at))
        if i % 5 == 0:
            crm.interactions.log(customer.id, channel="phone", direction="inbound", at=clock.at)
        if i % 7 == 0:
            crm.interactions.log(
                customer.id, channel="email", direction="inbound", at=clock.at, outcome="unsubscribed"
            )
    clock.advance(days=1)
    report = crm.marketing.analyse("spring")
    python = crm.marketing.analyse("spring", engine="python")
    assert report.overall == python.overall
    assert report.strata == python.strata
    total = report.overall.target.members + report.overall.control.members
    assert total == 80
    assert report.overall.target.converters + report.overall.control.converters == 27
    assert "Newcombe" in report.explain() and "Welch" in report.explain()


def test_the_holdout_can_be_stratified_by_a_score_label(crm: crmcore.CRM, clock: Clock) -> None:
    customers = populate(crm, 40)
    with crm.transaction() as uow:
        uow.scores.put(
            Score(c.id, "rfm", clock.at - timedelta(hours=1), i % 4, "champion" if i % 4 == 3 else "other")
            for i, c in enumerate(customers)
        )
    create(crm, stratify="score.rfm", control_fraction=0.1)
    launched = crm.marketing.launch("spring")
    assert launched.strata == {"champion": (9, 1), "other": (27, 3)}
    assert crm.marketing.audit("spring") == []


@pytest.mark.parametrize(
    "fields",
    [
        {"status": "closed"},
        {"colour": "red"},
        {"links": ["https://x.example"]},
        {"links": {"a": "javascript:x"}},
    ],
)
def test_fields_the_caller_may_not_set_are_refused(crm: crmcore.CRM, fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        create(crm, **fields)
    assert crm.campaigns.count() == 0


def test_a_send_policy_is_checked_where_it_is_written() -> None:
    from datetime import time

    from crmcore.marketing import Policy

    for bad in (
        {"frequency_cap": 0},
        {"frequency_window": timedelta(0)},
        {"quiet_hours": (time(1),)},
        {"timezone": "Mars/Olympus"},
        {"suppressed": ["not an address"]},
    ):
        with pytest.raises(ValidationError):
            Policy(**bad)  # type: ignore[arg-type]
    assert Policy(quiet_hours=[time(21), time(8)]).quiet_hours == (time(21), time(8))  # type: ignore[arg-type]


@pytest.mark.parametrize("campaign, customer", [(None, "k"), (["c"], "k"), ("c", 5), ("c", "\x00" * 100)])
def test_join_refuses_hostile_ids_with_a_typed_error(
    crm: crmcore.CRM, campaign: object, customer: object
) -> None:
    with pytest.raises(crmcore.CRMError):
        crm.marketing.join(campaign, customer)  # type: ignore[arg-type]
