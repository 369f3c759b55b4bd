"""A campaign's audience as of an instant, streamed in customer-id order with each member's stratum.

On SQL storages the segment rule is compiled once and read in keyset pages
(`id > last ORDER BY id LIMIT n`), so memory holds one page whatever the
audience; a rule that needs Python for some part (or a storage without SQL) is
evaluated whole, as `crm.customers.matching` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from crmcore.errors import ValidationError
from crmcore.model import Customer
from crmcore.ports import UnitOfWork
from crmcore.segments import Rule, select
from crmcore.segments.context import Context
from crmcore.segments.parse import Functions, checked
from crmcore.segments.sql import plan
from crmcore.sql.dialect import dialect_of

FIELDS = ("tier", "lifecycle", "country", "language", "service_point", "kind")
"""Customer fields a holdout may be stratified by (or `score.<scorer>`: the score's label)."""
PAGE = 2_000


def check_stratify(stratify: str | None) -> None:
    if stratify is None or stratify in FIELDS:
        return
    if stratify.startswith("score.") and len(stratify) > len("score."):
        return
    raise ValidationError("stratify", stratify, f"must be one of {', '.join(FIELDS)} or score.<scorer>")


def stream(
    uow: UnitOfWork,
    rule: Rule,
    *,
    as_of: datetime,
    functions: Functions,
    stratify: str | None,
    page: int = PAGE,
) -> Iterator[tuple[str, str]]:
    """(customer id, stratum) of every customer the rule selects as of `as_of`, by id."""
    check_stratify(stratify)
    field = stratify if stratify in FIELDS else None
    scorer = stratify[len("score.") :] if stratify and stratify.startswith("score.") else None
    rows = _rows(uow, rule, as_of, functions, field, page)
    for customer_id, value in rows:
        if scorer is not None:
            score = uow.scores.latest(customer_id, scorer, as_of)
            value = None if score is None else score.label or str(score.value)
        yield customer_id, "" if value is None else str(value)


def stratum_of(uow: UnitOfWork, customer: Customer, stratify: str | None, as_of: datetime) -> str:
    """One customer's stratum, as `stream` gives it."""
    check_stratify(stratify)
    if stratify is None:
        return ""
    if stratify in FIELDS:
        value = _field(customer, stratify)
    else:
        score = uow.scores.latest(customer.id, stratify[len("score."):], as_of)
        value = None if score is None else score.label or str(score.value)
    return "" if value is None else str(value)


def _rows(
    uow: UnitOfWork, rule: Rule, as_of: datetime, functions: Functions, field: str | None, page: int
) -> Iterator[tuple[str, Any]]:
    tree, types = checked(rule, functions)
    d = dialect_of(uow)
    if d is not None:
        columns = "c.id" if field is None else f"c.id, c.{field}"
        found = plan(tree, types, Context(as_of), d, columns=columns)
        order = f" ORDER BY c.id{d.text_order}"
        if found.residue is None and found.query.sql.endswith(order):
            head = found.query.sql[: -len(order)]
            after: str | None = None
            while True:
                if after is None:
                    sql, params = f"{head}{order} LIMIT {page:d}", found.query.params
                else:
                    sql = f"{head} AND c.id{d.text_order} > {d.placeholder}{order} LIMIT {page:d}"
                    params = (*found.query.params, after)
                rows: list[tuple[Any, ...]] = uow.select(sql, params)  # type: ignore[attr-defined]
                for row in rows:
                    yield str(row[0]), row[1] if field is not None else None
                if len(rows) < page:
                    return
                after = str(rows[-1][0])
    for customer in select(uow, tree, as_of=as_of, functions=functions):
        yield customer.id, _field(customer, field)


def _field(customer: Customer, field: str | None) -> Any:
    if field is None:
        return None
    if field == "country":
        return customer.country
    return getattr(customer, field)
