"""Reading responses back onto a campaign's members: replies, clicks, unsubscribes, purchases.

Clicks are recorded as they happen (the click app). Replies come in through
the e-mail `Poller`, which threads them onto the timeline (`in_reply_to` is the
Message-ID the campaign sent); unsubscribes too. `collect` walks the members
that were sent something and settles, from their timelines and purchases in the
response window: the first response (replied, clicked, unsubscribed) and the
purchases credited to this campaign by last touch (`attribution`). It is
idempotent: each member gets `campaign.responded` and `campaign.converted` once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import attrs

from crmcore.marketing.attribution import Touch, last_touch
from crmcore.model import Campaign, CampaignMember, Direction, Interaction, MemberStatus, Purchase

if TYPE_CHECKING:
    from crmcore.crm import CRM

SENT_STATES = (MemberStatus.SENT, MemberStatus.RESPONDED, MemberStatus.CONVERTED)


@attrs.frozen
class Collected:
    responded: int = 0
    converted: int = 0
    revenue: Decimal = Decimal(0)


def response_of(
    member: CampaignMember, campaign: Campaign, timeline: list[Interaction], end: datetime
) -> tuple[str, datetime] | None:
    """The member's first response in the window: (kind, when), or None."""
    found: list[tuple[datetime, str]] = []
    for item in timeline:
        if item.direction is not Direction.INBOUND or member.sent_at is None:
            continue
        if not member.sent_at <= item.occurred_at < end:
            continue
        if member.reference is not None and item.in_reply_to == member.reference:
            found.append((item.occurred_at, "replied"))
        elif item.campaign_id == campaign.id and item.outcome == "clicked":
            found.append((item.occurred_at, "clicked"))
        elif item.outcome == "unsubscribed":
            found.append((item.occurred_at, "unsubscribed"))
    if not found:
        return None
    at, kind = min(found)
    return kind, at


def credited(
    campaign: Campaign,
    member: CampaignMember,
    purchases: list[Purchase],
    timeline: list[Interaction],
    end: datetime,
    ends_of: Callable[[str], datetime | None],
) -> list[Purchase]:
    """The member's purchases in the window that last touch gives to this campaign."""
    touches = [
        Touch(i.campaign_id, i.occurred_at, ends_of(i.campaign_id))
        for i in timeline
        if i.direction is Direction.OUTBOUND and i.campaign_id is not None
    ]
    currency = campaign.budget.currency if campaign.budget is not None else "EUR"
    won = []
    for purchase in purchases:
        if (
            member.sent_at is None
            or not member.sent_at <= purchase.ordered_at < end
            or purchase.currency != currency
        ):
            continue
        touch = last_touch(purchase.ordered_at, touches)
        if touch is not None and touch.campaign_id == campaign.id:
            won.append(purchase)
    return won


def collect(crm: CRM, campaign: Campaign, end: datetime, page: int = 500) -> Collected:
    windows: dict[str, datetime | None] = {campaign.id: end}

    def ends_of(campaign_id: str) -> datetime | None:
        if campaign_id not in windows:
            other = crm.campaigns.find(campaign_id)
            windows[campaign_id] = None if other is None else other.ends_at
        return windows[campaign_id]

    responded = converted = 0
    revenue = Decimal(0)
    after: str | None = None
    while True:
        with crm.transaction() as uow:
            members = uow.campaign_members.page(campaign.id, after=after, limit=page)
            if not members:
                break
            after = members[-1].customer_id
            now = crm.clock()
            for member in members:
                if member.status not in SENT_STATES or member.sent_at is None:
                    continue
                timeline = uow.interactions.for_customer(member.customer_id, since=member.sent_at, limit=None)
                changed = member
                if member.responded_at is None:
                    found = response_of(member, campaign, timeline, end)
                    if found is not None:
                        kind, at = found
                        changed = attrs.evolve(
                            changed, status=MemberStatus.RESPONDED, response=kind, responded_at=at, at=now
                        )
                        crm.emit(
                            "campaign.responded",
                            campaign.id,
                            customer_id=member.customer_id,
                            kind=kind,
                            at=at.isoformat(),
                        )
                        responded += 1
                purchases = uow.purchases.for_customer(member.customer_id, since=member.sent_at)
                won = credited(campaign, member, purchases, timeline, end, ends_of)
                if won:
                    total = sum((p.total.amount for p in won), Decimal(0))
                    first = min(p.ordered_at for p in won)
                    if member.converted_at is None:
                        crm.emit(
                            "campaign.converted",
                            campaign.id,
                            customer_id=member.customer_id,
                            purchases=[p.id for p in won],
                            revenue=str(total),
                            currency=won[0].currency,
                            at=first.isoformat(),
                        )
                        converted += 1
                        revenue += total
                    changed = attrs.evolve(
                        changed,
                        status=MemberStatus.CONVERTED,
                        converted_at=first,
                        revenue=total,
                        responded_at=changed.responded_at or first,
                        response=changed.response or "purchased",
                        at=now,
                    )
                if changed != member:
                    uow.campaign_members.put(changed)
    return Collected(responded, converted, revenue)
