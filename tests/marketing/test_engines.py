"""A law: the SQL count and the Python count of a campaign's responses agree, on any data,
and agree with the definitions counted by hand."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import values as v
from crmcore.marketing import analysis
from crmcore.model import Campaign, CampaignMember, Interaction, MemberGroup, MemberStatus
from crmcore.model.marketing import CampaignStatus
from tests.marketing.conftest import T0, purchase

START, END = T0, T0 + timedelta(days=10)
moments = st.integers(-3, 13).map(lambda d: T0 + timedelta(days=d, hours=1))
people = st.lists(
    st.fixed_dictionaries(
        {
            "group": st.sampled_from(list(MemberGroup)),
            "status": st.sampled_from(
                [MemberStatus.SENT, MemberStatus.HELD, MemberStatus.SKIPPED, MemberStatus.FAILED]
            ),
            "stratum": st.sampled_from(["", "gold"]),
            "buys": st.lists(
                st.tuples(moments, st.integers(1, 500), st.sampled_from(["EUR", "USD"])), max_size=3
            ),
            "contacts": st.lists(
                st.tuples(
                    moments,
                    st.sampled_from([None, "clicked", "unsubscribed"]),
                    st.sampled_from(["inbound", "outbound"]),
                ),
                max_size=3,
            ),
        }
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.parametrize("scheme", ["sqlite", "duckdb"])  # duckdb: the example third-party dialect
@settings(max_examples=25, deadline=None)
@given(people)
def test_sql_and_python_count_the_same_and_as_defined(scheme: str, rows: list[dict[str, object]]) -> None:
    campaign = Campaign(
        "c",
        "C",
        "email",
        starts_at=START,
        ends_at=END,
        status=CampaignStatus.LAUNCHED,
        launched_at=START,
        budget=crmcore.Money(Decimal(10)),
    )
    expected: dict[tuple[str, str], analysis.Tally] = {}
    with tempfile.TemporaryDirectory() as folder:
        crm = crmcore.open(f"{scheme}:///{Path(folder) / 'crm.db'}", clock=lambda: END + timedelta(days=5))
        records: list[crmcore.Customer | crmcore.Purchase | Interaction] = []
        members = []
        for i, row in enumerate(rows):
            customer = crmcore.Customer(
                f"k{i:03d}", f"K {i}", created_at=T0 - timedelta(days=30), updated_at=T0 - timedelta(days=30)
            )
            records.append(customer)
            spent = Decimal(0)
            bought = False
            for at, amount, currency in row["buys"]:  # type: ignore[attr-defined]
                records.append(purchase(customer.id, Decimal(amount), at, currency))
                if START <= at < END and currency == "EUR":
                    spent += amount
                    bought = True
            contacted = False
            for at, outcome, direction in row["contacts"]:  # type: ignore[attr-defined]
                records.append(Interaction(v.new_id(), customer.id, "email", direction, at, outcome=outcome))
                contacted |= START <= at < END and direction == "inbound" and outcome != "unsubscribed"
            members.append(CampaignMember("c", customer.id, row["group"], row["status"], T0, row["stratum"]))
            if row["status"] in analysis.ANALYSED:
                key = (str(row["group"]), str(row["stratum"]))
                revenue = float(spent)
                expected[key] = expected.get(key, analysis.Tally()) + analysis.Tally(
                    1, int(bought or contacted), int(bought), revenue, revenue * revenue
                )
        crm.bulk_import(records)
        with crm.transaction() as uow:
            uow.campaigns.add(campaign)
            uow.campaign_members.put_many(members)
        with crm.reading() as uow:
            sql, engine = analysis.tallies(uow, campaign, START, END)
            python, _ = analysis.tallies(uow, campaign, START, END, engine="python")
        crm.close()
    assert engine == "sql"
    assert sql == python == expected
