"""Accounts: an organisation with its contacts, or a household of people.

Organisations form a hierarchy through `parent_id` (a group, its subsidiaries, their
sites); the storage keeps a member index so a customer's accounts are found at once and
purchases, cases and interactions roll up in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.model.customer import _attributes
from crmcore.model.staff import Assignment


class AccountKind(v.Choice):
    __field__ = "kind"

    ORGANISATION = "organisation"
    HOUSEHOLD = "household"


@attrs.frozen
class AccountMember:
    """A customer in an account, with their role there ('buyer', 'billing', 'head', ...)."""

    customer_id: str = attrs.field(validator=v.is_text(64))
    role: str = attrs.field(default="member", validator=v.check(v.name))
    primary: bool = attrs.field(default=False, validator=v.instance_of(bool))


def _members(instance: Account) -> None:
    seen: set[str] = set()
    for index, member in enumerate(instance.members):
        if not isinstance(member, AccountMember):
            raise ValidationError(f"members[{index}]", member, "must be an AccountMember")
        if member.customer_id in seen:
            raise ValidationError(f"members[{index}]", member.customer_id, "appears twice")
        seen.add(member.customer_id)
    if sum(m.primary for m in instance.members) > 1:
        raise ValidationError("members", instance.members, "at most one member is the primary contact")


@attrs.frozen
class Account:
    id: str = attrs.field(validator=v.is_text(64))
    name: str = attrs.field(validator=v.is_text(200))
    kind: AccountKind = attrs.field(default=AccountKind.ORGANISATION, converter=AccountKind)
    parent_id: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    members: tuple[AccountMember, ...] = attrs.field(default=(), converter=v.as_tuple)
    tier: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    owner: str | None = attrs.field(default=None, validator=v.optional(v.check(v.name)))
    assignment: Assignment | None = attrs.field(default=None)
    service_point: str | None = attrs.field(default=None, validator=v.optional(v.is_text(64)))
    version: int = attrs.field(default=0, validator=v.integer(0, 2**62))
    attributes: dict[str, v.AttributeValue] = attrs.field(factory=dict, validator=_attributes)
    """Company-defined fields, as on customers (segment rules read `account.attributes.NAME`)."""

    def __attrs_post_init__(self) -> None:
        _members(self)
        if self.parent_id == self.id:
            raise ValidationError("parent_id", self.parent_id, "an account cannot be its own parent")

    def with_member(self, member: AccountMember) -> Account:
        """The account with this member added, or their role replaced."""
        others = tuple(m for m in self.members if m.customer_id != member.customer_id)
        if member.primary:
            others = tuple(attrs.evolve(m, primary=False) for m in others)
        return attrs.evolve(self, members=(*others, member))

    def without_member(self, customer_id: str) -> Account:
        return attrs.evolve(self, members=tuple(m for m in self.members if m.customer_id != customer_id))


MAX_DEPTH = 50
"""Deepest hierarchy walked: a guard against a cycle slipping in through storage (the
segment engine's SQL walks no deeper either)."""


def subtree(root: Account, children: Callable[[str], Iterable[Account]]) -> list[Account]:
    """The account and every account below it (`children` gives those directly under one),
    breadth first: what a parent organisation's roll-ups add up."""
    found, level, seen = [root], [root], {root.id}
    for _ in range(MAX_DEPTH):
        level = [c for parent in level for c in children(parent.id) if c.id not in seen]
        if not level:
            break
        seen.update(c.id for c in level)
        found.extend(level)
    return found
