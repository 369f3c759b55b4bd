"""The canonical text of a rule: what `parse` reads back to the very same AST."""

from __future__ import annotations

import json
import re
from datetime import UTC

from crmcore.segments import ast as a

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def to_text(rule: a.Predicate) -> str:
    return _predicate(rule)


def _grouped(node: a.Predicate) -> str:
    text = _predicate(node)
    return f"({text})" if isinstance(node, a.And | a.Or) else text


def _predicate(node: a.Predicate) -> str:
    match node:
        case a.And(items):
            return " and ".join(map(_grouped, items))
        case a.Or(items):
            return " or ".join(map(_grouped, items))
        case a.Not(item):
            return f"not {_grouped(item)}"
        case a.Compare(left, op, right):
            return f"{term(left)} {op} {term(right)}"
        case a.In(subject, values):
            return f"{term(subject)} in ({', '.join(map(term, values))})"
        case a.Contains(subject, value):
            return f"{term(subject)} contains {term(value)}"
        case a.Between(subject, low, high):
            return f"{term(subject)} between {term(low)} and {term(high)}"
        case a.IsNull(subject):
            return f"{term(subject)} is null"
        case a.IsEmpty(subject):
            return f"{term(subject)} is empty"
        case a.Birthday(days):
            return f"birthday within {_span(days, 'days')}"
        case a.Truth(subject):
            return term(subject)
    raise TypeError(f"not a rule predicate: {node!r}")


def _span(amount: int, unit: str) -> str:
    return f"{amount} {unit[:-1] if amount == 1 else unit}"


def field(path: tuple[str, ...]) -> str:
    head, *rest = path
    return head + "".join(
        f".{segment}" if _SEGMENT.match(segment) else f"[{json.dumps(segment, ensure_ascii=False)}]"
        for segment in rest
    )


def window(node: a.Last | a.Since) -> str:
    if isinstance(node, a.Last):
        return f"last {_span(node.amount, node.unit)}"
    return f"since {term(node.start)}"


def term(node: a.Term) -> str:
    match node:
        case a.Field(path):
            return field(path)
        case a.Text(value):
            return json.dumps(value, ensure_ascii=False)
        case a.Number(value):
            return format(value, "f")
        case a.Bool(value):
            return "true" if value else "false"
        case a.Day(value):
            return value.isoformat()
        case a.Instant(value):
            return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        case a.Now():
            return "now"
        case a.Today():
            return "today"
        case a.Ago(amount, unit):
            return f"{_span(amount, unit)} ago"
        case a.Aggregate(func, source, name, where, span, of):
            inner = source if name is None else f"{source}.{name}"
            if of is not None:
                inner = f"{of}.{inner}"
            if where is not None:
                inner += f" where {_predicate(where)}"
            if span is not None:
                inner += f", {window(span)}"
            return f"{func}({inner})"
        case a.Call(name, args):
            return f"{name}({', '.join(map(term, args))})"
    raise TypeError(f"not a rule term: {node!r}")
