"""The size limits of a rule, checked on every form before anything recurses over it.

A rule is untrusted input that every later stage walks recursively (checker,
printer, both engines, the database's own parser), so its depth, its node
count and the length of its `in` lists are bounded here, once, for text, JSON
and AST alike; the JSON data is measured before cattrs walks it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from crmcore import limits
from crmcore.errors import RuleLimit
from crmcore.segments import ast as a


def json_depth(data: Any, text: str) -> None:
    """Refuse JSON data nested deeper than a rule may be (iteratively: no recursion to exhaust)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > 8 * limits.RULE_NODES:
            raise RuleLimit(text, "rule_nodes", limits.RULE_NODES)
        if depth > limits.JSON_DEPTH:
            raise RuleLimit(text, "json_depth", limits.JSON_DEPTH)
        if isinstance(item, dict):
            stack.extend((value, depth + 1) for value in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((value, depth + 1) for value in item)


def bounded(rule: a.Node, text: str) -> None:
    """Refuse a rule tree deeper, larger or with longer `in` lists than the limits allow."""
    stack: list[tuple[Any, int]] = [(rule, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > limits.RULE_NODES:
            raise RuleLimit(text, "rule_nodes", limits.RULE_NODES)
        if depth > limits.RULE_DEPTH:
            raise RuleLimit(text, "rule_depth", limits.RULE_DEPTH)
        if isinstance(node, a.In) and len(node.values) > limits.IN_VALUES:
            raise RuleLimit(text, "in_values", limits.IN_VALUES)
        deeper = depth + 1 if isinstance(node, _LEVELS) else depth
        stack.extend((child, deeper) for child in _children(node))


_LEVELS = (a.Not, a.And, a.Or, a.Call, a.Aggregate)
"""The nodes that nest a level, as the text form counts them (`not`, brackets, calls)."""


def _children(node: Any) -> Iterator[Any]:
    for name in _fields(type(node)) or ():
        value = getattr(node, name)
        if isinstance(value, tuple):
            yield from (item for item in value if _fields(type(item)) is not None)
        elif _fields(type(value)) is not None:
            yield value


_FIELDS: dict[type, tuple[str, ...] | None] = {}


def _fields(cls: type) -> tuple[str, ...] | None:
    """The attribute names of a node class; None for anything that is not a node."""
    if cls not in _FIELDS:
        _FIELDS[cls] = tuple(field.name for field in attrs.fields(cls)) if attrs.has(cls) else None
    return _FIELDS[cls]
