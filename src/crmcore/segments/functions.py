"""Rule functions: the built-in ones and those plugins contribute through
`crmcore_register_rule_functions`.

A function has a Python body (the reference meaning) and, optionally, a SQL
translation per dialect. A rule that calls a function with no translation for
the storage's dialect is still answered: that part runs in Python, and the plan
says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import pluggy

from crmcore.errors import PluginError
from crmcore.segments.ast import AGGREGATES, KEYWORDS
from crmcore.segments.schema import Type
from crmcore.values import name as machine_name

SqlTranslation = Callable[..., str]
"""Gets the SQL of each argument (already safe: values are bound parameters) and returns
an expression using them; it must not put any value into the SQL text itself (and must
write a literal `%` as `%%` for PostgreSQL). Arguments are in the dialect's storage form:
instants are integer microseconds in SQLite, money integer 1/10,000ths there."""


def _valid_name(_instance: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
    machine_name(value, "rule function name")
    if "." in value or "-" in value or value in KEYWORDS or value in AGGREGATES:
        raise PluginError(f"rule function name {value!r} must be an identifier and not a keyword")


def _frozen(translations: Mapping[str, SqlTranslation]) -> Mapping[str, SqlTranslation]:
    return MappingProxyType(dict(translations))


def _types(kinds: Iterable[Type | str]) -> tuple[Type, ...]:
    return tuple(Type(kind) for kind in kinds)


@attrs.frozen
class RuleFunction:
    """`python(*arguments)` gives the value (None for unknown); `sql[dialect](*argument_sql)` the SQL.

    Arguments arrive as Python values of their declared types (text: str, int: int,
    money: Decimal, real: float, instant: aware datetime, date: date, bool: bool)
    or None when unknown.
    """

    name: str = attrs.field(validator=_valid_name)
    params: tuple[Type, ...] = attrs.field(converter=_types)
    returns: Type = attrs.field(converter=Type)
    python: Callable[..., Any]
    sql: Mapping[str, SqlTranslation] = attrs.field(factory=dict, converter=_frozen)
    doc: str = ""

    @returns.validator
    def _returns(self, _attribute: attrs.Attribute[Type], value: Type) -> None:
        if value in (Type.ANY, Type.NUMBER, Type.TAGS):
            raise PluginError(f"rule function {self.name} cannot return {value}")


def _length(text: str | None) -> int | None:
    return None if text is None else len(text)


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_LOWER = _UPPER.lower()
_TO_LOWER = str.maketrans(_UPPER, _LOWER)
_TO_UPPER = str.maketrans(_LOWER, _UPPER)


def _lower(text: str | None) -> str | None:
    return None if text is None else text.translate(_TO_LOWER)


def _upper(text: str | None) -> str | None:
    return None if text is None else text.translate(_TO_UPPER)


BUILTINS: tuple[RuleFunction, ...] = (
    RuleFunction(
        "length", [Type.TEXT], Type.INT, _length,
        {"sqlite": lambda s: f"length({s})", "postgresql": lambda s: f"char_length({s})"},
        doc="Number of characters of a text.",
    ),
    RuleFunction(
        "lower", [Type.TEXT], Type.TEXT, _lower,
        {"sqlite": lambda s: f"lower({s})",
         "postgresql": lambda s: f"translate({s}, '{_UPPER}', '{_LOWER}')"},
        doc="The text with A-Z lower-cased (ASCII letters only, the same in every engine and locale).",
    ),
    RuleFunction(
        "upper", [Type.TEXT], Type.TEXT, _upper,
        {"sqlite": lambda s: f"upper({s})",
         "postgresql": lambda s: f"translate({s}, '{_LOWER}', '{_UPPER}')"},
        doc="The text with a-z upper-cased (ASCII letters only).",
    ),
)
"""Functions every rule may call. SQLite's own lower()/upper() touch ASCII letters only
(crmcore does not load ICU), which is what the Python bodies do too."""


def registry(plugins: pluggy.PluginManager | None = None) -> Mapping[str, RuleFunction]:
    """Every function a rule may call: the built-ins, then each plugin's (names must not clash)."""
    found = {f.name: f for f in BUILTINS}
    contributed = plugins.hook.crmcore_register_rule_functions() if plugins is not None else []
    for functions in contributed:
        for function in functions:
            if not isinstance(function, RuleFunction):
                raise PluginError(
                    f"crmcore_register_rule_functions returned {function!r}, not a RuleFunction"
                )
            if function.name in found:
                raise PluginError(f"two rule functions are named {function.name!r}")
            found[function.name] = function
    return MappingProxyType(found)
