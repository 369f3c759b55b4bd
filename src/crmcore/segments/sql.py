"""The SQL engine: a checked rule compiled to one parameterised query per dialect.

The query means what the Python engine computes (see `evaluate`), value for
value: the same three-valued logic (SQL's own), exact integer arithmetic for
money and counts (an average is compared as sum against count times the other
side, never as a rounded quotient), byte order for texts, and every constant
resolved by `Context` before it is bound.

No rule text ever reaches the SQL: identifiers come from the tables below, every
value is a bound parameter. Parameters are written as markers while compiling and
spelt the dialect's way (`?` or `%s`) at the end, so a translation may reorder or
repeat its arguments.

How each backend stores things (instants, money, dates, JSON) is the business of
its `crmcore.sql.Dialect`; a part of a rule the dialect cannot spell raises
`Unsupported` and runs in Python.
"""

# ruff: noqa: S608 - every identifier below is a constant of this module; values are bound
from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

import attrs

from crmcore.model import CaseStatus
from crmcore.model.account import MAX_DEPTH
from crmcore.segments import ast as a
from crmcore.segments.context import Context
from crmcore.segments.evaluate import OPERATORS
from crmcore.segments.schema import (
    CUSTOMER,
    GROUP_KINDS,
    RECORDS,
    TIME_OF,
    Checked,
    Type,
    constant_type,
    natural,
)
from crmcore.sql.dialect import BUILTIN, POSTGRESQL, SQLITE, Dialect, Parameters, Unsupported

DIALECTS = BUILTIN
"""The built-in dialects by name (kept for callers that name one)."""
__all__ = ["DIALECTS", "POSTGRESQL", "SQLITE", "Compiler", "Dialect", "Plan", "Query", "Unsupported",
           "compile_sql", "plan"]

_CUSTOMER_COLUMNS = frozenset(CUSTOMER) - {"tags", "emails", "phones"}
_COLLECTIONS = {"tags": "tags", "emails": "emails", "phones": "phones"}
_OPEN_STATUSES = tuple(s.value for s in CaseStatus if s.is_open)


@attrs.frozen
class Num:
    """A number as SQL sees it: `num / den / 10**scale` (den is a count, always positive)."""

    num: str
    den: str | None = None
    scale: int = 0


@attrs.frozen
class Query:
    sql: str
    params: tuple[Any, ...]


class Compiler:
    """Compiles one checked rule for one dialect and one evaluation context."""

    def __init__(self, checked: Checked, context: Context, dialect: Dialect) -> None:
        self.checked = checked
        self.context = context
        self.d = dialect
        self.binder = Parameters(dialect)
        self.params = self.binder.values

    def bind(self, value: Any) -> str:
        return self.binder.bind(value)

    def finish(self, sql: str) -> Query:
        """Spell the markers as the dialect's placeholders, in the order they now appear."""
        return Query(*self.binder.finish(sql))

    # ---- predicates ----

    def predicate(self, node: a.Predicate, record: str | None = None) -> str:
        match node:
            case a.And(items):
                return "(" + " AND ".join(self.predicate(i, record) for i in items) + ")"
            case a.Or(items):
                return "(" + " OR ".join(self.predicate(i, record) for i in items) + ")"
            case a.Not(item):
                return f"(NOT {self.predicate(item, record)})"
            case a.Compare(left, op, right):
                return self.compare(left, op, right, self.checked.domain(node), record)
            case a.In(subject, values):
                domain = self.checked.domain(node)
                if domain in (Type.INT, Type.MONEY):
                    return "(" + " OR ".join(
                        self.compare(subject, "=", value, domain, record) for value in values
                    ) + ")"
                target = self.scalar(subject, domain, record)
                marks = ", ".join(self.constant(v, domain, subject) for v in values)
                return f"({target} IN ({marks}))"
            case a.Between(subject, low, high):
                domain = self.checked.domain(node)
                return (f"({self.compare(subject, '>=', low, domain, record)} AND "
                        f"{self.compare(subject, '<=', high, domain, record)})")
            case a.Contains(subject, value):
                return self.contains(node, subject, value, record)
            case a.IsNull(subject):
                if isinstance(subject, a.Field) and subject.path[0] == "attributes":
                    return f"({self.json_type(subject.path[1])} IS NULL)"
                if _is_attribute(subject):
                    assert isinstance(subject, a.Field)
                    group, _, key = subject.path
                    kind = self.d.attribute_kind("k.doc", key, self.bind)
                    return f"({self.of_account(group, kind)} IS NULL)"
                maybe = self.number(subject, self.checked.type(subject), record).num
                return f"({maybe} IS NULL)"
            case a.IsEmpty(subject):
                return f"({self.collection_size(subject)} = 0)"
            case a.Birthday(days):
                marks = ", ".join(self.bind(md) for md in sorted(self.context.birthdays(days)))
                return f"({self.d.month_day('c.birth_date')} IN ({marks}))"
            case a.Truth(subject):
                return f"({self.scalar(subject, Type.BOOL, record)})"
        raise Unsupported(f"no SQL for {node!r}")

    def compare(self, left: a.Term, op: str, right: a.Term, domain: Type, record: str | None) -> str:
        sql_op = "<>" if op == "!=" else op
        if constant_type(left) is not None and constant_type(right) is not None:
            return self._constant_comparison(left, op, right, domain)
        if domain in (Type.INT, Type.MONEY):
            return self._exact(left, sql_op, right, domain, record)
        lhs, rhs = self.scalar(left, domain, record, right), self.scalar(right, domain, record, left)
        if domain is Type.TEXT and op not in ("=", "!="):
            lhs += self.d.text_order
        return f"({lhs} {sql_op} {rhs})"

    def _constant_comparison(self, left: a.Term, op: str, right: a.Term, domain: Type) -> str:
        """Two constants: decided now, exactly as the Python engine decides it."""
        x = self.context.constant(left, domain)
        y = self.context.constant(right, domain)
        return "(1 = 1)" if OPERATORS[op](x, y) else "(1 = 0)"

    def _exact(self, left: a.Term, op: str, right: a.Term, domain: Type, record: str | None) -> str:
        """Integer arithmetic only: both sides brought to one scale, quotients cross-multiplied."""
        if constant_type(right) is not None or constant_type(left) is not None:
            flipped = constant_type(left) is not None
            term, const = (right, left) if flipped else (left, right)
            if flipped:
                op = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}.get(op, op)
            x = self.number(term, domain, record)
            value: Fraction = self.context.constant(const, domain) * 10**x.scale
            if x.den is None and value.denominator == 1:
                return f"({x.num} {op} {self.bind(int(value))})"
            lhs = _times(x.num, None if value.denominator == 1 else self.bind(value.denominator))
            rhs = _times(self.bind(value.numerator), x.den)
            return f"({lhs} {op} {rhs})"
        x, y = self.number(left, domain, record), self.number(right, domain, record)
        top = max(x.scale, y.scale)
        lhs = _times(_times(x.num, y.den), _power(top - x.scale))
        rhs = _times(_times(y.num, x.den), _power(top - y.scale))
        return f"({lhs} {op} {rhs})"

    def contains(self, node: a.Contains, subject: a.Term, value: a.Term, record: str | None) -> str:
        needle = self.scalar(value, Type.TEXT, record)
        if self.checked.domain(node) is Type.TAGS:
            assert isinstance(subject, a.Field)
            return self.d.collection_contains("c", _COLLECTIONS[subject.path[0]], needle)
        return self.d.contains_text(self.scalar(subject, Type.TEXT, record), needle)

    def collection_size(self, subject: a.Term) -> str:
        assert isinstance(subject, a.Field)
        return self.d.collection_length("c", _COLLECTIONS[subject.path[0]])

    # ---- terms ----

    def constant(self, node: a.Term, domain: Type, peer: a.Term | None = None) -> str:
        """A bound constant; `peer` is the term it is compared with (it may change the encoding)."""
        value = self.context.constant(node, domain)
        if domain is Type.INSTANT and _is_attribute(peer):
            return self.bind(self.d.attribute_instant(value))
        if domain is Type.INSTANT:
            return self.bind(self.d.instant(value))
        if domain is Type.DATE:
            return self.bind(self.d.day(value))
        if domain is Type.BOOL:
            return self.bind(self.d.boolean(value))
        if isinstance(value, Fraction):
            return self.bind(int(value) if value.denominator == 1 else float(value))
        return self.bind(value)

    def number(self, node: a.Term, domain: Type, record: str | None) -> Num:
        if isinstance(node, a.Aggregate) and node.func == "avg":
            total = self.aggregate(node, "sum")
            count = self.aggregate(node, "count_field")
            return Num(total, count, self._scale(domain))
        return Num(self.scalar(node, domain, record), None, self._scale(domain))

    def _scale(self, domain: Type) -> int:
        return self.d.money_scale if domain is Type.MONEY else 0

    def scalar(self, node: a.Term, domain: Type, record: str | None, peer: a.Term | None = None) -> str:
        """SQL for a term read in `domain` (money stays in storage units: see `number`)."""
        if constant_type(node) is not None:
            return self.constant(node, domain, peer)
        match node:
            case a.Field(path):
                if record is not None:
                    return self.record_field(record, path[0])
                return self.field(path, domain)
            case a.Aggregate():
                if node.func == "avg":
                    raise Unsupported("an average is compared, never read on its own")
                return self.aggregate(node)
            case a.Call(name, args):
                function = self.checked.functions[name]
                translation = self.d.translation(function.sql)
                if translation is None:
                    raise Unsupported(f"rule function {name}() has no {self.d.name} translation")
                parts = [self.scalar(arg, kind, None)
                         for arg, kind in zip(args, function.params, strict=True)]
                return f"({translation(*parts)})"
        raise Unsupported(f"no SQL for {node!r}")

    def field(self, path: tuple[str, ...], domain: Type) -> str:
        head = path[0]
        if head in GROUP_KINDS:
            return self.account_field(head, path[1:], domain)
        if head == "attributes":
            return self.attribute(path[1], domain)
        if head == "consent":
            return self.consent(path[1], path[2])
        if head == "score":
            column = "label" if len(path) == 3 else "value"
            return (f"(SELECT s.{column} FROM scores AS s WHERE s.customer_id = c.id AND s.scorer = "
                    f"{self.bind(path[1])} AND s.as_of <= {self.bind(self.d.instant(self.context.now))} "
                    "ORDER BY s.as_of DESC LIMIT 1)")
        if head in _CUSTOMER_COLUMNS:
            return f"c.{head}"
        raise Unsupported(f"no column for {head}")

    def account_id(self, group: str) -> str:
        """The id of the one account `group` means for the customer (`schema.GROUP_KINDS`)."""
        kind = self.bind(GROUP_KINDS[group])
        return ("(SELECT m.account_id FROM account_members AS m JOIN accounts AS k ON k.id = m.account_id "
                f"WHERE m.customer_id = c.id AND k.kind = {kind} "
                f"ORDER BY m.is_primary DESC, m.account_id{self.d.text_order} LIMIT 1)")

    def subtree(self, group: str) -> str:
        """The ids of the customer's account and of every account below it (`model.subtree`),
        at most MAX_DEPTH levels down, as a recursive query."""
        return self.d.recursive(
            "subtree", ("id", "depth"), f"SELECT {self.account_id(group)}, 0",
            f"SELECT sa.id, st.depth + 1 FROM accounts AS sa JOIN subtree AS st ON sa.parent_id = st.id "
            f"WHERE st.depth < {MAX_DEPTH}",
            "SELECT id FROM subtree",
        )

    def of_account(self, group: str, value: str) -> str:
        """`value` (over `k`, the accounts table) for the customer's account."""
        return f"(SELECT {value} FROM accounts AS k WHERE k.id = {self.account_id(group)})"

    def account_field(self, group: str, rest: tuple[str, ...], domain: Type) -> str:
        name = rest[0]
        if name == "attributes":
            return self.of_account(group, self.d.attribute("k.doc", rest[1], str(natural(domain)), self.bind))
        if name == "role":
            return (f"(SELECT m.role FROM account_members AS m WHERE m.customer_id = c.id "
                    f"AND m.account_id = {self.account_id(group)})")
        return self.of_account(group, f"k.{name}")

    def consent(self, purpose: str, channel: str) -> str:
        at = self.bind(self.context.now.isoformat())
        return self.d.consent_granted("c.doc", self.bind(purpose), self.bind(channel), at)

    def json_type(self, key: str) -> str:
        return self.d.attribute_kind("c.doc", key, self.bind)

    def attribute(self, key: str, domain: Type) -> str:
        """A custom attribute read in a domain: NULL when the value there is of another type."""
        return self.d.attribute("c.doc", key, str(natural(domain)), self.bind)

    def record_field(self, source: str, name: str) -> str:
        if name not in RECORDS[source]:
            raise Unsupported(f"{source} have no {name}")
        if name == "open":
            statuses = ", ".join(f"'{s}'" for s in _OPEN_STATUSES)
            return (f"(CASE WHEN r.resolved_at IS NULL THEN r.status IN ({statuses}) "
                    f"ELSE r.resolved_at > {self.bind(self.d.instant(self.context.now))} END)")
        return f"r.{name}"

    def aggregate(self, node: a.Aggregate, func: str | None = None) -> str:
        """A correlated subquery over the customer's records up to the evaluation instant."""
        source, func = node.source, func or node.func
        when = f"r.{TIME_OF[source]}"
        whose = "r.customer_id = c.id" if node.of is None else (
            "r.customer_id IN (SELECT g.customer_id FROM account_members AS g "
            f"WHERE g.account_id IN {self.subtree(node.of)})")
        conditions = [whose, f"{when} <= {self.bind(self.d.instant(self.context.now))}"]
        start = self.context.start(node.window)
        if start is not None:
            conditions.append(f"{when} >= {self.bind(self.d.instant(start))}")
        if node.where is not None:
            conditions.append(self.predicate(node.where, source))
        if func == "count":
            value = "count(*)"
        elif func in ("first", "last"):
            value = f"{'min' if func == 'first' else 'max'}({when})"
        else:
            column = self.record_field(source, node.field or "")
            if func == "count_field":
                value = f"count({column})"
            else:
                ordered = self.d.text_order if RECORDS[source][node.field or ""].type is Type.TEXT else ""
                value = f"{func}({column}{ordered})"
        return f"(SELECT {value} FROM {source} AS r WHERE {' AND '.join(conditions)})"


def _is_attribute(node: a.Term | None) -> bool:
    """A custom attribute: the customer's (`attributes.X`) or their account's."""
    if not isinstance(node, a.Field):
        return False
    path = node.path
    return path[0] == "attributes" or (path[0] in GROUP_KINDS and len(path) == 3)


def _times(x: str, y: str | None) -> str:
    return x if y is None else f"({x} * {y})"


def _power(exponent: int) -> str | None:
    return None if exponent == 0 else str(10**exponent)


def split(rule: a.Predicate) -> list[a.Predicate]:
    """The conjuncts of a rule (a rule that is not an `and` is its own only conjunct)."""
    return list(rule.items) if isinstance(rule, a.And) else [rule]


@attrs.frozen
class Plan:
    """How a rule will run on one dialect: the pushed-down query, and what is left to Python."""

    query: Query
    residue: a.Predicate | None
    """Conjuncts that have no SQL here and run in Python on the query's candidates."""
    reasons: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return "sql" if self.residue is None else "sql+python"


Relation = Callable[[Callable[[Any], str]], str]
"""SQL for a relation with the columns of `customers`, given the compiler's `bind`."""


def plan(rule: a.Predicate, checked: Checked, context: Context, dialect: str | Dialect,
         *, columns: str = "c.id", customers: Relation | None = None) -> Plan:
    """The query selecting candidates (all members, when nothing is left to Python), by id.

    `customers` replaces today's table (e.g. by the customers as of the instant:
    `lifecycle.states.customers_at`)."""
    d = dialect if isinstance(dialect, Dialect) else DIALECTS[dialect]
    compiler = Compiler(checked, context, d)
    pushed: list[str] = []
    residue: list[a.Predicate] = []
    reasons: list[str] = []
    for part in split(rule):
        mark = len(compiler.params)
        try:
            pushed.append(compiler.predicate(part))
        except Unsupported as exc:
            del compiler.params[mark:]
            residue.append(part)
            reasons.append(str(exc))
    created = compiler.bind(d.instant(context.now))
    where = " AND ".join([f"c.created_at <= {created}", *pushed])
    source = "customers" if customers is None else f"({customers(compiler.bind)})"
    query = compiler.finish(f"SELECT {columns} FROM {source} AS c WHERE {where} ORDER BY c.id{d.text_order}")
    left = None if not residue else residue[0] if len(residue) == 1 else a.And(tuple(residue))
    return Plan(query, left, tuple(reasons))


def compile_sql(rule: a.Predicate, checked: Checked, context: Context, dialect: str) -> Query:
    """The query for the whole rule; `Unsupported` if any part of it has no SQL in the dialect."""
    found = plan(rule, checked, context, dialect)
    if found.residue is not None:
        raise Unsupported("; ".join(found.reasons))
    return found.query


