"""Plugin rule functions: pushed down when they bring SQL for the dialect, run in Python
(and said so) when they do not, with the same members either way."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

import crmcore
from crmcore import Customer, hookimpl
from crmcore.errors import PluginError, RuleError
from crmcore.plugins import make_plugin_manager
from crmcore.segments import RuleFunction, Type, explain, registry
from tests.segments.conftest import open_url

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def initial(name: str | None) -> str | None:
    return None if name is None else name[:1]


def vowels(name: str | None) -> int | None:
    return None if name is None else sum(ch in "aeiouAEIOU" for ch in name)


class Plugin:
    @hookimpl
    def crmcore_register_rule_functions(self) -> list[Any]:
        return [
            RuleFunction("initial", [Type.TEXT], Type.TEXT, initial,
                         {"sqlite": lambda s: f"substr({s}, 1, 1)", "postgresql": lambda s: f"left({s}, 1)"}),
            RuleFunction("vowels", ["text"], "int", vowels),  # Python only
        ]


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    pm = make_plugin_manager()
    pm.register(Plugin())
    opened = crmcore.open(open_url(request), plugins=pm, clock=lambda: NOW)
    opened.bulk_import([
        Customer(id, name, tier=tier, created_at=NOW, updated_at=NOW)
        for id, name, tier in [("1", "Ada", "gold"), ("2", "Bob", "gold"), ("3", "Aurelia", None)]
    ])
    yield opened
    opened.close()


def test_functions_with_sql_are_pushed_down(crm: crmcore.CRM) -> None:
    rule = 'initial(name) = "A" and tier = "gold"'
    assert crm.customers.ids_matching(rule) == ["1"]
    with crm.transaction() as uow:
        plan = explain(uow, rule, as_of=NOW, functions=crm.plugins)
    assert plan.engine == ("python" if crm.storage.url.startswith("memory") else "sql")


def test_functions_without_sql_fall_back_to_python_and_say_so(
    crm: crmcore.CRM, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="crmcore.segments"):
        assert crm.customers.ids_matching('vowels(name) >= 2 and tier = "gold"') == ["1"]
        assert crm.customers.ids_matching('vowels(name) > 3 or tier = "gold"') == ["1", "2", "3"]
        assert [c.id for c in crm.customers.matching("vowels(name) = 1")] == ["2"]
    if not crm.storage.url.startswith("memory"):
        assert "vowels() has no" in caplog.text and "translation" in caplog.text
        with crm.transaction() as uow:
            plan = explain(uow, 'vowels(name) >= 2 and tier = "gold"', as_of=NOW, functions=crm.plugins)
        assert plan.engine == "sql+python" and plan.sql is not None and "tier" in plan.sql


def test_unknown_function_is_a_rule_error(crm: crmcore.CRM) -> None:
    with pytest.raises(RuleError) as caught:
        crm.customers.ids_matching("vowel(name) > 1")
    assert "vowels" in caught.value.suggestions


def test_argument_types_are_checked(crm: crmcore.CRM) -> None:
    with pytest.raises(RuleError, match="wants a text"):
        crm.customers.ids_matching("initial(created_at) = 1")


def test_bad_registrations_are_plugin_errors() -> None:
    with pytest.raises(PluginError):
        RuleFunction("sum", [Type.INT], Type.INT, abs)
    with pytest.raises(PluginError):
        RuleFunction("tagset", [], Type.TAGS, frozenset)

    class Twice:
        @hookimpl
        def crmcore_register_rule_functions(self) -> list[Any]:
            return [RuleFunction("length", [Type.TEXT], Type.INT, len)]

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Twice())
    with pytest.raises(PluginError, match="two rule functions"):
        registry(pm)


def test_engine_names_are_checked(crm: crmcore.CRM) -> None:
    from crmcore.errors import ValidationError
    from crmcore.segments import select_ids

    with crm.transaction() as uow, pytest.raises(ValidationError, match="engine"):
        select_ids(uow, 'tier = "gold"', as_of=NOW, engine="fast")
