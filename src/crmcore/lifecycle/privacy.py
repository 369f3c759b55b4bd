"""A person's right to see and to be forgotten: one JSON export, one erasure.

An erasure removes the customer and everything that names them: owned rows,
campaign memberships, places in accounts, score snapshots, segment memberships, history
(theirs, their cases' and opportunities', that of records merged into them, and their
entries in their accounts' history), merge journals,
and outbox events that carry their id or one of their values (those are emptied,
not deleted, so the outbox's sequence stays whole). Plugins erase their own data
(`crmcore_erase_person`). What stays is a `Tombstone`: that an erasure happened, and
when. Segment runs keep only counts, so they stay as they are.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from crmcore import serialization
from crmcore import values as v
from crmcore.events import Event
from crmcore.lifecycle import account_members
from crmcore.lifecycle.merge import OWNED
from crmcore.model import Customer
from crmcore.model.history import Tombstone
from crmcore.ports import UnitOfWork

if TYPE_CHECKING:
    from crmcore.crm import CRM

VERSIONED_OWNED = {"cases": "case", "opportunities": "opportunity"}
"""Owned aggregates with a history of their own, by table and history kind."""


def export_person(crm: CRM, customer_id: str) -> dict[str, Any]:
    """Everything the core and every plugin hold about the customer, as plain JSON data."""
    with crm.reading() as uow:
        customer = uow.customers.get(customer_id)
        document: dict[str, Any] = {"customer": serialization.unstructure(customer)}
        for name in OWNED:
            repo = getattr(uow, name)
            rows = repo.for_customer(customer_id) if name in VERSIONED_OWNED else repo.for_customer(
                customer_id, limit=None)
            document[name] = [serialization.unstructure(row) for row in rows]
        document["campaign_memberships"] = [
            serialization.unstructure(m) for m in uow.campaign_members.for_customer(customer_id)]
        document["accounts"] = [
            {"account_id": a.id, "member": serialization.unstructure(m)}
            for a in uow.accounts.of_customer(customer_id) for m in a.members if m.customer_id == customer_id]
        document["scores"] = [serialization.unstructure(s) for s in uow.scores.all_of(customer_id)]
        document["history"] = [serialization.unstructure(c) for c in uow.history.of("customer", customer_id)]
        document["merges"] = [serialization.unstructure(m) for m in uow.merges.involving(customer_id)]
        plugins: dict[str, Any] = {}
        for part in crm.plugins.hook.crmcore_export_person(crm=crm, customer_id=customer_id):
            plugins.update(part or {})
        document["plugins"] = plugins
    json.dumps(document)  # proves the document is JSON, before anyone relies on it
    return document


def person_values(customer: Customer) -> list[str]:
    """The strings that identify the person: id, name, e-mails, phones, external ids, address lines."""
    found = [customer.id, customer.name, *customer.emails, *customer.phones,
             *customer.external_ids.values()]
    for address in customer.addresses:
        found.extend(line for line in address.lines if line)
    return sorted({value for value in found if len(value) >= 3})


def mentions(ids: set[str], values: list[str]) -> Callable[[Event], bool]:
    """A test telling whether an outbox event names the person: one of their ids as its
    aggregate or as a JSON string in its payload, or one of their values anywhere in it."""
    lowered = [value.lower() for value in values]
    quoted = [json.dumps(id, ensure_ascii=False) for id in ids]

    def test(event: Event) -> bool:
        if event.aggregate_id in ids:
            return True
        text = json.dumps(event.payload, ensure_ascii=False, default=str)
        return any(q in text for q in quoted) or any(value in text.lower() for value in lowered)

    return test


def drop_owned(crm: CRM, uow: UnitOfWork, customer_id: str) -> list[str]:
    """Delete every row the customer owns and take them out of their accounts, so removing
    them leaves no orphans behind; returns the accounts they left."""
    left = account_members.leave(crm, uow, customer_id)
    for name in OWNED:
        getattr(uow, name).purge(customer_id)
    for member in uow.campaign_members.for_customer(customer_id):
        uow.campaign_members.remove(member.campaign_id, customer_id)
    uow.scores.purge(customer_id)
    uow.segment_members.purge(customer_id)
    return left


def erase_person(crm: CRM, customer_id: str) -> Tombstone:
    """Remove or anonymise everything about the customer, in one transaction."""
    with crm.transaction() as uow:
        at = crm.clock()
        customer = uow.customers.get(customer_id)
        journals = uow.merges.involving(customer_id)
        folded = [serialization.structure(j.merged, Customer) for j in journals
                  if j.survivor_id == customer_id and j.undone_at is None]
        values = sorted({*person_values(customer), *(x for c in folded for x in person_values(c))})
        crm.plugins.hook.crmcore_erase_person(crm=crm, customer_id=customer_id, values=values)
        for table, kind in VERSIONED_OWNED.items():
            for row in getattr(uow, table).for_customer(customer_id):
                uow.history.purge(kind, row.id)
        left = drop_owned(crm, uow, customer_id)
        ids = {customer_id, *(c.id for c in folded)}
        account_members.scrub_history(uow, left, ids)
        for id in ids:
            uow.segment_members.purge(id)
            uow.history.purge("customer", id)
        uow.merges.purge(customer_id)
        uow.customers.remove(customer)
        uow.outbox.redact(mentions(ids, values))
        tombstone = Tombstone(v.new_id(), at)
        uow.erasures.add(tombstone)
        crm.emit("person.erased", tombstone.id)
        return tombstone
