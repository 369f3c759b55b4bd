"""The Python engine: a checked rule compiled once into closures, then run per customer.

This is the reference meaning of the language. Values are three-valued exactly as
in SQL (True, False, None for unknown): a comparison with an unknown side is
unknown, `and`/`or`/`not` follow Kleene's tables, and a customer belongs to the
segment only when the rule is True. Numbers are compared exactly (int, Decimal,
Fraction) except custom attributes and scores, which are double precision floats
in storage too.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from crmcore.model import Account, CaseStatus, ConsentStatus, Customer
from crmcore.model.account import subtree
from crmcore.segments import ast as a
from crmcore.segments.accounts_then import AccountsThen, changed_after
from crmcore.segments.context import Context
from crmcore.segments.schema import GROUP_KINDS, TIME_OF, Checked, Type, constant_type, natural

Value = Any
Getter = Callable[[Any], Value]
Test = Callable[[Any], bool | None]

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
    ">": operator.gt, ">=": operator.ge,
}
_OPEN = (CaseStatus.OPEN, CaseStatus.IN_PROGRESS)


class Source(Protocol):
    """Where the Python engine reads a customer's records and scores (a unit of work will do)."""

    def records(self, source: str, customer_id: str) -> list[Any]: ...

    def score(self, customer_id: str, scorer: str, as_of: datetime) -> Any: ...

    def accounts(self, customer_id: str) -> list[Account]:
        """Every account the customer is a member of."""
        ...

    def children(self, account_id: str) -> list[Account]:
        """The accounts directly under one (its roll-ups include theirs)."""
        ...


def chosen_account(accounts: Iterable[Account], customer_id: str, group: str) -> Account | None:
    """The one account `group` (`account`, `household`) means for this customer (see
    `schema.GROUP_KINDS`): the one they are the primary contact of, else the smallest id."""
    kind = GROUP_KINDS[group]

    def primary(account: Account) -> bool:
        return any(m.customer_id == customer_id and m.primary for m in account.members)

    return min((x for x in accounts if str(x.kind) == kind), key=lambda x: (not primary(x), x.id),
               default=None)


class Subject:
    """One customer as the closures see it; related records are read once, on first use."""

    __slots__ = ("_accounts", "_records", "customer", "source")

    def __init__(self, customer: Customer, source: Source) -> None:
        self.customer = customer
        self.source = source
        self._records: dict[tuple[str | None, str], list[Any]] = {}
        self._accounts: list[Account] | None = None

    def account(self, group: str) -> Account | None:
        if self._accounts is None:
            self._accounts = self.source.accounts(self.customer.id)
        return chosen_account(self._accounts, self.customer.id, group)

    def records(self, name: str, of: str | None = None) -> list[Any]:
        """The customer's records of one source, or (`of`) those of every member of their
        account and of the accounts below it, each member's once."""
        found = self._records.get((of, name))
        if found is None:
            if of is None:
                found = self.source.records(name, self.customer.id)
            else:
                account = self.account(of)
                tree = () if account is None else subtree(account, self.source.children)
                members = dict.fromkeys(m.customer_id for a in tree for m in a.members)
                found = [r for m in members for r in self.source.records(name, m)]
            self._records[(of, name)] = found
        return found


class UowSource:
    """A `Source` over a unit of work's repositories; given `as_of`, accounts are read as
    they were then (`crmcore.segments.accounts_then`)."""

    def __init__(self, uow: Any, as_of: datetime | None = None) -> None:
        self.uow = uow
        self.as_of = as_of

    @functools.cached_property
    def accounts_then(self) -> AccountsThen | None:
        """The accounts as of `as_of` when some changed since (None: today's are those of
        then); looked up on first use, so a rule that reads no account pays nothing."""
        if self.as_of is None or not changed_after(self.uow, self.as_of):
            return None
        return AccountsThen(self.uow, self.as_of)

    def records(self, source: str, customer_id: str) -> list[Any]:
        found: list[Any] = getattr(self.uow, source).for_customer(customer_id)
        return found

    def score(self, customer_id: str, scorer: str, as_of: datetime) -> Any:
        scores = getattr(self.uow, "scores", None)
        return None if scores is None else scores.latest(customer_id, scorer, as_of)

    def accounts(self, customer_id: str) -> list[Account]:
        accounts = self.accounts_then or getattr(self.uow, "accounts", None)
        found: list[Account] = [] if accounts is None else accounts.of_customer(customer_id)
        return found

    def children(self, account_id: str) -> list[Account]:
        found: list[Account] = (self.accounts_then or self.uow.accounts).children(account_id)
        return found


def kleene(tests: list[Test], decisive: bool) -> Test:
    """Three-valued AND (`decisive=False`) or OR (`decisive=True`): the decisive value wins
    at once; otherwise any unknown leaves the whole unknown."""

    def test(row: Any) -> bool | None:
        unknown = False
        for item in tests:
            result = item(row)
            if result is decisive:
                return decisive
            unknown = unknown or result is None
        return None if unknown else not decisive

    return test


class Compiler:
    """Turns a checked rule into closures for one evaluation context."""

    def __init__(self, checked: Checked, context: Context) -> None:
        self.checked = checked
        self.context = context

    # ---- predicates: row -> True / False / None ----

    def predicate(self, node: a.Predicate, record: str | None = None) -> Test:
        match node:
            case a.And(items):
                return kleene([self.predicate(i, record) for i in items], decisive=False)
            case a.Or(items):
                return kleene([self.predicate(i, record) for i in items], decisive=True)
            case a.Not(item):
                inner = self.predicate(item, record)
                return lambda row: None if (r := inner(row)) is None else not r
            case a.Compare(left, op, right):
                domain = self.checked.domain(node)
                return _compare(self.term(left, domain, record), OPERATORS[op],
                                self.term(right, domain, record))
            case a.In(subject, values):
                domain = self.checked.domain(node)
                get = self.term(subject, domain, record)
                choices = frozenset(self.context.constant(v, domain) for v in values)
                return lambda row: None if (x := get(row)) is None else x in choices
            case a.Between(subject, low, high):
                domain = self.checked.domain(node)
                get = self.term(subject, domain, record)
                return kleene([
                    _compare(get, operator.ge, self.term(low, domain, record)),
                    _compare(get, operator.le, self.term(high, domain, record)),
                ], decisive=False)
            case a.Contains(subject, value):
                return self.contains(node, subject, value, record)
            case a.IsNull(subject):
                get = self.term(subject, None, record)
                return lambda row: get(row) is None
            case a.IsEmpty(subject):
                get = self.term(subject, Type.TAGS, record)
                return lambda row: not get(row)
            case a.Birthday(days):
                days_ahead = self.context.birthdays(days)

                def birthday(subject: Subject) -> bool | None:
                    born = subject.customer.birth_date
                    return None if born is None else born.strftime("%m-%d") in days_ahead

                return birthday
            case a.Truth(subject):
                get = self.term(subject, Type.BOOL, record)
                return lambda row: get(row)
        raise TypeError(f"not a predicate: {node!r}")

    def contains(self, node: a.Contains, subject: a.Term, value: a.Term, record: str | None) -> Test:
        whole = self.checked.domain(node)
        part = self.term(value, Type.TEXT, record)
        if whole is Type.TAGS:
            items = self.term(subject, Type.TAGS, record)
            return lambda row: (p := part(row)) is not None and p in items(row)
        text = self.term(subject, Type.TEXT, record)

        def test(row: Any) -> bool | None:
            haystack, needle = text(row), part(row)
            return None if haystack is None or needle is None else needle in haystack

        return test

    # ---- terms: row -> value or None ----

    def term(self, node: a.Term, domain: Type | None, record: str | None) -> Getter:
        """A getter for `node` as a value of `domain` (None: as it is, for null tests)."""
        if constant_type(node) is not None:
            value = self.context.constant(node, domain or self.checked.type(node))
            return lambda _row: value
        match node:
            case a.Field(path):
                if record is not None:
                    return self.record_field(record, path[0])
                return self.field(path, domain)
            case a.Aggregate():
                return self.aggregate(node)
            case a.Call(name, args):
                function = self.checked.functions[name]
                getters = [_plain(self.term(arg, kind, None))
                           for arg, kind in zip(args, function.params, strict=True)]
                body = function.python
                return lambda row: body(*(g(row) for g in getters))
        raise TypeError(f"not a term: {node!r}")

    def field(self, path: tuple[str, ...], domain: Type | None) -> Getter:
        head = path[0]
        if head in GROUP_KINDS:
            return _account_field(head, path[1:], domain)
        if head == "attributes":
            return _attribute(path[1], domain)
        if head == "consent":
            return self.consent(path[1], path[2])
        if head == "score":
            return self.score(path[1], len(path) == 3)
        if head in ("tags", "emails", "phones"):
            return lambda s: frozenset(getattr(s.customer, head))
        if head in ("kind", "lifecycle"):
            return lambda s: str(getattr(s.customer, head))
        return lambda s: getattr(s.customer, head)

    def consent(self, purpose: str, channel: str) -> Getter:
        as_of = self.context.now

        def granted(subject: Subject) -> bool:
            return any(
                c.purpose == purpose and c.channel == channel and c.status is ConsentStatus.GRANTED
                and c.at <= as_of
                for c in subject.customer.consents
            )

        return granted

    def score(self, scorer: str, label: bool) -> Getter:
        as_of = self.context.now

        def value(subject: Subject) -> Any:
            found = subject.source.score(subject.customer.id, scorer, as_of)
            if found is None:
                return None
            return found.label if label else float(found.value)

        return value

    def record_field(self, source: str, name: str) -> Getter:
        if name == "open":
            as_of = self.context.now
            return lambda c: c.status in _OPEN if c.resolved_at is None else c.resolved_at > as_of
        if name == "total":
            return lambda p: p.total.amount
        if name == "family":
            return lambda i: str(i.family)
        getter = operator.attrgetter(name)
        if name in ("channel", "direction", "kind", "status", "currency"):
            return lambda r: None if (x := getter(r)) is None else str(x)
        if name == "priority":
            return lambda r: int(getter(r))
        return getter

    def aggregate(self, node: a.Aggregate) -> Getter:
        when = operator.attrgetter(TIME_OF[node.source])
        end = self.context.now
        start = self.context.start(node.window)
        keep = None if node.where is None else self.predicate(node.where, node.source)
        name, of = node.source, node.of

        def selected(subject: Subject) -> Iterable[Any]:
            for item in subject.records(name, of):
                moment = when(item)
                if moment > end or (start is not None and moment < start):
                    continue
                if keep is None or keep(item) is True:
                    yield item

        func = node.func
        if func == "count":
            return lambda s: sum(1 for _ in selected(s))
        if func in ("first", "last"):
            pick = min if func == "first" else max
            return lambda s: pick((when(r) for r in selected(s)), default=None)
        get = self.record_field(node.source, node.field or "")

        def values(subject: Subject) -> list[Any]:
            return [x for r in selected(subject) if (x := get(r)) is not None]

        if func == "sum":
            return lambda s: sum(found) if (found := values(s)) else None
        if func == "avg":
            return lambda s: Fraction(sum(found)) / len(found) if (found := values(s)) else None
        pick = min if func == "min" else max
        return lambda s: pick(found) if (found := values(s)) else None


def _plain(get: Getter) -> Getter:
    """Exact fractions reach a rule function as int or Decimal, the types it declared."""

    def value(row: Any) -> Any:
        x = get(row)
        if isinstance(x, Fraction):
            return int(x) if x.denominator == 1 else Decimal(x.numerator) / Decimal(x.denominator)
        return x

    return value


def _compare(left: Getter, op: Callable[[Any, Any], bool], right: Getter) -> Test:
    def test(row: Any) -> bool | None:
        x = left(row)
        if x is None:
            return None
        y = right(row)
        return None if y is None else op(x, y)

    return test


def _account_field(group: str, rest: tuple[str, ...], domain: Type | None) -> Getter:
    """A field of the customer's account (None when they have none)."""
    name = rest[0]
    if name == "attributes":
        return _attribute(rest[1], domain, lambda s: s.account(group))
    if name == "role":
        def role(subject: Subject) -> str | None:
            account = subject.account(group)
            roles = () if account is None else account.members
            return next((m.role for m in roles if m.customer_id == subject.customer.id), None)

        return role
    return lambda s: None if (x := s.account(group)) is None else getattr(x, name)


def _attribute(key: str, domain: Type | None,
               holder: Callable[[Subject], Customer | Account | None] = operator.attrgetter("customer"),
               ) -> Getter:
    """A custom attribute (of the customer, or of `holder`) read in a domain; a value of
    another type there is unknown."""

    def raw(subject: Subject) -> Any:
        found = holder(subject)
        return None if found is None else found.attributes.get(key)

    if domain is None:
        return raw
    read = _READERS[natural(domain)]
    return lambda s: None if (x := raw(s)) is None else read(x)


def _real(value: Any) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    return float(value) if isinstance(value, Decimal) and value.is_finite() else None


_READERS: Mapping[Type, Callable[[Any], Any]] = {
    Type.TEXT: lambda x: x if isinstance(x, str) else None,
    Type.REAL: _real,
    Type.BOOL: lambda x: x if isinstance(x, bool) else None,
    Type.DATE: lambda x: x if isinstance(x, date) and not isinstance(x, datetime) else None,
    Type.INSTANT: lambda x: x.astimezone(UTC) if isinstance(x, datetime) else None,
}


def compile_rule(rule: a.Predicate, checked: Checked, context: Context) -> Callable[[Subject], bool | None]:
    """The rule as one closure: Subject -> True / False / None."""
    return Compiler(checked, context).predicate(rule)


def members(
    rule: a.Predicate, checked: Checked, context: Context, customers: Iterable[Customer], source: Source
) -> list[Customer]:
    """The customers (existing at the evaluation instant) for whom the rule is True."""
    test = compile_rule(rule, checked, context)
    as_of = context.now
    return [c for c in customers if c.created_at <= as_of and test(Subject(c, source)) is True]

