"""Configuration kept in storage (SLA policies, automation rules, mail templates) next to
what code configures: saved after validation, every version kept, the newest in force.

A save checks the configuration against the base (its teams, service points, actions
and templates exist) in the transaction that writes it, so a faulty one raises a typed
`CRMError` and nothing is written; two saves racing for the same version end in one
`ConflictError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from crmcore import serialization
from crmcore import values as v
from crmcore.errors import NotFound, ValidationError
from crmcore.model import ConfigKind, ConfigVersion

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.ports import UnitOfWork

T = TypeVar("T")
Check = Callable[["UnitOfWork", str, T], None]


class Stored(Generic[T]):
    """One kind of stored configuration (`crm.operational.cases.policies`, ...)."""

    def __init__(
        self, crm: CRM, kind: ConfigKind, cls: type[T], *, check: Check[T] | None = None,
        dump: Callable[[T], dict[str, Any]] | None = None, load: Callable[[Any], T] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.crm = crm
        self._on_change = on_change or (lambda: None)
        """Called after each save or retirement commits (a reader may drop what it cached)."""
        self.kind = kind
        self.cls = cls
        self._check = check
        self._dump = dump or serialization.unstructure
        self._load = load or (lambda data: serialization.structure(data, cls))

    def save(self, name: str, item: T | Mapping[str, Any], *, actor: str | None = None) -> ConfigVersion:
        """Store `item` (or its JSON form) as the next version of `name`, after checking it."""
        name = v.name(name, "name")
        value = self.parse(item)
        with self.crm.transaction() as uow:
            if self._check is not None:
                self._check(uow, name, value)
            current = uow.configurations.current(str(self.kind), name)
            entry = ConfigVersion(self.kind, name, 1 if current is None else current.version + 1,
                                  self.crm.clock(), self._dump(value), actor)
            uow.configurations.add(entry)
        self._on_change()
        return entry

    def parse(self, item: T | Mapping[str, Any]) -> T:
        """A configuration from itself or its JSON form; ValidationError when it is neither."""
        if isinstance(item, Mapping):
            return self._load(dict(item))
        if not isinstance(item, self.cls):
            raise ValidationError(str(self.kind), item, f"must be a {self.cls.__name__} or its JSON form")
        return item

    def retire(self, name: str, *, actor: str | None = None) -> ConfigVersion:
        """Take `name` out of force (its history stays); NotFound if it is not in force."""
        with self.crm.transaction() as uow:
            current = uow.configurations.current(str(self.kind), name)
            if current is None or current.retired:
                raise NotFound(str(self.kind), name)
            entry = ConfigVersion(self.kind, name, current.version + 1, self.crm.clock(), None, actor)
            uow.configurations.add(entry)
        self._on_change()
        return entry

    def get(self, name: str) -> T | None:
        """The version in force, or None."""
        with self.crm.reading() as uow:
            return self.find(uow, name)

    def find(self, uow: UnitOfWork, name: str) -> T | None:
        """The version in force, read in the caller's transaction."""
        current = uow.configurations.current(str(self.kind), name)
        return None if current is None or current.doc is None else self._load(current.doc)

    def all(self) -> dict[str, T]:
        with self.crm.reading() as uow:
            return self.in_force(uow)

    def in_force(self, uow: UnitOfWork) -> dict[str, T]:
        """Every configuration of this kind in force, by name."""
        return {e.name: self._load(e.doc) for e in uow.configurations.in_force(str(self.kind))}

    def history(self, name: str) -> list[ConfigVersion]:
        """Every version of `name`, oldest first (a retired version has no document)."""
        with self.crm.reading() as uow:
            return uow.configurations.history(str(self.kind), name)
