"""Reading rules: the text form (a small recursive-descent parser) and the JSON form.

Both end in the same checked AST; every fault is a `RuleError` with the line,
the column and a caret, and for an unknown name the closest known ones. Rule
text is untrusted: it is only ever tokenised here, never evaluated or spliced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs
import pluggy

from crmcore import limits
from crmcore.errors import RuleError, RuleLimit, shown
from crmcore.segments import ast as a
from crmcore.segments.bounds import bounded, json_depth
from crmcore.segments.functions import RuleFunction, registry
from crmcore.segments.printer import to_text
from crmcore.segments.schema import Checked, check

Functions = Mapping[str, RuleFunction] | pluggy.PluginManager | None
"""Which functions a rule may call: a registry, a plugin manager's, or (None) every installed one."""

N = TypeVar("N")
MAX_LENGTH = limits.RULE_LENGTH
MAX_DEPTH = limits.RULE_DEPTH

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*")
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|==|=|<|>)
  | (?P<punct>[(),.\[\]])
    """,
    re.VERBOSE,
)
_UNITS = {unit[:-1]: unit for unit in a.UNITS} | {unit: unit for unit in a.UNITS}


@attrs.frozen
class Token:
    kind: str
    text: str
    at: int

    @property
    def word(self) -> str | None:
        """The keyword this token is, lower-cased, if it is one."""
        lowered = self.text.lower()
        return lowered if self.kind == "word" and lowered in a.KEYWORDS else None


def tokens(text: str) -> list[Token]:
    found: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            raise RuleError(text, f"unexpected character {text[at]!r}", offset=at)
        kind = match.lastgroup or ""
        if kind != "space":
            found.append(Token(kind, match.group(), at))
        at = match.end()
    found.append(Token("end", "", len(text)))
    return found


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokens(text)
        self.index = 0
        self.depth = 0
        self.positions: dict[int, int] = {}
        self.result: a.Predicate = a.Birthday(0)

    # ---- helpers ----

    @property
    def peek(self) -> Token:
        return self.tokens[self.index]

    def next(self) -> Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def fail(self, reason: str, token: Token | None = None) -> RuleError:
        return RuleError(self.text, reason, offset=(token or self.peek).at)

    def at(self, *words: str) -> bool:
        token = self.peek
        return token.word in words or (token.kind in ("op", "punct") and token.text in words)

    def expect(self, what: str, description: str | None = None) -> Token:
        if not self.at(what):
            found = self.peek.text or "the end of the rule"
            raise self.fail(f"expected {description or repr(what)}, found {found!r}")
        return self.next()

    def node(self, value: N, token: Token) -> N:
        self.positions.setdefault(id(value), token.at)
        return value

    # ---- predicates ----

    def rule(self) -> a.Predicate:
        if not self.text.strip():
            raise self.fail("the rule is empty")
        result = self.disjunction()
        if self.peek.kind != "end":
            raise self.fail(f"expected `and`, `or` or the end of the rule, found {self.peek.text!r}")
        return result

    def disjunction(self) -> a.Predicate:
        first = self.peek
        items = [self.conjunction()]
        while self.at("or"):
            self.next()
            items.append(self.conjunction())
        return items[0] if len(items) == 1 else self.node(a.Or(tuple(items)), first)

    def conjunction(self) -> a.Predicate:
        first = self.peek
        items = [self.negation()]
        while self.at("and"):
            self.next()
            items.append(self.negation())
        return items[0] if len(items) == 1 else self.node(a.And(tuple(items)), first)

    def enter(self) -> None:
        """One level deeper (a `not`, a bracket, a call): the parser recurses, so the depth is bounded."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            reason = f"the rule nests deeper than {MAX_DEPTH} levels"
            raise RuleLimit(self.text, "rule_depth", MAX_DEPTH, reason, offset=self.peek.at)

    def negation(self) -> a.Predicate:
        self.enter()
        try:
            if self.at("not"):
                start = self.next()
                return self.node(a.Not(self.negation()), start)
            return self.condition()
        finally:
            self.depth -= 1

    def condition(self) -> a.Predicate:
        start = self.peek
        if self.at("("):
            self.next()
            inner = self.disjunction()
            self.expect(")", "')'")
            return inner
        if self.at("birthday"):
            self.next()
            self.expect("within", "'within'")
            days = self.amount()
            unit = self.unit()
            if unit != "days":
                raise self.fail("`birthday within` counts days", start)
            return self.node(a.Birthday(days), start)
        subject = self.term()
        negated = False
        if self.at("not") and self.tokens[self.index + 1].word in ("in", "contains", "between"):
            self.next()
            negated = True
        result = self.tail(subject, start)
        return self.node(a.Not(result), start) if negated else result

    def tail(self, subject: a.Term, start: Token) -> a.Predicate:
        token = self.peek
        if token.kind == "op":
            self.next()
            op = {"<>": "!=", "==": "="}.get(token.text, token.text)
            return self.node(a.Compare(subject, op, self.term()), token)
        if self.at("in"):
            self.next()
            self.expect("(", "'(' and a list of values")
            values = [self.term()]
            while self.at(","):
                self.next()
                values.append(self.term())
                if len(values) > limits.IN_VALUES:
                    reason = f"an `in` list holds more than {limits.IN_VALUES} values"
                    raise RuleLimit(self.text, "in_values", limits.IN_VALUES, reason, offset=token.at)
            self.expect(")", "',' or ')'")
            return self.node(a.In(subject, tuple(values)), token)
        if self.at("contains"):
            self.next()
            return self.node(a.Contains(subject, self.term()), token)
        if self.at("between"):
            self.next()
            low = self.term()
            self.expect("and", "'and' (between LOW and HIGH)")
            return self.node(a.Between(subject, low, self.term()), token)
        if self.at("is"):
            self.next()
            negated = bool(self.at("not") and self.next())
            if self.at("null"):
                self.next()
                result: a.Predicate = self.node(a.IsNull(subject), token)
            elif self.at("empty"):
                self.next()
                result = self.node(a.IsEmpty(subject), token)
            else:
                raise self.fail("expected 'null' or 'empty' after 'is'")
            return self.node(a.Not(result), token) if negated else result
        return self.node(a.Truth(subject), start)

    # ---- terms ----

    def term(self) -> a.Term:
        token = self.peek
        kind, text = token.kind, token.text
        if kind == "string":
            self.next()
            try:
                return self.node(a.Text(json.loads(text)), token)
            except ValueError as exc:
                raise self.fail(f"bad text: {exc}", token) from None
        if kind == "date":
            self.next()
            try:
                return self.node(a.Day(date.fromisoformat(text)), token)
            except ValueError as exc:
                raise self.fail(f"{text!r} is not a date ({exc})", token) from None
        if kind == "datetime":
            self.next()
            try:
                moment = a.Instant(datetime.fromisoformat(text.replace("Z", "+00:00")))
            except ValueError as exc:
                raise self.fail(f"{text!r} is not an instant ({exc})", token) from None
            return self.node(a.Instant(moment.value.astimezone(UTC)), token)
        if kind == "number":
            if self.tokens[self.index + 1].kind == "word" and self.tokens[self.index + 1].text in _UNITS:
                amount = self.amount()
                unit = self.unit()
                self.expect("ago", "'ago' (as in '3 months ago')")
                return self.node(a.Ago(amount, unit), token)
            self.next()
            try:
                return self.node(a.Number(Decimal(text)), token)
            except (ValueError, InvalidOperation) as exc:
                raise self.fail(str(exc), token) from None
        keyword = token.word
        if keyword in ("true", "false"):
            self.next()
            return self.node(a.Bool(keyword == "true"), token)
        if keyword == "now":
            self.next()
            return self.node(a.Now(), token)
        if keyword == "today":
            self.next()
            return self.node(a.Today(), token)
        if kind == "word" and self.tokens[self.index + 1].text == "(" and (
            keyword is None or keyword == "last"
        ):
            self.enter()
            try:
                return self.call()
            finally:
                self.depth -= 1
        if kind == "word" and keyword is None:
            return self.field()
        raise self.fail(f"expected a field, a value or a function, found {text or 'the end of the rule'!r}")

    def field(self) -> a.Field:
        start = self.next()
        path = [start.text]
        while self.at(".", "["):
            if self.next().text == ".":
                segment = self.next()
                if segment.kind != "word":
                    raise self.fail("expected a name after '.'", segment)
                path.append(segment.text)
            else:
                segment = self.next()
                if segment.kind != "string":
                    raise self.fail('expected a quoted name, as in attributes["shoe-size"]', segment)
                path.append(json.loads(segment.text))
                self.expect("]", "']'")
        try:
            return self.node(a.Field(tuple(path)), start)
        except ValueError as exc:
            raise self.fail(str(exc), start) from None

    def call(self) -> a.Term:
        start = self.next()
        name = start.text.lower() if start.word else start.text
        self.expect("(")
        if name in a.AGGREGATES:
            return self.node(self.aggregate(name), start)
        args: list[a.Term] = []
        if not self.at(")"):
            args.append(self.term())
            while self.at(","):
                self.next()
                args.append(self.term())
        self.expect(")", "',' or ')'")
        return self.node(a.Call(name, tuple(args)), start)

    def aggregate(self, func: str) -> a.Aggregate:
        source = self.next()
        of = None
        if source.kind == "word" and source.text in a.GROUPS and self.at("."):
            of = source.text
            self.next()
            source = self.next()
        if source.kind != "word" or source.text not in a.SOURCES:
            raise self.fail(f"expected what to {func}: {', '.join(a.SOURCES)} (or account.SOURCE, "
                            "household.SOURCE)", source)
        field = None
        if self.at("."):
            self.next()
            name = self.next()
            if name.kind != "word":
                raise self.fail("expected a field name after '.'", name)
            field = name.text
        where = None
        if self.at("where"):
            self.next()
            where = self.disjunction()
        window: a.Last | a.Since | None = None
        if self.at(","):
            self.next()
            window = self.window()
        self.expect(")", "')' (or ', last 90 days' before it)")
        try:
            return a.Aggregate(func, source.text, field, where, window, of)
        except (TypeError, ValueError) as exc:
            raise self.fail(str(exc), source) from None

    def window(self) -> a.Last | a.Since:
        token = self.peek
        if self.at("last"):
            self.next()
            amount = self.amount()
            return self.node(a.Last(amount, self.unit()), token)
        if self.at("since"):
            self.next()
            return self.node(a.Since(self.term()), token)
        raise self.fail("expected a window: 'last 90 days' or 'since 2024-01-01'")

    def amount(self) -> int:
        token = self.next()
        if token.kind != "number" or not token.text.isdigit() or int(token.text) > limits.RULE_AMOUNT:
            raise self.fail(f"expected a whole number of at most {limits.RULE_AMOUNT}", token)
        return int(token.text)

    def unit(self) -> str:
        token = self.next()
        if token.kind != "word" or token.text not in _UNITS:
            raise self.fail(f"expected a unit: {', '.join(a.UNITS)}", token)
        return _UNITS[token.text]


def _functions(functions: Functions) -> Mapping[str, RuleFunction]:
    if functions is None:
        from crmcore.plugins import get_plugin_manager

        return registry(get_plugin_manager())
    if isinstance(functions, pluggy.PluginManager):
        return registry(functions)
    return functions


def _read(text: str) -> _Parser:
    if not isinstance(text, str):
        raise RuleError(repr(text), "a rule must be a text")
    if len(text) > MAX_LENGTH:
        reason = f"the rule is longer than {MAX_LENGTH} characters"
        raise RuleLimit(text[:80], "rule_length", MAX_LENGTH, reason)
    parser = _Parser(text)
    parser.result = parser.rule()
    if len(parser.positions) > limits.RULE_NODES:  # depth and `in` lists were bounded while parsing
        raise RuleLimit(text, "rule_nodes", limits.RULE_NODES)
    return parser


def syntax(text: str) -> a.Predicate:
    """The AST of a rule's text, read for its form only (names and types are not checked)."""
    return _read(text).result


def parse_checked(text: str, functions: Functions = None) -> tuple[a.Predicate, Checked]:
    """The AST of a rule written as text, with the types the checker gave it."""
    parser = _read(text)
    return parser.result, check(parser.result, _functions(functions), text=text, positions=parser.positions)


def parse(text: str, functions: Functions = None) -> a.Predicate:
    """The AST of a rule written as text (checked: names, types, values of enumerations)."""
    return parse_checked(text, functions)[0]


def parse_json(data: Any, functions: Functions = None) -> a.Predicate:
    """The AST of a rule in its JSON form (decoded, or JSON text), checked like text.

    The tree itself is checked: its canonical text is never read back in its place
    (a name that is not a plain word would read back as another rule). Errors
    point into that canonical text.
    """
    return _from_json(data, functions)[0]


def _from_json(data: Any, functions: Functions) -> tuple[a.Predicate, Checked]:
    if isinstance(data, str | bytes) and len(data) > 4 * MAX_LENGTH:
        raise RuleLimit(_short(data), "rule_length", 4 * MAX_LENGTH, "the rule's JSON form is too long")
    try:
        decoded = json.loads(data) if isinstance(data, str | bytes) else data
    except (ValueError, RecursionError) as exc:
        raise RuleError(_short(data), f"not a rule in JSON form: {_cause(exc)}") from None
    json_depth(decoded, _short(data))
    try:
        rule = a.from_data(decoded)
    except Exception as exc:  # cattrs wraps every fault of the data in its own errors
        raise RuleError(_short(data), f"not a rule in JSON form: {_cause(exc)}") from None
    return _checked_tree(rule, _functions(functions))


def checked(
    rule: a.Predicate | str | Mapping[str, Any], functions: Functions = None
) -> tuple[a.Predicate, Checked]:
    """A rule given as text, JSON form (a dict) or AST, with its types.

    An AST's faults are located in its canonical text.
    """
    if isinstance(rule, str):
        return parse_checked(rule, functions)
    if isinstance(rule, Mapping):
        return _from_json(rule, functions)
    if not isinstance(rule, a.Predicate):
        raise RuleError(_short(rule), "a rule must be a text, its JSON form or a rule AST")
    return _checked_tree(rule, _functions(functions))


def _checked_tree(rule: a.Predicate, found: Mapping[str, RuleFunction]) -> tuple[a.Predicate, Checked]:
    """Check a tree given as such (JSON or AST); a fault is located in its canonical text."""
    bounded(rule, _short(rule))
    try:
        return rule, check(rule, found)
    except RuleError as error:
        text = to_text(rule)
        try:
            parse_checked(text, found)  # the same fault again, with its position
        except RuleError as located:
            if error.reason.split(" (did you mean")[0] in located.reason:
                raise located from None
        raise error from None


def _short(data: Any) -> str:
    """A bounded picture of untrusted data (no deep recursion, no megabytes)."""
    return shown(data)


def _cause(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    while inner:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:300] + "..."  # cattrs quotes the data it was given
