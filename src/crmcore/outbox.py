"""Draining the transactional outbox: at-least-once delivery to `crmcore_on_event`.

Entries are leased before delivery so that several dispatchers never handle the
same entry at once; a subscriber that raises keeps the entry pending for itself
only (the others are not called again) and it is retried after a growing delay.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crmcore.crm import CRM

LEASE = timedelta(seconds=60)


def backoff(attempts: int) -> timedelta:
    """Delay before the next try: 1 s, 2 s, 4 s ... capped at one hour."""
    return timedelta(seconds=min(2 ** min(attempts, 12), 3600))


def dispatch(crm: CRM, *, limit: int = 500) -> int:
    subscribers = {
        impl.plugin_name: impl for impl in crm.plugins.hook.crmcore_on_event.get_hookimpls()
    }
    now = crm.clock()
    with crm.storage.transaction() as uow:
        entries = uow.outbox.claim(now, LEASE, limit)
    if not entries:
        return 0
    settled: list[tuple[int, frozenset[str], bool, str | None, Any]] = []
    for entry in entries:
        delivered = set(entry.delivered_to)
        errors = []
        arguments = {"event": entry.event, "crm": crm}
        for name, impl in subscribers.items():
            if name in delivered:
                continue
            try:
                impl.function(*(arguments[a] for a in impl.argnames))
            except Exception as exc:  # a subscriber's failure must not lose the event
                errors.append(f"{name}: {exc!r}")
            else:
                delivered.add(name)
        error = "; ".join(errors) or None
        retry_at = now + backoff(entry.attempts) if error else crm.clock()
        settled.append((entry.seq, frozenset(delivered), error is None, error, retry_at))
    with crm.storage.transaction() as uow:
        for seq, delivered_to, done, error, retry_at in settled:
            uow.outbox.settle(seq, delivered_to, done, error, retry_at)
    return len(settled)


def prune(crm: CRM, older_than: timedelta, *, batch: int = 1_000) -> int:
    """Delete entries delivered more than `older_than` ago, a batch per transaction
    (a short write lock each); returns how many."""
    before = crm.clock() - older_than
    removed = 0
    while True:
        with crm.storage.transaction() as uow:
            count = uow.outbox.prune(before, batch)
        removed += count
        if count < batch:
            return removed
