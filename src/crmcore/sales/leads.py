"""Leads to deals: capture, qualify, convert (customer and opportunity at once), and score.

Lead scores come from the naive-Bayes model of `crmcore.scoring.lead`, learned from
won and lost opportunities; `refresh_scores` stores each customer's best open
opportunity as a dated `lead` snapshot, which segment rules read as `score.lead`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model import Customer, Lead, LeadStatus, LifecycleStage, Opportunity, Score
from crmcore.sales.pipelines import known_fields
from crmcore.scoring.lead import LeadModel
from crmcore.scoring.summary import every

if TYPE_CHECKING:
    from crmcore.crm import CRM

SCORER = "lead"


class Leads:
    """`crm.sales.leads`."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def capture(self, name: str, **fields: Any) -> Lead:
        """A new lead (email, phone, company, source, attributes)."""
        known_fields(Lead, fields, "lead")
        lead = Lead(id=fields.pop("id", None) or v.new_id(), name=name,
                    created_at=self.crm.clock(), **fields)
        with self.crm.transaction() as uow:
            stored = uow.leads.add(lead)
            self.crm.emit("lead.captured", stored.id, source=stored.source)
            return stored

    def get(self, lead_id: str) -> Lead:
        with self.crm.reading() as uow:
            return uow.leads.get(lead_id)

    def qualify(self, lead_id: str, *, qualified: bool = True, reason: str | None = None) -> Lead:
        """Judge a new lead worth pursuing (or not, with a reason)."""
        with self.crm.transaction() as uow:
            lead = uow.leads.get(lead_id)
            if lead.status is not LeadStatus.NEW:
                raise ValidationError("status", str(lead.status), "only a new lead is qualified")
            status = LeadStatus.QUALIFIED if qualified else LeadStatus.DISQUALIFIED
            stored = uow.leads.update(attrs.evolve(lead, status=status, reason=reason))
            self.crm.emit("lead.qualified", lead_id, status=str(status))
            return stored

    def convert(self, lead_id: str, title: str, *, pipeline: str = "default",
                region: str | None = None, **fields: Any) -> tuple[Customer, Opportunity]:
        """A qualified lead becomes a customer (a prospect; the one with its e-mail, if any)
        and an opportunity, in one transaction: all three writes or none."""
        with self.crm.transaction() as uow:
            lead = uow.leads.get(lead_id)
            if lead.status is not LeadStatus.QUALIFIED:
                raise ValidationError("status", str(lead.status), "only a qualified lead is converted")
            customer = uow.customers.by_email(lead.email) if lead.email else None
            if customer is None:
                customer = self.crm.customers.add(Customer.new(
                    lead.company or lead.name, emails=[lead.email] if lead.email else [],
                    phones=[lead.phone] if lead.phone else [], region=region,
                    lifecycle=LifecycleStage.PROSPECT, created_at=self.crm.clock(),
                ))
            fields.setdefault("source", lead.source)
            fields.setdefault("attributes", dict(lead.attributes))
            opportunity = self.crm.sales.pipelines.open(customer.id, title, pipeline=pipeline, **fields)
            uow.leads.update(attrs.evolve(lead, status=LeadStatus.CONVERTED,
                                          customer_id=customer.id, opportunity_id=opportunity.id))
            self.crm.emit("lead.converted", lead_id, customer_id=customer.id,
                          opportunity_id=opportunity.id)
            return customer, opportunity

    def refresh_scores(self, as_of: datetime | None = None) -> int:
        """Learn from every closed opportunity and store, per customer with open ones, the best
        open opportunity's win probability as a `lead` snapshot dated `as_of` (now by default).
        Returns how many snapshots were written. The CLI's command calls this."""
        moment = as_of or self.crm.clock()
        with self.crm.reading() as uow:
            opportunities = list(every(uow, "opportunities"))
        model = LeadModel.train(opportunities)
        with self.crm.transaction() as uow:
            return uow.scores.put(_best_per_customer(model, opportunities, moment))


def _best_per_customer(model: LeadModel, opportunities: Iterable[Opportunity],
                       moment: datetime) -> list[Score]:
    best: dict[str, Score] = {}
    for opportunity in opportunities:
        if opportunity.is_closed or opportunity.opened_at > moment:
            continue
        scored = model.score(opportunity)
        held = best.get(scored.customer_id)
        if held is None or scored.probability > held.value:
            best[scored.customer_id] = Score(
                scored.customer_id, SCORER, moment, scored.probability, scored.opportunity_id,
                {**scored.explain(), "opportunity_id": scored.opportunity_id},
            )
    return list(best.values())
