"""Retention rules: records the company must not keep, found and erased.

`erase_inactive_leads(crm, months=24)` is what a scheduled command runs: every lead
with no change, contact or purchase for `months` calendar months is erased (one
transaction each, so one failure leaves the others done).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import TYPE_CHECKING

from dateutil.relativedelta import relativedelta

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.lifecycle.privacy import erase_person
from crmcore.model import Customer, LifecycleStage
from crmcore.model.history import Tombstone

if TYPE_CHECKING:
    from crmcore.crm import CRM

PAGE = 1000


def _leads(crm: CRM) -> Iterator[Customer]:
    after: str | None = None
    while True:
        page = crm.customers.list(after=after, limit=PAGE)
        if not page:
            return
        yield from (c for c in page if c.lifecycle is LifecycleStage.LEAD)
        after = page[-1].id


def last_activity(crm: CRM, customer: Customer) -> datetime:
    """The latest of the record's own change, its newest contact and its newest purchase."""
    with crm.reading() as uow:
        contacts = uow.interactions.for_customer(customer.id, limit=1)
        orders = uow.purchases.for_customer(customer.id, limit=1)
    moments = [customer.updated_at, *(i.occurred_at for i in contacts), *(p.ordered_at for p in orders)]
    return max(moments)


def inactive_leads(crm: CRM, months: int, now: datetime | None = None) -> list[str]:
    """Ids of leads inactive for at least `months` months before `now` (default: the CRM's clock)."""
    if isinstance(months, bool) or not isinstance(months, int) or months < 1:
        raise ValidationError("months", months, "must be a whole number of months, at least 1")
    moment = v.utc(now, "now") if now is not None else crm.clock()
    cutoff = moment - relativedelta(months=months)
    return [c.id for c in _leads(crm) if last_activity(crm, c) < cutoff]


def erase_inactive_leads(crm: CRM, months: int, now: datetime | None = None) -> list[Tombstone]:
    """Erase every lead inactive for `months` months; returns the tombstones left."""
    return [erase_person(crm, customer_id) for customer_id in inactive_leads(crm, months, now)]
