"""Tasks: promises staff make (call back, send the form), with due dates and reminders.

`remind(now)` emits `task.reminder` for every task whose reminder has come, once: the
reminder is marked sent on the task in the transaction that writes the event, and
storage finds the due ones by an indexed column, a page of ids at a time.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model import Task, TaskStatus
from crmcore.operational.sweeping import MAX_PAGE, due_pages, redone_on_conflict

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.ports import UnitOfWork

PAGE = 500
LINKS = ("customer_id", "account_id", "case_id", "opportunity_id")


class Tasks:
    """`crm.operational.tasks`."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def create(
        self,
        title: str,
        *,
        due_at: datetime | None = None,
        owner: str | None = None,
        remind_at: datetime | None = None,
        customer_id: str | None = None,
        account_id: str | None = None,
        case_id: str | None = None,
        opportunity_id: str | None = None,
        id: str | None = None,
    ) -> Task:
        """A new open task; its owner and every record it links to must exist."""
        with self.crm.transaction() as uow:
            task = Task(
                id=id or v.new_id(), title=title, created_at=self.crm.clock(), due_at=due_at,
                owner=owner, remind_at=remind_at, customer_id=customer_id, account_id=account_id,
                case_id=case_id, opportunity_id=opportunity_id,
            )
            _check_links(uow, task)
            stored = uow.tasks.add(task)
            self.crm.emit("task.created", stored.id, owner=owner, title=title,
                          **{k: getattr(stored, k) for k in LINKS if getattr(stored, k)})
            return stored

    def get(self, task_id: str) -> Task:
        with self.crm.reading() as uow:
            return uow.tasks.get(task_id)

    def complete(self, task_id: str, outcome: str = "") -> Task:
        return self._finish(task_id, TaskStatus.DONE, outcome)

    def cancel(self, task_id: str, outcome: str = "") -> Task:
        return self._finish(task_id, TaskStatus.CANCELLED, outcome)

    def reassign(self, task_id: str, owner: str) -> Task:
        with self.crm.transaction() as uow:
            uow.agents.get(owner)
            stored = uow.tasks.update(attrs.evolve(uow.tasks.get(task_id), owner=owner))
            self.crm.emit("task.reassigned", task_id, owner=owner)
            return stored

    def _finish(self, task_id: str, status: TaskStatus, outcome: str) -> Task:
        with self.crm.transaction() as uow:
            task = uow.tasks.get(task_id).finished(status, outcome, self.crm.clock())
            stored = uow.tasks.update(task)
            self.crm.emit("task.done" if status is TaskStatus.DONE else "task.cancelled", task_id,
                          outcome=outcome, owner=stored.owner)
            return stored

    def open_for(self, owner: str, *, limit: int | None = None) -> list[Task]:
        """"My open tasks": soonest due first, undated last."""
        with self.crm.reading() as uow:
            return uow.tasks.open_for(owner, limit=limit)

    def overdue(self, *, owner: str | None = None, now: datetime | None = None,
                limit: int | None = None) -> list[Task]:
        """Open tasks past their due time, oldest first (one owner's, or everyone's)."""
        with self.crm.reading() as uow:
            return uow.tasks.overdue(now or self.crm.clock(), owner=owner, limit=limit)

    def remind(self, now: datetime | None = None, *, page: int = PAGE) -> int:
        """Emit `task.reminder` for every reminder that has come, exactly once; returns how many."""
        at = v.utc(now, "now") if now is not None else self.crm.clock()
        v.whole(page, "page", 1, MAX_PAGE)
        sent = 0
        for ids in due_pages(self.crm, lambda uow, after: uow.tasks.reminders_due(at, after=after,
                                                                                  limit=page)):
            sent += redone_on_conflict(functools.partial(self._remind_page, ids, at), "a reminder page")
        return sent

    def _remind_page(self, ids: list[str], at: datetime) -> int:
        """One page in one transaction and a few round trips (as the case sweep's): its
        tasks read in one query, written back in one batch, its events in another."""
        with self.crm.transaction() as uow, self.crm.batched_events():
            found = {t.id: t for t in uow.tasks.find_many(ids)}
            due = [found[i] for i in ids if i in found]  # in the order they fell due
            due = [t for t in due if t.reminder_due is not None and t.reminder_due <= at]
            # (the others are gone, finished, or sent by another sweep meanwhile)
            for task in uow.tasks.update_many([attrs.evolve(t, reminded_at=at) for t in due]):
                self.crm.emit("task.reminder", task.id, owner=task.owner, title=task.title,
                              due_at=task.due_at and task.due_at.isoformat())
        return len(due)


def _check_links(uow: UnitOfWork, task: Task) -> None:
    """Refuse a task about a record, or for an owner, that does not exist."""
    lookups: dict[str, Any] = {
        "owner": uow.agents, "customer_id": uow.customers, "account_id": uow.accounts,
        "case_id": uow.cases, "opportunity_id": uow.opportunities,
    }
    for field, repository in lookups.items():
        key = getattr(task, field)
        if key is not None and repository.find(key) is None:
            raise ValidationError(field, key, "no such record")
