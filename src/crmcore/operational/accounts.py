"""Accounts: organisations with their contacts, their hierarchy, and households.

`rollup` adds up what the account's members did (purchases per currency, cases,
interactions), over the account and, by default, every account below it. On a SQL
storage it is one pass in the database over the member index; on memory it walks
the members' records; both give the same figures (the tests hold them to it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.lifecycle import history
from crmcore.model import Account, AccountMember, CaseStatus
from crmcore.model.account import MAX_DEPTH, subtree
from crmcore.sql.dialect import Dialect, dialect_of

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.ports import UnitOfWork

_OPEN = tuple(str(s) for s in CaseStatus if s.is_open)


@attrs.frozen
class Rollup:
    """What an account's members did, per currency for money (never two currencies added)."""

    account_id: str
    accounts: int
    members: int
    purchases: int
    spend: dict[str, Decimal]
    cases: int
    open_cases: int
    interactions: int
    last_interaction: datetime | None


class Accounts:
    """`crm.operational.accounts`."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    def add(self, account: Account) -> Account:
        """Store a new account; its parent and members must exist."""
        with self.crm.transaction() as uow:
            self._check(uow, account)
            stored = uow.accounts.add(account)
            history.record(uow, "account", None, stored, self.crm.clock(), uow.accounts)
            self.crm.emit("account.added", stored.id, kind=str(stored.kind), parent_id=stored.parent_id)
            return stored

    def get(self, account_id: str) -> Account:
        with self.crm.reading() as uow:
            return uow.accounts.get(account_id)

    def update(self, account: Account) -> Account:
        with self.crm.transaction() as uow:
            self._check(uow, account)
            before = uow.accounts.data(account.id)
            stored = uow.accounts.update(account)
            history.record(uow, "account", before, stored, self.crm.clock(), uow.accounts)
            self.crm.emit("account.updated", stored.id, version=stored.version)
            return stored

    def add_member(self, account_id: str, customer_id: str, role: str = "member", *,
                   primary: bool = False) -> Account:
        """Put a customer in the account with a role (or change their role)."""
        with self.crm.transaction():
            account = self.get(account_id)
            return self.update(account.with_member(AccountMember(customer_id, role, primary)))

    def remove_member(self, account_id: str, customer_id: str) -> Account:
        with self.crm.transaction():
            return self.update(self.get(account_id).without_member(customer_id))

    def move(self, account_id: str, parent_id: str | None) -> Account:
        """Hang the account under another (None: make it a top-level account)."""
        with self.crm.transaction():
            return self.update(attrs.evolve(self.get(account_id), parent_id=parent_id))

    def of_customer(self, customer_id: str) -> list[Account]:
        with self.crm.reading() as uow:
            return uow.accounts.of_customer(customer_id)

    def children(self, account_id: str) -> list[Account]:
        with self.crm.reading() as uow:
            return uow.accounts.children(account_id)

    def ancestors(self, account_id: str) -> list[Account]:
        """The account's parent, grandparent... up to the top."""
        with self.crm.reading() as uow:
            return _ancestors(uow, uow.accounts.get(account_id).parent_id)

    def tree(self, account_id: str) -> list[str]:
        """The ids of the account and every account below it, breadth first."""
        with self.crm.reading() as uow:
            return _tree(uow, account_id)

    def rollup(self, account_id: str, *, since: datetime | None = None,
               descendants: bool = True) -> Rollup:
        """Purchases, cases and interactions of the members (since an instant, if given)."""
        start = v.utc(since, "since") if since is not None else None
        with self.crm.reading() as uow:
            ids = _tree(uow, account_id) if descendants else [uow.accounts.get(account_id).id]
            dialect = dialect_of(uow)
            if dialect is not None:
                return _sql_rollup(uow, dialect, account_id, ids, start)
            return _python_rollup(uow, account_id, ids, start)

    def check(self, uow: UnitOfWork, account: Account) -> None:
        """ValidationError unless the account's parent, members and owner exist and its parent
        makes no loop: what `add` and `update` check, for writers below the facade (imports)."""
        self._check(uow, account)

    def _check(self, uow: UnitOfWork, account: Account) -> None:
        if not isinstance(account, Account):
            raise ValidationError("account", account, "must be an Account")
        for member in account.members:
            if uow.customers.find(member.customer_id) is None:
                raise ValidationError("members", member.customer_id, "no such customer")
        if account.owner is not None and uow.agents.find(account.owner) is None:
            raise ValidationError("owner", account.owner, "no such agent")
        if account.parent_id is None:
            return
        if uow.accounts.find(account.parent_id) is None:
            raise ValidationError("parent_id", account.parent_id, "no such account")
        if account.id in {a.id for a in _ancestors(uow, account.parent_id)} | {account.parent_id}:
            raise ValidationError("parent_id", account.parent_id, "would make the hierarchy a loop")


def _ancestors(uow: UnitOfWork, parent_id: str | None) -> list[Account]:
    found: list[Account] = []
    while parent_id is not None and len(found) <= MAX_DEPTH:
        parent = uow.accounts.get(parent_id)
        found.append(parent)
        parent_id = parent.parent_id
    return found


def _tree(uow: UnitOfWork, account_id: str) -> list[str]:
    return [a.id for a in subtree(uow.accounts.get(account_id), uow.accounts.children)]


def _member_ids(uow: UnitOfWork, account_ids: Iterable[str]) -> list[str]:
    members = {m.customer_id for a in account_ids for m in uow.accounts.get(a).members}
    return sorted(members)


def _python_rollup(uow: UnitOfWork, account_id: str, ids: list[str], since: datetime | None) -> Rollup:
    customers = _member_ids(uow, ids)
    spend: dict[str, Decimal] = {}
    purchases = cases = open_cases = interactions = 0
    last: datetime | None = None
    for customer_id in customers:
        for purchase in uow.purchases.for_customer(customer_id, since=since):
            spend[purchase.currency] = spend.get(purchase.currency, Decimal(0)) + purchase.amount
            purchases += 1
        for case in uow.cases.for_customer(customer_id):
            if since is None or case.opened_at >= since:
                cases += 1
                open_cases += case.status.is_open
        for contact in uow.interactions.for_customer(customer_id, since=since, limit=None):
            interactions += 1
            last = contact.occurred_at if last is None else max(last, contact.occurred_at)
    return Rollup(account_id, len(ids), len(customers), purchases, spend, cases, open_cases,
                  interactions, last)


def _sql_rollup(uow: Any, d: Dialect, account_id: str, ids: list[str], since: datetime | None) -> Rollup:
    """Four aggregate queries over the member index (standard SQL: any dialect spells it);
    every value a bound parameter."""
    p = d.placeholder
    marks = ", ".join(p for _ in ids)
    members = f"SELECT DISTINCT customer_id FROM account_members WHERE account_id IN ({marks})"  # noqa: S608

    def window(column: str) -> tuple[str, tuple[Any, ...]]:
        return ("", ()) if since is None else (f" AND {column} >= {p}", (d.instant(since),))

    (count,), = uow.select(f"SELECT count(*) FROM ({members}) m", tuple(ids))  # noqa: S608
    when, low = window("ordered_at")
    rows = uow.select(
        f"SELECT currency, count(*), sum(total) FROM purchases WHERE customer_id IN ({members})"  # noqa: S608
        f"{when} GROUP BY currency ORDER BY currency",
        (*ids, *low),
    )
    spend = {str(c): d.exact_money(total) for c, _, total in rows}
    purchases = sum(int(n) for _, n, _ in rows)
    states = ", ".join(p for _ in _OPEN)
    when, low = window("opened_at")
    (cases, open_cases), = uow.select(
        f"SELECT count(*), coalesce(sum(CASE WHEN status IN ({states}) THEN 1 ELSE 0 END), 0) "  # noqa: S608
        f"FROM cases WHERE customer_id IN ({members}){when}",
        (*_OPEN, *ids, *low),
    )
    when, low = window("occurred_at")
    (interactions, last), = uow.select(
        f"SELECT count(*), max(occurred_at) FROM interactions WHERE customer_id IN ({members})"  # noqa: S608
        f"{when}",
        (*ids, *low),
    )
    if last is not None:
        last = d.from_instant(last)
    return Rollup(account_id, len(ids), int(count), purchases, spend, int(cases), int(open_cases),
                  int(interactions), last)
