"""The rule AST: frozen attrs nodes that the text and JSON forms both parse to.

The JSON form *is* what crmcore's one cattrs converter makes of the AST, with a
`"node"` tag naming each node's class, so storing, sending and editing a rule in
a UI needs no second schema.
"""

from __future__ import annotations

import functools
import re
import types
import typing
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import attrs
import cattrs

from crmcore import limits, serialization

UNITS = ("hours", "days", "weeks", "months", "years")
"""Calendar units for relative times and windows (python-dateutil does the arithmetic)."""

AGGREGATES = ("count", "sum", "avg", "min", "max", "first", "last")
SOURCES = ("purchases", "interactions", "cases")
GROUPS = ("account", "household")
"""`account.tier`, `sum(household.purchases.total)`: the customer's organisation or household."""
COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
KEYWORDS = frozenset((
    "and", "or", "not", "in", "contains", "between", "is", "null", "empty", "true", "false",
    "now", "today", "ago", "last", "since", "where", "birthday", "within",
))
"""Words the text form reserves (case-insensitive); a field path may still use them after a dot."""
PLACES = 6
"""Decimal places a number in a rule may have."""


def _unit(_instance: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in UNITS:
        raise ValueError(f"{attribute.name} must be one of {', '.join(UNITS)}, not {value!r}")


def _amount(_instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limits.RULE_AMOUNT:
        raise ValueError(
            f"{attribute.name} must be a whole number from 0 to {limits.RULE_AMOUNT}, not {value!r}"
        )


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _word(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    """A name the text form writes bare: a plain word, not a keyword (so it prints and reads back)."""
    if value is not None and (
        not isinstance(value, str) or not _WORD.match(value) or value.lower() in KEYWORDS
    ):
        raise ValueError(f"{attribute.name} must be a plain name (letters, digits, _), not {value!r}")


def _plain(value: object, what: str) -> None:
    """Text a rule may hold: no NUL (no stored text has one), valid Unicode, bounded."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a text, not {type(value).__name__}")
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL characters (no stored text has one)")
    if len(value) > limits.RULE_LENGTH:
        raise ValueError(f"{what} is longer than {limits.RULE_LENGTH} characters")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} must not contain lone surrogates") from None


def _path(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for segment in value:
        _plain(segment, "a field name")
    if value:
        _word(_instance, attribute, value[0])


def _one_of(choices: tuple[str, ...]) -> Any:
    return attrs.validators.in_(choices)


def _at_least(count: int) -> Any:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[Any, ...]) -> None:
        if len(value) < count:
            raise ValueError(f"{attribute.name} needs at least {count} items")

    return check


def _strings(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(items)


def _terms(items: Iterable[Term]) -> tuple[Term, ...]:
    return tuple(items)


def _predicates(items: Iterable[Predicate]) -> tuple[Predicate, ...]:
    return tuple(items)


# ---- terms: what a predicate talks about ----


@attrs.frozen
class Field:
    """A customer field (`tier`), or a path into one (`attributes.size`, `score.rfm.label`)."""

    path: tuple[str, ...] = attrs.field(converter=_strings, validator=[_at_least(1), _path])


@attrs.frozen
class Text:
    value: str = attrs.field()

    @value.validator
    def _text(self, attribute: attrs.Attribute[str], value: str) -> None:
        _plain(value, attribute.name)


@attrs.frozen
class Number:
    value: Decimal = attrs.field(converter=Decimal)

    @value.validator
    def _finite(self, attribute: attrs.Attribute[Decimal], value: Decimal) -> None:
        if not value.is_finite() or abs(value) >= limits.RULE_NUMBER:
            raise ValueError(f"{attribute.name} must be a finite number below {limits.RULE_NUMBER:,}")
        exponent = value.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -PLACES:
            raise ValueError(f"{attribute.name} has more than {PLACES} decimal places")


@attrs.frozen
class Bool:
    value: bool = attrs.field(validator=attrs.validators.instance_of(bool))


@attrs.frozen
class Day:
    """A calendar date (`2024-12-31`)."""

    value: date = attrs.field(validator=attrs.validators.instance_of(date))

    @value.validator
    def _calendar(self, attribute: attrs.Attribute[date], value: date) -> None:
        if isinstance(value, datetime) or not limits.FIRST_DAY <= value <= limits.LAST_DAY:
            raise ValueError(f"{attribute.name} must be a date in {limits.CALENDAR}, not {value!r}")


@attrs.frozen
class Instant:
    """An instant (`2024-12-31T09:30:00Z`), kept in UTC."""

    value: datetime = attrs.field(validator=attrs.validators.instance_of(datetime))

    @value.validator
    def _aware(self, attribute: attrs.Attribute[datetime], value: datetime) -> None:
        if value.utcoffset() is None:  # read in the server's zone it would mean another instant
            raise ValueError(f"{attribute.name} must carry its time zone (as in 2024-12-31T09:30:00Z)")
        if not limits.FIRST_INSTANT <= value <= limits.LAST_INSTANT:
            raise ValueError(f"{attribute.name} must be an instant in {limits.CALENDAR}")


@attrs.frozen
class Now:
    """The instant the rule is evaluated as of."""


@attrs.frozen
class Today:
    """The calendar date of the evaluation instant, in the evaluation's time zone."""


@attrs.frozen
class Ago:
    """`3 months ago`: calendar arithmetic back from the evaluation instant."""

    amount: int = attrs.field(validator=_amount)
    unit: str = attrs.field(validator=_unit)


@attrs.frozen
class Last:
    """Window `last 90 days`: from that long before the evaluation instant up to it."""

    amount: int = attrs.field(validator=_amount)
    unit: str = attrs.field(validator=_unit)


@attrs.frozen
class Since:
    """Window `since 2024-01-01`: from a fixed or relative start up to the evaluation instant."""

    start: Term


Window = Last | Since


@attrs.frozen
class Aggregate:
    """`sum(purchases.total where channel = "web", last 365 days)` and friends.

    Only records dated at or before the evaluation instant are ever counted.
    """

    func: str = attrs.field(validator=_one_of(AGGREGATES))
    source: str = attrs.field(validator=_one_of(SOURCES))
    field: str | None = attrs.field(default=None, validator=_word)
    where: Predicate | None = None
    window: Window | None = None
    of: str | None = attrs.field(default=None, validator=attrs.validators.optional(_one_of(GROUPS)))
    """None: the customer's own records; `account` or `household`: every member's of that account."""


@attrs.frozen
class Call:
    """A rule function: built in, or contributed by a plugin."""

    name: str = attrs.field(validator=_word)
    args: tuple[Term, ...] = attrs.field(default=(), converter=_terms)


Term = Field | Text | Number | Bool | Day | Instant | Now | Today | Ago | Aggregate | Call
CONSTANTS = (Text, Number, Bool, Day, Instant, Now, Today, Ago)


# ---- predicates: true, false or unknown for one customer ----


@attrs.frozen
class And:
    items: tuple[Predicate, ...] = attrs.field(converter=_predicates, validator=_at_least(2))


@attrs.frozen
class Or:
    items: tuple[Predicate, ...] = attrs.field(converter=_predicates, validator=_at_least(2))


@attrs.frozen
class Not:
    item: Predicate


@attrs.frozen
class Compare:
    left: Term
    op: str = attrs.field(validator=_one_of(COMPARISONS))
    right: Term


@attrs.frozen
class In:
    term: Term
    values: tuple[Term, ...] = attrs.field(converter=_terms, validator=_at_least(1))


@attrs.frozen
class Contains:
    """Substring of a text, or member of a collection (`tags contains "vip"`)."""

    term: Term
    value: Term


@attrs.frozen
class Between:
    """Inclusive at both ends, exactly as `low <= term and term <= high`."""

    term: Term
    low: Term
    high: Term


@attrs.frozen
class IsNull:
    term: Term


@attrs.frozen
class IsEmpty:
    term: Term


@attrs.frozen
class Birthday:
    """`birthday within 7 days`: the next anniversary of birth falls within the days ahead."""

    days: int = attrs.field(validator=_amount)


@attrs.frozen
class Truth:
    """A true/false term used as a predicate (`consent.newsletter.email`)."""

    term: Term


Predicate = And | Or | Not | Compare | In | Contains | Between | IsNull | IsEmpty | Birthday | Truth
Rule = Predicate
Node = Predicate | Term | Last | Since

for _cls in (Since, Aggregate, Call, And, Or, Not, Compare, In, Contains, Between, IsNull, IsEmpty,
             Truth):
    attrs.resolve_types(_cls, globals())


_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Field, Text, Number, Bool, Day, Instant, Now, Today, Ago, Aggregate, Call, Last, Since,
                And, Or, Not, Compare, In, Contains, Between, IsNull, IsEmpty, Birthday, Truth)
}
_NODE_CLASSES = frozenset(_CLASSES.values())


def _is_node_union(cls: Any) -> bool:
    members = set(typing.get_args(cls)) - {type(None)}
    return typing.get_origin(cls) in (typing.Union, types.UnionType) and members <= _NODE_CLASSES


@functools.cache
def _converter() -> cattrs.Converter:
    """crmcore's converter, taught the node unions (once, on first use): a "node" tag names the class."""
    conv = serialization.converter()

    def unstructure(node: Any) -> Any:
        if node is None:
            return None
        return {"node": type(node).__name__, **conv.unstructure(node, type(node))}

    def structure(data: Any, union: Any) -> Any:
        if data is None and type(None) in typing.get_args(union):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("node"), str):
            raise ValueError(f"expected an object with a \"node\" tag, got {data!r}")
        fields = dict(data)
        cls = _CLASSES.get(fields.pop("node"))
        if cls is None or cls not in typing.get_args(union):
            raise ValueError(f"{data['node']!r} is not allowed here")
        return conv.structure(fields, cls)

    conv.register_unstructure_hook_func(_is_node_union, unstructure)
    conv.register_structure_hook_func(_is_node_union, structure)
    return conv


def to_data(rule: Rule) -> dict[str, Any]:
    """The JSON form of a rule: plain dicts, lists and strings."""
    data: dict[str, Any] = _converter().unstructure(rule, Predicate)
    return data


def from_data(data: Any) -> Rule:
    """A rule from its JSON form, with no checking of names (see `parse.parse_json`)."""
    rule: Rule = _converter().structure(data, Predicate)  # type: ignore[arg-type]
    return rule
