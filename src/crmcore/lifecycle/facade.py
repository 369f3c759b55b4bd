"""`crm.lifecycle`: the lifecycle functions bound to one CRM."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from crmcore.lifecycle import duplicates, merge, privacy, retention
from crmcore.model.history import Change, MergeRecord, Tombstone

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.model import Customer


class Lifecycle:
    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def history(self, kind: str, aggregate_id: str) -> list[Change]:
        """Every recorded change to one aggregate ("customer", "case", ...), oldest first."""
        with self.crm.reading() as uow:
            return uow.history.of(kind, aggregate_id)

    def duplicates(self, threshold: float = duplicates.REVIEW, max_block: int = 50) -> duplicates.Scan:
        """Candidate duplicate pairs scoring at least `threshold`, best first, each explained."""
        return duplicates.find(self.crm, threshold, max_block)

    def merge(self, survivor_id: str, merged_id: str,
              policy: merge.Policy = merge.DEFAULT_POLICY) -> MergeRecord:
        """Fold `merged_id` into `survivor_id`; emits customer.merged; returns the journal."""
        return merge.merge(self.crm, survivor_id, merged_id, policy)

    def unmerge(self, merge_id: str) -> tuple[Customer, Customer]:
        """Undo a merge; emits customer.unmerged; returns (survivor, restored)."""
        return merge.unmerge(self.crm, merge_id)

    def merges(self, customer_id: str) -> list[MergeRecord]:
        return merge.merges_of(self.crm, customer_id)

    def export_person(self, customer_id: str) -> dict[str, Any]:
        """Everything held about the customer, core and plugins, as one JSON document."""
        return privacy.export_person(self.crm, customer_id)

    def erase_person(self, customer_id: str) -> Tombstone:
        """Erase the customer everywhere; only a tombstone (an erasure, and when) remains."""
        return privacy.erase_person(self.crm, customer_id)

    def erasures(self) -> list[Tombstone]:
        with self.crm.reading() as uow:
            return uow.erasures.list()

    def inactive_leads(self, months: int, now: datetime | None = None) -> list[str]:
        return retention.inactive_leads(self.crm, months, now)

    def erase_inactive_leads(self, months: int, now: datetime | None = None) -> list[Tombstone]:
        """The retention rule a scheduled command runs (see `retention`)."""
        return retention.erase_inactive_leads(self.crm, months, now)
