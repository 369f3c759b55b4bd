"""The storage port: repositories by aggregate, a unit of work, the outbox."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import attrs

from crmcore.events import Event, OutboxEntry
from crmcore.exchange import Rate
from crmcore.model import (
    Account,
    Agent,
    AutomationRun,
    Campaign,
    CampaignMember,
    Case,
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
    Team,
)
from crmcore.model.history import Change, MergeRecord, Tombstone
from crmcore.scoring.totals import PurchaseTotal

T = TypeVar("T")


class Repository(Protocol[T]):
    """Versioned aggregates: `add` stores version 1, `update` needs the version it read."""

    def add(self, item: T) -> T:
        """Store a new item (its version must be 0); IntegrityError if the id exists."""
        ...

    def add_many(self, items: Sequence[T]) -> int:
        """Store new items at once (an import's batch); IntegrityError if an id exists,
        after which the transaction must roll back."""
        ...

    def get(self, id: str) -> T:
        """The item, or NotFound."""
        ...

    def find(self, id: str) -> T | None: ...

    def data(self, id: str) -> dict[str, Any] | None:
        """The stored item as the converter's plain data (`serialization.unstructure`), or None:
        what a history diff needs, without rebuilding the object."""
        ...

    def update(self, item: T) -> T:
        """Write a changed item; ConflictError if its version is not the stored one."""
        ...

    def remove(self, item: T) -> None:
        """Delete the item; ConflictError if its version is stale."""
        ...

    def list(self, *, after: str | None = None, limit: int | None = None) -> list[T]:
        """Items in id order, after the given id (for paging)."""
        ...

    def count(self) -> int: ...


class CustomerRepository(Repository[Customer], Protocol):
    def by_email(self, email: str) -> Customer | None:
        """The customer with this canonical e-mail address (addresses are unique)."""
        ...

    def by_phone(self, e164: str) -> list[Customer]:
        """Customers sharing this E.164 number (households share phones)."""
        ...

    def by_external_id(self, source: str, external_id: str) -> Customer | None: ...

    def restore(self, item: Customer) -> Customer:
        """Put back a removed customer exactly as it was, version included (undoing a merge);
        IntegrityError if the id or one of its e-mails is taken."""
        ...

    def lock(self, id: str, *, shared: bool = False) -> Customer:
        """`get`, and hold the customer until commit: other transactions' writes to it and
        its removal wait (a merge reads both records this way). `shared`: only its removal
        waits, as a foreign key would hold it (adding a row the customer owns)."""
        ...


class CustomerRows(Protocol):
    """Rows a customer owns, moved or deleted by owner (merge, unmerge, erasure)."""

    def reassign(self, customer_id: str, to: str, ids: Iterable[str] | None = None) -> list[str]:
        """Give the rows of `customer_id` (all, or only those in `ids`) to customer `to`;
        returns the ids moved, sorted. A versioned row gets a new version. The rows are
        held until commit (SQL: `Dialect.row_lock`): a write to one in flight is waited
        for and carried along, a later one meets the new version."""
        ...

    def purge(self, customer_id: str) -> int:
        """Delete every row of the customer; returns how many."""
        ...


@attrs.frozen
class EncodedPurchases:
    """New purchases as columns, checked and encoded by the CSV import's columnar path:
    position i of every column is one purchase, and `docs[i]` is exactly
    `serialization.dumps` of it. Plain values (microseconds, integer units) instead of a
    model object per purchase, so a storage binds them as they are where its columns
    hold the same (SQLite); see `Dialect.instants_of` and `Dialect.money_of`."""

    ids: Sequence[str]
    customer_ids: Sequence[str]
    ordered_at: Sequence[int]
    """Microseconds since the Unix epoch (UTC)."""
    channels: Sequence[str | None]
    service_points: Sequence[str | None]
    currencies: Sequence[str]
    amounts: Sequence[int]
    """Each purchase's total in 1/10,000ths of its currency (`values.MONEY_SCALE`)."""
    scales: Sequence[int]
    """The decimal places of each total as the model's `Decimal` writes it (0 to 4)."""
    docs: Sequence[str]
    days: Sequence[tuple[str, str, int, int, int, int]]
    """The same purchases summed per customer, currency and day, what `purchase_totals`
    folds in: (customer_id, currency, epoch day, total in 1/10,000ths, its decimal places,
    the latest `ordered_at` in microseconds)."""


@attrs.frozen
class EncodedCustomers:
    """New customers as rows, checked and encoded by the CSV import's columnar path
    (`crmcore.io.new_customers`), without a `Customer` object each: position i of `ids`,
    `columns`, `created_at`, `updated_at` and `docs` is one customer at version 1, and
    `docs[i]` is exactly `serialization.dumps` of it."""

    ids: Sequence[str]
    columns: Sequence[tuple[Any, ...]]
    """Each customer's kind, name, tier, lifecycle, country, birth date (ISO text),
    language and service point, as the customers table holds them."""
    created_at: Sequence[datetime]
    updated_at: Sequence[datetime]
    docs: Sequence[str]
    emails: Sequence[tuple[str, str]]
    """(lower-cased e-mail, customer id): the lookup rows."""
    phones: Sequence[tuple[str, str]]
    external_ids: Sequence[tuple[str, str, str]]
    """(source, external id, customer id)."""


class EncodedRows(Protocol):
    """An optional capability of a SQL storage's purchases repository: store new purchases
    without model objects (`EncodedPurchases`, from the CSV import's columnar path), with
    `purchase_totals` kept in step as `add_many` keeps it. A storage without it gets the
    records through `add_many`."""

    def add_encoded(self, purchases: EncodedPurchases) -> int: ...


class EncodedCustomerRows(Protocol):
    """An optional capability of a SQL storage's customers repository: store new customers
    given as rows (`EncodedCustomers`, from the CSV import's columnar path), their lookup
    rows with them, as `add_many` stores `Customer` objects."""

    def add_encoded(self, customers: EncodedCustomers) -> int: ...


class CustomerLog(CustomerRows, Protocol[T]):
    """Append-only records that belong to a customer (interactions, purchases)."""

    def add(self, item: T) -> T: ...

    def add_many(self, items: Sequence[T]) -> int: ...

    def get(self, id: str) -> T: ...

    def for_customer(
        self, customer_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> list[T]:
        """The customer's records, newest first."""
        ...

    def list(self, *, after: str | None = None, limit: int | None = None) -> list[T]:
        """Every customer's records in id order, after the given id (for paging whole tables)."""
        ...

    def count(self) -> int: ...


class Timeline(CustomerLog[Interaction], Protocol):
    def by_reference(self, customer_id: str, reference: str) -> list[Interaction]:
        """The customer's interactions carrying this channel id (Message-ID, Call-ID), newest first."""
        ...


class CustomerOwned(Repository[T], CustomerRows, Protocol):
    def for_customer(self, customer_id: str) -> list[T]: ...


Due = tuple[datetime, str]
"""(when, id) of a record something is due on; pages of them are read in this order."""


class Batched(Repository[T], Protocol):
    """A repository a sweep works in pages: a page read in one query, written in one batch."""

    def find_many(self, ids: Sequence[str]) -> list[T]:
        """The records with these ids (those that exist), in no set order."""
        ...

    def update_many(self, items: Sequence[T]) -> list[T]:
        """`update` for records with distinct ids, in one batch: all written, or
        ConflictError when one was stale (and the transaction must be undone)."""
        ...


class CaseRepository(CustomerOwned[Case], Batched[Case], Protocol):
    def due(self, now: datetime, *, after: Due | None = None, limit: int = 500) -> list[Due]:
        """Cases with an escalation step due by `now` (`Case.next_check`), as (next_check, id)
        in that order, after `after`: a sweep pages through them without loading the table."""
        ...

    def open_load(self, agents: Sequence[str] | None = None) -> dict[str, int]:
        """How many open cases each agent owns (agents with none are absent); only those of
        `agents` when given (an assignment counts its candidates' cases, not the table's)."""
        ...


class TaskRepository(Batched[Task], Protocol):
    def open_for(self, owner: str, *, limit: int | None = None) -> list[Task]:
        """The owner's open tasks, soonest due first (undated last), then by id."""
        ...

    def overdue(
        self, now: datetime, *, owner: str | None = None, limit: int | None = None
    ) -> list[Task]:
        """Open tasks due before `now` (of one owner, or everyone's), oldest due first."""
        ...

    def reminders_due(self, now: datetime, *, after: Due | None = None, limit: int = 500) -> list[Due]:
        """Open tasks whose reminder (`Task.reminder_due`) has come, as (reminder_due, id)
        in that order, after `after`."""
        ...


class AccountRepository(Repository[Account], Protocol):
    def of_customer(self, customer_id: str) -> list[Account]:
        """The accounts the customer is a member of, by id."""
        ...

    def children(self, parent_id: str) -> list[Account]:
        """The accounts directly under this one, by id."""
        ...


class AutomationLog(Protocol):
    """One line per automation rule run for one event; a rule runs at most once per event."""

    def record(self, run: AutomationRun) -> bool:
        """Write the run; False (and nothing written) if the rule already ran for that event."""
        ...

    def for_rule(self, rule: str, *, limit: int | None = None) -> list[AutomationRun]:
        """The rule's runs, oldest first (runs at the same instant in no set order)."""
        ...


class Configurations(Protocol):
    """Stored configuration (SLA policies, automation rules, mail templates): every version
    of each (kind, name) kept, the newest in force."""

    def add(self, entry: ConfigVersion) -> None:
        """Write a new version; ConflictError (nothing written) if that version of (kind,
        name) exists already: another writer saved first."""
        ...

    def current(self, kind: str, name: str) -> ConfigVersion | None:
        """The newest version (a retired one too: its doc is None), or None if never saved."""
        ...

    def in_force(self, kind: str) -> list[ConfigVersion]:
        """The newest version of each name of this kind, retired ones left out, by name."""
        ...

    def history(self, kind: str, name: str) -> list[ConfigVersion]:
        """Every version of one name, oldest first."""
        ...


class Turns(Protocol):
    """Round-robin turns, one counter per pool of agents, kept in the base so that every
    process assigning from it takes the same turns."""

    def take(self, pool: str) -> int:
        """The pool's next turn (0 the first time, then 1, 2...), counted in this transaction;
        the pool's row stays locked until it ends, so two assignments never take one turn."""
        ...

    def peek(self, pool: str) -> int:
        """The turn `take` would give now; counts nothing."""
        ...


class StaffGeneration(Protocol):
    """A counter of changes to the staff (agents and teams), raised in the same transaction
    as the change itself: an index of the staff built when it read N is still right while it
    reads N, in any process, so assignment reads one number instead of every agent."""

    def current(self) -> int | None:
        """The generation this transaction sees; None when this transaction changed the staff
        itself (that number is not committed and may be undone, so nothing may be kept
        under it)."""
        ...


class CampaignMembers(Protocol):
    def put(self, member: CampaignMember) -> None:
        """Add or replace the membership of one customer in one campaign."""
        ...

    def of(self, campaign_id: str) -> list[CampaignMember]: ...

    def put_many(self, members: Iterable[CampaignMember]) -> int:
        """`put` for a stream of members (an audience frozen at launch); returns how many."""
        ...

    def find(self, campaign_id: str, customer_id: str) -> CampaignMember | None: ...

    def page(
        self, campaign_id: str, *, after: str | None = None, limit: int = 1000,
        status: MemberStatus | None = None,
    ) -> list[CampaignMember]:
        """Members in customer-id order after `after` (optionally of one status), for streaming."""
        ...

    def counts(self, campaign_id: str) -> dict[tuple[str, str], int]:
        """How many members by (group, status)."""
        ...

    def for_customer(self, customer_id: str, *, lock: bool = False) -> list[CampaignMember]:
        """The customer's memberships, by campaign id. `lock`: hold them until commit
        (SQL: `Dialect.row_lock`), as `CustomerRows.reassign` holds the rows it moves: a
        write to one in flight is waited for and read as it left the row (merge, unmerge)."""
        ...

    def remove(self, campaign_id: str, customer_id: str) -> None:
        """End one membership (nothing happens if there is none)."""
        ...


class Scores(Protocol):
    """Dated score snapshots; reading "as of" an instant sees only what was known then."""

    def put(self, scores: Iterable[Score]) -> int:
        """Store (or replace) snapshots; returns how many."""
        ...

    def latest(self, customer_id: str, scorer: str, as_of: datetime | None = None) -> Score | None:
        """The newest snapshot of this scorer taken at or before `as_of`."""
        ...

    def for_customer(self, customer_id: str, as_of: datetime | None = None) -> list[Score]:
        """The newest snapshot of every scorer for this customer, by scorer name."""
        ...

    def of(self, scorer: str, as_of: datetime) -> list[Score]:
        """One scorer's snapshot taken exactly at `as_of`, by customer id."""
        ...

    def all_of(self, customer_id: str, *, lock: bool = False) -> list[Score]:
        """Every snapshot of the customer, by scorer then instant. `lock`: hold them until
        commit, as `CampaignMembers.for_customer` does."""
        ...

    def purge(self, customer_id: str, keys: Iterable[tuple[str, datetime]] | None = None) -> int:
        """Delete the customer's snapshots (all, or those (scorer, as_of) in `keys`); how many."""
        ...


class SegmentMembers(Protocol):
    """Current membership of each saved segment and the history of its runs."""

    def current(self, segment_id: str) -> set[str]: ...

    def apply(self, run: SegmentRun, entered: Iterable[str], left: Iterable[str]) -> None:
        """Record a run and move the membership by its difference."""
        ...

    def runs(self, segment_id: str) -> list[SegmentRun]:
        """Every run of the segment, oldest first."""
        ...

    def purge(self, customer_id: str) -> int:
        """Take the customer out of every segment's membership; returns how many."""
        ...


class Rates(Protocol):
    """Exchange rates the company loaded, one per (base, quote, day)."""

    def put(self, rates: Iterable[Rate]) -> int:
        """Store (or replace) rates; returns how many."""
        ...

    def all(self) -> list[Rate]:
        """Every stored rate, by base, quote and day."""
        ...


class Outbox(Protocol):
    """Events written with the data; drained after commit, at least once."""

    def append(self, event: Event) -> None: ...

    def append_many(self, events: Sequence[Event]) -> None:
        """Append events in this order (one batch: a sweep emits thousands)."""
        ...

    def claim(self, now: datetime, lease: timedelta, limit: int) -> list[OutboxEntry]:
        """Pending entries not claimed by another dispatcher, now leased to the caller."""
        ...

    def settle(
        self, seq: int, delivered_to: frozenset[str], done: bool, error: str | None,
        retry_at: datetime | None,
    ) -> None:
        """Record who took the entry; `done` removes it from the pending set, and then
        `retry_at` is the moment it was delivered (what `prune` measures from)."""
        ...

    def pending_count(self) -> int: ...

    def prune(self, before: datetime, limit: int) -> int:
        """Delete up to `limit` entries delivered before `before`, oldest first; how many."""
        ...

    def redact(self, mentions: Callable[[Event], bool]) -> int:
        """Empty every event (pending or done) for which `mentions` is true: its payload
        becomes {} and its aggregate id "erased", and it is settled; returns how many."""
        ...


class History(Protocol):
    """Every change to every aggregate, written in the transaction of the change."""

    def append(self, change: Change) -> None: ...

    def append_many(self, changes: Sequence[Change]) -> None:
        """`append` each, in order, in one batch where the storage can (a sweep writes a
        page of changes at once rather than paying a round trip for each)."""
        ...

    def of(self, kind: str, aggregate_id: str) -> list[Change]:
        """The aggregate's changes, oldest first, `seq` filled in."""
        ...

    def after(self, kind: str, at: datetime) -> list[Change]:
        """Every change of this kind made after `at`, by aggregate id then seq (undone
        newest first, they turn today's records into the records as of `at`)."""
        ...

    def changed_after(self, kind: str, at: datetime) -> bool:
        """Whether any aggregate of this kind changed after `at`."""
        ...

    def purge(self, kind: str, aggregate_id: str) -> int:
        """Delete the aggregate's changes (erasure); returns how many."""
        ...


class MergeJournal(Protocol):
    """Merge journals, kept so a merge can be undone."""

    def add(self, record: MergeRecord) -> None: ...

    def get(self, id: str) -> MergeRecord:
        """The journal, or NotFound."""
        ...

    def update(self, record: MergeRecord) -> None:
        """Replace a journal (to note it was undone)."""
        ...

    def involving(self, customer_id: str) -> list[MergeRecord]:
        """Journals where the customer survived or was merged, oldest first."""
        ...

    def purge(self, customer_id: str) -> int:
        """Delete the journals involving the customer (erasure); returns how many."""
        ...


class Tombstones(Protocol):
    """Marks left by erasures."""

    def add(self, tombstone: Tombstone) -> None: ...

    def list(self) -> list[Tombstone]:
        """Every tombstone, oldest first."""
        ...


class PurchaseTotals(Protocol):
    """Per customer and currency purchase totals, written with every purchase write in the
    same transaction (`crmcore.scoring.totals`): what the purchase summary reads."""

    def all(self, currency: str | None = None) -> list[PurchaseTotal]:
        """Every row (of one currency), in customer and currency order."""
        ...

    def latest(self) -> datetime | None:
        """The latest purchase instant of any row (None: no purchase)."""
        ...


class UnitOfWork(Protocol):
    """One transaction's view of every repository (read-only members, so any implementation fits)."""

    @property
    def customers(self) -> CustomerRepository: ...
    @property
    def interactions(self) -> Timeline: ...
    @property
    def purchases(self) -> CustomerLog[Purchase]: ...
    @property
    def cases(self) -> CaseRepository: ...
    @property
    def opportunities(self) -> CustomerOwned[Opportunity]: ...
    @property
    def campaigns(self) -> Repository[Campaign]: ...
    @property
    def campaign_members(self) -> CampaignMembers: ...
    @property
    def service_points(self) -> Repository[ServicePoint]: ...
    @property
    def agents(self) -> Repository[Agent]: ...
    @property
    def teams(self) -> Repository[Team]: ...
    @property
    def segments(self) -> Repository[Segment]: ...
    @property
    def segment_members(self) -> SegmentMembers: ...
    @property
    def scores(self) -> Scores: ...
    @property
    def outbox(self) -> Outbox: ...
    # operational: tasks, accounts, the automation log
    @property
    def tasks(self) -> TaskRepository: ...
    @property
    def accounts(self) -> AccountRepository: ...
    @property
    def automation_runs(self) -> AutomationLog: ...
    @property
    def configurations(self) -> Configurations: ...
    @property
    def turns(self) -> Turns: ...
    @property
    def staff_generation(self) -> StaffGeneration: ...
    # sales: pipelines, leads, the catalogue, quotes and exchange rates
    @property
    def pipelines(self) -> Repository[Pipeline]: ...
    @property
    def leads(self) -> Repository[Lead]: ...
    @property
    def products(self) -> Repository[Product]: ...
    @property
    def price_books(self) -> Repository[PriceBook]: ...
    @property
    def quotes(self) -> CustomerOwned[Quote]: ...
    @property
    def rates(self) -> Rates: ...
    @property
    def history(self) -> History: ...
    @property
    def merges(self) -> MergeJournal: ...
    @property
    def erasures(self) -> Tombstones: ...
    @property
    def purchase_totals(self) -> PurchaseTotals: ...


class SqlUnitOfWork(UnitOfWork, Protocol):
    """A unit of work that can run SQL the core compiled for its dialect."""

    @property
    def dialect(self) -> Any:
        """The `crmcore.sql.Dialect` the core compiles for (or, as before, the name of a
        built-in one: 'sqlite', 'postgresql')."""
        ...

    def select(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...


def sql_dialect(uow: UnitOfWork) -> str | None:
    """The name of the SQL dialect a unit of work speaks, or None when queries must run in
    Python (`crmcore.sql.dialect_of` gives the dialect object)."""
    dialect = getattr(uow, "dialect", None)
    name = getattr(dialect, "name", dialect)
    return name if isinstance(name, str) else None


class Storage(Protocol):
    """A storage backend opened from a URL."""

    url: str

    def transaction(self, *, readonly: bool = False) -> AbstractContextManager[UnitOfWork]:
        """Commit on normal exit, roll back on error; driver errors become StorageError.

        One transaction at a time per context (thread or asyncio task): a second one
        opened in the same context raises StorageError instead of deadlocking.
        `readonly`: the caller only reads; take no write lock (a snapshot where the
        backend has one) so readers never wait for writers or block them.
        """
        ...

    def bulk_import(self, items: Iterable[Customer | Purchase | Interaction]) -> int:
        """Stream many new records in; memory stays bounded; all or nothing."""
        ...

    def close(self) -> None: ...


class StorageFactory(Protocol):
    def __call__(self, url: str) -> Storage: ...

