"""What the scheduled sweeps (case escalations, task reminders) share: due ids read in
pages, each page worked in one transaction, a page redone when a concurrent sweeper or
user got there first (optimistic concurrency), so the work is done once."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeVar

from crmcore.errors import ConflictError

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.ports import UnitOfWork
    from crmcore.ports.storage import Due

log = logging.getLogger(__name__)
T = TypeVar("T")
ATTEMPTS = 5
MAX_PAGE = 10_000
"""The largest page a sweep takes in one transaction."""


def due_pages(crm: CRM, read: Callable[[UnitOfWork, Due | None], list[Due]]) -> Iterator[list[str]]:
    """Pages of due ids, in the order they fell due, each page read in its own short
    transaction (the cursor is the last (when, id) read, so worked records, which leave
    the due set, never shift a page)."""
    after: Due | None = None
    while True:
        with crm.reading() as uow:
            due = read(uow, after)
        if not due:
            return
        yield [id for _, id in due]
        after = due[-1]


def redone_on_conflict(work: Callable[[], T], what: str) -> T:
    """Run `work` (one transaction); on a ConflictError read and run it again."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return work()
        except ConflictError:
            if attempt == ATTEMPTS:
                raise
            log.info("%s conflicted with another writer (attempt %d); redoing it", what, attempt)
    raise AssertionError("unreachable")
