"""CRM: the object a user holds. One storage, one transaction at a time per context,
repositories by aggregate, and the three families (operational, collaborative,
analytical) as attributes that later modules fill in.
"""

from __future__ import annotations

import bisect
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import attrs
import pluggy

from crmcore import values as v
from crmcore.errors import CRMError, ValidationError
from crmcore.events import CAUSED_BY, Event
from crmcore.lifecycle import history
from crmcore.model import (
    Agent,
    Campaign,
    Case,
    CaseKind,
    CasePriority,
    Channel,
    ConsentStatus,
    Customer,
    Direction,
    Interaction,
    LifecycleStage,
    Opportunity,
    Purchase,
    ServicePoint,
    Stage,
    Team,
)
from crmcore.ports import Repository, Storage, UnitOfWork

if TYPE_CHECKING:
    from crmcore.analytical import Analytical
    from crmcore.collaborative import Collaborative
    from crmcore.dispatcher import Dispatcher
    from crmcore.lifecycle.facade import Lifecycle
    from crmcore.marketing import Marketing
    from crmcore.model.history import Change
    from crmcore.operational import Operational
    from crmcore.rates import Rates
    from crmcore.sales import Sales
    from crmcore.segments.saved import Segments

log = logging.getLogger(__name__)
T = TypeVar("T")
Clock = Callable[[], datetime]

PAGE = 100
"""Items in a page when the caller does not say."""
MAX_PAGE = 10_000


def page_size(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_PAGE:
        raise ValidationError("limit", limit, f"must be an integer from 1 to {MAX_PAGE}")
    return limit


def _pages(page: Callable[[str | None], list[T]], key: Callable[[T], str]) -> Iterator[T]:
    after: str | None = None
    while True:
        items = page(after)
        yield from items
        if not items:
            return
        after = key(items[-1])


class CRM:
    """A customer base on one storage backend; see `crmcore.open`."""

    def __init__(
        self,
        storage: Storage,
        *,
        plugins: pluggy.PluginManager,
        clock: Clock = v.now,
    ) -> None:
        self.storage = storage
        self.plugins = plugins
        self.clock = clock
        self._current: contextvars.ContextVar[UnitOfWork | None] = contextvars.ContextVar(
            "crmcore_uow", default=None
        )
        self._emitted: contextvars.ContextVar[bool] = contextvars.ContextVar(
            "crmcore_emitted", default=False
        )
        self._batch: contextvars.ContextVar[list[Event] | None] = contextvars.ContextVar(
            "crmcore_event_batch", default=None
        )
        self._dispatching = threading.local()
        self._dispatcher: Dispatcher | None = None
        self.customers = Customers(self)
        self.interactions = Interactions(self)
        self.purchases = Purchases(self)
        self.cases = Cases(self)
        self.opportunities = Opportunities(self)
        self.campaigns = Aggregates[Campaign](self, "campaigns", "campaign")
        self.service_points = Aggregates[ServicePoint](self, "service_points", "service_point")
        self.agents = Aggregates[Agent](self, "agents", "agent")
        self.teams = Aggregates[Team](self, "teams", "team")

    def __repr__(self) -> str:
        from crmcore.urls import redact

        return f"<CRM {redact(self.storage.url)}>"

    @functools.cached_property
    def operational(self) -> Operational:
        """Staff-assisted work: calls, e-mail, cases, sales."""
        from crmcore.operational import Operational

        return Operational(self)

    @functools.cached_property
    def collaborative(self) -> Collaborative:
        """Self-service for the customer, 24/7."""
        from crmcore.collaborative import Collaborative

        return Collaborative(self)

    @functools.cached_property
    def analytical(self) -> Analytical:
        """Segments, scores and figures."""
        from crmcore.analytical import Analytical

        return Analytical(self)

    @functools.cached_property
    def marketing(self) -> Marketing:
        """Campaigns with a holdout, sending, response capture and lift analysis."""
        from crmcore.marketing import Marketing

        return Marketing(self)

    @functools.cached_property
    def sales(self) -> Sales:
        """Pipelines, leads, catalogue and quotes, forecasts and cycle analytics."""
        from crmcore.sales import Sales

        return Sales(self)

    @functools.cached_property
    def rates(self) -> Rates:
        """The company's exchange rates (stored, with provider plugins behind them)."""
        from crmcore.rates import Rates

        return Rates(self)

    @functools.cached_property
    def lifecycle(self) -> Lifecycle:
        """History, duplicates, merge and unmerge, privacy export and erasure, retention."""
        from crmcore.lifecycle.facade import Lifecycle

        return Lifecycle(self)

    def acting_as(self, actor: str) -> contextlib.AbstractContextManager[None]:
        """Sign every change written inside with `actor` (kept in the history)."""
        return history.acting_as(actor)

    @functools.cached_property
    def segments(self) -> Segments:
        """Saved segment rules, their runs, and who entered or left."""
        from crmcore.segments.saved import Segments

        return Segments(self)

    def __enter__(self) -> CRM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.stop()
            self._dispatcher = None
        self.storage.close()

    def start_dispatcher(self, **options: Any) -> Dispatcher:
        """Deliver events on a background thread from now on, off the writers' path
        (options: see `crmcore.dispatcher.Dispatcher`); `close()` stops it."""
        from crmcore.dispatcher import Dispatcher

        if self._dispatcher is None or not self._dispatcher.running:
            self._dispatcher = Dispatcher(self, **options).start()
        return self._dispatcher

    def _after_commit(self) -> None:
        """Events were written: wake the dispatcher, or deliver them now if this process
        has subscribers (with none, they wait for a dispatcher that has: `crmcore worker`)."""
        if self._dispatcher is not None and self._dispatcher.running:
            self._dispatcher.wake()
            return
        if not self.plugins.hook.crmcore_on_event.get_hookimpls():
            return
        try:
            self.dispatch_events()
        except CRMError as error:  # the write has committed; its events wait in the outbox
            log.warning("event dispatch deferred: %s", error)

    @contextmanager
    def transaction(self) -> Iterator[UnitOfWork]:
        """All writes inside commit together or not at all; events go out after commit.

        Nested calls join the outer transaction. Transactions belong to the caller's
        context (contextvars), so threads and asyncio tasks each have their own.
        Delivery is attempted after every transaction that wrote events, unless a
        background dispatcher runs (`start_dispatcher`); `dispatch_events()` retries
        what failed.
        """
        outer = self._current.get()
        if outer is not None:
            yield outer
            return
        emitted = self._emitted.set(False)
        try:
            with self.storage.transaction() as uow:
                token = self._current.set(uow)
                try:
                    yield uow
                finally:
                    self._current.reset(token)
            wrote_events = self._emitted.get()
        finally:
            self._emitted.reset(emitted)
        if wrote_events:
            self._after_commit()

    @contextmanager
    def reading(self) -> Iterator[UnitOfWork]:
        """A transaction for reads only: it takes no write lock and must not write.

        Inside an open transaction it joins that one (and sees its writes).
        """
        outer = self._current.get()
        if outer is not None:
            yield outer
            return
        with self.storage.transaction(readonly=True) as uow:
            token = self._current.set(uow)
            try:
                yield uow
            finally:
                self._current.reset(token)

    def emit(self, topic: str, aggregate_id: str, **payload: Any) -> None:
        """Write an event into the outbox of the current transaction."""
        uow = self._current.get()
        if uow is None:
            raise RuntimeError("emit() needs an open transaction")
        if CAUSED_BY.get():  # operational: automation's loop detection
            payload.setdefault("caused_by", list(CAUSED_BY.get()))
        event = Event(topic, aggregate_id, payload, self.clock())
        batch = self._batch.get()
        if batch is None:
            uow.outbox.append(event)
        else:
            batch.append(event)
        self._emitted.set(True)

    @contextmanager
    def batched_events(self) -> Iterator[None]:
        """Inside a transaction: the events emitted in the block go into the outbox together
        as it ends, in order (one batch where a sweep emits thousands); an exception drops
        them with the transaction it undoes."""
        uow = self._current.get()
        if uow is None:
            raise RuntimeError("batched_events() needs an open transaction")
        if self._batch.get() is not None:  # already batching
            yield
            return
        batch: list[Event] = []
        token = self._batch.set(batch)
        try:
            yield
        finally:
            self._batch.reset(token)
        if batch:
            uow.outbox.append_many(batch)

    def dispatch_events(self, limit: int = 500) -> int:
        """Deliver pending outbox events to subscribers; returns how many were settled."""
        if getattr(self._dispatching, "active", False):
            return 0
        from crmcore.outbox import dispatch

        self._dispatching.active = True
        try:
            return dispatch(self, limit=limit)
        finally:
            self._dispatching.active = False

    def bulk_import(self, items: Iterable[Customer | Purchase | Interaction]) -> int:
        """Stream many new records into storage in one all-or-nothing import.

        Company validation hooks run on every customer; no events are written
        (an import is not a business event per record). A customer built by `Customer.new`
        without a time is stamped with the CRM's clock, as `customers.add` does.
        """
        return self.storage.bulk_import(self._validated(items))

    def _validated(
        self, items: Iterable[Customer | Purchase | Interaction]
    ) -> Iterator[Customer | Purchase | Interaction]:
        check = self.plugins.hook.crmcore_validate_customer
        now = self.clock()
        for item in items:
            if isinstance(item, Customer):
                item = item.times_from(now)  # one built by `Customer.new`: the CRM's clock
            if type(item) is Customer:
                check(customer=item)
            yield item


class Aggregates(Generic[T]):
    """A versioned repository seen through the CRM: each call joins or opens a transaction."""

    def __init__(self, crm: CRM, attribute: str, topic: str) -> None:
        self.crm = crm
        self.attribute = attribute
        self.topic = topic

    def _repo(self, uow: UnitOfWork) -> Repository[T]:
        return getattr(uow, self.attribute)  # type: ignore[no-any-return]

    def get(self, id: str) -> T:
        with self.crm.reading() as uow:
            return self._repo(uow).get(id)

    def find(self, id: str) -> T | None:
        with self.crm.reading() as uow:
            return self._repo(uow).find(id)

    def list(self, *, after: str | None = None, limit: int = PAGE) -> list[T]:
        """One page in id order: pass the last id seen as `after` for the next one."""
        with self.crm.reading() as uow:
            return self._repo(uow).list(after=after, limit=page_size(limit))

    def iterate(self, *, batch: int = 1_000) -> Iterator[T]:
        """Every item in id order, a page per read transaction: memory stays flat
        however large the table (items written meanwhile may or may not be seen)."""
        yield from _pages(lambda after: self.list(after=after, limit=batch), _id)

    def count(self) -> int:
        with self.crm.reading() as uow:
            return self._repo(uow).count()

    def add(self, item: T) -> T:
        return self._add(item, None)

    def _add(self, item: T, at: datetime | None) -> T:
        """`add`, its change dated `at` (default: now)."""
        with self.crm.transaction() as uow:
            repo = self._repo(uow)
            stored = repo.add(self._checked(item))
            history.record(uow, self.topic, None, stored, at or self.crm.clock(), repo)
            self.crm.emit(f"{self.topic}.added", _id(stored))
            return stored

    def update(self, item: T) -> T:
        with self.crm.transaction() as uow:
            repo = self._repo(uow)
            reports = hasattr(repo, "replaced")  # it hands over what it replaced: no read first
            before = None if reports else repo.data(_id(item))
            stored = repo.update(self._checked(item))
            if reports:
                before = repo.replaced  # type: ignore[attr-defined]
            history.record(uow, self.topic, before, stored, self.crm.clock(), repo)
            self.crm.emit(f"{self.topic}.updated", _id(stored), version=_version(stored))
            return stored

    def change(self, id: str, **fields: Any) -> T:
        """Read, evolve and write back in one transaction."""
        return self.edit(id, lambda item: _evolved(item, fields))

    def edit(self, id: str, edit: Callable[[T], T]) -> T:
        """Read, apply `edit` (a function of the stored item), write back in one transaction.
        Customers are read under a row lock, so concurrent edits of one customer take turns
        (a counter incremented by many requests loses nothing and retries nothing); other
        records keep the optimistic check: a concurrent edit is a `ConflictError`."""
        if not callable(edit):
            raise ValidationError("edit", edit, "must be a function of the stored record")
        with self.crm.transaction() as uow:
            current = self._locked(uow, v.text(id, "id"))
            edited = edit(current)
            if type(edited) is not type(current) or _id(edited) != _id(current):
                raise ValidationError("edit", edited, f"must return {self.topic} {_id(current)!r}, edited")
            return self.update(edited)

    def _locked(self, uow: UnitOfWork, id: str) -> T:
        return self._repo(uow).get(id)

    def remove(self, item: T) -> None:
        with self.crm.transaction() as uow:
            self._repo(uow).remove(item)
            history.record(uow, self.topic, item, None, self.crm.clock())
            self.crm.emit(f"{self.topic}.removed", _id(item))

    def _checked(self, item: T) -> T:
        return item


def _evolved(item: Any, fields: dict[str, Any]) -> Any:
    unknown = sorted(set(fields) - {a.name for a in attrs.fields(type(item))})
    if unknown:
        raise ValidationError(unknown[0], fields[unknown[0]], f"is not a field of {type(item).__name__}")
    return attrs.evolve(item, **fields)


def _id(item: Any) -> str:
    return str(item.id)


def _version(item: Any) -> int:
    return int(item.version)


class Customers(Aggregates[Customer]):
    def __init__(self, crm: CRM) -> None:
        super().__init__(crm, "customers", "customer")

    def _checked(self, item: Customer) -> Customer:
        if not isinstance(item, Customer):
            raise ValidationError("customer", item, "must be a Customer")
        self.crm.plugins.hook.crmcore_validate_customer(customer=item)
        return item

    def add(self, item: Customer) -> Customer:
        """Store a new customer; one built by `Customer.new` without a time is stamped with
        the CRM's clock, not the wall clock."""
        now = self.crm.clock()
        if isinstance(item, Customer):
            item = item.times_from(now)
        # one instant for the stamp and the change: a record created when it was added
        # needs no "not there yet" state in SQL storages (see lifecycle.states)
        return self._add(item, now)

    def update(self, item: Customer) -> Customer:
        return super().update(attrs.evolve(item, updated_at=self.crm.clock()))

    def _locked(self, uow: UnitOfWork, id: str) -> Customer:
        return uow.customers.lock(id)

    def remove(self, item: Customer) -> None:
        """Delete the customer with every row they own (no orphans); history keeps the removal."""
        from crmcore.lifecycle.privacy import drop_owned

        if not isinstance(item, Customer):
            raise ValidationError("customer", item, "must be a Customer")
        with self.crm.transaction() as uow:
            drop_owned(self.crm, uow, item.id)
            super().remove(item)

    def by_email(self, email: str) -> Customer | None:
        with self.crm.reading() as uow:
            return uow.customers.by_email(v.email(email))

    def history(self, id: str) -> list[Change]:
        """Every recorded change to the customer, oldest first."""
        with self.crm.reading() as uow:
            return uow.history.of("customer", id)

    def as_of(self, id: str, instant: datetime) -> Customer | None:
        """The customer as they were at `instant` (None if they did not exist then)."""
        at = v.utc(instant, "instant")
        with self.crm.reading() as uow:
            return history.as_of(uow, "customer", id, uow.customers.find(id), at, Customer)

    def by_phone(self, number: str, region: str | None = None) -> list[Customer]:
        """Customers with this number, written in any format (national ones need `region`)."""
        with self.crm.reading() as uow:
            return uow.customers.by_phone(v.phone(number, "number", region))

    def by_external_id(self, source: str, external_id: str) -> Customer | None:
        with self.crm.reading() as uow:
            return uow.customers.by_external_id(source, external_id)

    def matching(
        self, rule: Any, *, as_of: datetime | None = None, after: str | None = None,
        limit: int = PAGE,
    ) -> list[Customer]:
        """One page (in id order) of the customers for whom a segment rule (text, or AST)
        is true, now or as of an instant (then as they were at that instant, removed ones
        included); `iter_matching` streams them all."""
        size = page_size(limit)
        with self.crm.reading() as uow:
            ids = self.ids_matching(rule, as_of=as_of)
            start = bisect.bisect_right(ids, after) if after is not None else 0
            return self._records(uow, ids[start:start + size], as_of)

    def iter_matching(
        self, rule: Any, *, as_of: datetime | None = None, batch: int = 1_000
    ) -> Iterator[Customer]:
        """Every matching customer, a page per read transaction (memory flat); the rule
        runs once, so the members are those of that moment."""
        at = as_of or self.crm.clock()
        ids = self.ids_matching(rule, as_of=at)
        for start in range(0, len(ids), page_size(batch)):
            with self.crm.reading() as uow:  # closed before the page is handed out
                found = self._records(uow, ids[start:start + batch], as_of)
            yield from found

    def _records(self, uow: UnitOfWork, ids: list[str], as_of: datetime | None) -> list[Customer]:
        found = [uow.customers.find(id) for id in ids]
        if as_of is not None:
            at = v.utc(as_of, "as_of")
            found = [history.as_of(uow, "customer", id, current, at, Customer)
                     for id, current in zip(ids, found, strict=True)]
        return [c for c in found if c is not None]

    def ids_matching(self, rule: Any, *, as_of: datetime | None = None) -> list[str]:
        """Ids of `matching` customers in id order, computed in the database when the
        storage speaks SQL."""
        from crmcore.segments import registry, select_ids

        with self.crm.reading() as uow:
            at = as_of or self.crm.clock()
            return sorted(select_ids(uow, rule, as_of=at, functions=registry(self.crm.plugins)))

    def set_consent(
        self,
        customer_id: str,
        purpose: str,
        channel: Channel,
        status: ConsentStatus,
        *,
        source: str,
    ) -> Customer:
        with self.crm.transaction():
            customer = self.get(customer_id)
            changed = customer.with_consent(
                purpose, Channel(channel), ConsentStatus(status), at=self.crm.clock(), source=source
            )
            stored = self.update(changed)
            self.crm.emit(
                "consent.changed", customer_id, purpose=purpose, channel=str(channel),
                status=str(status), source=source,
            )
            return stored


class Interactions:
    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def log(
        self,
        customer_id: str,
        *,
        channel: Channel | str,
        direction: Direction | str,
        at: datetime | None = None,
        **fields: Any,
    ) -> Interaction:
        """Put one contact on the customer's timeline (the customer must exist)."""
        with self.crm.transaction() as uow:
            uow.customers.lock(customer_id, shared=True)  # it stays until we commit
            item = Interaction(
                id=fields.pop("id", None) or v.new_id(), customer_id=customer_id,
                channel=Channel(channel), direction=Direction(direction),
                occurred_at=at or self.crm.clock(), **fields,
            )
            uow.interactions.add(item)
            self.crm.emit(
                "interaction.logged", customer_id, interaction_id=item.id,
                channel=str(item.channel), family=str(item.family),
            )
            return item

    def timeline(
        self, customer_id: str, *, since: datetime | None = None, limit: int | None = 50
    ) -> list[Interaction]:
        """Every channel and service point together, newest first."""
        with self.crm.reading() as uow:
            return uow.interactions.for_customer(customer_id, since=since, limit=limit)

    def get(self, id: str) -> Interaction:
        with self.crm.reading() as uow:
            return uow.interactions.get(id)

    def by_reference(self, customer_id: str, reference: str) -> list[Interaction]:
        """The customer's contacts carrying a channel's own id (a Message-ID, a SIP Call-ID)."""
        with self.crm.reading() as uow:
            return uow.interactions.by_reference(customer_id, reference)


class Purchases:
    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def record(self, purchase: Purchase) -> Purchase:
        """Store an order; a lead or prospect who buys becomes a customer."""
        with self.crm.transaction() as uow:
            buyer = uow.customers.lock(purchase.customer_id, shared=True)
            uow.purchases.add(purchase)
            if buyer.lifecycle in (LifecycleStage.LEAD, LifecycleStage.PROSPECT):
                self.crm.customers.update(attrs.evolve(buyer, lifecycle=LifecycleStage.CUSTOMER))
            self.crm.emit(
                "purchase.recorded", purchase.customer_id, purchase_id=purchase.id,
                total=str(purchase.total.amount), currency=purchase.currency,
            )
            return purchase

    def for_customer(
        self, customer_id: str, *, since: datetime | None = None, limit: int | None = None
    ) -> list[Purchase]:
        """The customer's orders, newest first."""
        with self.crm.reading() as uow:
            return uow.purchases.for_customer(customer_id, since=since, limit=limit)


class Cases(Aggregates[Case]):
    SLA = {
        CasePriority.URGENT: timedelta(hours=4),
        CasePriority.HIGH: timedelta(hours=24),
        CasePriority.NORMAL: timedelta(days=3),
        CasePriority.LOW: timedelta(days=10),
    }
    """Default service-level deadlines by priority; pass `sla=` to override one case."""

    def __init__(self, crm: CRM) -> None:
        super().__init__(crm, "cases", "case")

    def open(
        self,
        customer_id: str,
        kind: CaseKind | str,
        subject: str,
        *,
        priority: CasePriority | int = CasePriority.NORMAL,
        sla: timedelta | None = None,
        **fields: Any,
    ) -> Case:
        opened = self.crm.clock()
        priority = CasePriority(priority)
        if sla is not None and (not isinstance(sla, timedelta) or sla <= timedelta(0)):
            raise ValidationError("sla", sla, "must be a positive timedelta")  # operational
        with self.crm.transaction() as uow:
            uow.customers.lock(customer_id, shared=True)  # it stays until we commit
            return self.add(Case(
                id=fields.pop("id", None) or v.new_id(), customer_id=customer_id,
                kind=CaseKind(kind), subject=subject, opened_at=opened, priority=priority,
                sla_due=opened + (sla or self.SLA[priority]), **fields,
            ))

    def resolve(self, case_id: str, resolution: str) -> Case:
        with self.crm.transaction():
            return self.update(self.get(case_id).resolve(resolution, self.crm.clock()))

    def for_customer(self, customer_id: str, *, open_only: bool = False) -> list[Case]:
        with self.crm.reading() as uow:
            found = uow.cases.for_customer(customer_id)
        return [c for c in found if c.status.is_open] if open_only else found


class Opportunities(Aggregates[Opportunity]):
    def __init__(self, crm: CRM) -> None:
        super().__init__(crm, "opportunities", "opportunity")

    def open(self, customer_id: str, title: str, **fields: Any) -> Opportunity:
        with self.crm.transaction() as uow:
            uow.customers.lock(customer_id, shared=True)  # it stays until we commit
            return self.add(Opportunity.open(
                fields.pop("id", None) or v.new_id(), customer_id, title, self.crm.clock(), **fields
            ))

    def move(self, opportunity_id: str, stage: Stage | str, by: str | None = None) -> Opportunity:
        """Advance the sales cycle through the opportunity's pipeline (its checks included, see
        `crm.sales.pipelines.move`); the stage change is kept in the opportunity's history."""
        return self.crm.sales.pipelines.move(opportunity_id, stage, by=by)

    def for_customer(self, customer_id: str) -> list[Opportunity]:
        with self.crm.reading() as uow:
            return uow.opportunities.for_customer(customer_id)
