"""Merge two records of one customer, with a journal that lets the merge be undone.

A merge, in one transaction: the survivor's fields are chosen field by field (a
`Policy`, then the `crmcore_survivorship` hook), the merged record is removed,
its interactions, purchases, cases and opportunities, score snapshots and
campaign memberships go to the survivor, plugins move their own data
(`crmcore_on_merge`), and a `MergeRecord` keeps everything needed to undo it.

Unmerge, the rule for writes made after the merge:
- the merged record comes back exactly as it was (version included);
- every row the merge moved goes back to it, carrying whatever was written to
  that row since; rows the survivor gained after the merge stay with the survivor;
- each survivor field the merge changed returns to its value before the merge,
  unless it was written again after the merge (the later write wins), except
  that e-mails, phones, addresses, tags, consents, custom attributes and
  external ids that came only from the merged record leave the survivor anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import serialization
from crmcore import values as v
from crmcore.errors import IntegrityError, NotFound, ValidationError
from crmcore.lifecycle import account_members, history
from crmcore.model import CampaignMember, Consent, Customer, Score
from crmcore.model.history import MergeRecord
from crmcore.ports import UnitOfWork

if TYPE_CHECKING:
    from crmcore.crm import CRM

OWNED = ("interactions", "purchases", "cases", "opportunities")
"""Tables of rows a customer owns, moved by a merge (`CustomerRows.reassign`)."""

Rule = Callable[[Any, Any], Any]
"""(survivor's value, merged record's value) -> the value the survivor keeps."""


def survivor_unless_missing(mine: Any, theirs: Any) -> Any:
    return theirs if mine in (None, "", (), frozenset(), {}) else mine


def union(mine: Any, theirs: Any) -> Any:
    """Both collections, the survivor's entries first (for sets: every entry)."""
    if isinstance(mine, frozenset):
        return mine | theirs
    if isinstance(mine, dict):
        return {**theirs, **mine}
    seen = {_key(item) for item in mine}
    return (*mine, *(item for item in theirs if _key(item) not in seen))


def _key(item: Any) -> Any:
    return item.lower() if isinstance(item, str) else item


def newest_consent(mine: tuple[Consent, ...], theirs: tuple[Consent, ...]) -> tuple[Consent, ...]:
    """Per purpose and channel, the newest answer: it is the customer's latest will."""
    chosen: dict[tuple[str, str], Consent] = {}
    for answer in (*mine, *theirs):
        key = (answer.purpose, str(answer.channel))
        if key not in chosen or answer.at > chosen[key].at:
            chosen[key] = answer
    return tuple(chosen.values())


def earliest(mine: datetime, theirs: datetime) -> datetime:
    return min(mine, theirs)


Policy = Mapping[str, Rule]
"""Customer field -> rule; fields not named keep the survivor's value."""

DEFAULT_POLICY: Policy = {
    "name": survivor_unless_missing, "birth_date": survivor_unless_missing,
    "language": survivor_unless_missing, "tier": survivor_unless_missing,
    "service_point": survivor_unless_missing, "emails": union, "phones": union,
    "addresses": union, "tags": union, "attributes": union, "external_ids": union,
    "consents": newest_consent, "created_at": earliest,
}

_FIXED = frozenset({"id", "version", "updated_at"})


def survive(survivor: Customer, merged: Customer, policy: Policy = DEFAULT_POLICY) -> Customer:
    """The survivor's record with each field chosen by `policy`."""
    unknown = set(policy) - {f.name for f in attrs.fields(Customer)} | (set(policy) & _FIXED)
    if unknown:
        raise ValidationError("policy", sorted(unknown), "names fields a merge cannot choose")
    chosen = {name: rule(getattr(survivor, name), getattr(merged, name)) for name, rule in policy.items()}
    return attrs.evolve(survivor, **chosen)


def merge(crm: CRM, survivor_id: str, merged_id: str, policy: Policy = DEFAULT_POLICY) -> MergeRecord:
    """Fold customer `merged_id` into `survivor_id`; all or nothing. Returns the journal."""
    if survivor_id == merged_id:
        raise ValidationError("merged_id", merged_id, "a customer cannot be merged into itself")
    with crm.transaction() as uow:
        at = crm.clock()
        # both held until commit (in id order: two merges of one pair cannot deadlock), so a
        # contact, purchase or case added for the merged customer meanwhile is either moved
        # by this merge or refused after it (see CustomerRows and Dialect.key_lock)
        held = {id: uow.customers.lock(id) for id in sorted((survivor_id, merged_id))}
        survivor, merged = held[survivor_id], held[merged_id]
        proposed = survive(survivor, merged, policy)
        chosen = crm.plugins.hook.crmcore_survivorship(
            survivor=survivor, merged=merged, proposed=proposed) or proposed
        if not isinstance(chosen, Customer) or (chosen.id, chosen.version) != (survivor.id, survivor.version):
            raise ValidationError("survivorship", chosen, "must be the survivor's record (same id, version)")
        moved = {name: getattr(uow, name).reassign(merged_id, survivor_id) for name in OWNED}
        scores, moved_scores = _move_scores(uow, merged_id, survivor_id)
        members, moved_members = _move_members(uow, merged_id, survivor_id)
        accounts, moved_accounts = account_members.move(crm, uow, merged_id, survivor_id)
        uow.customers.remove(merged)
        history.record(uow, "customer", merged, None, at)
        stored = crm.customers.update(chosen)
        journals: dict[str, Any] = {}
        for part in crm.plugins.hook.crmcore_on_merge(crm=crm, survivor_id=survivor_id, merged_id=merged_id):
            journals.update(part or {})
        record = MergeRecord(
            id=v.new_id(), survivor_id=survivor_id, merged_id=merged_id, at=at,
            survivor_before=_data(survivor), survivor_after=_data(stored), merged=_data(merged),
            moved=moved, scores=[_data(s) for s in scores], moved_scores=moved_scores,
            members=[_data(m) for m in members], moved_members=moved_members,
            accounts=accounts, moved_accounts=moved_accounts, plugins=journals,
            actor=history.ACTOR.get(),
        )
        uow.merges.add(record)
        crm.emit("customer.merged", survivor_id, merged_id=merged_id, merge_id=record.id)
        return record


def unmerge(crm: CRM, merge_id: str) -> tuple[Customer, Customer]:
    """Undo a merge (see the module's rule for later writes); returns (survivor, merged)."""
    with crm.transaction() as uow:
        at = crm.clock()
        # the survivor is held until commit, as a merge holds it: writes to it wait, and so
        # do contacts, purchases and cases added for it (CustomerRows.reassign holds the rows
        # moved back). The merged id has no row until this commits: a write for it is
        # refused (NotFound), as it was since the merge. The journal is read again once the
        # survivor is held: a second unmerge of this merge, waiting here, then sees it undone.
        survivor_id = _undoable(uow, merge_id).survivor_id
        try:
            survivor_now = uow.customers.lock(survivor_id)
        except NotFound:
            raise ValidationError("merge_id", merge_id,
                                  "its survivor was merged or removed since: undo that first") from None
        record = _undoable(uow, merge_id)
        if uow.customers.find(record.merged_id) is not None:
            raise IntegrityError(f"customer {record.merged_id!r} exists again; cannot restore it")
        merged = serialization.structure(record.merged, Customer)
        survivor = crm.customers.update(serialization.structure(
            _separated(record, _data(survivor_now)), Customer))
        restored = uow.customers.restore(merged)
        history.record(uow, "customer", None, restored, at)
        for name, ids in record.moved.items():
            getattr(uow, name).reassign(record.survivor_id, record.merged_id, ids)
        _restore_scores(uow, record)
        _restore_members(uow, record)
        account_members.restore(crm, uow, record)
        crm.plugins.hook.crmcore_on_unmerge(
            crm=crm, survivor_id=record.survivor_id, merged_id=record.merged_id, journal=record.plugins)
        uow.merges.update(attrs.evolve(record, undone_at=at))
        crm.emit("customer.unmerged", record.survivor_id, merged_id=record.merged_id, merge_id=merge_id)
        return survivor, restored


def _undoable(uow: UnitOfWork, merge_id: str) -> MergeRecord:
    record = uow.merges.get(merge_id)
    if record.undone_at is not None:
        raise ValidationError("merge_id", merge_id, "this merge was undone already")
    return record


def merges_of(crm: CRM, customer_id: str) -> list[MergeRecord]:
    """The merge journals where the customer survived or was merged, oldest first."""
    with crm.reading() as uow:
        return uow.merges.involving(customer_id)


def _data(item: Any) -> dict[str, Any]:
    data: dict[str, Any] = serialization.unstructure(item)
    return data


def _separated(record: MergeRecord, now: dict[str, Any]) -> dict[str, Any]:
    """The survivor's data after unmerge: see the module's rule."""
    before, after, merged = record.survivor_before, record.survivor_after, record.merged
    result = dict(now)
    for name in before:
        if name in _FIXED:
            continue
        if now.get(name) == after.get(name):
            result[name] = before[name]
        else:
            result[name] = _without_theirs(now[name], before.get(name), merged.get(name))
    return result


def _without_theirs(value: Any, mine: Any, theirs: Any) -> Any:
    """`value` less the entries that came only from the merged record."""
    if isinstance(value, list) and isinstance(theirs, list):
        mine_list = mine or []
        return [x for x in value if x not in theirs or x in mine_list]
    if isinstance(value, dict) and isinstance(theirs, dict):
        mine_map = mine or {}
        return {k: x for k, x in value.items()
                if not (k in theirs and theirs[k] == x and k not in mine_map)}
    return value


def _move_scores(uow: UnitOfWork, merged_id: str, survivor_id: str) -> tuple[list[Score], list[list[str]]]:
    """Snapshots go to the survivor where it has none for the same scorer and instant. Both
    customers' snapshots are read held (`lock`), as `reassign` holds the rows it moves: a
    snapshot written meanwhile is waited for and moved as that write left it."""
    theirs = uow.scores.all_of(merged_id, lock=True)
    taken = {(s.scorer, s.as_of) for s in uow.scores.all_of(survivor_id, lock=True)}
    movable = [s for s in theirs if (s.scorer, s.as_of) not in taken]
    uow.scores.purge(merged_id)
    uow.scores.put(attrs.evolve(s, customer_id=survivor_id) for s in movable)
    return theirs, [[s.scorer, s.as_of.isoformat()] for s in movable]


def _restore_scores(uow: UnitOfWork, record: MergeRecord) -> None:
    keys = [(scorer, datetime.fromisoformat(at)) for scorer, at in record.moved_scores]
    uow.scores.purge(record.survivor_id, keys)
    uow.scores.put(serialization.structure(s, Score) for s in record.scores)


def _move_members(
    uow: UnitOfWork, merged_id: str, survivor_id: str
) -> tuple[list[CampaignMember], list[str]]:
    """Memberships go to the survivor in campaigns it is not in already; read held, as the
    snapshots are: a status change in flight is waited for and moved along."""
    theirs = uow.campaign_members.for_customer(merged_id, lock=True)
    taken = {m.campaign_id for m in uow.campaign_members.for_customer(survivor_id, lock=True)}
    moved = []
    for member in theirs:
        uow.campaign_members.remove(member.campaign_id, merged_id)
        if member.campaign_id not in taken:
            uow.campaign_members.put(attrs.evolve(member, customer_id=survivor_id))
            moved.append(member.campaign_id)
    return theirs, moved


def _restore_members(uow: UnitOfWork, record: MergeRecord) -> None:
    """Moved memberships go back with their later status; the others as they were. The
    survivor's are read held: a status change in flight is waited for and goes back too."""
    current = {m.campaign_id: m for m in uow.campaign_members.for_customer(record.survivor_id, lock=True)}
    for data in record.members:
        original = serialization.structure(data, CampaignMember)
        now = current.get(original.campaign_id)
        if original.campaign_id in record.moved_members and now is not None:
            uow.campaign_members.remove(original.campaign_id, record.survivor_id)
            uow.campaign_members.put(attrs.evolve(now, customer_id=record.merged_id))
        else:
            uow.campaign_members.put(original)


