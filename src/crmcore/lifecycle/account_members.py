"""A customer's places in accounts follow the customer: a merge hands them to the survivor
(journalled, so an unmerge hands them back), a removal or an erasure takes them out.

Otherwise an account would list a customer who no longer exists. Each account change
goes through `crm.operational.accounts.update`, so it is checked, versioned (a write to
the account in flight makes the merge fail whole, to be retried) and kept in history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from crmcore import serialization
from crmcore.model import AccountMember
from crmcore.model.history import MergeRecord
from crmcore.ports import UnitOfWork

if TYPE_CHECKING:
    from crmcore.crm import CRM


def move(
    crm: CRM, uow: UnitOfWork, merged_id: str, survivor_id: str
) -> tuple[list[dict[str, Any]], list[str]]:
    """The survivor takes the merged customer's place (role, primary, position) in each of
    their accounts it is not in already; in the others the merged customer just leaves.
    Returns the journal: the memberships as they were, and the accounts taken over."""
    journal: list[dict[str, Any]] = []
    taken: list[str] = []
    for account in uow.accounts.of_customer(merged_id):
        theirs = next(m for m in account.members if m.customer_id == merged_id)
        journal.append({"account_id": account.id, "member": serialization.unstructure(theirs)})
        if any(m.customer_id == survivor_id for m in account.members):
            changed = account.without_member(merged_id)
        else:
            changed = _renamed(account, merged_id, survivor_id)
            taken.append(account.id)
        crm.operational.accounts.update(changed)
    return journal, taken


def restore(crm: CRM, uow: UnitOfWork, record: MergeRecord) -> None:
    """Undo `move`: where the survivor took the place it gives it back, with the role it has
    now (a later change goes back too; if the survivor left the account since, the place
    stays empty); elsewhere the merged customer comes back as they were. Accounts removed
    since are skipped."""
    for entry in record.accounts:
        account = uow.accounts.find(entry["account_id"])
        if account is None or any(m.customer_id == record.merged_id for m in account.members):
            continue
        if account.id in record.moved_accounts:
            if not any(m.customer_id == record.survivor_id for m in account.members):
                continue
            changed = _renamed(account, record.survivor_id, record.merged_id)
        else:
            member = serialization.structure(entry["member"], AccountMember)
            if any(m.primary for m in account.members):
                member = attrs.evolve(member, primary=False)
            changed = attrs.evolve(account, members=(*account.members, member))
        crm.operational.accounts.update(changed)


def leave(crm: CRM, uow: UnitOfWork, customer_id: str) -> list[str]:
    """Take the customer out of every account; returns those accounts' ids."""
    left = []
    for account in uow.accounts.of_customer(customer_id):
        crm.operational.accounts.update(account.without_member(customer_id))
        left.append(account.id)
    return left


def scrub_history(uow: UnitOfWork, account_ids: list[str], customer_ids: set[str]) -> None:
    """Rewrite the accounts' history without the customers in it (an erasure): each change
    keeps its instant, actor and order, less every member entry or value naming them."""
    for account_id in account_ids:
        changes = uow.history.of("account", account_id)
        uow.history.purge("account", account_id)
        uow.history.append_many([
            attrs.evolve(c, diff=_without(c.diff, customer_ids), seq=0) for c in changes])


def _renamed(account: Any, old_id: str, new_id: str) -> Any:
    members = tuple(attrs.evolve(m, customer_id=new_id) if m.customer_id == old_id else m
                    for m in account.members)
    return attrs.evolve(account, members=members)


def _without(value: Any, ids: set[str]) -> Any:
    if isinstance(value, dict):
        return {key: _without(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_without(item, ids) for item in value if not _names(item, ids)]
    return value


def _names(item: Any, ids: set[str]) -> bool:
    return item in ids if isinstance(item, str) else isinstance(item, dict) and item.get("customer_id") in ids
