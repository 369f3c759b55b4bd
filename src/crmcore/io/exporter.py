"""Exporting records to CSV or JSON Lines, in the columns an import reads back.

Every kind is written with the field names of `crmcore.io.mapping.FIELDS`, so a file
exported here imports again without a mapping (round trip: the same base). Custom
attributes become `attributes.NAME:TYPE` columns and external ids `external_id.SOURCE`
columns, found by a first pass over the customers. With a mapping, only its columns
are written, under the file's names. Purchases are written one row per order line.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from crmcore import serialization
from crmcore.errors import ValidationError
from crmcore.io.mapping import FIELDS, JSON_FIELDS, KINDS, ColumnMapping
from crmcore.io.sources import Sink, file_format
from crmcore.model import Account, CampaignMember, Case, Customer, Interaction, Purchase
from crmcore.scoring.summary import every
from crmcore.values import AttributeValue

if TYPE_CHECKING:
    from crmcore.crm import CRM

_TYPE_NAMES = ((bool, "bool"), (int, "int"), (float, "float"), (Decimal, "decimal"),
               (datetime, "datetime"), (date, "date"), (str, "text"))
_EXPORTED = {"customers": FIELDS["customers"],
             **{k: tuple(f for f in FIELDS[k] if f not in ("customer_email", "customer_phone"))
                for k in KINDS if k != "customers"},
             "campaign_members": ("campaign_id", "customer_id", "group", "status", "at")}
EXPORT_KINDS = (*KINDS, "campaign_members")
"""What can be exported: the importable kinds, and a campaign's results (export only)."""


def export_file(
    crm: CRM, kind: str, target: Path | str | IO[str], *, format: str | None = None,
    mapping: ColumnMapping | None = None, segment: str | None = None, rule: str | None = None,
    customer: str | None = None, campaign: str | None = None,
) -> int:
    """Write every `kind` record (or a segment's members, a rule's matches, or one
    customer's records: their timeline) to a file; returns how many records were written.

    `kind="campaign_members"` with `campaign=` writes a campaign's results: each member's
    group (target or control), status and when it was last set. `target` is a path or an
    open text file ("-" is standard output).
    """
    if kind not in EXPORT_KINDS:
        raise ValidationError("kind", kind, f"must be one of {', '.join(EXPORT_KINDS)}")
    if (kind == "campaign_members") != (campaign is not None):
        raise ValidationError("campaign", campaign, "names the campaign whose members are exported")
    if (segment or rule) and kind != "customers":
        raise ValidationError("segment", segment or rule, "selects customers; export customers with it")
    if customer and kind == "customers":
        raise ValidationError("customer", customer, "selects a customer's records, not customers")
    chosen = file_format(Path(target) if isinstance(target, str | Path) else Path("out"), format)
    with ExitStack() as stack, crm.reading() as uow:
        items: Iterable[Any]
        if campaign is not None:
            uow.campaigns.get(campaign)
            items = sorted(uow.campaign_members.of(campaign), key=lambda m: m.customer_id)
        elif kind == "customers" and (segment or rule):
            ids = sorted(crm.segments.members(segment) if segment else crm.customers.ids_matching(rule))
            items = (uow.customers.get(i) for i in ids)
        elif kind == "accounts":
            items = _parents_first(uow.accounts.of_customer(customer) if customer else every(uow, "accounts"))
        elif customer:
            repo = getattr(uow, kind)
            found = repo.for_customer(customer) if kind == "cases" else \
                repo.for_customer(customer, limit=None)
            items = sorted(found, key=lambda item: (_when(item), item.id))
        else:
            items = every(uow, kind)
        columns = list(_EXPORTED[kind])
        if kind == "customers":
            extra = _customer_columns(uow.customers.get(i) for i in ids) if (segment or rule) \
                else _customer_columns(every(uow, "customers"))
            columns += extra
        renamed = _renames(mapping, kind, columns)
        if isinstance(target, str | Path):
            if str(target) == "-":
                file: IO[str] = sys.stdout
            else:
                try:
                    file = stack.enter_context(Path(target).open("w", encoding="utf-8", newline=""))
                except OSError as exc:
                    reason = f"cannot be written: {exc.strerror}"
                    raise ValidationError("target", str(target), reason) from None
        else:
            file = target
        sink = Sink(file, chosen, [renamed[c] for c in columns if c in renamed])
        count = 0
        for item in items:
            for row in _rows(kind, item, columns):
                sink.write({renamed[c]: _plain(row.get(c), chosen, c) for c in columns if c in renamed})
            count += 1
        return count


def _when(item: Any) -> Any:
    return getattr(item, "occurred_at", None) or getattr(item, "ordered_at", None) or item.opened_at


def _renames(mapping: ColumnMapping | None, kind: str, columns: list[str]) -> dict[str, str]:
    """Field -> file column: the field's own name, or with a mapping only its columns, renamed."""
    if mapping is None:
        return {c: c for c in columns}
    if mapping.kind != kind:
        raise ValidationError("mapping", mapping.kind, f"is a mapping for {mapping.kind}, not {kind}")
    from crmcore.io.mapping import target

    by_field: dict[str, str] = {}
    for column, spec in mapping.columns.items():
        found = target(kind, spec)
        if found is not None:
            by_field[found.spelled.split(":")[0] if found.field == "attributes" else found.spelled] = column
    return {c: by_field[c.split(":")[0]] for c in columns if c.split(":")[0] in by_field}


def _customer_columns(customers: Iterable[Customer]) -> list[str]:
    """`external_id.SOURCE` and `attributes.NAME:TYPE` columns for what the customers carry."""
    sources: set[str] = set()
    types: dict[str, set[str]] = defaultdict(set)
    for c in customers:
        sources.update(c.external_ids)
        for name, value in c.attributes.items():
            types[name].add(next(t for cls, t in _TYPE_NAMES if isinstance(value, cls)))
    attributes = [f"attributes.{name}" + ("" if kinds == {"text"} else
                                          f":{next(iter(kinds))}" if len(kinds) == 1 else ":json")
                  for name, kinds in sorted(types.items())]
    return [f"external_id.{s}" for s in sorted(sources)] + attributes


def _rows(kind: str, item: Any, columns: list[str]) -> Iterator[dict[str, Any]]:
    if isinstance(item, Customer):
        yield _customer_row(item, columns)
    elif isinstance(item, Purchase):
        base = {"id": item.id, "customer_id": item.customer_id, "ordered_at": item.ordered_at,
                "channel": item.channel, "service_point": item.service_point}
        for line in item.lines:
            yield {**base, "product": line.product, "unit_price": line.unit_price.amount,
                   "currency": line.unit_price.currency, "quantity": line.quantity, "category": line.category}
    elif isinstance(item, Account):
        yield {"id": item.id, "name": item.name, "kind": item.kind, "parent_id": item.parent_id,
               "tier": item.tier, "owner": item.owner, "service_point": item.service_point,
               "members": serialization.unstructure(item.members) if item.members else None}
    elif isinstance(item, CampaignMember):
        yield {f: getattr(item, f) for f in _EXPORTED[kind]}
    elif isinstance(item, Interaction | Case):
        row = {f: getattr(item, f, None) for f in _EXPORTED[kind]}
        if isinstance(item, Interaction) and item.duration is not None:
            row["duration"] = item.duration.total_seconds()
        yield row


def _parents_first(accounts: Iterable[Account]) -> list[Account]:
    """Accounts ordered so each comes after its parent (by depth, then id): the order an
    import checks them in. Account tables are small, so they are held whole here."""
    by_id = {a.id: a for a in accounts}
    depth: dict[str, int] = {}

    def depth_of(account_id: str) -> int:
        chain: list[str] = []
        current: str | None = account_id
        while current is not None and current in by_id and current not in depth and current not in chain:
            chain.append(current)
            current = by_id[current].parent_id
        base = depth.get(current, -1) if current is not None else -1
        for offset, name in enumerate(reversed(chain), start=1):
            depth[name] = base + offset
        return depth[account_id]

    return sorted(by_id.values(), key=lambda a: (depth_of(a.id), a.id))


def _customer_row(c: Customer, columns: list[str]) -> dict[str, Any]:
    address = c.addresses[0] if c.addresses else None
    row: dict[str, Any] = {
        "id": c.id, "name": c.name, "kind": c.kind, "emails": list(c.emails), "phones": list(c.phones),
        "birth_date": c.birth_date, "language": c.language, "lifecycle": c.lifecycle, "tier": c.tier,
        "tags": sorted(c.tags), "service_point": c.service_point, "created_at": c.created_at,
    }
    if address is not None:
        row.update(country=address.country, city=address.city, postal_code=address.postal_code,
                   street="|".join(address.lines), address_region=address.region, address_kind=address.kind)
    if len(c.addresses) > 1:
        row["other_addresses"] = serialization.unstructure(c.addresses[1:])
    if c.consents:
        row["consents"] = serialization.unstructure(c.consents)
    for source, external in c.external_ids.items():
        row[f"external_id.{source}"] = external
    by_name = {col.split(":")[0]: col for col in columns if col.startswith("attributes.")}
    for name, value in c.attributes.items():
        column = by_name[f"attributes.{name}"]
        if column.endswith(":json"):  # mixed types: tagged JSON keeps each value's type
            value = json.dumps(serialization.converter().unstructure(value, unstructure_as=AttributeValue))
        row[column] = value
    return row


def _plain(value: Any, format: str, column: str) -> Any:
    """A value as the file holds it: text and numbers; lists stay lists in JSON Lines."""
    if column in JSON_FIELDS and value is not None and format == "csv":
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, float) and format == "csv":
        return repr(value)
    return value
