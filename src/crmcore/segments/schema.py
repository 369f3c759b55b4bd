"""What a rule may name, and the type of every term: one check that both engines trust.

The checker resolves each field, function and comparison to a `Type` once, so
the Python and SQL engines never have to guess (and so never guess differently).
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from crmcore.errors import RuleError, ValidationError
from crmcore.model import CaseKind, CaseStatus, Channel, ChannelFamily, Direction, LifecycleStage, PartyKind
from crmcore.segments import ast as a
from crmcore.values import name as machine_name

if TYPE_CHECKING:
    from crmcore.segments.functions import RuleFunction


class Type(enum.StrEnum):
    TEXT = "text"
    INT = "int"
    MONEY = "money"
    REAL = "real"
    INSTANT = "instant"
    DATE = "date"
    BOOL = "bool"
    TAGS = "tags"
    """A set of texts (tags, e-mails, phones)."""
    ANY = "any"
    """A custom attribute: its type is the constant it is compared with."""
    NUMBER = "number"
    """A number constant, exact until it meets the term it is compared with."""


ORDERED = {Type.TEXT, Type.INT, Type.MONEY, Type.REAL, Type.INSTANT, Type.DATE, Type.NUMBER}
NUMERIC = {Type.INT, Type.MONEY, Type.REAL, Type.NUMBER}


@attrs.frozen
class Column:
    type: Type
    choices: tuple[str, ...] = ()
    """The values an enumerated text may take (checked, with suggestions)."""


def _choices(kind: Iterable[enum.Enum]) -> tuple[str, ...]:
    return tuple(str(member.value) for member in kind)


CUSTOMER: dict[str, Column] = {
    "id": Column(Type.TEXT),
    "name": Column(Type.TEXT),
    "kind": Column(Type.TEXT, _choices(PartyKind)),
    "tier": Column(Type.TEXT),
    "lifecycle": Column(Type.TEXT, _choices(LifecycleStage)),
    "country": Column(Type.TEXT),
    "language": Column(Type.TEXT),
    "service_point": Column(Type.TEXT),
    "birth_date": Column(Type.DATE),
    "created_at": Column(Type.INSTANT),
    "updated_at": Column(Type.INSTANT),
    "tags": Column(Type.TAGS),
    "emails": Column(Type.TAGS),
    "phones": Column(Type.TAGS),
}
"""Plain customer fields; `attributes.*`, `consent.*.*` and `score.*` are paths."""

PATHS = ("attributes", "consent", "score", *a.GROUPS)

ACCOUNT: dict[str, Column] = {
    "id": Column(Type.TEXT),
    "name": Column(Type.TEXT),
    "tier": Column(Type.TEXT),
    "owner": Column(Type.TEXT),
    "parent_id": Column(Type.TEXT),
    "role": Column(Type.TEXT),
}
"""Fields of the customer's account (`account.tier`); `role` is the customer's role in it,
`account.attributes.NAME` its custom attributes."""

GROUP_KINDS = {"account": "organisation", "household": "household"}
"""The kind of account each group word reaches.

A customer may belong to several organisations (or households): a rule reaches ONE of
them, the one they are the primary contact of, else the one with the smallest id
(byte order), so a rule always means one thing and SQL finds it through the member index.
A customer in none has every field unknown (null) and empty roll-ups (count 0, sum null).
"""

_CHANNEL = Column(Type.TEXT, _choices(Channel))
RECORDS: dict[str, dict[str, Column]] = {
    "purchases": {
        "ordered_at": Column(Type.INSTANT), "total": Column(Type.MONEY), "currency": Column(Type.TEXT),
        "channel": _CHANNEL, "service_point": Column(Type.TEXT),
    },
    "interactions": {
        "occurred_at": Column(Type.INSTANT), "channel": _CHANNEL,
        "family": Column(Type.TEXT, _choices(ChannelFamily)),
        "direction": Column(Type.TEXT, _choices(Direction)), "service_point": Column(Type.TEXT),
        "agent": Column(Type.TEXT), "outcome": Column(Type.TEXT), "satisfaction": Column(Type.INT),
        "nps": Column(Type.INT),
    },
    "cases": {
        "opened_at": Column(Type.INSTANT), "resolved_at": Column(Type.INSTANT),
        "sla_due": Column(Type.INSTANT), "kind": Column(Type.TEXT, _choices(CaseKind)),
        "status": Column(Type.TEXT, _choices(CaseStatus)), "priority": Column(Type.INT),
        "channel": _CHANNEL, "service_point": Column(Type.TEXT), "agent": Column(Type.TEXT),
        "contacts": Column(Type.INT), "open": Column(Type.BOOL),
    },
}
"""Fields of the records aggregates run over; `open` is a case still open at the evaluation instant."""

TIME_OF = {"purchases": "ordered_at", "interactions": "occurred_at", "cases": "opened_at"}
"""The instant that dates each record (windows and the as-of cut-off use it)."""


def constant_type(node: a.Term) -> Type | None:
    """The type of a constant term, or None if the term depends on the customer."""
    match node:
        case a.Text():
            return Type.TEXT
        case a.Number():
            return Type.NUMBER
        case a.Bool():
            return Type.BOOL
        case a.Day() | a.Today():
            return Type.DATE
        case a.Instant() | a.Now() | a.Ago():
            return Type.INSTANT
    return None


def natural(constant: Type) -> Type:
    """The domain a custom attribute is read in when compared with a constant of this type."""
    return Type.REAL if constant is Type.NUMBER else constant


@attrs.define
class Checked:
    """The outcome of checking a rule: the type of every term and the domain of every comparison."""

    types: dict[int, Type] = attrs.field(factory=dict)
    domains: dict[int, Type] = attrs.field(factory=dict)
    functions: Mapping[str, RuleFunction] = attrs.field(factory=dict)

    def type(self, node: a.Term) -> Type:
        return self.types[id(node)]

    def domain(self, node: a.Predicate) -> Type:
        """The type a comparison, `in`, `between` or `contains` is decided in."""
        return self.domains[id(node)]


class _Checker:
    def __init__(self, text: str, functions: Mapping[str, RuleFunction], positions: Mapping[int, int]):
        self.text = text
        self.functions = functions
        self.positions = positions
        self.out = Checked(functions=functions)

    def fail(self, node: Any, reason: str, suggestions: Iterable[str] = ()) -> RuleError:
        return RuleError(self.text, reason, offset=self.positions.get(id(node)),
                         suggestions=tuple(suggestions))

    # ---- predicates ----

    def predicate(self, node: a.Predicate, record: str | None) -> None:
        match node:
            case a.And(items) | a.Or(items):
                for item in items:
                    self.predicate(item, record)
            case a.Not(item):
                self.predicate(item, record)
            case a.Compare(left, op, right):
                domain = self.unify(node, left, right, record)
                if op not in ("=", "!=") and domain not in ORDERED:
                    raise self.fail(node, f"{op} needs values with an order, not {domain} values")
            case a.In(subject, values):
                domain = self.unify(node, subject, values[0], record)
                for value in values:
                    if constant_type(value) is None:
                        raise self.fail(value, "the list after `in` may hold constants only")
                    if self.unify(node, subject, value, record) is not domain:
                        raise self.fail(value, f"every value in the list must be {domain}")
            case a.Between(subject, low, high):
                domain = self.unify(node, subject, low, record)
                if self.unify(node, subject, high, record) is not domain:
                    raise self.fail(high, f"both ends of `between` must be {domain}")
                if domain not in ORDERED:
                    raise self.fail(node, f"`between` needs values with an order, not {domain}")
            case a.Contains(subject, value):
                whole, part = self.term(subject, record), self.term(value, record)
                if part is not Type.TEXT:
                    raise self.fail(value, f"`contains` looks for a text, not a {part} value")
                if whole is Type.ANY and constant_type(value) is None:
                    raise self.fail(value, "a custom attribute is compared with constants only")
                if whole not in (Type.TEXT, Type.TAGS, Type.ANY):
                    raise self.fail(subject, f"`contains` needs a text or a set of texts, not {whole}")
                self.out.domains[id(node)] = whole
            case a.IsNull(subject):
                if self.term(subject, record) is Type.TAGS:
                    raise self.fail(subject, "a set is never null: use `is empty`")
            case a.IsEmpty(subject):
                if self.term(subject, record) is not Type.TAGS:
                    raise self.fail(subject, "`is empty` applies to sets (tags, emails, phones)")
            case a.Birthday():
                if record is not None:
                    raise self.fail(node, "`birthday` is about the customer, not a record")
            case a.Truth(subject):
                kind = self.term(subject, record)
                if kind not in (Type.BOOL, Type.ANY):
                    raise self.fail(subject, f"a condition must be true or false, not a {kind} value")
                self.out.domains[id(node)] = Type.BOOL
            case _:
                raise self.fail(node, f"not a condition: {node!r}")

    def unify(self, node: a.Predicate, left: a.Term, right: a.Term, record: str | None) -> Type:
        """The one type both sides are compared in, or a RuleError saying why there is none."""
        lt, rt = self.term(left, record), self.term(right, record)
        lc, rc = constant_type(left), constant_type(right)
        domain = _unify(lt, lc is not None, rt, rc is not None)
        if domain is None:
            culprit = right if (lc is None or rc is not None) and lt is not Type.TAGS else left
            if Type.ANY in (lt, rt):
                raise self.fail(culprit, "a custom attribute is compared with constants only")
            raise self.fail(culprit, f"cannot compare a {lt} value with a {rt} value")
        for side, other in ((left, right), (right, left)):
            self.enumerated(side, other, record)
        self.out.domains[id(node)] = domain
        return domain

    def enumerated(self, subject: a.Term, value: a.Term, record: str | None) -> None:
        if not (isinstance(subject, a.Field) and isinstance(value, a.Text)):
            return
        column = self.column(subject, record)
        if column.choices and value.value not in column.choices:
            raise self.fail(
                value, f"{value.value!r} is not a {'.'.join(subject.path)}",
                difflib.get_close_matches(value.value, column.choices, n=3) or column.choices,
            )

    # ---- terms ----

    def term(self, node: a.Term, record: str | None) -> Type:
        kind = self._term(node, record)
        self.out.types[id(node)] = kind
        return kind

    def _term(self, node: a.Term, record: str | None) -> Type:
        constant = constant_type(node)
        if constant is not None:
            return constant
        match node:
            case a.Field():
                return self.column(node, record).type
            case a.Aggregate():
                if record is not None:
                    raise self.fail(node, "an aggregate cannot be nested in another one's `where`")
                return self.aggregate(node)
            case a.Call(name, args):
                if record is not None:
                    raise self.fail(node, "functions apply to customers, not inside `where`")
                return self.call(node, name, args)
        raise self.fail(node, f"not a term: {node!r}")

    def column(self, node: a.Field, record: str | None) -> Column:
        path = node.path
        if record is not None:
            known = RECORDS[record]
            if len(path) == 1 and path[0] in known:
                return known[path[0]]
            raise self.fail(node, f"{record} have no field {'.'.join(path)!r}", _near(path[0], known))
        head = path[0]
        if head in CUSTOMER and len(path) == 1:
            return CUSTOMER[head]
        if head in GROUP_KINDS:
            return self.account_column(node, head, path[1:])
        if head == "attributes" and len(path) == 2:
            self.name(node, path[1], "an attribute name")
            return Column(Type.ANY)
        if head == "consent" and len(path) == 3:
            self.name(node, path[1], "a consent purpose")
            if path[2] not in _choices(Channel):
                raise self.fail(node, f"{path[2]!r} is not a channel", _near(path[2], _choices(Channel)))
            return Column(Type.BOOL)
        if head == "score" and len(path) in (2, 3):
            self.name(node, path[1], "a scorer name")
            if len(path) == 2:
                return Column(Type.REAL)
            if path[2] == "label":
                return Column(Type.TEXT)
        shapes = {"attributes": "attributes.NAME", "consent": "consent.PURPOSE.CHANNEL",
                  "score": "score.SCORER or score.SCORER.label"}
        if head in shapes:
            raise self.fail(node, f"write {shapes[head]}")
        raise self.fail(node, f"unknown field {'.'.join(path)!r}", _near(head, [*CUSTOMER, *PATHS]))

    def account_column(self, node: a.Field, group: str, rest: tuple[str, ...]) -> Column:
        if len(rest) == 1 and rest[0] in ACCOUNT:
            return ACCOUNT[rest[0]]
        if len(rest) == 2 and rest[0] == "attributes":
            self.name(node, rest[1], "an attribute name")
            return Column(Type.ANY)
        if rest and rest[0] in RECORDS:
            raise self.fail(node, f"{group}.{rest[0]} is counted or added up, as in "
                                  f"count({group}.{rest[0]}) or sum({group}.purchases.total)")
        shown = ".".join(rest) or "(nothing)"
        near = _near(rest[0] if rest else "", [*ACCOUNT, "attributes"])
        raise self.fail(node, f"{group} has no field {shown!r} (write {group}.FIELD or "
                              f"{group}.attributes.NAME)", near)

    def name(self, node: a.Field, value: str, what: str) -> None:
        try:
            machine_name(value, what)
        except ValidationError:
            raise self.fail(node, f"{value!r} is not {what} (lower-case letters, digits, _ . -)") from None

    def aggregate(self, node: a.Aggregate) -> Type:
        source = node.source
        if node.where is not None:
            self.predicate(node.where, source)
        if isinstance(node.window, a.Since):
            start = constant_type(node.window.start)
            if start not in (Type.DATE, Type.INSTANT):
                raise self.fail(node.window.start, "`since` needs a date or an instant")
            self.term(node.window.start, None)
        if node.func in ("count", "first", "last"):
            if node.field is not None:
                raise self.fail(node, f"{node.func}() takes a source alone: {node.func}({source})")
            return Type.INT if node.func == "count" else Type.INSTANT
        if node.field is None:
            example = f"{node.func}({source}.{_example(source)})"
            raise self.fail(node, f"{node.func}() needs a field, e.g. {example}")
        columns = RECORDS[source]
        if node.field not in columns:
            raise self.fail(node, f"{source} have no field {node.field!r}", _near(node.field, columns))
        kind = columns[node.field].type
        wanted = {Type.INT, Type.MONEY} if node.func in ("sum", "avg") else ORDERED
        if kind not in wanted:
            raise self.fail(node, f"{node.func}() cannot work on {source}.{node.field} ({kind})")
        return kind

    def call(self, node: a.Call, name: str, args: tuple[a.Term, ...]) -> Type:
        function = self.functions.get(name)
        if function is None:
            raise self.fail(node, f"unknown function {name!r}", _near(name, [*self.functions, *a.AGGREGATES]))
        if len(args) != len(function.params):
            raise self.fail(node, f"{name}() takes {len(function.params)} argument(s), not {len(args)}")
        for arg, wanted in zip(args, function.params, strict=True):
            got = self.term(arg, None)
            if _unify(wanted, False, got, constant_type(arg) is not None) is not wanted:
                raise self.fail(arg, f"{name}() wants a {wanted} value here, not {got}")
        return function.returns


def _example(source: str) -> str:
    return {"purchases": "total", "interactions": "satisfaction", "cases": "priority"}[source]


def _near(word: str, known: Iterable[str]) -> list[str]:
    """The closest known names, ignoring case (fields are case-sensitive; typos often are not)."""
    names = {name.lower(): name for name in known}
    return [names[m] for m in difflib.get_close_matches(word.lower(), list(names), n=3, cutoff=0.6)]


def _unify(lt: Type, lconst: bool, rt: Type, rconst: bool) -> Type | None:
    if Type.TAGS in (lt, rt):
        return None
    if lt is Type.ANY or rt is Type.ANY:
        if lt is rt:
            return None
        other, is_constant = (rt, rconst) if lt is Type.ANY else (lt, lconst)
        return natural(other) if is_constant else None
    if lt is rt:
        return Type.INT if lt is Type.NUMBER else lt
    if Type.NUMBER in (lt, rt):
        other = rt if lt is Type.NUMBER else lt
        return other if other in NUMERIC else None
    if {lt, rt} == {Type.DATE, Type.INSTANT}:
        if lconst:
            return rt
        if rconst:
            return lt
    return None


def check(
    rule: a.Predicate,
    functions: Mapping[str, RuleFunction],
    *,
    text: str | None = None,
    positions: Mapping[int, int] | None = None,
) -> Checked:
    """Resolve every name and type in `rule`, or raise RuleError pointing at the fault."""
    from crmcore.segments.printer import to_text

    checker = _Checker(text if text is not None else to_text(rule), functions, positions or {})
    checker.predicate(rule, None)
    return checker.out


def walk(node: Any) -> Iterator[Any]:
    """Every node of a rule, depth first."""
    yield node
    for field in attrs.fields(type(node)):
        value = getattr(node, field.name)
        for item in value if isinstance(value, tuple) else (value,):
            if attrs.has(type(item)):
                yield from walk(item)
