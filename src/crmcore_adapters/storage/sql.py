"""The SQL both relational adapters share: tables, rows, repositories, outbox.

A `crmcore.sql.Dialect` says how one database spells parameters, identifiers,
instants, money, JSON, upserts and bulk loads; everything else (which columns
hold what, how optimistic concurrency is checked, how the outbox is leased) is
written once here, and a SQL storage plugin may build on it too. Every value
reaches SQL as a bound parameter; table and column names come only from the
constants below.
"""

from __future__ import annotations

import builtins
import copy
import functools
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Generic, TypeVar

import attrs

from crmcore import serialization
from crmcore.errors import ConflictError, IntegrityError, NotFound, ValidationError
from crmcore.events import Event, OutboxEntry
from crmcore.exchange import Rate
from crmcore.lifecycle import history as lifecycle_history
from crmcore.lifecycle import states
from crmcore.model import (
    Account,
    Agent,
    AutomationRun,
    Campaign,
    CampaignMember,
    Case,
    CaseStatus,
    ConfigVersion,
    Customer,
    Interaction,
    Lead,
    MemberStatus,
    Opportunity,
    Pipeline,
    PriceBook,
    Product,
    Purchase,
    Quote,
    Score,
    Segment,
    SegmentRun,
    ServicePoint,
    Task,
    TaskStatus,
    Team,
)
from crmcore.model.history import Change, ChangeKind, MergeRecord, Tombstone
from crmcore.ports.storage import EncodedCustomers, EncodedPurchases
from crmcore.sql.dialect import Cursor, Dialect
from crmcore_adapters.storage import totals

T = TypeVar("T")
__all__ = ["Cursor", "Dialect"]  # the shared SQL's names for the public dialect layer


def _s(value: Any) -> Any:
    return None if value is None else str(value)


def _instant(dialect: Dialect, value: datetime | None) -> Any:
    return None if value is None else dialect.instant(value)


def _day(value: Any) -> str | None:
    return None if value is None else str(value.isoformat())


@attrs.frozen
class Table(Generic[T]):
    """One aggregate's table: key, indexed columns and the whole object as a JSON document."""

    name: str
    cls: type[T]
    kind: str
    columns: tuple[str, ...]
    values: Callable[[Dialect, T], tuple[Any, ...]]
    versioned: bool = True
    owner: bool = False
    newest: str | None = None
    """Column the customer's records are ordered by, newest first."""

    def row(self, dialect: Dialect, item: T) -> tuple[Any, ...]:
        return self.row_and_data(dialect, item)[0]

    def row_and_data(self, dialect: Dialect, item: T) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The row, and the plain data its document was encoded from (history diffs it)."""
        data: dict[str, Any] = serialization.unstructure(item)
        doc = dialect.json_column(serialization.dumps_data(data))
        return (item.id, *self.values(dialect, item), doc), data  # type: ignore[attr-defined]


CUSTOMERS = Table(
    "customers", Customer, "customer",
    ("version", "kind", "name", "tier", "lifecycle", "country", "birth_date", "language",
     "service_point", "created_at", "updated_at"),
    lambda d, c: (c.version, _s(c.kind), c.name, c.tier, _s(c.lifecycle), c.country,
                  _day(c.birth_date), c.language, c.service_point, d.instant(c.created_at),
                  d.instant(c.updated_at)),
)
INTERACTIONS = Table(
    "interactions", Interaction, "interaction",
    ("customer_id", "channel", "family", "direction", "occurred_at", "service_point", "agent",
     "outcome", "satisfaction", "nps", "case_id", "reference"),
    lambda d, i: (i.customer_id, _s(i.channel), _s(i.channel.family), _s(i.direction),
                  d.instant(i.occurred_at), i.service_point, i.agent, i.outcome, i.satisfaction,
                  i.nps, i.case_id, i.reference),
    versioned=False, owner=True, newest="occurred_at",
)
PURCHASES = Table(
    "purchases", Purchase, "purchase",
    ("customer_id", "ordered_at", "channel", "service_point", "currency", "total"),
    lambda d, p: (p.customer_id, d.instant(p.ordered_at), _s(p.channel), p.service_point,
                  p.currency, d.money(p.amount)),
    versioned=False, owner=True, newest="ordered_at",
)
CASES = Table(
    "cases", Case, "case",
    ("version", "customer_id", "kind", "status", "priority", "opened_at", "sla_due",
     "resolved_at", "channel", "service_point", "agent", "contacts", "next_check"),
    lambda d, c: (c.version, c.customer_id, _s(c.kind), _s(c.status), int(c.priority),
                  d.instant(c.opened_at), c.sla_due and d.instant(c.sla_due),
                  c.resolved_at and d.instant(c.resolved_at), _s(c.channel), c.service_point,
                  c.agent, c.contacts, _instant(d, c.next_check)),
    owner=True,
)
OPPORTUNITIES = Table(
    "opportunities", Opportunity, "opportunity",
    ("version", "customer_id", "stage", "kind", "opened_at", "owner"),
    lambda d, o: (o.version, o.customer_id, _s(o.stage), _s(o.kind), d.instant(o.opened_at),
                  o.owner),
    owner=True,
)
CAMPAIGNS = Table("campaigns", Campaign, "campaign", ("version",), lambda d, c: (c.version,))
SERVICE_POINTS = Table(
    "service_points", ServicePoint, "service point", ("version", "kind"),
    lambda d, s: (s.version, _s(s.kind)),
)
AGENTS = Table("agents", Agent, "agent", ("version",), lambda d, a: (a.version,))
TEAMS = Table("teams", Team, "team", ("version",), lambda d, t: (t.version,))
SEGMENTS = Table("segments", Segment, "segment", ("version",), lambda d, s: (s.version,))
# operational: tasks, accounts (members indexed in account_members), automation runs
TASKS = Table(
    "tasks", Task, "task",
    ("version", "owner", "status", "due_at", "reminder_due", "created_at", "customer_id",
     "account_id", "case_id", "opportunity_id"),
    lambda d, t: (t.version, t.owner, _s(t.status), _instant(d, t.due_at),
                  _instant(d, t.reminder_due), d.instant(t.created_at), t.customer_id,
                  t.account_id, t.case_id, t.opportunity_id),
)
ACCOUNTS = Table(
    "accounts", Account, "account",
    ("version", "kind", "name", "parent_id", "tier", "owner"),
    lambda d, a: (a.version, _s(a.kind), a.name, a.parent_id, a.tier, a.owner),
)
AUTOMATION_RUNS = Table(
    "automation_runs", AutomationRun, "automation run",
    ("rule", "event_id", "customer_id", "at", "outcome"),
    lambda d, r: (r.rule, r.event_id, r.customer_id, d.instant(r.at), _s(r.outcome)),
    versioned=False,
)
# sales: pipelines, leads, the catalogue and quotes
PIPELINES = Table("pipelines", Pipeline, "pipeline", ("version",), lambda d, p: (p.version,))
LEADS = Table("leads", Lead, "lead", ("version", "status"), lambda d, le: (le.version, _s(le.status)))
PRODUCTS = Table("products", Product, "product", ("version",), lambda d, p: (p.version,))
PRICE_BOOKS = Table(
    "price_books", PriceBook, "price book", ("version", "currency", "tier"),
    lambda d, b: (b.version, b.currency, b.tier),
)
QUOTES = Table(
    "quotes", Quote, "quote", ("version", "customer_id", "opportunity_id", "status"),
    lambda d, q: (q.version, q.customer_id, q.opportunity_id, _s(q.status)),
    owner=True,
)

TABLES: tuple[Table[Any], ...] = (
    CUSTOMERS, INTERACTIONS, PURCHASES, CASES, OPPORTUNITIES, CAMPAIGNS, SERVICE_POINTS,
    AGENTS, TEAMS, SEGMENTS, TASKS, ACCOUNTS, AUTOMATION_RUNS, PIPELINES, LEADS, PRODUCTS,
    PRICE_BOOKS, QUOTES,
)


def insert_sql(table: Table[Any], dialect: Dialect) -> str:
    names = ("id", *table.columns, "doc")
    marks = ", ".join("?" for _ in names)
    return f"INSERT INTO {table.name} ({', '.join(map(dialect.quote, names))}) VALUES ({marks})"  # noqa: S608


def _load(table: Table[T], doc: Any) -> T:
    return _load_doc(doc, table.cls)


class SqlRepository(Generic[T]):
    """A versioned aggregate table with optimistic concurrency."""

    def __init__(self, cur: Cursor, dialect: Dialect, table: Table[T]) -> None:
        self.cur = cur
        self.d = dialect
        self.t = table
        self.last_written: dict[str, Any] | None = None
        """Plain data of the item this repository wrote last (`history.record` reuses it)."""
        self.last_written_many: dict[str, dict[str, Any]] = {}
        """Plain data of the batch `update_many` wrote last, by id (`history.record_many`)."""

    def _run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cur.execute(self.d.sql(sql), params)

    def add(self, item: T) -> T:
        version = getattr(item, "version", 0)
        if self.t.versioned and version != 0:
            raise ValidationError("version", version, "a new record must have version 0")
        stored = _renumbered(item, 1) if self.t.versioned else item
        row, data = self.t.row_and_data(self.d, stored)
        # one round trip: a clash inserts nothing (and, on PostgreSQL, aborts nothing)
        self._run(insert_sql(self.t, self.d) + " ON CONFLICT DO NOTHING", row)
        if self.cur.rowcount != 1:
            raise IntegrityError(f"{self.t.kind} {item.id!r} exists already")  # type: ignore[attr-defined]
        self.last_written = data
        return stored

    def add_many(self, items: Sequence[T]) -> int:
        """Store new items with one statement for the lot (the bulk import's rows and path);
        IntegrityError if an id exists, and the caller's transaction should then roll back."""
        if type(self).add is not SqlRepository.add:  # more to write than the row (members, steps)
            for item in items:
                self.add(item)
        else:
            self._insert_many(items)
        return len(items)

    def _insert_many(self, items: Sequence[T]) -> None:
        self.d.executemany(self.cur, insert_sql(self.t, self.d), bulk_rows(self.d, self.t, list(items)))

    def find(self, id: str) -> T | None:
        self._run(f"SELECT doc FROM {self.t.name} WHERE id = ?", (id,))  # noqa: S608
        row = self.cur.fetchone()
        return None if row is None else _load(self.t, row[0])

    def get(self, id: str) -> T:
        found = self.find(id)
        if found is None:
            raise NotFound(self.t.kind, id)
        return found

    def data(self, id: str) -> dict[str, Any] | None:
        self._run(f"SELECT doc FROM {self.t.name} WHERE id = ?", (id,))  # noqa: S608
        row = self.cur.fetchone()
        if row is None:
            return None
        doc = row[0]
        return doc if isinstance(doc, dict) else json.loads(doc)

    def _stored_version(self, id: str) -> int | None:
        self._run(f"SELECT version FROM {self.t.name} WHERE id = ?", (id,))  # noqa: S608
        row = self.cur.fetchone()
        return None if row is None else int(row[0])

    def _check_version(self, item: Any) -> None:
        actual = self._stored_version(item.id)
        if actual is None:
            raise NotFound(self.t.kind, item.id)
        raise ConflictError(self.t.kind, item.id, item.version, actual)

    def update(self, item: T) -> T:
        stored, row, data = self._updated(item)
        self._run(self._update_sql(), row)
        if self.cur.rowcount != 1:
            self._check_version(item)
        self.last_written = data
        return stored

    def find_many(self, ids: Sequence[str]) -> builtins.list[T]:
        found: builtins.list[T] = []
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _IN_BATCH):
            chunk = unique[start:start + _IN_BATCH]
            marks = ", ".join("?" for _ in chunk)
            self._run(f"SELECT doc FROM {self.t.name} WHERE id IN ({marks})", chunk)  # noqa: S608 - marks only
            found += [_load(self.t, row[0]) for row in self.cur.fetchall()]
        return found

    def update_many(self, items: Sequence[T]) -> builtins.list[T]:
        """`update` for many records with distinct ids in one batch; ConflictError if any
        was stale (the caller's transaction then undoes the rest)."""
        done = [self._updated(item) for item in items]
        self.d.executemany(self.cur, self._update_sql(), [row for _, row, _ in done])
        if items and self.cur.rowcount != len(items):
            for item, (stored, _, _) in zip(items, done, strict=True):
                if self._stored_version(stored.id) != stored.version:  # type: ignore[attr-defined]
                    self._check_version(item)
            raise ConflictError(self.t.kind, "(batch)", len(items), self.cur.rowcount)
        self.last_written_many = {stored.id: data for stored, _, data in done}  # type: ignore[attr-defined]
        return [stored for stored, _, _ in done]

    def _updated(self, item: T) -> tuple[T, tuple[Any, ...], dict[str, Any]]:
        """The stored form of `item`, its UPDATE parameters and its plain data."""
        current: int = item.version  # type: ignore[attr-defined]
        stored = _renumbered(item, current + 1)
        row, data = self.t.row_and_data(self.d, stored)
        return stored, (*row[1:], stored.id, current), data  # type: ignore[attr-defined]

    def _update_sql(self) -> str:
        assignments = ", ".join(f"{self.d.quote(c)} = ?" for c in (*self.t.columns, "doc"))
        return f"UPDATE {self.t.name} SET {assignments} WHERE id = ? AND version = ?"  # noqa: S608

    def remove(self, item: T) -> None:
        self._run(
            f"DELETE FROM {self.t.name} WHERE id = ? AND version = ?",  # noqa: S608
            (item.id, item.version),  # type: ignore[attr-defined]
        )
        if self.cur.rowcount != 1:
            self._check_version(item)

    def list(self, *, after: str | None = None, limit: int | None = None) -> builtins.list[T]:
        self._run(
            f"SELECT doc FROM {self.t.name} WHERE id > ? ORDER BY id LIMIT ?",  # noqa: S608
            (after or "", self.d.limit(limit)),
        )
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]

    def count(self) -> int:
        self._run(f"SELECT count(*) FROM {self.t.name}")  # noqa: S608
        return int(self.cur.fetchone()[0])

    def for_customer(
        self, customer_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> builtins.list[T]:
        order = self.t.newest or "id"
        where = "customer_id = ?"
        params: list[Any] = [customer_id]
        if since is not None and self.t.newest:
            where += f" AND {self.t.newest} >= ?"
            params.append(self.d.instant(since))
        direction = "DESC" if self.t.newest else "ASC"
        params.append(self.d.limit(limit))
        self._run(
            f"SELECT doc FROM {self.t.name} WHERE {where} "  # noqa: S608
            f"ORDER BY {order} {direction}, id {direction} LIMIT ?",
            params,
        )
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]

    def reassign(
        self, customer_id: str, to: str, ids: Iterable[str] | None = None
    ) -> builtins.list[str]:
        # held until commit (Dialect.row_lock): a concurrent write to a row being moved
        # waits, then finds it moved (a new version), instead of being overwritten by it
        self._run(f"SELECT doc FROM {self.t.name} WHERE customer_id = ? {self.d.row_lock}",  # noqa: S608
                  (customer_id,))
        rows = [_load(self.t, row[0]) for row in self.cur.fetchall()]
        if ids is not None:
            wanted = set(ids)
            rows = [r for r in rows if r.id in wanted]  # type: ignore[attr-defined]
        assignments = ", ".join(f"{c} = ?" for c in (*self.t.columns, "doc"))
        for item in rows:
            moved = _owned_by(item, to, self.t.versioned)
            self._run(
                f"UPDATE {self.t.name} SET {assignments} WHERE id = ?",  # noqa: S608
                (*self.t.row(self.d, moved)[1:], moved.id),  # type: ignore[attr-defined]
            )
        return sorted(r.id for r in rows)  # type: ignore[attr-defined]

    def purge(self, customer_id: str) -> int:
        self._run(f"DELETE FROM {self.t.name} WHERE customer_id = ?", (customer_id,))  # noqa: S608
        return int(self.cur.rowcount)


def _owned_by(item: T, customer_id: str, versioned: bool) -> T:
    """`item` given to another customer (a new version when it is versioned)."""
    if versioned:
        return attrs.evolve(item, customer_id=customer_id, version=item.version + 1)  # type: ignore[misc, attr-defined]
    return attrs.evolve(item, customer_id=customer_id)  # type: ignore[misc]


class SqlPurchases(SqlRepository[Purchase]):
    """Purchases, with `purchase_totals` kept in step in the same transaction."""

    def __init__(self, cur: Cursor, dialect: Dialect, table: Table[Purchase], *,
                 keyed_totals: bool = True) -> None:
        super().__init__(cur, dialect, table)
        self.keyed_totals = keyed_totals
        """Whether `purchase_totals` has its (customer_id, currency) key, which folding a
        batch in place upserts on; without it a batch's customers are recounted."""

    def add(self, item: Purchase) -> Purchase:
        stored = super().add(item)
        totals.count_in(self.cur, self.d, stored)
        return stored

    def add_many(self, items: Sequence[Purchase]) -> int:
        """One statement for the lot, the totals of the customers it touched folded in
        first (`totals.count_in_many` reads the purchases stored before these)."""
        self._counted(lambda: totals.count_in_many(self.cur, self.d, items),
                      lambda: self._insert_many(items), lambda: (p.customer_id for p in items))
        return len(items)

    def add_encoded(self, purchases: EncodedPurchases) -> int:
        """New purchases given as columns (`EncodedPurchases`, the CSV import's columnar
        path): one statement for the lot, like `add_many`, the values bound as the dialect
        stores them, and `purchase_totals` folded in from the batch's sums per day."""
        d, p = self.d, purchases
        rows = list(zip(p.ids, p.customer_ids, d.instants_of(p.ordered_at), p.channels, p.service_points,
                        p.currencies, d.money_of(p.amounts, p.scales), map(d.json_column, p.docs),
                        strict=True))
        self._counted(lambda: totals.count_in_days(self.cur, d, p.days),
                      lambda: d.executemany(self.cur, insert_sql(self.t, d), rows), lambda: p.customer_ids)
        return len(rows)

    def _counted(self, fold: Callable[[], object], insert: Callable[[], object],
                 owners: Callable[[], Iterable[str]]) -> None:
        """The totals folded in before the insert, or, without the table's key to upsert
        on, the owners recounted after it."""
        if self.keyed_totals:
            fold()
            insert()
        else:
            insert()
            totals.recount(self.cur, self.d, sorted(set(owners())))

    def reassign(
        self, customer_id: str, to: str, ids: Iterable[str] | None = None
    ) -> builtins.list[str]:
        moved = super().reassign(customer_id, to, ids)
        if moved:
            totals.recount(self.cur, self.d, [customer_id, to])
        return moved

    def purge(self, customer_id: str) -> int:
        count = super().purge(customer_id)
        totals.forget(self.cur, self.d, customer_id)
        return count


class Superseded:
    """The customer row a write just replaced, held between the customer repository and the
    history of one unit of work: `SqlHistory` stores it as the state before the change."""

    def __init__(self) -> None:
        self.found: tuple[Customer, Any, dict[str, Any]] | None = None
        """The customer `find`/`get` read last, with its stored document raw and decoded
        (a read-change-write replaces that very row: no second read)."""
        self.row: tuple[Any, ...] | None = None
        """The row the last update or removal replaced."""


_STATE_SELECT = f"SELECT {', '.join(states.COLUMNS)} FROM customers WHERE id = ?"  # noqa: S608


class SqlCustomers(SqlRepository[Customer]):
    """Customers, with the lookup tables for e-mail, phone and external id kept in step."""

    def __init__(self, cur: Cursor, dialect: Dialect, table: Table[Customer],
                 superseded: Superseded | None = None) -> None:
        super().__init__(cur, dialect, table)
        self.superseded = superseded or Superseded()
        self.replaced: dict[str, Any] | None = None
        """Plain data of the record the last `update` replaced: the history's "before",
        read by the update itself (`Aggregates.update` needs no `data()` read first)."""

    def find(self, id: str) -> Customer | None:
        return self._read(id, "")

    def _read(self, id: str, lock: str) -> Customer | None:
        self._run(f"SELECT doc FROM customers WHERE id = ? {lock}", (id,))  # noqa: S608 - a constant
        row = self.cur.fetchone()
        if row is None:
            return None
        data = _plain(row[0])
        found = _load(self.t, data)
        self.superseded.found = (found, row[0], data)
        return found

    def _replaced(self, item: Customer) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
        """The stored row `item` replaces (at its version) and its plain data: the one
        `find` read, or read now."""
        found = self.superseded.found
        if found is not None and found[0].id == item.id and found[0].version == item.version:
            customer, doc, data = found
            return (customer.id, *self.t.values(self.d, customer), doc), data
        self._run(_STATE_SELECT + " AND version = ?", (item.id, item.version))
        row = self.cur.fetchone()
        return None if row is None else (tuple(row), _plain(row[-1]))

    def add(self, item: Customer) -> Customer:
        stored = super().add(item)
        self._index(stored)
        return stored

    def add_many(self, items: Sequence[Customer]) -> int:
        """Many new customers and their lookup rows, a statement per table; a taken id,
        e-mail or external id is an IntegrityError (the lookup tables' keys refuse it)."""
        self._insert_many(items)
        for sql, rows in index_rows(items):
            self.d.executemany(self.cur, sql, rows)
        self._since_kept([item.id for item in items])
        return len(items)

    def add_encoded(self, customers: EncodedCustomers) -> int:
        """New customers given as rows (`EncodedCustomers`, the CSV import's columnar path),
        stored as `add_many` stores `Customer` objects: one statement per table."""
        d, c = self.d, customers
        rows = [(key, 1, *columns, d.instant(created), d.instant(updated), d.json_column(doc))
                for key, columns, created, updated, doc
                in zip(c.ids, c.columns, c.created_at, c.updated_at, c.docs, strict=True)]
        d.executemany(self.cur, insert_sql(self.t, d), rows)
        for sql, found in zip(INDEX_SQL, (c.emails, c.phones, c.external_ids), strict=True):
            if found:
                d.executemany(self.cur, sql, list(found))
        self._since_kept(c.ids)
        return len(rows)

    def update(self, item: Customer) -> Customer:
        before = self._replaced(item)
        stored = super().update(item)
        self.superseded.row, self.replaced = before if before is not None else (None, None)
        self.superseded.found = None
        self._unindex(stored.id)
        self._index(stored)
        return stored

    def remove(self, item: Customer) -> None:
        before = self._replaced(item)
        super().remove(item)
        self.superseded.row = None if before is None else before[0]
        self.superseded.found = None
        self._unindex(item.id)

    def lock(self, id: str, *, shared: bool = False) -> Customer:
        found = self._read(id, self.d.key_lock if shared else self.d.row_lock)
        if found is None:
            raise NotFound(self.t.kind, id)
        return found

    def restore(self, item: Customer) -> Customer:
        self._run("SELECT 1 FROM customers WHERE id = ?", (item.id,))
        if self.cur.fetchone() is not None:
            raise IntegrityError(f"customer {item.id!r} exists already")
        self._run(insert_sql(self.t, self.d), self.t.row(self.d, item))
        self._since_kept([item.id])
        self._index(item)
        return item

    def _since_kept(self, ids: Sequence[str]) -> None:
        """Customers stored without a change of their own (a batch, a restore) under ids
        that kept states while they were away: today's rows are valid since the last of
        them, not for ever (`_KEPT_STATES`)."""
        for start in range(0, len(ids), _IN_BATCH):
            chunk = ids[start:start + _IN_BATCH]
            self._run(f"{_SINCE_OF} WHERE id IN ({', '.join('?' for _ in chunk)}) AND {_KEPT_STATES}", chunk)

    def _unindex(self, customer_id: str) -> None:
        for table in ("customer_emails", "customer_phones", "customer_external_ids"):
            self._run(f"DELETE FROM {table} WHERE customer_id = ?", (customer_id,))  # noqa: S608

    def _index(self, customer: Customer) -> None:
        for email in customer.emails:
            owner = self._email_owner(email)
            if owner is not None:
                raise IntegrityError(f"e-mail {email!r} already belongs to customer {owner}")
        for source, external in customer.external_ids.items():
            found = self.by_external_id(source, external)
            if found is not None:
                raise IntegrityError(
                    f"external id {source}:{external} already belongs to customer {found.id}"
                )
        for sql, rows in index_rows([customer]):
            self.d.executemany(self.cur, sql, rows)

    def _email_owner(self, email: str) -> str | None:
        self._run("SELECT customer_id FROM customer_emails WHERE email = ?", (email.lower(),))
        row = self.cur.fetchone()
        return None if row is None else str(row[0])

    def _by_index(self, sql: str, params: Sequence[Any]) -> list[Customer]:
        self._run(
            f"SELECT doc FROM customers WHERE id IN ({sql}) ORDER BY id",  # noqa: S608
            params,
        )
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]

    def by_email(self, email: str) -> Customer | None:
        found = self._by_index("SELECT customer_id FROM customer_emails WHERE email = ?",
                               (email.lower(),))
        return found[0] if found else None

    def by_phone(self, e164: str) -> list[Customer]:
        return self._by_index("SELECT customer_id FROM customer_phones WHERE phone = ?", (e164,))

    def by_external_id(self, source: str, external_id: str) -> Customer | None:
        found = self._by_index(
            "SELECT customer_id FROM customer_external_ids WHERE source = ? AND external_id = ?",
            (source, external_id),
        )
        return found[0] if found else None


class SqlInteractions(SqlRepository[Interaction]):
    def by_reference(self, customer_id: str, reference: str) -> builtins.list[Interaction]:
        self._run(
            "SELECT doc FROM interactions WHERE reference = ? AND customer_id = ? "
            "ORDER BY occurred_at DESC, id DESC",
            (reference, customer_id),
        )
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]


_OPEN_CASES = tuple(str(s) for s in CaseStatus if s.is_open)


def _due(
    repository: SqlRepository[Any], column: str, now: datetime, after: tuple[datetime, str] | None,
    limit: int,
) -> builtins.list[tuple[datetime, str]]:
    """(when, id) with `column <= now`, after a (when, id) cursor, read in the order of the
    (column, id) index, so an empty answer costs nothing however big the table.

    The cursor is a row value, which the index takes as the start of its range: spelled
    `column > ? OR (column = ? AND id > ?)` it was a filter, and every page walked the
    index from the first due entry, past the rows earlier pages had moved (on PostgreSQL
    dead entries until a vacuum: 150,000 heap fetches, 46 ms, for a page after 150,000
    cases swept; 0.2 ms this way)."""
    d = repository.d
    where, params = f"{column} <= ?", [d.instant(now)]
    if after is not None:
        where += f" AND ({column}, id) > (?, ?)"
        params += [d.instant(after[0]), after[1]]
    repository._run(
        f"SELECT {column}, id FROM {repository.t.name} WHERE {where} "  # noqa: S608 - constants
        f"ORDER BY {column}, id LIMIT ?",
        (*params, limit),
    )
    return [(d.from_instant(when), str(id)) for when, id in repository.cur.fetchall()]


class SqlCases(SqlRepository[Case]):
    def due(
        self, now: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> builtins.list[tuple[datetime, str]]:
        return _due(self, "next_check", now, after, limit)

    def open_load(self, agents: Sequence[str] | None = None) -> dict[str, int]:
        marks = ", ".join("?" for _ in _OPEN_CASES)
        query = (f"SELECT agent, count(*) FROM cases WHERE status IN ({marks}) "  # noqa: S608
                 "AND agent {} GROUP BY agent")
        if agents is None:
            self._run(query.format("IS NOT NULL"), _OPEN_CASES)
            return {str(agent): int(count) for agent, count in self.cur.fetchall()}
        load: dict[str, int] = {}
        unique = list(dict.fromkeys(agents))
        for start in range(0, len(unique), _IN_BATCH):  # the (agent, status) index, per agent
            chunk = unique[start:start + _IN_BATCH]
            self._run(query.format(f"IN ({', '.join('?' for _ in chunk)})"), (*_OPEN_CASES, *chunk))
            load.update((str(agent), int(count)) for agent, count in self.cur.fetchall())
        return load


class SqlTasks(SqlRepository[Task]):
    def _tasks(self, where: str, params: Sequence[Any], limit: int | None) -> builtins.list[Task]:
        self._run(
            f"SELECT doc FROM tasks WHERE {where} "  # noqa: S608 - fixed text, bound values
            "ORDER BY (due_at IS NULL), due_at, id LIMIT ?",
            (*params, self.d.limit(limit)),
        )
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]

    def open_for(self, owner: str, *, limit: int | None = None) -> builtins.list[Task]:
        return self._tasks("owner = ? AND status = ?", (owner, str(TaskStatus.OPEN)), limit)

    def overdue(
        self, now: datetime, *, owner: str | None = None, limit: int | None = None
    ) -> builtins.list[Task]:
        if owner is None:
            return self._tasks("status = ? AND due_at < ?",
                               (str(TaskStatus.OPEN), self.d.instant(now)), limit)
        return self._tasks("owner = ? AND status = ? AND due_at < ?",
                           (owner, str(TaskStatus.OPEN), self.d.instant(now)), limit)

    def reminders_due(
        self, now: datetime, *, after: tuple[datetime, str] | None = None, limit: int = 500
    ) -> builtins.list[tuple[datetime, str]]:
        return _due(self, "reminder_due", now, after, limit)


class SqlAccounts(SqlRepository[Account]):
    """Accounts, with their members mirrored in `account_members` for look-ups and roll-ups."""

    def add(self, item: Account) -> Account:
        stored = super().add(item)
        self._index(stored)
        return stored

    def update(self, item: Account) -> Account:
        stored = super().update(item)
        self._unindex(item.id)
        self._index(stored)
        return stored

    def remove(self, item: Account) -> None:
        super().remove(item)
        self._unindex(item.id)

    def _index(self, account: Account) -> None:
        self.cur.executemany(
            self.d.sql("INSERT INTO account_members (account_id, customer_id, role, is_primary) "
                       "VALUES (?, ?, ?, ?)"),
            [(account.id, m.customer_id, m.role, self.d.boolean(m.primary)) for m in account.members],
        )

    def _unindex(self, account_id: str) -> None:
        self._run("DELETE FROM account_members WHERE account_id = ?", (account_id,))

    def of_customer(self, customer_id: str) -> builtins.list[Account]:
        self._run(
            "SELECT doc FROM accounts WHERE id IN "
            "(SELECT account_id FROM account_members WHERE customer_id = ?) ORDER BY id",
            (customer_id,),
        )
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]

    def children(self, parent_id: str) -> builtins.list[Account]:
        self._run("SELECT doc FROM accounts WHERE parent_id = ? ORDER BY id", (parent_id,))
        return [_load(self.t, row[0]) for row in self.cur.fetchall()]


class SqlConfigurations:
    """Stored configuration, one row per version (the key refuses a second writer of it)."""

    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect
        self._columns = f"kind, name, version, {dialect.quote('at')}, actor, doc"

    def add(self, entry: ConfigVersion) -> None:
        doc = None if entry.doc is None else self.d.json_column(json.dumps(entry.doc))
        self.cur.execute(
            self.d.sql(f"INSERT INTO configurations ({self._columns}) VALUES (?, ?, ?, ?, ?, ?) "  # noqa: S608
                       "ON CONFLICT DO NOTHING"),
            (str(entry.kind), entry.name, entry.version, self.d.instant(entry.at), entry.actor, doc),
        )
        if self.cur.rowcount != 1:
            raise ConflictError(str(entry.kind), entry.name, entry.version - 1, entry.version)

    def _entries(self, where: str, params: Sequence[Any]) -> builtins.list[ConfigVersion]:
        query = f"SELECT {self._columns} FROM configurations AS x WHERE {where}"  # noqa: S608
        self.cur.execute(self.d.sql(query), params)
        return [
            ConfigVersion(kind, name, int(version), self.d.from_instant(at),
                          None if doc is None else doc if isinstance(doc, dict) else json.loads(doc), actor)
            for kind, name, version, at, actor, doc in self.cur.fetchall()
        ]

    def history(self, kind: str, name: str) -> builtins.list[ConfigVersion]:
        return self._entries("kind = ? AND name = ? ORDER BY version", (kind, name))

    def current(self, kind: str, name: str) -> ConfigVersion | None:
        found = self._entries("kind = ? AND name = ? ORDER BY version DESC LIMIT 1", (kind, name))
        return found[0] if found else None

    def in_force(self, kind: str) -> builtins.list[ConfigVersion]:
        return self._entries(
            "kind = ? AND doc IS NOT NULL AND version = (SELECT max(y.version) FROM configurations "  # noqa: S608
            f"AS y WHERE y.kind = x.kind AND y.name = x.name) ORDER BY name{self.d.text_order}",
            (kind,),
        )


class SqlTurns:
    """Round-robin turns in `assignment_turns`: one upsert that counts and returns the turn,
    taking the pool's row lock until commit (a second process waits, then counts on)."""

    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def take(self, pool: str) -> int:
        self.cur.execute(
            self.d.sql("INSERT INTO assignment_turns (pool, turn) VALUES (?, 0) ON CONFLICT (pool) "
                       "DO UPDATE SET turn = assignment_turns.turn + 1 RETURNING turn"),
            (pool,),
        )
        return int(self.cur.fetchone()[0])

    def peek(self, pool: str) -> int:
        self.cur.execute(self.d.sql("SELECT turn FROM assignment_turns WHERE pool = ?"), (pool,))
        row = self.cur.fetchone()
        return 0 if row is None else int(row[0]) + 1


class StaffMark:
    """Whether this unit of work changed the staff (shared by its agents and teams)."""

    changed = False


class SqlStaff(SqlRepository[T]):
    """Agents or teams: every write also raises `staff_generation` in its transaction."""

    def __init__(self, cur: Cursor, dialect: Dialect, table: Table[T], mark: StaffMark) -> None:
        super().__init__(cur, dialect, table)
        self.mark = mark

    def _changed(self) -> None:
        self._run("UPDATE staff_generation SET generation = generation + 1")
        self.mark.changed = True

    def add(self, item: T) -> T:
        stored = super().add(item)
        self._changed()
        return stored

    def add_many(self, items: Sequence[T]) -> int:
        self._insert_many(items)
        self._changed()
        return len(items)

    def update(self, item: T) -> T:
        stored = super().update(item)
        self._changed()
        return stored

    def update_many(self, items: Sequence[T]) -> builtins.list[T]:
        stored = super().update_many(items)
        self._changed()
        return stored

    def remove(self, item: T) -> None:
        super().remove(item)
        self._changed()


class SqlStaffGeneration:
    """The one-row `staff_generation` counter (see `crmcore.ports.storage.StaffGeneration`)."""

    def __init__(self, cur: Cursor, dialect: Dialect, mark: StaffMark) -> None:
        self.cur = cur
        self.d = dialect
        self.mark = mark

    def current(self) -> int | None:
        if self.mark.changed:
            return None
        self.cur.execute("SELECT generation FROM staff_generation")
        return int(self.cur.fetchone()[0])


class SqlAutomationRuns:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def record(self, run: AutomationRun) -> bool:
        self.cur.execute(
            self.d.sql("SELECT 1 FROM automation_runs WHERE rule = ? AND event_id = ?"),
            (run.rule, run.event_id),
        )
        if self.cur.fetchone() is not None:
            return False
        self.cur.execute(self.d.sql(insert_sql(AUTOMATION_RUNS, self.d)), AUTOMATION_RUNS.row(self.d, run))
        return True

    def for_rule(self, rule: str, *, limit: int | None = None) -> builtins.list[AutomationRun]:
        self.cur.execute(
            self.d.sql("SELECT doc FROM automation_runs WHERE rule = ? "  # noqa: S608
                       f"ORDER BY {self.d.quote('at')}, id LIMIT ?"),
            (rule, self.d.limit(limit)),
        )
        return [_load_doc(row[0], AutomationRun) for row in self.cur.fetchall()]


INDEX_SQL = ("INSERT INTO customer_emails (email, customer_id) VALUES (?, ?)",
             "INSERT INTO customer_phones (phone, customer_id) VALUES (?, ?)",
             "INSERT INTO customer_external_ids (source, external_id, customer_id) VALUES (?, ?, ?)")
"""The lookup tables' inserts: e-mails (lower-cased), phones, external ids."""


def index_rows(customers: Sequence[Customer]) -> list[tuple[str, list[tuple[str, ...]]]]:
    """Rows of the lookup tables for these customers (e-mails match case-insensitively)."""
    return list(zip(INDEX_SQL, (
        [(e.lower(), c.id) for c in customers for e in c.emails],
        [(p, c.id) for c in customers for p in c.phones],
        [(s, e, c.id) for c in customers for s, e in c.external_ids.items()],
    ), strict=True))


MEMBER_COLUMNS = ("campaign_id", "customer_id", "grp", "status", "at", "doc")
SCORE_COLUMNS = ("scorer", "customer_id", "as_of", "value", "label", "doc")


class SqlOpportunities(SqlRepository[Opportunity]):
    """Opportunities, with their new history steps appended to `opportunity_history`."""

    def add(self, item: Opportunity) -> Opportunity:
        stored = super().add(item)
        self._append(stored)
        return stored

    def update(self, item: Opportunity) -> Opportunity:
        stored = super().update(item)
        self._append(stored)
        return stored

    def remove(self, item: Opportunity) -> None:
        super().remove(item)
        self._run("DELETE FROM opportunity_history WHERE opportunity_id = ?", (item.id,))

    def _append(self, item: Opportunity) -> None:
        from crmcore.sales.history import rows

        self._run("SELECT count(*) FROM opportunity_history WHERE opportunity_id = ?", (item.id,))
        written = int(self.cur.fetchone()[0])
        self.d.executemany(self.cur, HISTORY_INSERT.format(at=self.d.quote("at")), [
            (r.opportunity_id, r.seq, self.d.instant(r.at), r.pipeline, r.stage, r.probability,
             _day(r.close_date), r.currency, None if r.amount is None else self.d.money(r.amount),
             r.owner, r.team)
            for r in rows(item, written)
        ])


HISTORY_INSERT = (
    "INSERT INTO opportunity_history (opportunity_id, seq, {at}, pipeline, stage, probability, "
    "close_date, currency, amount, owner, team) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SqlRates:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def put(self, rates: Iterable[Rate]) -> int:
        rows = [(r.base, r.quote, r.on.isoformat(), str(r.value)) for r in rates]
        self.cur.executemany(
            self.d.sql(
                "INSERT INTO exchange_rates (base, quote, day, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (base, quote, day) DO UPDATE SET value = excluded.value"
            ),
            rows,
        )
        return len(rows)

    def all(self) -> builtins.list[Rate]:
        self.cur.execute("SELECT base, quote, day, value FROM exchange_rates ORDER BY base, quote, day")
        return [Rate(b, q, _as_date(day), Decimal(value)) for b, q, day, value in self.cur.fetchall()]


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


class SqlCampaignMembers:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def _row(self, member: CampaignMember) -> tuple[Any, ...]:
        return (member.campaign_id, member.customer_id, str(member.group), str(member.status),
                self.d.instant(member.at), self.d.json_column(serialization.dumps(member)))

    @property
    def _put(self) -> str:
        return self.d.upsert("campaign_members", MEMBER_COLUMNS, ("campaign_id", "customer_id"))

    def put(self, member: CampaignMember) -> None:
        self.cur.execute(self._put, self._row(member))

    def put_many(self, members: Iterable[CampaignMember], batch: int = 2_000) -> int:
        count = 0
        rows: builtins.list[tuple[Any, ...]] = []
        for member in members:
            rows.append(self._row(member))
            if len(rows) >= batch:
                self.d.executemany(self.cur, self._put, rows)
                count, rows = count + len(rows), []
        self.d.executemany(self.cur, self._put, rows)
        return count + len(rows)

    def find(self, campaign_id: str, customer_id: str) -> CampaignMember | None:
        self.cur.execute(
            self.d.sql("SELECT doc FROM campaign_members WHERE campaign_id = ? AND customer_id = ?"),
            (campaign_id, customer_id),
        )
        row = self.cur.fetchone()
        return None if row is None else _load_doc(row[0], CampaignMember)

    def page(
        self, campaign_id: str, *, after: str | None = None, limit: int = 1000,
        status: MemberStatus | None = None,
    ) -> builtins.list[CampaignMember]:
        where = ["campaign_id = ?"]
        params: builtins.list[Any] = [campaign_id]
        if after is not None:
            where.append("customer_id > ?")
            params.append(after)
        if status is not None:
            where.append("status = ?")
            params.append(str(status))
        self.cur.execute(
            self.d.sql(
                f"SELECT doc FROM campaign_members WHERE {' AND '.join(where)} "  # noqa: S608
                "ORDER BY customer_id LIMIT ?"
            ),
            (*params, limit),
        )
        return [_load_doc(row[0], CampaignMember) for row in self.cur.fetchall()]

    def counts(self, campaign_id: str) -> dict[tuple[str, str], int]:
        self.cur.execute(
            self.d.sql("SELECT grp, status, count(*) FROM campaign_members WHERE campaign_id = ? "
                       "GROUP BY grp, status"),
            (campaign_id,),
        )
        return {(str(g), str(s)): int(n) for g, s, n in self.cur.fetchall()}

    def of(self, campaign_id: str) -> list[CampaignMember]:
        self.cur.execute(
            self.d.sql("SELECT doc FROM campaign_members WHERE campaign_id = ? ORDER BY customer_id"),
            (campaign_id,),
        )
        return [_load_doc(row[0], CampaignMember) for row in self.cur.fetchall()]

    def for_customer(self, customer_id: str, *, lock: bool = False) -> list[CampaignMember]:
        self.cur.execute(
            self.d.sql("SELECT doc FROM campaign_members WHERE customer_id = ? ORDER BY campaign_id "  # noqa: S608
                       + (self.d.row_lock if lock else "")),
            (customer_id,),
        )
        return [_load_doc(row[0], CampaignMember) for row in self.cur.fetchall()]

    def remove(self, campaign_id: str, customer_id: str) -> None:
        self.cur.execute(
            self.d.sql("DELETE FROM campaign_members WHERE campaign_id = ? AND customer_id = ?"),
            (campaign_id, customer_id),
        )


FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class SqlScores:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def put(self, scores: Iterable[Score]) -> int:
        rows = [
            (s.scorer, s.customer_id, self.d.instant(s.as_of), s.value, s.label,
             self.d.json_column(serialization.dumps(s)))
            for s in scores
        ]
        self.d.executemany(self.cur, self.d.upsert("scores", SCORE_COLUMNS, SCORE_COLUMNS[:3]), rows)
        return len(rows)

    def _docs(self, sql: str, params: Sequence[Any]) -> builtins.list[Score]:
        self.cur.execute(self.d.sql(sql), params)
        return [_load_doc(row[0], Score) for row in self.cur.fetchall()]

    def latest(self, customer_id: str, scorer: str, as_of: datetime | None = None) -> Score | None:
        found = self._docs(
            "SELECT doc FROM scores WHERE customer_id = ? AND scorer = ? AND as_of <= ? "
            "ORDER BY as_of DESC LIMIT 1",
            (customer_id, scorer, self.d.instant(as_of or FAR_FUTURE)),
        )
        return found[0] if found else None

    def for_customer(self, customer_id: str, as_of: datetime | None = None) -> builtins.list[Score]:
        limit = self.d.instant(as_of or FAR_FUTURE)
        return self._docs(
            "SELECT s.doc FROM scores s WHERE s.customer_id = ? AND s.as_of = ("
            "SELECT max(t.as_of) FROM scores t WHERE t.customer_id = s.customer_id "
            "AND t.scorer = s.scorer AND t.as_of <= ?) ORDER BY s.scorer",
            (customer_id, limit),
        )

    def of(self, scorer: str, as_of: datetime) -> builtins.list[Score]:
        return self._docs(
            "SELECT doc FROM scores WHERE scorer = ? AND as_of = ? ORDER BY customer_id",
            (scorer, self.d.instant(as_of)),
        )

    def all_of(self, customer_id: str, *, lock: bool = False) -> builtins.list[Score]:
        return self._docs(
            "SELECT doc FROM scores WHERE customer_id = ? ORDER BY scorer, as_of "  # noqa: S608
            + (self.d.row_lock if lock else ""), (customer_id,)
        )

    def purge(self, customer_id: str, keys: Iterable[tuple[str, datetime]] | None = None) -> int:
        if keys is None:
            self.cur.execute(self.d.sql("DELETE FROM scores WHERE customer_id = ?"), (customer_id,))
            return int(self.cur.rowcount)
        count = 0
        for scorer, at in keys:
            self.cur.execute(
                self.d.sql("DELETE FROM scores WHERE customer_id = ? AND scorer = ? AND as_of = ?"),
                (customer_id, scorer, self.d.instant(at)),
            )
            count += int(self.cur.rowcount)
        return count


class SqlSegmentMembers:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect
        self._at = dialect.quote("at")
        self._left = dialect.quote("left")

    def current(self, segment_id: str) -> set[str]:
        self.cur.execute(
            self.d.sql("SELECT customer_id FROM segment_members WHERE segment_id = ?"), (segment_id,)
        )
        return {str(row[0]) for row in self.cur.fetchall()}

    def apply(self, run: SegmentRun, entered: Iterable[str], left: Iterable[str]) -> None:
        since = self.d.instant(run.at)
        self.d.executemany(
            self.cur, "DELETE FROM segment_members WHERE segment_id = ? AND customer_id = ?",
            [(run.segment_id, c) for c in left],
        )
        self.d.executemany(
            self.cur, "INSERT INTO segment_members (segment_id, customer_id, since) VALUES (?, ?, ?)",
            [(run.segment_id, c, since) for c in entered],
        )
        self.cur.execute(
            self.d.sql(
                f"INSERT INTO segment_runs (segment_id, {self._at}, rule_version, size, entered, "  # noqa: S608
                f"{self._left}) VALUES (?, ?, ?, ?, ?, ?)"
            ),
            (run.segment_id, since, run.rule_version, run.size, run.entered, run.left),
        )

    def runs(self, segment_id: str) -> builtins.list[SegmentRun]:
        self.cur.execute(
            self.d.sql(
                f"SELECT segment_id, {self._at}, rule_version, size, entered, {self._left} "  # noqa: S608
                f"FROM segment_runs WHERE segment_id = ? ORDER BY {self._at}"
            ),
            (segment_id,),
        )
        return [
            SegmentRun(seg, self.d.from_instant(at), version, size, entered, left)
            for seg, at, version, size, entered, left in self.cur.fetchall()
        ]

    def purge(self, customer_id: str) -> int:
        self.cur.execute(
            self.d.sql("DELETE FROM segment_members WHERE customer_id = ?"), (customer_id,)
        )
        return int(self.cur.rowcount)


def _load_doc(doc: Any, cls: type[T]) -> T:
    """Records read back are rebuilt without validating them again (see `load_stored`)."""
    return serialization.load_stored(doc, cls)


_OUTBOX_INSERT = ("INSERT INTO outbox (id, topic, aggregate_id, occurred_at, available_at, doc) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
_IN_BATCH = totals.IN_BATCH
"""Ids bound in one `IN (...)` list."""


class SqlOutbox:
    """The outbox table; `claim` leases entries so concurrent dispatchers skip each other's."""

    def __init__(self, cur: Cursor, dialect: Dialect, claim_lock: str = "") -> None:
        self.cur = cur
        self.d = dialect
        self.claim_lock = claim_lock
        """Appended to the claim's SELECT (PostgreSQL: FOR UPDATE SKIP LOCKED)."""

    def append(self, event: Event) -> None:
        self.cur.execute(self.d.sql(_OUTBOX_INSERT), self._row(event))

    def append_many(self, events: Sequence[Event]) -> None:
        self.d.insert_many(self.cur, _OUTBOX_INSERT, [self._row(e) for e in events])

    def _row(self, event: Event) -> tuple[Any, ...]:
        return (event.id, event.topic, event.aggregate_id, self.d.instant(event.occurred_at),
                self.d.instant(event.occurred_at), self.d.json_column(serialization.dumps(event)))

    def claim(self, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        query = "SELECT seq, doc, attempts, delivered_to, last_error FROM outbox WHERE done = 0 "
        query += "AND available_at <= ? ORDER BY seq LIMIT ? " + self.claim_lock
        self.cur.execute(
            self.d.sql(query),
            (self.d.instant(now), limit),
        )
        rows = self.cur.fetchall()
        self.d.executemany(
            self.cur, "UPDATE outbox SET available_at = ? WHERE seq = ?",
            [(self.d.instant(now + lease), row[0]) for row in rows],
        )
        return [
            OutboxEntry(
                seq=int(seq),
                event=_load_doc(doc, Event),
                attempts=int(attempts),
                delivered_to=frozenset(json.loads(delivered)),
                last_error=error,
            )
            for seq, doc, attempts, delivered, error in rows
        ]

    def settle(
        self, seq: int, delivered_to: frozenset[str], done: bool, error: str | None,
        retry_at: datetime | None,
    ) -> None:
        self.cur.execute(
            self.d.sql(
                "UPDATE outbox SET delivered_to = ?, done = ?, last_error = ?, "
                "attempts = attempts + ?, available_at = COALESCE(?, available_at) WHERE seq = ?"
            ),
            (json.dumps(sorted(delivered_to)), 1 if done else 0, error, 0 if done else 1,
             None if retry_at is None else self.d.instant(retry_at), seq),
        )

    def pending_count(self) -> int:
        self.cur.execute("SELECT count(*) FROM outbox WHERE done = 0")
        return int(self.cur.fetchone()[0])

    def prune(self, before: datetime, limit: int) -> int:
        self.cur.execute(
            self.d.sql(
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE done = 1 "
                "AND available_at < ? ORDER BY seq LIMIT ?)"
            ),
            (self.d.instant(before), limit),
        )
        return int(self.cur.rowcount)

    def redact(self, mentions: Callable[[Event], bool], page: int = 1000) -> int:
        after, count = 0, 0
        while True:
            self.cur.execute(
                self.d.sql("SELECT seq, doc FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?"),
                (after, page),
            )
            rows = self.cur.fetchall()
            if not rows:
                return count
            for seq, doc in rows:
                event = _load_doc(doc, Event)
                if mentions(event):
                    emptied = attrs.evolve(event, aggregate_id="erased", payload={})
                    self.cur.execute(
                        self.d.sql("UPDATE outbox SET aggregate_id = ?, doc = ?, done = 1, "
                                   "last_error = NULL WHERE seq = ?"),
                        ("erased", self.d.json_column(serialization.dumps(emptied)), seq),
                    )
                    count += 1
            after = int(rows[-1][0])


class SqlHistory:
    """The `history` table: one row per change, its diff a JSON document; and, for each
    customer change, the row it superseded in `customer_states` (see `lifecycle.states`)."""

    COLUMNS = 'seq, kind, aggregate_id, version, op, "at", diff, actor'
    keeps_states = True
    """Segment rules read customers as of an instant from `customer_states`, in SQL."""

    def __init__(self, cur: Cursor, dialect: Dialect, superseded: Superseded | None = None, *,
                 states_in_history: bool = False) -> None:
        self.cur = cur
        self.d = dialect
        self.superseded = superseded or Superseded()
        self.states_in_history = states_in_history
        """True for a schema whose `history` rows hold the customer states (`SqlUnitOfWork`)."""

    def append(self, change: Change) -> None:
        """The change, and for a customer the row it superseded and the `since` of today's
        row: one statement where the dialect can run the writes as one (`Dialect.together`),
        else one each."""
        row = self._row(change)
        at = row[4]
        state = self._state(change, at) if change.kind == "customer" else None
        if state is None:
            self.cur.execute(self.d.sql(_HISTORY_INSERT), row)
            return
        since = (_SINCE_MOVE, (at, change.aggregate_id, at, at, change.aggregate_id, at))
        writes: tuple[tuple[str, Sequence[Any]], ...]
        if self.states_in_history:  # the state rides in the change's own row
            writes = ((_HISTORY_KEEP, (*row, change.aggregate_id, change.aggregate_id, *state[1:2],
                                       *state[5:])), since)
        else:
            writes = ((_HISTORY_INSERT, row), (_STATE_KEEP, state), since)
        together = self.d.together(*(sql for sql, _ in writes))
        if together is None:
            for sql, params in writes:
                self.cur.execute(self.d.sql(sql), params)
        else:
            self.cur.execute(self.d.sql(together), tuple(p for _, params in writes for p in params))

    def append_many(self, changes: Sequence[Change]) -> None:
        """One `executemany` for the lot; a customer's change also keeps the row it
        superseded (read from the write before it), so those go one by one."""
        if any(c.kind == "customer" for c in changes):
            for change in changes:
                self.append(change)
            return
        self.d.insert_many(self.cur, _HISTORY_INSERT, [self._row(c) for c in changes])

    def _row(self, change: Change) -> tuple[Any, ...]:
        """The parameters of `_HISTORY_INSERT` ("at" fifth)."""
        return (change.kind, change.aggregate_id, change.version, str(change.op),
                self.d.instant(change.at), self.d.json_column(serialization.dumps_data(change.diff)),
                change.actor)

    def _state(self, change: Change, at: Any) -> tuple[Any, ...] | None:
        """The `customer_states` row of `change` (the customer's row before it): none before
        an addition; the row the repository replaced for an update or removal (a change
        appended without that write, e.g. by hand, supersedes no known row and keeps nothing)."""
        if change.op is ChangeKind.ADDED:
            if not _created_before(change):
                return None  # as of any earlier instant its created_at leaves it out already
            row: tuple[Any, ...] = (change.aggregate_id, *(None,) * (len(states.COLUMNS) - 1))
        else:
            replaced, self.superseded.row = self.superseded.row, None
            if replaced is None or replaced[0] != change.aggregate_id:
                return None
            row = (*replaced[:-1], _json_again(self.d, replaced[-1]))
        return (at, self.d.instant(states.EARLIEST), change.aggregate_id, str(change.op), *row)

    def _changes(self, where: str, params: Sequence[Any]) -> builtins.list[Change]:
        return self._read(f"SELECT {self.COLUMNS} FROM history WHERE {where}", params)  # noqa: S608

    def _read(self, select: str, params: Sequence[Any]) -> builtins.list[Change]:
        self.cur.execute(self.d.sql(select), params)
        return [
            Change(kind, aggregate_id, int(version), op, self.d.from_instant(at),
                   diff if isinstance(diff, dict) else json.loads(diff), actor, int(seq))
            for seq, kind, aggregate_id, version, op, at, diff, actor in self.cur.fetchall()
        ]

    def of(self, kind: str, aggregate_id: str) -> builtins.list[Change]:
        return self._changes("kind = ? AND aggregate_id = ? ORDER BY seq", (kind, aggregate_id))

    def after(self, kind: str, at: datetime) -> builtins.list[Change]:
        # sorted here: SQLite merges a sorted UNION ALL by scanning the table in seq order
        changes = self._read(*self._after(self.COLUMNS, kind, at, ""))
        return sorted(changes, key=lambda change: (change.aggregate_id, change.seq))

    def changed_after(self, kind: str, at: datetime) -> bool:
        self.cur.execute(*self._after("1", kind, at, " LIMIT 1"))
        return self.cur.fetchone() is not None

    def _after(self, columns: str, kind: str, at: datetime, tail: str) -> tuple[str, tuple[Any, ...]]:
        """A SELECT of `columns` of the `kind` changes after `at`, then `tail`. Where the
        states are in history, `history_at` holds only the changes that kept none: those
        that kept one are found by their day (`history_states_day`), one B-tree fewer
        for a customer change to enter."""
        t = self.d.instant(at)
        plain = f'SELECT {columns} FROM history WHERE kind = ? AND "at" > ?'  # noqa: S608
        if not self.states_in_history:
            return self.d.sql(plain + tail), (kind, t)
        plain += " AND kept IS NULL"
        if kind != "customer":  # only customer changes keep a state
            return self.d.sql(plain + tail), (kind, t)
        # the later days first, one seek to the next day's first entry (a LIMIT stops there);
        # `at`'s own day is read along (since, at) for the rows after it
        day = self.d.epoch_day(self.d.quote("at"))
        kept = f"SELECT {columns} FROM history WHERE kept = 1 AND {day} "  # noqa: S608
        later, same = f"{kept}> ?", f'{kept}= ? AND "at" > ?'
        return (self.d.sql(f"{plain} UNION ALL {later} UNION ALL {same}{tail}"),
                (kind, t, states.day(at), states.day(at), t))

    def purge(self, kind: str, aggregate_id: str) -> int:
        self.cur.execute(
            self.d.sql("DELETE FROM history WHERE kind = ? AND aggregate_id = ?"), (kind, aggregate_id)
        )
        count = int(self.cur.rowcount)
        if kind == "customer":
            self.cur.execute(self.d.sql("DELETE FROM customer_states WHERE customer_id = ?"),
                             (aggregate_id,))
            self.cur.execute(self.d.sql("UPDATE customers SET since = NULL WHERE id = ?"), (aggregate_id,))
        return count


def _created_before(change: Change) -> bool:
    """Whether an added customer says it was created before it was added (an import of
    old records, a merge undone): only then must "not there yet" be kept as a state."""
    created = change.diff.get("created_at", [None, None])[1]
    return not isinstance(created, str) or datetime.fromisoformat(created) < change.at


_STATE_INTO = f"INSERT INTO customer_states (\"at\", since, op, customer_id, {', '.join(states.COLUMNS[1:])})"
_STATE_ROW = ", ".join("?" for _ in range(len(states.COLUMNS) + 1))
"""op and the `states.COLUMNS`."""
_STATE_INSERT = f"{_STATE_INTO} VALUES (?, ?, {_STATE_ROW})"
_STATE_KEEP = (f"{_STATE_INTO} VALUES (?, (SELECT coalesce(max(x.\"at\"), ?) FROM customer_states AS x "  # noqa: S608
               f"WHERE x.customer_id = ?), {_STATE_ROW})")
"""One row kept on write, its `since` read in the same statement (no round trip of its own)."""
_SINCE_MOVE = ("UPDATE customers SET since = CASE WHEN since IS NOT NULL THEN ? ELSE coalesce(("
               'SELECT max(x."at") FROM customer_states AS x WHERE x.customer_id = ? AND x."at" > ?), ?) '
               "END WHERE id = ? AND (since IS NULL OR since < ?)")
"""Today's row valid since the change that kept a state ("at", id, "at", "at", id, "at"):
`since` is the greatest "at" of the customer's states, so it stays when the clock went
back; a test on the row itself, the states read only where it was NULL (a customer added
again under an id that kept states while away, whose last may be later than this change)."""
_SINCE_OF = ('UPDATE customers SET since = (SELECT max(x."at") FROM customer_states AS x '
             "WHERE x.customer_id = customers.id)")
_KEPT_STATES = "EXISTS (SELECT 1 FROM customer_states AS y WHERE y.customer_id = customers.id)"
"""A customer added under an id removed before (not by `restore`) finds the states kept
while it was away: today's row is valid since the last of them, not for ever."""
_HISTORY_INTO = 'INSERT INTO history (kind, aggregate_id, version, op, "at", diff, actor'
_HISTORY_INSERT = f"{_HISTORY_INTO}) VALUES (?, ?, ?, ?, ?, ?, ?)"
WAS = tuple(f"was_{column}" for column in states.COLUMNS[1:])
"""`history` columns holding a kept state's `states.COLUMNS` (but the id: the change's
aggregate) in a schema that keeps the states there (`SqlUnitOfWork`'s `states_in_history`)."""
_HISTORY_KEEP = (f"{_HISTORY_INTO}, kept, since, {', '.join(WAS)}) VALUES (?, ?, ?, ?, ?, ?, ?, 1, "  # noqa: S608
                 "coalesce((SELECT c.since FROM customers AS c WHERE c.id = ?), "
                 '(SELECT max(x."at") FROM customer_states AS x WHERE x.customer_id = ?), ?), '
                 f"{', '.join('?' for _ in WAS)})")
"""A customer change and the row it superseded, in one row. Its `since` is today's row's
(the greatest "at" of the customer's states, one key lookup); a customer no longer (or
not yet) in `customers`, removed or added again, reads it from their states."""


def insert_state(cur: Cursor, dialect: Dialect, rows: Sequence[Sequence[Any]]) -> None:
    """Rows of `customer_states`: ("at", since, op, then the `states.COLUMNS` of the row
    superseded); `since` is the greatest "at" of the customer's earlier rows, or
    `states.EARLIEST` (see `lifecycle.states`)."""
    if rows:
        dialect.executemany(cur, _STATE_INSERT, rows)


def _json_again(dialect: Dialect, doc: Any) -> Any:
    """A document read back, bound again (a driver may have decoded it)."""
    return dialect.json_column(doc if isinstance(doc, str) else json.dumps(doc, separators=(",", ":")))


Step = str | Callable[[Cursor, Dialect], None]
"""One step of a migration: a statement, or a function (a data backfill) run on its cursor."""


def run_step(cur: Cursor, dialect: Dialect, step: Step) -> None:
    if isinstance(step, str):
        cur.execute(step)
    else:
        step(cur, dialect)


def backfill_states(cur: Cursor, dialect: Dialect, page: int = 500) -> None:
    """Migration step: the superseded rows of the customer changes recorded before
    `customer_states` existed, rebuilt by undoing each diff from today's record back."""
    after = ""
    while True:
        cur.execute(dialect.sql(
            "SELECT DISTINCT aggregate_id FROM history WHERE kind = 'customer' AND aggregate_id > ? "
            "ORDER BY aggregate_id LIMIT ?"), (after, page))
        ids = [str(row[0]) for row in cur.fetchall()]
        if not ids:
            return
        rows: builtins.list[tuple[Any, ...]] = []
        for customer_id in ids:
            cur.execute(dialect.sql("SELECT doc FROM customers WHERE id = ?"), (customer_id,))
            found = cur.fetchone()
            state = None if found is None else _plain(found[0])
            kept: builtins.list[tuple[Any, ...]] = []
            for change in reversed(SqlHistory(cur, dialect).of("customer", customer_id)):
                state = lifecycle_history.undo(state, change)
                if change.op is ChangeKind.ADDED and not _created_before(change):
                    continue  # as `SqlHistory.append` does
                kept.append((change.at, str(change.op), *_state_row(dialect, customer_id, state)))
            latest = states.EARLIEST
            for at, *rest in reversed(kept):  # stored oldest first: seq follows the changes' order
                rows.append((dialect.instant(at), dialect.instant(latest), *rest))
                latest = max(latest, at)
        insert_state(cur, dialect, rows)
        after = ids[-1]


def check_states_pair(cur: Cursor, dialect: Dialect) -> None:
    """Migration step (SQLite, states into their changes' rows): every kept state has a
    change of the same customer, instant and op to go to, else the migration stops here,
    naming the first that has none (each change kept one state; a state written by hand
    may have no change)."""
    cur.execute(
        'SELECT s.customer_id, s."at", s.op FROM customer_states_moved AS s '
        'GROUP BY s.customer_id, s."at", s.op HAVING count(*) > (SELECT count(*) FROM history AS h '
        "WHERE h.kind = 'customer' AND h.aggregate_id = s.customer_id AND h.\"at\" = s.\"at\" "
        "AND h.op = s.op) LIMIT 1")
    unpaired = cur.fetchone()
    if unpaired is not None:
        customer, at, op = unpaired
        raise IntegrityError(
            f"customer_states of customer {customer!r} at {dialect.from_instant(at).isoformat()} "
            f"({op}): more states than changes in history of that customer, instant and op, "
            "so the states cannot move into their changes' rows; remove the extra state and "
            "open the base again")


def backfill_since(cur: Cursor, dialect: Dialect) -> None:
    """Migration step: the `since` of the state rows kept before it existed, the greatest
    "at" of the same customer's earlier rows (see `lifecycle.states`)."""
    cur.execute(dialect.sql(
        "UPDATE customer_states SET since = coalesce((SELECT max(x.\"at\") FROM customer_states AS x "
        "WHERE x.customer_id = customer_states.customer_id AND x.seq < customer_states.seq), ?)"),
        (dialect.instant(states.EARLIEST),))


def backfill_current_since(cur: Cursor, dialect: Dialect) -> None:
    """Migration step: the `since` of today's rows, the greatest "at" of the customer's
    states (NULL, valid for ever, when they kept none: only those rows are written)."""
    cur.execute(dialect.sql(f"{_SINCE_OF} WHERE id IN (SELECT customer_id FROM customer_states)"))  # noqa: S608


def _plain(doc: Any) -> dict[str, Any]:
    return doc if isinstance(doc, dict) else json.loads(doc)


def _state_row(dialect: Dialect, customer_id: str, state: dict[str, Any] | None) -> tuple[Any, ...]:
    if state is None:
        return (customer_id, *(None,) * (len(states.COLUMNS) - 1))
    return CUSTOMERS.row(dialect, _load_doc(state, Customer))


class SqlMerges:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def add(self, record: MergeRecord) -> None:
        self.cur.execute(
            self.d.sql('INSERT INTO merges (id, survivor_id, merged_id, "at", doc) VALUES (?, ?, ?, ?, ?)'),
            (record.id, record.survivor_id, record.merged_id, self.d.instant(record.at),
             self.d.json_column(serialization.dumps(record))),
        )

    def get(self, id: str) -> MergeRecord:
        self.cur.execute(self.d.sql("SELECT doc FROM merges WHERE id = ?"), (id,))
        row = self.cur.fetchone()
        if row is None:
            raise NotFound("merge", id)
        return _load_doc(row[0], MergeRecord)

    def update(self, record: MergeRecord) -> None:
        self.cur.execute(
            self.d.sql("UPDATE merges SET doc = ? WHERE id = ?"),
            (self.d.json_column(serialization.dumps(record)), record.id),
        )
        if self.cur.rowcount != 1:
            raise NotFound("merge", record.id)

    def involving(self, customer_id: str) -> builtins.list[MergeRecord]:
        self.cur.execute(
            self.d.sql('SELECT doc FROM merges WHERE survivor_id = ? OR merged_id = ? ORDER BY "at", id'),
            (customer_id, customer_id),
        )
        return [_load_doc(row[0], MergeRecord) for row in self.cur.fetchall()]

    def purge(self, customer_id: str) -> int:
        self.cur.execute(
            self.d.sql("DELETE FROM merges WHERE survivor_id = ? OR merged_id = ?"),
            (customer_id, customer_id),
        )
        return int(self.cur.rowcount)


class SqlErasures:
    def __init__(self, cur: Cursor, dialect: Dialect) -> None:
        self.cur = cur
        self.d = dialect

    def add(self, tombstone: Tombstone) -> None:
        self.cur.execute(self.d.sql('INSERT INTO erasures (id, "at") VALUES (?, ?)'),
                         (tombstone.id, self.d.instant(tombstone.at)))

    def list(self) -> builtins.list[Tombstone]:
        self.cur.execute('SELECT id, "at" FROM erasures ORDER BY "at", id')
        return [Tombstone(id, self.d.from_instant(at)) for id, at in self.cur.fetchall()]


class SqlUnitOfWork:
    """Every repository of one transaction, on one cursor.

    `select` lets the core push a query it compiled (a segment rule, an analytical
    summary) down to the database; its SQL is built from constants and every value
    is a bound parameter.
    """

    def __init__(self, cur: Cursor, dialect: Dialect, claim_lock: str = "", *,
                 keyed_totals: bool = True, states_in_history: bool = False) -> None:
        self.cur = cur
        self.d = dialect
        self.dialect = dialect
        self.claim_lock = claim_lock
        self.keyed_totals = keyed_totals
        """False for a schema whose `purchase_totals` has no key (`SqlPurchases`)."""
        self.states_in_history = states_in_history
        """True for a schema whose `history` rows also hold the customer states, each the
        row its change superseded (columns `kept`, `since`, `was_*`), `customer_states` a
        view of them: a change writes one table and its indexes fewer, worth it where
        each B-tree a change enters is a page written at commit (SQLite's WAL)."""
        self._superseded = Superseded()
        self._staff = StaffMark()

    # repositories are made on first use: a point read needs one, not fourteen
    @functools.cached_property
    def customers(self) -> SqlCustomers:
        return SqlCustomers(self.cur, self.d, CUSTOMERS, self._superseded)

    @functools.cached_property
    def interactions(self) -> SqlInteractions:
        return SqlInteractions(self.cur, self.d, INTERACTIONS)

    @functools.cached_property
    def purchases(self) -> SqlPurchases:
        return SqlPurchases(self.cur, self.d, PURCHASES, keyed_totals=self.keyed_totals)

    @functools.cached_property
    def purchase_totals(self) -> totals.SqlPurchaseTotals:
        return totals.SqlPurchaseTotals(self.cur, self.d)

    @functools.cached_property
    def cases(self) -> SqlCases:
        return SqlCases(self.cur, self.d, CASES)

    @functools.cached_property
    def opportunities(self) -> SqlOpportunities:
        return SqlOpportunities(self.cur, self.d, OPPORTUNITIES)

    @functools.cached_property
    def campaigns(self) -> SqlRepository[Campaign]:
        return SqlRepository(self.cur, self.d, CAMPAIGNS)

    @functools.cached_property
    def service_points(self) -> SqlRepository[ServicePoint]:
        return SqlRepository(self.cur, self.d, SERVICE_POINTS)

    @functools.cached_property
    def agents(self) -> SqlStaff[Agent]:
        return SqlStaff(self.cur, self.d, AGENTS, self._staff)

    @functools.cached_property
    def teams(self) -> SqlStaff[Team]:
        return SqlStaff(self.cur, self.d, TEAMS, self._staff)

    @functools.cached_property
    def staff_generation(self) -> SqlStaffGeneration:
        return SqlStaffGeneration(self.cur, self.d, self._staff)

    @functools.cached_property
    def segments(self) -> SqlRepository[Segment]:
        return SqlRepository(self.cur, self.d, SEGMENTS)

    @functools.cached_property
    def segment_members(self) -> SqlSegmentMembers:
        return SqlSegmentMembers(self.cur, self.d)

    @functools.cached_property
    def scores(self) -> SqlScores:
        return SqlScores(self.cur, self.d)

    @functools.cached_property
    def campaign_members(self) -> SqlCampaignMembers:
        return SqlCampaignMembers(self.cur, self.d)

    @functools.cached_property
    def outbox(self) -> SqlOutbox:
        return SqlOutbox(self.cur, self.d, self.claim_lock)

    @functools.cached_property
    def tasks(self) -> SqlTasks:
        return SqlTasks(self.cur, self.d, TASKS)

    @functools.cached_property
    def accounts(self) -> SqlAccounts:
        return SqlAccounts(self.cur, self.d, ACCOUNTS)

    @functools.cached_property
    def automation_runs(self) -> SqlAutomationRuns:
        return SqlAutomationRuns(self.cur, self.d)

    @functools.cached_property
    def configurations(self) -> SqlConfigurations:
        return SqlConfigurations(self.cur, self.d)

    @functools.cached_property
    def turns(self) -> SqlTurns:
        return SqlTurns(self.cur, self.d)

    @functools.cached_property
    def pipelines(self) -> SqlRepository[Pipeline]:
        return SqlRepository(self.cur, self.d, PIPELINES)

    @functools.cached_property
    def leads(self) -> SqlRepository[Lead]:
        return SqlRepository(self.cur, self.d, LEADS)

    @functools.cached_property
    def products(self) -> SqlRepository[Product]:
        return SqlRepository(self.cur, self.d, PRODUCTS)

    @functools.cached_property
    def price_books(self) -> SqlRepository[PriceBook]:
        return SqlRepository(self.cur, self.d, PRICE_BOOKS)

    @functools.cached_property
    def quotes(self) -> SqlRepository[Quote]:
        return SqlRepository(self.cur, self.d, QUOTES)

    @functools.cached_property
    def rates(self) -> SqlRates:
        return SqlRates(self.cur, self.d)

    @functools.cached_property
    def history(self) -> SqlHistory:
        return SqlHistory(self.cur, self.d, self._superseded, states_in_history=self.states_in_history)

    @functools.cached_property
    def merges(self) -> SqlMerges:
        return SqlMerges(self.cur, self.d)

    @functools.cached_property
    def erasures(self) -> SqlErasures:
        return SqlErasures(self.cur, self.d)

    def select(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        """Rows of a read-only query written in this dialect."""
        self.cur.execute(sql, params)
        rows = self.cur.fetchall()
        if rows and type(rows[0]) is not tuple:  # drivers that return their own row type
            return [tuple(row) for row in rows]
        return rows


BULK_TABLES: dict[type, Table[Any]] = {
    Customer: CUSTOMERS, Purchase: PURCHASES, Interaction: INTERACTIONS,
}


def bulk_batches(
    items: Iterable[Any], size: int
) -> Iterator[tuple[Table[Any], list[Any]]]:
    """Batches of one record type, at most `size` long, however the stream interleaves
    types (a customer, their purchases, the next customer...): memory stays bounded
    at `size` records per type, and each batch is as big as it may be."""
    pending: dict[Table[Any], list[Any]] = {}
    for item in items:
        table = BULK_TABLES.get(type(item))
        if table is None:
            raise ValidationError("item", item, "bulk import takes Customer, Purchase or Interaction")
        batch = pending.setdefault(table, [])
        batch.append(item)
        if len(batch) >= size:
            yield table, pending.pop(table)
    for table, batch in pending.items():
        yield table, batch


def bulk_statements(
    dialect: Dialect, items: Iterable[Any], size: int
) -> Iterator[tuple[str, builtins.list[tuple[Any, ...]], int]]:
    """(INSERT statement, rows, records) for a bulk import, customer lookup rows included;
    `records` counts the stream's records behind the rows (0 for lookup rows)."""
    for table, batch in bulk_batches(items, size):
        yield insert_sql(table, dialect), bulk_rows(dialect, table, batch), len(batch)
        if table is CUSTOMERS:
            for statement, rows in index_rows(batch):
                if rows:  # an empty batch is refused by some drivers' executemany
                    yield statement, rows, 0
        else:
            owners = dict.fromkeys(item.customer_id for item in batch)
            yield "INSERT INTO bulk_owners (customer_id) VALUES (?)", [(o,) for o in owners], 0


def check_owners(cur: Cursor) -> None:
    """After a bulk import: every imported purchase and interaction belongs to a customer
    (stored before or in the same import), as `record` and `log` insist one by one."""
    cur.execute(
        "SELECT o.customer_id FROM bulk_owners o WHERE NOT EXISTS "
        "(SELECT 1 FROM customers c WHERE c.id = o.customer_id) LIMIT 1"
    )
    orphan = cur.fetchone()
    if orphan is not None:
        raise IntegrityError(f"no customer {orphan[0]!r}, yet the import holds records of theirs")


def finish_import(cur: Cursor, dialect: Dialect) -> None:
    """After a bulk import's rows are in: every owner exists (`check_owners`), the
    purchase totals of the customers it touched are recounted, and a customer imported
    under an id removed before is valid since the states kept of it (`customers.since`)."""
    check_owners(cur)
    totals.recount_imported(cur, dialect)
    cur.execute(dialect.sql(f"{_SINCE_OF} WHERE since IS NULL AND id IN "  # noqa: S608
                            "(SELECT customer_id FROM customer_states WHERE op = 'removed')"))


def bulk_rows(dialect: Dialect, table: Table[Any], batch: list[Any]) -> list[tuple[Any, ...]]:
    """Rows for a bulk insert; customers are stored at version 1 like any `add`."""
    if table.versioned:
        for index, item in enumerate(batch):
            if item.version != 0:
                raise ValidationError(f"items[{index}].version", item.version, "must be 0 (new)")
        batch = [_renumbered(item, 1) for item in batch]
    return [table.row(dialect, item) for item in batch]


def _renumbered(item: T, version: int) -> T:
    """`item` at another version, without running again the validators it has passed
    (`attrs.evolve` would, and for a customer that is most of the cost of a bulk row)."""
    clone: T = _shallow_copier(type(item))(item)  # type: ignore[arg-type]
    object.__setattr__(clone, "version", version)
    return clone


@functools.cache
def _shallow_copier(cls: type[T]) -> Callable[[T], T]:
    """`copy.copy` for `cls`; for a slotted attrs class (the model's), its slots read at
    once and set through their descriptors: `copy.copy` goes through a state dict, about
    twice the time (8 µs a customer)."""
    names = tuple(field.name for field in attrs.fields(cls)) if attrs.has(cls) else ()
    slots = {slot: klass for klass in reversed(cls.__mro__) for slot in getattr(klass, "__slots__", ())}
    slots.pop("__weakref__", None)
    dictless = all(klass is object or "__slots__" in vars(klass) for klass in cls.__mro__)
    if len(names) < 2 or not dictless or set(slots) != set(names):
        return copy.copy
    read = operator.attrgetter(*names)
    setters = tuple(vars(slots[name])[name].__set__ for name in names)

    def copied(item: T) -> T:
        clone: T = object.__new__(cls)
        for put, value in zip(setters, read(item), strict=True):
            put(clone, value)
        return clone

    return copied
