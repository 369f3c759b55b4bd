"""Leads to deals: qualification, conversion in one transaction, stored lead scores."""

from __future__ import annotations

import pytest

from crmcore import CRM
from crmcore.errors import ValidationError
from crmcore.model import LeadStatus, LifecycleStage, Pipeline, PipelineStage, Stage
from crmcore.scoring.lead import LeadModel
from crmcore.values import Money
from tests.sales.conftest import Clock


def test_a_qualified_lead_converts_into_customer_and_opportunity(crm: CRM) -> None:
    lead = crm.sales.leads.capture("Grace", email="grace@example.org", company="Hopper & Co",
                                   phone="+33 1 23 45 67 89", source="web",
                                   attributes={"industry": "bank"})
    with pytest.raises(ValidationError):
        crm.sales.leads.convert(lead.id, "First deal")  # not qualified yet
    crm.sales.leads.qualify(lead.id)
    customer, deal = crm.sales.leads.convert(lead.id, "First deal", amount=Money("500.00"))
    assert (customer.name, customer.lifecycle) == ("Hopper & Co", LifecycleStage.PROSPECT)
    assert customer.phones == ("+33123456789",)
    assert (deal.customer_id, deal.source, deal.attributes) == (customer.id, "web", {"industry": "bank"})
    stored = crm.sales.leads.get(lead.id)
    assert (stored.status, stored.customer_id, stored.opportunity_id) == (
        LeadStatus.CONVERTED, customer.id, deal.id)


def test_a_failed_conversion_writes_nothing(crm: CRM) -> None:
    crm.sales.pipelines.add(Pipeline("p", "P", (PipelineStage("open", 0.3, ("amount",)),)))
    lead = crm.sales.leads.capture("Alan", email="alan@example.org")
    crm.sales.leads.qualify(lead.id)
    with pytest.raises(ValidationError) as caught:
        crm.sales.leads.convert(lead.id, "Deal", pipeline="p")
    assert caught.value.field == "amount"
    assert crm.customers.by_email("alan@example.org") is None
    assert crm.sales.leads.get(lead.id).status is LeadStatus.QUALIFIED
    assert crm.customers.count() == 0


def test_a_disqualified_lead_is_not_converted(crm: CRM) -> None:
    lead = crm.sales.leads.capture("Spam")
    crm.sales.leads.qualify(lead.id, qualified=False, reason="no budget")
    with pytest.raises(ValidationError):
        crm.sales.leads.convert(lead.id, "Deal")
    with pytest.raises(ValidationError):
        crm.sales.leads.qualify(lead.id)


def test_lead_scores_are_dated_snapshots_that_rules_read(crm: CRM, clock: Clock) -> None:
    history = [("bank", Stage.WON)] * 4 + [("retail", Stage.LOST)] * 4 + [
        ("bank", Stage.LOST), ("retail", Stage.WON)]
    for n, (industry, outcome) in enumerate(history):
        lead = crm.sales.leads.capture(f"L{n}", email=f"l{n}@example.org",
                                       attributes={"industry": industry})
        crm.sales.leads.qualify(lead.id)
        _, deal = crm.sales.leads.convert(lead.id, "deal")
        crm.sales.pipelines.move(deal.id, outcome)
    hot = crm.sales.leads.capture("Hot", email="hot@example.org", attributes={"industry": "bank"})
    cold = crm.sales.leads.capture("Cold", email="cold@example.org", attributes={"industry": "retail"})
    for lead in (hot, cold):
        crm.sales.leads.qualify(lead.id)
        crm.sales.leads.convert(lead.id, "new deal")
    first = clock.advance(days=1)
    assert crm.sales.leads.refresh_scores() == 2
    hot_id = crm.customers.by_email("hot@example.org").id  # type: ignore[union-attr]
    snapshot = crm.analytical.latest_scores(hot_id)["lead"]
    model = LeadModel.train(crm.opportunities.list())
    expected = max(model.score(o).probability for o in crm.opportunities.for_customer(hot_id))
    assert (snapshot.as_of, snapshot.value) == (first, pytest.approx(expected))
    assert [c.id for c in crm.customers.matching("score.lead > 0.5")] == [hot_id]
    clock.advance(days=1)
    crm.sales.leads.refresh_scores()
    assert crm.analytical.latest_scores(hot_id, as_of=first)["lead"].as_of == first
