"""Who changed what, when: one `Change` per write, in the transaction of the write.

Diffs hold the converter's plain JSON values (field -> [old, new]). Records are
read "as of" an instant backwards: today's record with every later change undone,
newest first. That needs only the changes after the instant (few, for a recent
one), and it works for records that entered without history (a bulk import):
a record with no later change is taken as it is.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from itertools import groupby
from typing import Any, TypeVar

from crmcore import serialization
from crmcore import values as v
from crmcore.model import Customer
from crmcore.model.history import Change, ChangeKind
from crmcore.ports import UnitOfWork

T = TypeVar("T")

ACTOR: contextvars.ContextVar[str | None] = contextvars.ContextVar("crmcore_actor", default=None)
"""Who is writing in this context (`CRM.acting_as`); None for the system itself."""

UNRECORDED = frozenset({"version"})
"""Fields a diff leaves out: the version is a column of the change itself."""


@contextmanager
def acting_as(actor: str) -> Iterator[None]:
    """Every change written inside is signed by `actor` (e.g. "user:ann", "import:shop")."""
    token = ACTOR.set(v.text(actor, "actor", max_length=200))
    try:
        yield
    finally:
        ACTOR.reset(token)


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, list[Any]]:
    """field -> [old, new] for every field that differs, in name order; an addition (or a
    removal) lists every field."""
    old, new = before or {}, after or {}
    if before is None or after is None:
        names = old.keys() | new.keys()
    else:  # one look-up per field, and only the differing names sorted (this runs per write)
        names = {name for name, value in new.items() if old.get(name) != value}
        names.update(name for name, value in old.items() if value is not None and name not in new)
    return {name: [old.get(name), new.get(name)] for name in sorted(names - UNRECORDED)}


def record(uow: UnitOfWork, kind: str, before: Any, after: Any, at: datetime,
           written: Any = None) -> Change:
    """Write the change from `before` to `after` (None: absent; a mapping: plain data
    already, as `Repository.data` gives it) into the unit's history.

    `written` is the repository that stored `after`: when it kept the plain data it
    encoded (`last_written`), the record is not converted a second time."""
    change = _changed(kind, before, after, at, written)
    uow.history.append(change)
    return change


def record_many(uow: UnitOfWork, kind: str, pairs: Iterable[tuple[Any, Any]], at: datetime,
                written: Any = None) -> list[Change]:
    """`record` for many (before, after) pairs of distinct records, appended in one batch;
    `written` may also keep the data of a batch it stored (`last_written_many`)."""
    changes = [_changed(kind, before, after, at, written) for before, after in pairs]
    if changes:
        uow.history.append_many(changes)
    return changes


def _changed(kind: str, before: Any, after: Any, at: datetime, written: Any) -> Change:
    old = before if before is None or isinstance(before, Mapping) else serialization.unstructure(before)
    new = None if after is None else _plain(after, written)
    op = ChangeKind.ADDED if old is None else ChangeKind.REMOVED if new is None else ChangeKind.UPDATED
    subject: Mapping[str, Any] = new if new is not None else old or {}
    return _change(kind, str(subject["id"]), int(subject["version"]), op,
                   v.utc(at, "at"), diff(old, new), ACTOR.get())


def _change(kind: str, aggregate_id: str, version: int, op: ChangeKind, at: datetime,
            changed: dict[str, list[Any]], actor: str | None) -> Change:
    """A `Change` of values checked already (the stored record's id and version, an
    instant in UTC, the actor `acting_as` took), built as stored records are read
    (`serialization.trusted_converter`): its validators would check them a second
    time on every write."""
    change: Change = object.__new__(Change)
    for name, value in (("kind", kind), ("aggregate_id", aggregate_id), ("version", version),
                        ("op", op), ("at", at), ("diff", changed), ("actor", actor), ("seq", 0)):
        object.__setattr__(change, name, value)
    return change


def _plain(item: Any, written: Any) -> dict[str, Any]:
    """`item` as plain data: the repository's own copy when it is the item's (the last
    record it wrote, or one of the last batch), else converted."""
    mine = (item.id, getattr(item, "version", None))
    batch = getattr(written, "last_written_many", None)
    for kept in (getattr(written, "last_written", None),
                 batch.get(item.id) if isinstance(batch, dict) else None):
        if isinstance(kept, dict) and (kept.get("id"), kept.get("version")) == mine:
            return kept
    data: dict[str, Any] = serialization.unstructure(item)
    return data


def undo(state: dict[str, Any] | None, change: Change) -> dict[str, Any] | None:
    """The record's plain data before `change`, from the data after it."""
    if change.op is ChangeKind.ADDED:
        return None
    if change.op is ChangeKind.REMOVED:
        restored = {name: old for name, (old, _new) in change.diff.items()}
        restored["version"] = change.version
        return restored
    if state is None:  # history without the record: nothing to rebuild from
        return None
    earlier = dict(state)
    for name, (old, _new) in change.diff.items():
        earlier[name] = old
    earlier["version"] = change.version - 1
    return earlier


def rewind(current: T | Mapping[str, Any] | None, later: Iterable[Change], cls: type[T]) -> T | None:
    """The record (an object, or its plain data) as it was before every change in `later`
    (given oldest first)."""
    changes = list(later)
    if not changes and not isinstance(current, Mapping):
        return current
    state: dict[str, Any] | None
    if current is None or isinstance(current, Mapping):
        state = None if current is None else dict(current)
    else:
        state = serialization.unstructure(current)
    for change in reversed(changes):
        state = undo(state, change)
    return None if state is None else serialization.structure(state, cls)


def as_of(uow: UnitOfWork, kind: str, aggregate_id: str, current: T | None, at: datetime,
          cls: type[T]) -> T | None:
    """One record as it was at `at` (None if it did not exist then)."""
    later = [c for c in uow.history.of(kind, aggregate_id) if c.at > at]
    return rewind(current, later, cls)


def changed_since(uow: UnitOfWork, at: datetime) -> dict[str, Customer | None]:
    """The customers changed after `at`, each as they were at `at` (None: not there then).

    Everyone else is today as they were then, so a query over today's rows serves them."""
    return {
        customer_id: rewind(uow.customers.data(customer_id), changes, Customer)
        for customer_id, changes in groupby(uow.history.after("customer", at), key=lambda c: c.aggregate_id)
    }


def customers_as_of(uow: UnitOfWork, at: datetime) -> list[Customer]:
    """Every customer as they were at `at`, in id order (those added later left out,
    those removed since put back)."""
    current = uow.customers.list()
    if not uow.history.changed_after("customer", at):
        return current
    by_id: dict[str, Customer | None] = {c.id: c for c in current}
    for customer_id, changes in groupby(uow.history.after("customer", at), key=lambda c: c.aggregate_id):
        by_id[customer_id] = rewind(by_id.get(customer_id), changes, Customer)
    return [c for _, c in sorted(by_id.items()) if c is not None]
