"""Accounts as they were at a rule's instant.

A rule evaluated `as_of` the past reads the customer's account, its fields, its members
and the accounts below it as they were then: today's accounts, with those changed since
(their `account` history, written by `crm.operational.accounts`) rewound. Accounts
written without history (straight through the repository) are taken as they are, as
customers are.

SQL reads today's account tables, so a query is right for every customer whom no change
since the instant can reach; `AccountsThen.reached` names the others, whom the Python
engine tests against the accounts of then.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from itertools import groupby
from typing import Any

from crmcore.lifecycle.history import rewind
from crmcore.model import Account
from crmcore.model.account import MAX_DEPTH
from crmcore.segments import ast as a
from crmcore.segments.schema import walk

KIND = "account"
"""The history kind of accounts."""


def reaches_accounts(rule: Any) -> bool:
    """Whether the rule reads an account or household (a field or a roll-up)."""
    return any((isinstance(node, a.Field) and node.path[0] in a.GROUPS)
               or (isinstance(node, a.Aggregate) and node.of) for node in walk(rule))


def changed_after(uow: Any, at: datetime) -> bool:
    """Whether some account changed after `at` (a storage without accounts: none did)."""
    return getattr(uow, "accounts", None) is not None and bool(uow.history.changed_after(KIND, at))


class AccountsThen:
    """The accounts of one unit of work as of `at`: the look-ups a rule makes, answered
    from today's rows for accounts unchanged since and from the rewound ones otherwise."""

    def __init__(self, uow: Any, at: datetime) -> None:
        self.uow = uow
        self.then: dict[str, Account | None] = {
            account_id: rewind(uow.accounts.data(account_id), list(changes), Account)
            for account_id, changes in groupby(uow.history.after(KIND, at), key=lambda c: c.aggregate_id)
        }
        """Every account changed since `at`, as it was then (None: not there yet)."""
        self._members: dict[str, list[Account]] = {}
        self._children: dict[str, list[Account]] = {}
        for account in self.then.values():
            if account is None:
                continue
            for member in account.members:
                self._members.setdefault(member.customer_id, []).append(account)
            if account.parent_id is not None:
                self._children.setdefault(account.parent_id, []).append(account)

    def of_customer(self, customer_id: str) -> list[Account]:
        return self._merged(self.uow.accounts.of_customer(customer_id), self._members.get(customer_id, ()))

    def children(self, account_id: str) -> list[Account]:
        return self._merged(self.uow.accounts.children(account_id), self._children.get(account_id, ()))

    def find(self, account_id: str) -> Account | None:
        if account_id in self.then:
            return self.then[account_id]
        found: Account | None = self.uow.accounts.find(account_id)
        return found

    def _merged(self, today: Iterable[Account], rewound: Iterable[Account]) -> list[Account]:
        kept = [x for x in today if x.id not in self.then]
        return sorted([*kept, *rewound], key=lambda x: x.id)

    def reached(self) -> set[str]:
        """The customers whose account answers may differ between then and now: members,
        then or now, of a changed account or of any account above one (then or now), since
        an account's roll-ups take in the accounts below it."""
        touched = set(self.then)
        for account_id in self.then:
            for find in (self.find, self.uow.accounts.find):  # the chain of then, of today
                parent = _parent(find(account_id))
                for _ in range(MAX_DEPTH):
                    if parent is None or (parent in touched and parent not in self.then):
                        break
                    touched.add(parent)
                    parent = _parent(find(parent))
        customers: set[str] = set()
        for account_id in touched:
            for account in (self.find(account_id), self.uow.accounts.find(account_id)):
                if account is not None:
                    customers.update(m.customer_id for m in account.members)
        return customers


def _parent(account: Account | None) -> str | None:
    return None if account is None else account.parent_id
