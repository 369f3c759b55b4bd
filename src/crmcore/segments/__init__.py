"""Segments: company-defined rules over the customer base (see docs/segments.md).

    crm.customers.matching('tier = "gold" and sum(purchases.total, last 365 days) > 1000')

A rule is text or JSON, parsed to one AST (`ast`), checked (`schema`), then run by
one of two engines with one meaning: SQL pushed down to the storage (`sql`), or
Python closures (`evaluate`) for the memory storage and for any rule function
that has no SQL in the storage's dialect.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from crmcore import serialization
from crmcore.errors import ValidationError
from crmcore.lifecycle import states
from crmcore.lifecycle.history import as_of as as_of_record
from crmcore.lifecycle.history import changed_since, customers_as_of
from crmcore.model import Customer
from crmcore.ports import UnitOfWork
from crmcore.segments import ast
from crmcore.segments.accounts_then import reaches_accounts
from crmcore.segments.ast import from_data, to_data
from crmcore.segments.context import Context
from crmcore.segments.evaluate import UowSource, members
from crmcore.segments.functions import RuleFunction, registry
from crmcore.segments.parse import Functions, checked, parse, parse_json
from crmcore.segments.printer import to_text
from crmcore.segments.schema import Type
from crmcore.segments.sql import Relation, plan
from crmcore.sql import Dialect, dialect_of

log = logging.getLogger("crmcore.segments")

Rule = ast.Predicate | str | Mapping[str, Any]
"""A rule as text, in its JSON form (decoded), or as an AST."""


@attrs.frozen
class Explanation:
    """How a rule ran: `engine` is "python", "sql" or "sql+python" (reasons say why not all SQL)."""

    engine: str
    sql: str | None = None
    params: tuple[Any, ...] = ()
    reasons: tuple[str, ...] = ()


def explain(uow: UnitOfWork, rule: Rule, *, as_of: datetime, functions: Functions = None) -> Explanation:
    tree, types = checked(rule, functions)
    dialect = dialect_of(uow)
    if dialect is None:
        spoken = getattr(uow, "dialect", None) or "memory"
        return Explanation("python", reasons=(f"the storage speaks no SQL ({spoken})",))
    context = Context(as_of)
    late = _reached(tree, UowSource(uow, context.now))
    moved: tuple[str, ...] = ()
    if late:
        moved = (f"{len(late)} customer(s) reached by accounts changed after as_of: {ACCOUNTS_THEN}",)
    if _rewound(uow, as_of) and not states.kept(uow):
        found = plan(tree, types, context, dialect)
        changed = len(changed_since(uow, context.now))
        reason = f"{changed} customer(s) changed after as_of: {REWOUND}"
        return Explanation("sql+python", found.query.sql, found.query.params,
                           (*found.reasons, reason, *moved))
    found = plan(tree, types, context, dialect, customers=_then(uow, dialect, context))
    engine = "sql+python" if late and found.engine == "sql" else found.engine
    return Explanation(engine, found.query.sql, found.query.params, (*found.reasons, *moved))


def select(
    uow: UnitOfWork,
    rule: Rule,
    *,
    as_of: datetime,
    functions: Functions = None,
    engine: str = "auto",
) -> list[Customer]:
    """The customers for whom `rule` is true as of `as_of`, by id.

    `engine="python"` forces the Python engine (the reference, e.g. to compare).
    """
    _engine(engine)
    tree, types = checked(rule, functions)
    context = Context(as_of)
    dialect = dialect_of(uow)
    source = UowSource(uow, context.now)
    if engine == "python" or dialect is None:
        return members(tree, types, context, customers_as_of(uow, context.now), source)
    past = changed_since(uow, context.now) if _rewound(uow, as_of) and not states.kept(uow) else {}
    late = _reached(tree, source)
    relation = None if past else _then(uow, dialect, context)
    found = plan(tree, types, context, dialect, columns="c.doc", customers=relation)
    rows = _select(uow, found.query.sql, found.query.params, past=relation is not None)
    customers = [c for c in (_customer(row[0]) for row in rows) if c.id not in past and c.id not in late]
    if found.residue is not None:
        log.warning("segment rule runs partly in Python on %d candidates: %s", len(customers),
                    "; ".join(found.reasons))
        customers = members(found.residue, types, context, customers, source)
    if not past and not late:
        return customers
    then = members(tree, types, context, _then_customers(uow, past, late, context.now), source)
    return sorted([*customers, *then], key=lambda c: c.id)


def select_ids(
    uow: UnitOfWork, rule: Rule, *, as_of: datetime, functions: Functions = None, engine: str = "auto"
) -> list[str]:
    """The ids of the matching customers, in order; all in SQL when the rule allows it."""
    _engine(engine)
    tree, types = checked(rule, functions)
    dialect = dialect_of(uow)
    if engine != "python" and dialect is not None:
        context = Context(as_of)
        rewound = _rewound(uow, as_of)
        then = _then(uow, dialect, context) if rewound and states.kept(uow) else None
        found = plan(tree, types, context, dialect, customers=then)
        if found.residue is None:
            ids = [str(row[0]) for row in _select(uow, found.query.sql, found.query.params,
                                                  past=then is not None)]
            source = UowSource(uow, context.now)
            late = _reached(tree, source)
            if (not rewound or then is not None) and not late:
                return ids
            past = changed_since(uow, context.now) if rewound and then is None else {}
            back = members(tree, types, context, _then_customers(uow, past, late, context.now), source)
            return sorted([*(i for i in ids if i not in past and i not in late), *(c.id for c in back)])
    return [c.id for c in select(uow, tree, as_of=as_of, functions=functions, engine=engine)]


REWOUND = ("SQL reads today's rows for everyone else; these are rewound through the history "
           "and tested in Python (the storage keeps no superseded rows to read them as of then)")


ACCOUNTS_THEN = ("SQL reads today's accounts; these are tested in Python against the accounts "
                 "as they were then, rewound through their history")


def _reached(tree: Any, source: UowSource) -> set[str]:
    """The customers a rule about accounts must test in Python, against the accounts of
    the source's instant, because an account changed since reaches them (none for other
    rules). The accounts of then are the source's own, so they are rewound once."""
    then = source.accounts_then if reaches_accounts(tree) else None
    return set() if then is None else then.reached()


def _then_customers(uow: UnitOfWork, past: Mapping[str, Customer | None], late: set[str],
                    at: datetime) -> list[Customer]:
    """The customers of `past` (as of `at` already) and of `late`, as they were at `at`."""
    found = {i: c for i, c in past.items() if c is not None}
    for customer_id in late - past.keys():
        customer = as_of_record(uow, "customer", customer_id, uow.customers.find(customer_id), at, Customer)
        if customer is not None:
            found[customer_id] = customer
    return [found[i] for i in sorted(found)]


def _then(uow: UnitOfWork, dialect: Dialect, context: Context) -> Relation | None:
    """The customers as of the rule's instant in SQL, when some changed since (None: today's
    table is the table of then)."""
    if not _rewound(uow, context.now):
        return None
    within = states.days(uow.select, dialect, context.now,  # type: ignore[attr-defined]
                         in_history=states.in_history(uow))
    return states.relation(context.now, dialect, within)


def _rewound(uow: UnitOfWork, as_of: datetime) -> bool:
    """Whether some customer's fields changed after `as_of`, so today's rows would be wrong."""
    return uow.history.changed_after("customer", as_of)


def _engine(engine: str) -> None:
    if engine not in ("auto", "python"):
        raise ValidationError("engine", engine, 'must be "auto" (SQL where the storage has it) or "python"')


def _select(uow: UnitOfWork, sql: str, params: tuple[Any, ...], *,
            past: bool = False) -> list[tuple[Any, ...]]:
    """Rows of a rule's query; `past`: it reads the customers as of a past instant."""
    dialect = dialect_of(uow)
    settings = None if dialect is None else dialect.planner_settings(past=past)
    if settings is not None:
        uow.select(settings)  # type: ignore[attr-defined]
    rows: list[tuple[Any, ...]] = uow.select(sql, params)  # type: ignore[attr-defined]
    return rows


def _customer(doc: Any) -> Customer:
    return serialization.load_stored(doc, Customer)


__all__ = [
    "Context", "Explanation", "RuleFunction", "Type", "explain", "from_data", "parse", "parse_json",
    "registry", "select", "select_ids", "to_data", "to_text",
]
