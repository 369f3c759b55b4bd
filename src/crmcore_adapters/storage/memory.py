"""In-memory storage (`memory://`): the reference model of the storage contract.

Plain dicts of frozen objects behind one lock; a transaction holds the lock and
keeps an undo journal, so a rollback puts every dict back exactly. It behaves
like the SQL adapters in every observable way, errors included.
"""

from __future__ import annotations

import builtins
import contextvars
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import attrs

from crmcore import serialization
from crmcore.errors import ConflictError, IntegrityError, NotFound, StorageError, ValidationError
from crmcore.events import Event, OutboxEntry
from crmcore.exchange import Rate
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.model import (
    Account,
    AutomationRun,
    CampaignMember,
    Case,
    ConfigVersion,
    Customer,
    Interaction,
    MemberStatus,
    Purchase,
    Score,
    SegmentRun,
    Task,
    TaskStatus,
)
from crmcore.model.history import Change, MergeRecord, Tombstone
from crmcore.ports import Storage
from crmcore.scoring import totals
from crmcore.scoring.totals import PurchaseTotal

TURN_TIMEOUT = 30.0
"""Seconds a transaction waits for the one before it."""

T = TypeVar("T")
K = TypeVar("K")
_MISSING = object()


class Journal:
    """Undo records for one transaction (which may not write when it is read-only)."""

    def __init__(self, readonly: bool = False) -> None:
        self.undo: list[Callable[[], None]] = []
        self.readonly = readonly

    def _writing(self) -> None:
        if self.readonly:
            raise StorageError("memory: a read-only transaction tried to write")

    def set(self, table: dict[Any, Any], key: Any, value: Any) -> None:
        self._writing()
        previous = table.get(key, _MISSING)
        self.undo.append(lambda: _restore(table, key, previous))
        table[key] = value

    def delete(self, table: dict[Any, Any], key: Any) -> None:
        self._writing()
        previous = table.pop(key)
        self.undo.append(lambda: _restore(table, key, previous))

    def rollback(self) -> None:
        while self.undo:
            self.undo.pop()()


def _restore(table: dict[Any, Any], key: Any, previous: Any) -> None:
    if previous is _MISSING:
        table.pop(key, None)
    else:
        table[key] = previous


class MemoryRepository(Generic[T]):
    def __init__(self, rows: dict[str, T], journal: Journal, kind: str, versioned: bool,
                 newest: Callable[[T], datetime] | None = None) -> None:
        self.rows = rows
        self.journal = journal
        self.kind = kind
        self.versioned = versioned
        self.newest = newest

    def add(self, item: T) -> T:
        version = getattr(item, "version", 0)
        if self.versioned and version != 0:
            raise ValidationError("version", version, "a new record must have version 0")
        key: str = item.id  # type: ignore[attr-defined]
        if key in self.rows:
            raise IntegrityError(f"{self.kind} {key!r} exists already")
        stored = attrs.evolve(item, version=1) if self.versioned else item  # type: ignore[misc]
        self.journal.set(self.rows, key, stored)
        return stored

    def add_many(self, items: Sequence[T]) -> int:
        for item in items:
            self.add(item)
        return len(items)

    def find(self, id: str) -> T | None:
        return self.rows.get(id)

    def get(self, id: str) -> T:
        found = self.rows.get(id)
        if found is None:
            raise NotFound(self.kind, id)
        return found

    def data(self, id: str) -> dict[str, Any] | None:
        found = self.rows.get(id)
        return None if found is None else serialization.unstructure(found)

    def _current(self, item: Any) -> Any:
        current: Any = self.rows.get(item.id)
        if current is None:
            raise NotFound(self.kind, item.id)
        if current.version != item.version:
            raise ConflictError(self.kind, item.id, item.version, current.version)
        return current

    def update(self, item: T) -> T:
        self._current(item)
        stored = attrs.evolve(item, version=item.version + 1)  # type: ignore[misc, attr-defined]
        self.journal.set(self.rows, stored.id, stored)  # type: ignore[attr-defined]
        return stored

    def find_many(self, ids: Sequence[str]) -> builtins.list[T]:
        return [self.rows[i] for i in dict.fromkeys(ids) if i in self.rows]

    def update_many(self, items: Sequence[T]) -> builtins.list[T]:
        return [self.update(item) for item in items]

    def remove(self, item: T) -> None:
        self._current(item)
        self.journal.delete(self.rows, item.id)  # type: ignore[attr-defined]

    def list(self, *, after: str | None = None, limit: int | None = None) -> builtins.list[T]:
        keys = sorted(k for k in self.rows if after is None or k > after)
        return [self.rows[k] for k in keys[:limit]]

    def count(self) -> int:
        return len(self.rows)

    def for_customer(
        self, customer_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> builtins.list[T]:
        mine = [r for r in self.rows.values() if r.customer_id == customer_id]  # type: ignore[attr-defined]
        if self.newest is None:
            return sorted(mine, key=lambda r: r.id)[:limit]  # type: ignore[attr-defined]
        newest = self.newest
        if since is not None:
            mine = [r for r in mine if newest(r) >= since]
        mine.sort(key=lambda r: (newest(r), r.id), reverse=True)  # type: ignore[attr-defined]
        return mine[:limit]

    def reassign(
        self, customer_id: str, to: str, ids: Iterable[str] | None = None
    ) -> builtins.list[str]:
        wanted = None if ids is None else set(ids)
        moved = sorted(
            key for key, row in self.rows.items()
            if row.customer_id == customer_id and (wanted is None or key in wanted)  # type: ignore[attr-defined]
        )
        for key in moved:
            row: Any = self.rows[key]
            changes: dict[str, Any] = {"customer_id": to}
            if self.versioned:
                changes["version"] = row.version + 1
            self.journal.set(self.rows, key, attrs.evolve(row, **changes))
        return moved

    def purge(self, customer_id: str) -> int:
        mine = [k for k, r in self.rows.items() if r.customer_id == customer_id]  # type: ignore[attr-defined]
        for key in mine:
            self.journal.delete(self.rows, key)
        return len(mine)


class MemoryPurchases(MemoryRepository[Purchase]):
    """Purchases, with the per customer and currency totals kept in step (as in SQL)."""

    def __init__(self, store: MemoryStorage, journal: Journal) -> None:
        super().__init__(store.tables["purchases"], journal, "purchase", False, lambda p: p.ordered_at)
        self.totals = store.purchase_totals
        self.owned = store.purchases_of
        """Purchase ids by customer: a recount reads one customer's purchases, not all."""

    def add(self, item: Purchase) -> Purchase:
        stored = super().add(item)
        self._own(stored.customer_id, [stored.id])
        mine = self.totals.get(stored.customer_id, {})
        after = totals.added(mine.get(stored.currency), stored)
        if after is None:
            self._recount([stored.customer_id])
        else:
            self.journal.set(self.totals, stored.customer_id, {**mine, stored.currency: after})
        return stored

    def reassign(
        self, customer_id: str, to: str, ids: Iterable[str] | None = None
    ) -> builtins.list[str]:
        moved = super().reassign(customer_id, to, ids)
        if moved:
            self._own(customer_id, [], drop=moved)
            self._own(to, moved)
            self._recount([customer_id, to])
        return moved

    def purge(self, customer_id: str) -> int:
        count = super().purge(customer_id)
        if customer_id in self.owned:
            self.journal.delete(self.owned, customer_id)
        self._recount([customer_id])
        return count

    def _own(self, customer_id: str, ids: builtins.list[str], drop: Iterable[str] = ()) -> None:
        self.journal.set(self.owned, customer_id,
                         (self.owned.get(customer_id, frozenset()) - frozenset(drop)) | frozenset(ids))

    def _recount(self, customer_ids: builtins.list[str]) -> None:
        for customer_id in customer_ids:
            rows = totals.recount(self.rows[id] for id in self.owned.get(customer_id, frozenset()))
            if rows:
                self.journal.set(self.totals, customer_id, {row.currency: row for row in rows})
            elif customer_id in self.totals:
                self.journal.delete(self.totals, customer_id)


class MemoryPurchaseTotals:
    def __init__(self, rows: dict[str, dict[str, PurchaseTotal]]) -> None:
        self.rows = rows

    def all(self, currency: str | None = None) -> builtins.list[PurchaseTotal]:
        return [row for customer_id in sorted(self.rows)
                for code, row in sorted(self.rows[customer_id].items()) if currency in (None, code)]

    def latest(self) -> datetime | None:
        return max((row.last_at for mine in self.rows.values() for row in mine.values()), default=None)


class MemoryInteractions(MemoryRepository[Interaction]):
    def by_reference(self, customer_id: str, reference: str) -> builtins.list[Interaction]:
        return [i for i in self.for_customer(customer_id) if i.reference == reference]


class MemoryCustomers(MemoryRepository[Customer]):
    def __init__(self, store: MemoryStorage, journal: Journal) -> None:
        super().__init__(store.tables["customers"], journal, "customer", versioned=True)
        self.emails = store.emails
        self.phones = store.phones
        self.external = store.external

    def add(self, item: Customer) -> Customer:
        self._check_unique(item)
        stored = super().add(item)
        self._index(stored)
        return stored

    def update(self, item: Customer) -> Customer:
        self._current(item)
        self._check_unique(item)
        self._unindex(self.rows[item.id])
        stored = super().update(item)
        self._index(stored)
        return stored

    def remove(self, item: Customer) -> None:
        self._current(item)
        self._unindex(self.rows[item.id])
        super().remove(item)

    def lock(self, id: str, *, shared: bool = False) -> Customer:
        return self.get(id)  # transactions on memory take turns: nothing to wait for

    def restore(self, item: Customer) -> Customer:
        if item.id in self.rows:
            raise IntegrityError(f"customer {item.id!r} exists already")
        self._check_unique(item)
        self.journal.set(self.rows, item.id, item)
        self._index(item)
        return item

    def _check_unique(self, item: Customer) -> None:
        for email in item.emails:
            owner = self.emails.get(email.lower())
            if owner is not None and owner != item.id:
                raise IntegrityError(f"e-mail {email!r} already belongs to customer {owner}")
        for source, external in item.external_ids.items():
            owner = self.external.get((source, external))
            if owner is not None and owner != item.id:
                raise IntegrityError(
                    f"external id {source}:{external} already belongs to customer {owner}"
                )

    def _index(self, item: Customer) -> None:
        for email in item.emails:
            self.journal.set(self.emails, email.lower(), item.id)
        for phone in item.phones:
            self.journal.set(self.phones, phone, self.phones.get(phone, frozenset()) | {item.id})
        for pair in item.external_ids.items():
            self.journal.set(self.external, pair, item.id)

    def _unindex(self, item: Customer) -> None:
        for email in item.emails:
            self.journal.delete(self.emails, email.lower())
        for phone in item.phones:
            others = self.phones[phone] - {item.id}
            if others:
                self.journal.set(self.phones, phone, others)
            else:  # no empty entry left behind: an erased number must not linger as a key
                self.journal.delete(self.phones, phone)
        for pair in item.external_ids.items():
            self.journal.delete(self.external, pair)

    def by_email(self, email: str) -> Customer | None:
        owner = self.emails.get(email.lower())
        return None if owner is None else self.rows[owner]

    def by_phone(self, e164: str) -> list[Customer]:
        return [self.rows[i] for i in sorted(self.phones.get(e164, ()))]

    def by_external_id(self, source: str, external_id: str) -> Customer | None:
        owner = self.external.get((source, external_id))
        return None if owner is None else self.rows[owner]


def _due(
    rows: dict[str, Any], when: Callable[[Any], datetime | None], now: datetime,
    after: tuple[datetime, str] | None, limit: int,
) -> builtins.list[tuple[datetime, str]]:
    due = sorted((at, k) for k, row in rows.items() if (at := when(row)) is not None and at <= now)
    return [pair for pair in due if after is None or pair > after][:limit]


class MemoryCases(MemoryRepository[Case]):
    def due(
        self, now: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> builtins.list[tuple[datetime, str]]:
        return _due(self.rows, lambda c: c.next_check, now, after, limit)

    def open_load(self, agents: Sequence[str] | None = None) -> dict[str, int]:
        wanted = None if agents is None else set(agents)
        load: dict[str, int] = {}
        for case in self.rows.values():
            if case.agent is not None and case.status.is_open and (wanted is None or case.agent in wanted):
                load[case.agent] = load.get(case.agent, 0) + 1
        return load


def _soonest(task: Task) -> tuple[bool, datetime | None, str]:
    return (task.due_at is None, task.due_at, task.id)


class MemoryTasks(MemoryRepository[Task]):
    def open_for(self, owner: str, *, limit: int | None = None) -> builtins.list[Task]:
        mine = [t for t in self.rows.values() if t.owner == owner and t.status is TaskStatus.OPEN]
        return sorted(mine, key=_soonest)[:limit]

    def overdue(
        self, now: datetime, *, owner: str | None = None, limit: int | None = None
    ) -> builtins.list[Task]:
        late = [t for t in self.rows.values()
                if t.is_overdue(now) and (owner is None or t.owner == owner)]
        return sorted(late, key=_soonest)[:limit]

    def reminders_due(
        self, now: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> builtins.list[tuple[datetime, str]]:
        return _due(self.rows, lambda t: t.reminder_due, now, after, limit)


class MemoryAccounts(MemoryRepository[Account]):
    def of_customer(self, customer_id: str) -> builtins.list[Account]:
        return sorted((a for a in self.rows.values()
                       if any(m.customer_id == customer_id for m in a.members)), key=lambda a: a.id)

    def children(self, parent_id: str) -> builtins.list[Account]:
        return sorted((a for a in self.rows.values() if a.parent_id == parent_id), key=lambda a: a.id)


class MemoryAutomationRuns:
    def __init__(self, rows: dict[tuple[str, str], AutomationRun], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def record(self, run: AutomationRun) -> bool:
        if (run.rule, run.event_id) in self.rows:
            return False
        self.journal.set(self.rows, (run.rule, run.event_id), run)
        return True

    def for_rule(self, rule: str, *, limit: int | None = None) -> builtins.list[AutomationRun]:
        runs = sorted((r for (name, _), r in self.rows.items() if name == rule),
                      key=lambda r: (r.at, r.id))
        return runs[:limit]


class MemoryConfigurations:
    def __init__(self, rows: dict[tuple[str, str, int], ConfigVersion], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def add(self, entry: ConfigVersion) -> None:
        key = (str(entry.kind), entry.name, entry.version)
        if key in self.rows:
            raise ConflictError(str(entry.kind), entry.name, entry.version - 1, entry.version)
        self.journal.set(self.rows, key, entry)

    def history(self, kind: str, name: str) -> builtins.list[ConfigVersion]:
        return sorted((e for (k, n, _), e in self.rows.items() if (k, n) == (kind, name)),
                      key=lambda e: e.version)

    def current(self, kind: str, name: str) -> ConfigVersion | None:
        found = self.history(kind, name)
        return found[-1] if found else None

    def in_force(self, kind: str) -> builtins.list[ConfigVersion]:
        names = sorted({n for (k, n, _) in self.rows if k == kind})
        newest = [self.current(kind, n) for n in names]
        return [e for e in newest if e is not None and not e.retired]


class MemoryStaffGeneration:
    """The staff's change counter (`crmcore.ports.storage.StaffGeneration`), undone with
    the transaction that raised it."""

    def __init__(self, counter: dict[str, int], journal: Journal) -> None:
        self.counter = counter
        self.journal = journal
        self.changed = False

    def raise_(self) -> None:
        self.journal.set(self.counter, "generation", self.counter["generation"] + 1)
        self.changed = True

    def current(self) -> int | None:
        return None if self.changed else self.counter["generation"]


class MemoryStaff(MemoryRepository[T]):
    """Agents or teams: every write raises the staff generation in its transaction."""

    def __init__(self, rows: dict[str, T], journal: Journal, kind: str,
                 generation: MemoryStaffGeneration) -> None:
        super().__init__(rows, journal, kind, True)
        self.generation = generation

    def add(self, item: T) -> T:
        stored = super().add(item)
        self.generation.raise_()
        return stored

    def update(self, item: T) -> T:
        stored = super().update(item)
        self.generation.raise_()
        return stored

    def remove(self, item: T) -> None:
        super().remove(item)
        self.generation.raise_()


class MemoryTurns:
    """Round-robin turns per pool; transactions take turns here anyway, so no lock of its own."""

    def __init__(self, rows: dict[str, int], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def take(self, pool: str) -> int:
        turn = self.peek(pool)
        self.journal.set(self.rows, pool, turn)
        return turn

    def peek(self, pool: str) -> int:
        return self.rows.get(pool, -1) + 1


class MemoryCampaignMembers:
    def __init__(self, rows: dict[tuple[str, str], CampaignMember], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def put(self, member: CampaignMember) -> None:
        self.journal.set(self.rows, (member.campaign_id, member.customer_id), member)

    def of(self, campaign_id: str) -> list[CampaignMember]:
        return [m for (c, _), m in sorted(self.rows.items()) if c == campaign_id]

    def put_many(self, members: Iterable[CampaignMember]) -> int:
        count = 0
        for member in members:
            self.put(member)
            count += 1
        return count

    def find(self, campaign_id: str, customer_id: str) -> CampaignMember | None:
        return self.rows.get((campaign_id, customer_id))

    def page(
        self, campaign_id: str, *, after: str | None = None, limit: int = 1000,
        status: MemberStatus | None = None,
    ) -> list[CampaignMember]:
        found = sorted(
            (m for (c, i), m in self.rows.items()
             if c == campaign_id and (after is None or i > after) and (status is None or m.status == status)),
            key=lambda m: m.customer_id,
        )
        return found[:limit]

    def counts(self, campaign_id: str) -> dict[tuple[str, str], int]:
        found: dict[tuple[str, str], int] = {}
        for (c, _), m in self.rows.items():
            if c == campaign_id:
                key = (str(m.group), str(m.status))
                found[key] = found.get(key, 0) + 1
        return found
    def for_customer(self, customer_id: str, *, lock: bool = False) -> list[CampaignMember]:
        # `lock` needs nothing here: memory transactions take turns
        return [m for (_, c), m in sorted(self.rows.items()) if c == customer_id]

    def remove(self, campaign_id: str, customer_id: str) -> None:
        if (campaign_id, customer_id) in self.rows:
            self.journal.delete(self.rows, (campaign_id, customer_id))


class MemoryScores:
    def __init__(self, rows: dict[tuple[str, str, datetime], Score], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def put(self, scores: Iterable[Score]) -> int:
        count = 0
        for score in scores:
            self.journal.set(self.rows, (score.scorer, score.customer_id, score.as_of), score)
            count += 1
        return count

    def _newest(self, customer_id: str, as_of: datetime | None) -> dict[str, Score]:
        newest: dict[str, Score] = {}
        for (scorer, customer, at), score in self.rows.items():
            fresh = as_of is None or at <= as_of
            if customer == customer_id and fresh and (scorer not in newest or newest[scorer].as_of < at):
                newest[scorer] = score
        return newest

    def latest(self, customer_id: str, scorer: str, as_of: datetime | None = None) -> Score | None:
        return self._newest(customer_id, as_of).get(scorer)

    def for_customer(self, customer_id: str, as_of: datetime | None = None) -> builtins.list[Score]:
        return [s for _, s in sorted(self._newest(customer_id, as_of).items())]

    def of(self, scorer: str, as_of: datetime) -> builtins.list[Score]:
        found = [s for (name, _, at), s in self.rows.items() if name == scorer and at == as_of]
        return sorted(found, key=lambda s: s.customer_id)

    def all_of(self, customer_id: str, *, lock: bool = False) -> builtins.list[Score]:
        # `lock` needs nothing here: memory transactions take turns
        return [s for (_, c, _), s in sorted(self.rows.items()) if c == customer_id]

    def purge(self, customer_id: str, keys: Iterable[tuple[str, datetime]] | None = None) -> int:
        wanted = None if keys is None else set(keys)
        doomed = [k for k in self.rows if k[1] == customer_id
                  and (wanted is None or (k[0], k[2]) in wanted)]
        for key in doomed:
            self.journal.delete(self.rows, key)
        return len(doomed)


class MemorySegmentMembers:
    def __init__(self, store: MemoryStorage, journal: Journal) -> None:
        self.members = store.segment_members
        self.history = store.segment_runs
        self.journal = journal

    def current(self, segment_id: str) -> set[str]:
        return set(self.members.get(segment_id, frozenset()))

    def apply(self, run: SegmentRun, entered: Iterable[str], left: Iterable[str]) -> None:
        now = (self.members.get(run.segment_id, frozenset()) - set(left)) | set(entered)
        self.journal.set(self.members, run.segment_id, frozenset(now))
        self.journal.set(self.history, (run.segment_id, run.at), run)

    def runs(self, segment_id: str) -> builtins.list[SegmentRun]:
        return [r for (s, _), r in sorted(self.history.items()) if s == segment_id]

    def purge(self, customer_id: str) -> int:
        count = 0
        for segment_id, members in list(self.members.items()):
            if customer_id in members:
                self.journal.set(self.members, segment_id, members - {customer_id})
                count += 1
        return count


class MemoryRates:
    def __init__(self, rows: dict[tuple[str, str, Any], Rate], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def put(self, rates: Iterable[Rate]) -> int:
        count = 0
        for rate in rates:
            self.journal.set(self.rows, (rate.base, rate.quote, rate.on), rate)
            count += 1
        return count

    def all(self) -> builtins.list[Rate]:
        return [rate for _, rate in sorted(self.rows.items())]


@attrs.frozen
class _Pending:
    entry: OutboxEntry
    available_at: datetime
    done: bool = False


class MemoryOutbox:
    def __init__(self, store: MemoryStorage, journal: Journal) -> None:
        self.store = store
        self.rows = store.outbox
        self.journal = journal

    def append(self, event: Event) -> None:
        seq = self.store.next_seq()
        self.journal.set(self.rows, seq, _Pending(OutboxEntry(seq, event), event.occurred_at))

    def append_many(self, events: Sequence[Event]) -> None:
        for event in events:
            self.append(event)

    def claim(self, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        ready = [p for _, p in sorted(self.rows.items()) if not p.done and p.available_at <= now]
        for pending in ready[:limit]:
            self.journal.set(self.rows, pending.entry.seq,
                             attrs.evolve(pending, available_at=now + lease))
        return [p.entry for p in ready[:limit]]

    def settle(self, seq: int, delivered_to: frozenset[str], done: bool, error: str | None,
               retry_at: datetime | None) -> None:
        pending = self.rows[seq]
        entry = attrs.evolve(pending.entry, delivered_to=delivered_to, last_error=error,
                             attempts=pending.entry.attempts + (0 if done else 1))
        self.journal.set(self.rows, seq, _Pending(entry, retry_at or pending.available_at, done))

    def pending_count(self) -> int:
        return sum(1 for p in self.rows.values() if not p.done)

    def prune(self, before: datetime, limit: int) -> int:
        old = [seq for seq, p in sorted(self.rows.items()) if p.done and p.available_at < before]
        for seq in old[:limit]:
            self.journal.delete(self.rows, seq)
        return len(old[:limit])
    def redact(self, mentions: Callable[[Event], bool]) -> int:
        count = 0
        for seq, pending in sorted(self.rows.items()):
            if mentions(pending.entry.event):
                emptied = attrs.evolve(pending.entry.event, aggregate_id="erased", payload={})
                entry = attrs.evolve(pending.entry, event=emptied, last_error=None)
                self.journal.set(self.rows, seq, _Pending(entry, pending.available_at, True))
                count += 1
        return count


class MemoryHistory:
    def __init__(self, store: MemoryStorage, journal: Journal) -> None:
        self.store = store
        self.rows = store.history
        self.journal = journal

    def append(self, change: Change) -> None:
        seq = self.store.next_seq()
        self.journal.set(self.rows, seq, attrs.evolve(change, seq=seq))

    def append_many(self, changes: Sequence[Change]) -> None:
        for change in changes:
            self.append(change)

    def of(self, kind: str, aggregate_id: str) -> builtins.list[Change]:
        return [c for _, c in sorted(self.rows.items())
                if c.kind == kind and c.aggregate_id == aggregate_id]

    def after(self, kind: str, at: datetime) -> builtins.list[Change]:
        found = [c for c in self.rows.values() if c.kind == kind and c.at > at]
        return sorted(found, key=lambda c: (c.aggregate_id, c.seq))

    def changed_after(self, kind: str, at: datetime) -> bool:
        return any(c.kind == kind and c.at > at for c in self.rows.values())

    def purge(self, kind: str, aggregate_id: str) -> int:
        doomed = [s for s, c in self.rows.items() if c.kind == kind and c.aggregate_id == aggregate_id]
        for seq in doomed:
            self.journal.delete(self.rows, seq)
        return len(doomed)


class MemoryMerges:
    def __init__(self, rows: dict[str, MergeRecord], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def add(self, record: MergeRecord) -> None:
        if record.id in self.rows:
            raise IntegrityError(f"merge {record.id!r} exists already")
        self.journal.set(self.rows, record.id, record)

    def get(self, id: str) -> MergeRecord:
        found = self.rows.get(id)
        if found is None:
            raise NotFound("merge", id)
        return found

    def update(self, record: MergeRecord) -> None:
        self.get(record.id)
        self.journal.set(self.rows, record.id, record)

    def involving(self, customer_id: str) -> builtins.list[MergeRecord]:
        found = [r for r in self.rows.values() if customer_id in (r.survivor_id, r.merged_id)]
        return sorted(found, key=lambda r: (r.at, r.id))

    def purge(self, customer_id: str) -> int:
        doomed = [r.id for r in self.involving(customer_id)]
        for key in doomed:
            self.journal.delete(self.rows, key)
        return len(doomed)


class MemoryErasures:
    def __init__(self, rows: dict[str, Tombstone], journal: Journal) -> None:
        self.rows = rows
        self.journal = journal

    def add(self, tombstone: Tombstone) -> None:
        self.journal.set(self.rows, tombstone.id, tombstone)

    def list(self) -> builtins.list[Tombstone]:
        return sorted(self.rows.values(), key=lambda t: (t.at, t.id))


class MemoryUnitOfWork:
    dialect = None
    """No SQL here: queries the core compiles run as Python over the repositories."""

    def __init__(self, store: MemoryStorage, readonly: bool = False) -> None:
        self.journal = journal = Journal(readonly)
        t = store.tables
        self.customers = MemoryCustomers(store, journal)
        self.interactions = MemoryInteractions(
            t["interactions"], journal, "interaction", False, lambda i: i.occurred_at)
        self.purchases = MemoryPurchases(store, journal)
        self.purchase_totals = MemoryPurchaseTotals(store.purchase_totals)
        self.cases = MemoryCases(t["cases"], journal, "case", True)
        self.opportunities = MemoryRepository[Any](t["opportunities"], journal, "opportunity", True)
        self.campaigns = MemoryRepository[Any](t["campaigns"], journal, "campaign", True)
        self.service_points = MemoryRepository[Any](
            t["service_points"], journal, "service point", True)
        self.staff_generation = MemoryStaffGeneration(store.staff_generation, journal)
        self.agents = MemoryStaff[Any](t["agents"], journal, "agent", self.staff_generation)
        self.teams = MemoryStaff[Any](t["teams"], journal, "team", self.staff_generation)
        self.segments = MemoryRepository[Any](t["segments"], journal, "segment", True)
        self.segment_members = MemorySegmentMembers(store, journal)
        self.scores = MemoryScores(store.scores, journal)
        self.campaign_members = MemoryCampaignMembers(store.members, journal)
        self.outbox = MemoryOutbox(store, journal)
        self.tasks = MemoryTasks(t["tasks"], journal, "task", True)
        self.accounts = MemoryAccounts(t["accounts"], journal, "account", True)
        self.automation_runs = MemoryAutomationRuns(store.automation_runs, journal)
        self.configurations = MemoryConfigurations(store.configurations, journal)
        self.turns = MemoryTurns(store.turns, journal)
        self.pipelines = MemoryRepository[Any](t["pipelines"], journal, "pipeline", True)
        self.leads = MemoryRepository[Any](t["leads"], journal, "lead", True)
        self.products = MemoryRepository[Any](t["products"], journal, "product", True)
        self.price_books = MemoryRepository[Any](t["price_books"], journal, "price book", True)
        self.quotes = MemoryRepository[Any](t["quotes"], journal, "quote", True)
        self.rates = MemoryRates(store.rates, journal)
        self.history = MemoryHistory(store, journal)
        self.merges = MemoryMerges(store.merges, journal)
        self.erasures = MemoryErasures(store.erasures, journal)


class MemoryStorage:
    """Everything in dicts; one transaction at a time (the lock serialises them)."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.tables: dict[str, dict[str, Any]] = {
            name: {} for name in (
                "customers", "interactions", "purchases", "cases", "opportunities",
                "campaigns", "service_points", "agents", "teams", "segments",
                "tasks", "accounts",
                "pipelines", "leads", "products", "price_books", "quotes",
            )
        }
        self.rates: dict[tuple[str, str, Any], Rate] = {}
        self.purchase_totals: dict[str, dict[str, PurchaseTotal]] = {}
        """Customer -> currency -> totals; an inner dict is replaced whole, never changed."""
        self.purchases_of: dict[str, frozenset[str]] = {}
        self.emails: dict[str, str] = {}
        self.phones: dict[str, frozenset[str]] = {}
        self.external: dict[tuple[str, str], str] = {}
        self.members: dict[tuple[str, str], CampaignMember] = {}
        self.outbox: dict[int, _Pending] = {}
        self.scores: dict[tuple[str, str, datetime], Score] = {}
        self.segment_members: dict[str, frozenset[str]] = {}
        self.segment_runs: dict[tuple[str, datetime], SegmentRun] = {}
        self.automation_runs: dict[tuple[str, str], AutomationRun] = {}
        self.configurations: dict[tuple[str, str, int], ConfigVersion] = {}
        self.turns: dict[str, int] = {}
        self.staff_generation = {"generation": 0}
        self.history: dict[int, Change] = {}
        self.merges: dict[str, MergeRecord] = {}
        self.erasures: dict[str, Tombstone] = {}
        self._seq = 0
        self._turn = threading.Lock()
        self._open: contextvars.ContextVar[bool] = contextvars.ContextVar(
            f"crmcore_memory_{id(self)}", default=False
        )

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[MemoryUnitOfWork]:
        """Transactions take turns (serialisable by construction); `readonly` changes
        nothing here but is accepted, as every storage must."""
        if self._open.get():
            raise StorageError("a transaction is already open in this context (thread or task)")
        if not self._turn.acquire(timeout=TURN_TIMEOUT):
            raise StorageError(f"memory storage busy for {TURN_TIMEOUT} s")
        token = self._open.set(True)
        try:
            uow = MemoryUnitOfWork(self, readonly)
            try:
                yield uow
            except BaseException:
                uow.journal.rollback()
                raise
        finally:
            self._open.reset(token)
            self._turn.release()

    def bulk_import(self, items: Iterable[Customer | Purchase | Interaction]) -> int:
        count = 0
        owners: set[str] = set()
        with self.transaction() as uow:
            repos: dict[type, Any] = {
                Customer: uow.customers, Purchase: uow.purchases, Interaction: uow.interactions,
            }
            for index, item in enumerate(items):
                repo = repos.get(type(item))
                if repo is None:
                    raise ValidationError(
                        "item", item, "bulk import takes Customer, Purchase or Interaction"
                    )
                version = getattr(item, "version", 0)
                if version != 0:
                    raise ValidationError(f"items[{index}].version", version, "must be 0 (new)")
                repo.add(item)
                if not isinstance(item, Customer):
                    owners.add(item.customer_id)
                count += 1
            orphan = next((o for o in sorted(owners) if o not in self.tables["customers"]), None)
            if orphan is not None:
                raise IntegrityError(f"no customer {orphan!r}, yet the import holds records of theirs")
        return count

    def close(self) -> None:
        """Nothing to release; the data lives as long as this object."""


def open_storage(url: str) -> Storage:
    """The registered factory; its return type makes mypy prove the adapter fits the port."""
    return MemoryStorage(url)


@hookimpl
def crmcore_register_storage() -> list[Adapter]:
    return [Adapter("memory", open_storage)]
