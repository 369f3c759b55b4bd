"""What the lifecycle keeps about records: changes, merge journals, erasure tombstones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from crmcore import values as v


class ChangeKind(v.Choice):
    __field__ = "op"

    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"


@attrs.frozen
class Change:
    """One write to one aggregate: who, when, and each field's [old, new] (plain JSON values).

    An addition lists every field with old None, so replaying changes in order rebuilds
    the record as it was at any instant; a removal lists every field with new None.
    """

    kind: str = attrs.field(validator=v.is_text(64))
    aggregate_id: str = attrs.field(validator=v.is_text(64))
    version: int = attrs.field(validator=v.integer(0, 2**62))
    op: ChangeKind = attrs.field(converter=ChangeKind)
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    diff: dict[str, list[Any]] = attrs.field(factory=dict)
    actor: str | None = attrs.field(default=None, validator=v.optional(v.is_text(200)))
    seq: int = 0
    """Order of writing, given by the storage (0 until stored)."""


@attrs.frozen
class MergeRecord:
    """The journal of one merge: everything needed to undo it exactly.

    `survivor_before` and `merged` are the two customer documents as they were;
    `survivor_after` is the survivor as the merge wrote it; `moved` names the rows
    that changed owner, by table; `scores` and `members` are the merged customer's
    snapshots and campaign memberships as they were, `accounts` their account
    memberships; `plugins` holds what
    `crmcore_on_merge` implementations returned, by plugin name.
    """

    id: str = attrs.field(validator=v.is_text(64))
    survivor_id: str = attrs.field(validator=v.is_text(64))
    merged_id: str = attrs.field(validator=v.is_text(64))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    survivor_before: dict[str, Any]
    survivor_after: dict[str, Any]
    merged: dict[str, Any]
    moved: dict[str, list[str]] = attrs.field(factory=dict)
    scores: list[dict[str, Any]] = attrs.field(factory=list)
    moved_scores: list[list[str]] = attrs.field(factory=list)
    """(scorer, as_of ISO) of the snapshots that went to the survivor."""
    members: list[dict[str, Any]] = attrs.field(factory=list)
    moved_members: list[str] = attrs.field(factory=list)
    """Campaign ids whose membership went to the survivor."""
    accounts: list[dict[str, Any]] = attrs.field(factory=list)
    """The merged customer's account memberships as they were: {account_id, member}."""
    moved_accounts: list[str] = attrs.field(factory=list)
    """Account ids where the survivor took the merged customer's place."""
    plugins: dict[str, Any] = attrs.field(factory=dict)
    actor: str | None = None
    undone_at: datetime | None = None


@attrs.frozen
class Tombstone:
    """That an erasure happened, and when: nothing about whom."""

    id: str = attrs.field(validator=v.is_text(64))
    at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
