"""Analytical results as DataFrames, checked against the results they come from."""

from __future__ import annotations

import io

import numpy
import pandas
import pytest

import crmcore
from crmcore import Campaign, CampaignMember, Channel, MemberGroup, MemberStatus
from crmcore.dataframes import columns, to_pandas, to_polars
from crmcore.errors import ValidationError
from crmcore.io import export_file
from crmcore.synthetic import SyntheticBase


@pytest.fixture(scope="module")
def crm() -> crmcore.CRM:
    base = SyntheticBase(size=200, seed=9)
    crm = crmcore.open("memory://", clock=lambda: base.as_of)
    base.load(crm)
    return crm


def test_records_become_rows(crm: crmcore.CRM) -> None:
    scores = crm.analytical.rfm()
    frame = to_pandas(scores)
    assert list(frame.columns) == list(type(scores[0])._fields)
    assert len(frame) == len(scores)
    expected = pandas.Series([s.segment for s in scores]).value_counts().to_dict()
    assert frame.groupby("segment").size().to_dict() == expected
    assert frame["monetary"].sum() == pytest.approx(sum(s.monetary for s in scores))
    fast = to_polars(scores)
    assert fast.shape == frame.shape and fast["customer_id"].to_list() == [s.customer_id for s in scores]


def test_columnar_results_keep_their_arrays(crm: crmcore.CRM) -> None:
    value = crm.analytical.clv(currency="EUR")
    frame = to_polars(value)
    assert frame.columns == ["customer_id", "p_alive", "expected_purchases", "expected_spend", "clv",
                             "currency", "measure"]  # what the money columns are in, on every row
    assert set(frame["currency"]) == {"EUR"} and set(frame["measure"]) == {"revenue"}
    numpy.testing.assert_array_equal(frame["clv"].to_numpy(), value.clv)
    summary = crm.analytical.summary(currency="EUR")
    table = to_pandas(summary)
    assert list(table["frequency"]) == list(summary.frequency) and len(table) == len(summary)


def test_nested_records_and_dicts(crm: crmcore.CRM) -> None:
    offers = crm.analytical.next_offers()
    frame = to_pandas(offers)
    assert {"customer_id", "item", "rule_lift", "rule_antecedent"} <= set(frame.columns)
    assert sorted(frame["customer_id"]) == sorted(offers)
    quality = to_polars(crm.analytical.service_quality(by=("channel",)))
    assert quality["interactions"].sum() == sum(q.interactions for q in crm.analytical.service_quality(
        by=("channel",)))
    assert columns([]) == {}
    with pytest.raises(ValidationError):
        columns([1, 2])


def test_a_campaigns_results_export(crm: crmcore.CRM) -> None:
    crm.campaigns.add(Campaign("spring", "Spring offer", Channel.EMAIL))
    first, second = (c.id for c in crm.customers.list(limit=2))
    with crm.transaction() as uow:
        uow.campaign_members.put(CampaignMember("spring", first, MemberGroup.TARGET, MemberStatus.RESPONDED,
                                                crm.clock()))
        uow.campaign_members.put(CampaignMember("spring", second, MemberGroup.CONTROL, at=crm.clock()))
    out = io.StringIO()
    assert export_file(crm, "campaign_members", out, format="csv", campaign="spring") == 2
    rows = sorted(out.getvalue().splitlines()[1:])
    assert rows == sorted([f"spring,{first},target,responded,{crm.clock().isoformat()}",
                           f"spring,{second},control,selected,{crm.clock().isoformat()}"])
    with pytest.raises(crmcore.NotFound):
        export_file(crm, "campaign_members", io.StringIO(), format="csv", campaign="nope")
