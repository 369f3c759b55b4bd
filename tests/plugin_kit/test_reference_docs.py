"""The plugin reference is rendered from the code and kept in step with it: a hook, a type
or an event topic (or a payload key) that the docs do not show fails here."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import crmcore
from crmcore import reference
from crmcore.crm import Aggregates
from crmcore.topics import AGGREGATES, BY_NAME, TOPICS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REGENERATE = "run `python -m crmcore.reference docs` and commit the result"


def test_hooks_md_is_rendered_from_the_hookspecs() -> None:
    assert (DOCS / "hooks.md").read_text() == reference.hooks_markdown(), REGENERATE


def test_events_md_is_rendered_from_the_catalogue() -> None:
    assert (DOCS / "events.md").read_text() == reference.events_markdown(), REGENERATE


def test_every_hook_has_its_arguments_and_doc_in_the_reference() -> None:
    text = (DOCS / "hooks.md").read_text()
    for name in reference.hook_names():
        assert f"## `{name}`" in text and f"{name}(" in text
    assert "(undocumented)" not in text


def _emits() -> Iterator[tuple[str, ast.Call, list[str]]]:
    """(where, call, topics) for every `.emit(...)` call in crmcore's source."""
    for path in (ROOT / "src").rglob("*.py"):
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "emit" and node.args):
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            yield where, node, _topics(node.args[0], node, parents, where, tree)


def _topics(
    first: ast.expr, call: ast.AST, parents: dict[ast.AST, ast.AST], where: str, tree: ast.AST
) -> list[str]:
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return [first.value]
    if isinstance(first, ast.IfExp):  # "a" if ... else "b": both
        return [*_topics(first.body, call, parents, where, tree),
                *_topics(first.orelse, call, parents, where, tree)]
    if isinstance(first, ast.JoinedStr):  # f"{self.topic}.added": every aggregate's
        suffix = first.values[-1]
        assert isinstance(suffix, ast.Constant), where
        return [f"{name}{suffix.value}" for name in AGGREGATES]
    if isinstance(first, ast.Name):  # a loop over literal (topic, ...) pairs
        node: ast.AST = call
        while node in parents:
            node = parents[node]
            if isinstance(node, ast.For):
                return [c.value for c in ast.walk(node.iter)
                        if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            if isinstance(node, ast.FunctionDef):  # a parameter: the literals its callers pass
                return _passed(tree, node, first.id, where)
    raise AssertionError(f"{where}: cannot tell which topic this emit() writes; use a literal")


def _passed(tree: ast.AST, function: ast.FunctionDef, parameter: str, where: str) -> list[str]:
    names = [a.arg for a in function.args.args]
    assert parameter in names, f"{where}: cannot tell which topic this emit() writes; use a literal"
    index = names.index(parameter) - (1 if names[0] == "self" else 0)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if called != function.name:
            continue
        given = [k.value for k in node.keywords if k.arg == parameter]
        given += node.args[index:index + 1]
        assert given and isinstance(given[0], ast.Constant), f"{where}: pass {parameter} as a literal"
        found.append(str(given[0].value))
    assert found, f"{where}: {function.name} is never called with a literal {parameter}"
    return found


def test_the_aggregate_topics_are_the_crms_repositories() -> None:
    with crmcore.open("memory://") as crm:
        topics = {value.topic for value in vars(crm).values() if isinstance(value, Aggregates)}
    assert topics == set(AGGREGATES)


@pytest.mark.parametrize(("where", "call", "topics"), list(_emits()),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_every_emitted_topic_and_payload_key_is_catalogued(
    where: str, call: ast.Call, topics: list[str]
) -> None:
    keys = {k.arg for k in call.keywords if k.arg is not None}
    splat = any(k.arg is None for k in call.keywords)
    for name in topics:
        assert name in BY_NAME, f"{where}: topic {name!r} is missing from crmcore/topics.py (docs/events.md)"
        declared = set(BY_NAME[name].payload)
        if splat or BY_NAME[name].open_payload:
            assert keys <= declared, f"{where}: {name} payload keys {sorted(keys - declared)} undocumented"
        else:
            assert keys == declared, (
                f"{where}: {name} payload is {sorted(keys)}, documented {sorted(declared)}")


def test_no_topic_is_catalogued_twice() -> None:
    assert len(BY_NAME) == len(TOPICS)
