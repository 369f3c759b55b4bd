"""From a mapped row to a model record, and from a stored record back to a row.

`parse` turns one row into a `Parsed` record (typed values, a customer reference);
`apply` decides, in a unit of work, whether it is new, a change of a stored record,
or already there, and `merge` says what wins when it is a change (see `docs/io.md`):
the file wins for every mapped cell that has a value; empty cells and unmapped fields
keep what is stored; e-mails, phones and tags are added to the stored ones, external
ids and custom attributes are added or replaced key by key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, cast

import attrs

from crmcore import serialization
from crmcore import values as v
from crmcore.errors import NotFound, ValidationError
from crmcore.io.mapping import FIELDS, OWNED, ColumnMapping, Target
from crmcore.io.sources import Row
from crmcore.model import (
    Account,
    AccountMember,
    Case,
    Consent,
    Customer,
    Interaction,
    OrderLine,
    PostalAddress,
    Purchase,
)
from crmcore.ports import UnitOfWork
from crmcore.ports.storage import SqlUnitOfWork
from crmcore.sql.dialect import dialect_of

_ADDRESS = {"country": "country", "city": "city", "postal_code": "postal_code", "street": "lines",
            "address_region": "region", "address_kind": "kind"}
_LINE = ("product", "unit_price", "currency", "quantity", "category")
_PLAIN = frozenset(f for fields in FIELDS.values() for f in fields) - {
    "emails", "phones", "tags", "customer_id", "customer_email", "customer_phone"}
"""Fields whose value is stored as it is (no list to extend, no reference to resolve)."""


@attrs.frozen
class Parsed:
    """One record read from a file, before it meets the stored base."""

    line: int
    kind: str
    fields: dict[str, Any]
    """Typed values by field; only cells that had a value."""
    attributes: dict[str, v.AttributeValue] = attrs.field(factory=dict)
    external_ids: dict[str, str] = attrs.field(factory=dict)
    customer: tuple[str, str] | None = None
    """How the record names its customer: ("id" | "email" | "phone" | "external_id.SRC", value)."""
    lines: tuple[dict[str, Any], ...] = ()
    """A purchase's order lines (consecutive rows sharing the purchase id)."""
    end: int = attrs.field(default=attrs.Factory(lambda self: self.line, takes_self=True))
    """The record's last line (a purchase of several rows ends after it starts)."""


class Refused(Exception):
    """A row that cannot go in: the field and why (the importer writes it to the error file)."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.value = value
        self.reason = reason

    @classmethod
    def of(cls, error: ValidationError) -> Refused:
        return cls(error.field, error.value, error.reason)


_REFERENCE_FIELDS = frozenset(("customer_id", "customer_email", "customer_phone"))


@attrs.frozen
class Plan:
    """A file's columns compiled once: per column, its target, converter and where the value goes."""

    kind: str
    columns: tuple[tuple[str, Target, Callable[[Any], Any], str, dict[str, Any] | None, bool], ...]
    """(column, target, converter, slot, memo, text); slot: plain, list, attribute, external,
    reference; memo: the typed values of the column's recent cells; text: a plain text column."""

    @classmethod
    def of(cls, mapping: ColumnMapping, planned: Mapping[str, Target]) -> Plan:
        def slot(target: Target) -> str:
            if target.field in _PLAIN:
                return "plain"
            if target.field == "attributes":
                return "attribute"
            if target.field == "external_id":
                return "external"
            if target.field == "customer_external_id" or target.field in _REFERENCE_FIELDS:
                return "reference"
            return "list"

        return cls(mapping.kind, tuple(
            (column, target, mapping.converter(target), slot(target),
             {} if target.type in _MEMO_TYPES else None, target.type == "text")
            for column, target in planned.items()
        ))


MEMO = 4096
"""Cells remembered per typed column: dates, prices, quantities and flags repeat (the lines
of one order, a catalogue's prices), and a converted value is immutable, so it is shared."""
_MISS: Any = object()
_MEMO_TYPES = frozenset(("int", "float", "decimal", "bool", "date", "datetime"))
"""Types whose values are immutable (lists and JSON records are not shared)."""


def parse(plan: Plan, row: Row) -> Parsed:
    """The typed record of a row; raises `Refused` naming the first bad cell."""
    cells = row.cells
    if "" in cells:
        problem = cells[""]
        reason = problem if isinstance(problem, str) else "has more cells than the header has columns"
        raise Refused("row", None, reason)
    fields: dict[str, Any] = {}
    attributes: dict[str, v.AttributeValue] = {}
    external: dict[str, str] = {}
    customer: tuple[str, str] | None = None
    get = cells.get
    for column, target, convert, slot, memo, text in plan.columns:
        cell = get(column)
        if cell.__class__ is not str:
            value = _converted(convert, cell)
        elif text:  # trimmed; empty is no value
            value = cell.strip() or None
        elif memo is None:
            value = _converted(convert, cell)
        else:
            value = memo.get(cell, _MISS)
            if value is _MISS:
                value = _converted(convert, cell)
                if len(memo) >= MEMO:
                    memo.clear()
                memo[cell] = value
        if value is None:
            continue
        if slot == "plain":
            fields[target.field] = value
        elif slot == "attribute":
            if isinstance(value, str) and "\x00" in value:
                raise Refused(target.spelled, value, "must not contain NUL characters")
            attributes[target.name] = value
        elif slot == "external":
            external[target.name] = value
        elif slot == "reference":
            customer = (f"external_id.{target.name}" if target.field == "customer_external_id"
                        else target.field.removeprefix("customer_"), value)
        elif target.field in fields and isinstance(value, list):
            fields[target.field] = [*fields[target.field], *value]
        else:
            fields[target.field] = value
    if plan.kind in OWNED and customer is None:
        raise Refused("customer_id", None, "names no customer (map customer_id, customer_email, "
                                           "customer_phone or customer_external_id.SOURCE)")
    lines: tuple[dict[str, Any], ...] = ()
    if plan.kind == "purchases":
        lines = ({k: fields.pop(k) for k in _LINE if k in fields},)
    return Parsed(row.line, plan.kind, fields, attributes, external, customer, lines)


def _converted(convert: Callable[[Any], Any], cell: Any) -> Any:
    try:
        return convert(cell)
    except ValidationError as exc:
        raise Refused.of(exc) from None


def grouped(records: Iterable[Parsed | tuple[int, Refused]]) -> Iterator[Parsed | tuple[int, Refused]]:
    """Consecutive purchase rows with the same id become one purchase with several lines."""
    pending: Parsed | None = None
    for item in records:
        same = (isinstance(item, Parsed) and pending is not None and item.kind == "purchases"
                and "id" in item.fields and item.fields.get("id") == pending.fields.get("id")
                and item.customer == pending.customer)
        if same:
            assert pending is not None and isinstance(item, Parsed)
            pending = Parsed(pending.line, pending.kind, pending.fields, pending.attributes,
                             pending.external_ids, pending.customer, (*pending.lines, *item.lines), item.end)
            continue
        if pending is not None:
            yield pending
            pending = None
        if isinstance(item, Parsed) and item.kind == "purchases":
            pending = item
        else:
            yield item
    if pending is not None:
        yield pending


# ---- meeting the stored base ----


def find_customer(uow: UnitOfWork, key: tuple[str, str], *, region: str | None) -> Customer | None:
    """The one customer a key names; None when nobody; `Refused` when several share a phone."""
    how, value = key
    try:
        if how == "id":
            return uow.customers.find(value)
        if how == "email":
            return uow.customers.by_email(v.email(value, "emails"))
        if how == "phone":
            found = uow.customers.by_phone(v.phone(value, "phones", region))
            if len(found) > 1:
                raise Refused("phones", value, f"is shared by {len(found)} customers; use another key")
            return found[0] if found else None
        source = how.removeprefix("external_id.")
        return uow.customers.by_external_id(source, value)
    except ValidationError as exc:
        raise Refused.of(exc) from None


def customer_key(parsed: Parsed, key: str) -> tuple[str, str] | None:
    """The value of the import's key in a customer record, if it has one."""
    if key == "id":
        return ("id", parsed.fields["id"]) if "id" in parsed.fields else None
    if key in ("email", "phone"):
        found = parsed.fields.get(f"{key}s") or []
        return (key, found[0]) if found else None
    source = key.removeprefix("external_id.")
    return (key, parsed.external_ids[source]) if source in parsed.external_ids else None


def _structured(f: dict[str, Any], field: str, cls: type[Any]) -> tuple[Any, ...] | None:
    if field not in f:
        return None
    try:
        return serialization.structure(f.pop(field), tuple[cls, ...])  # type: ignore[valid-type]
    except ValidationError as exc:
        raise Refused(field, exc.value, exc.reason) from None


_CONSENT_KEYS = frozenset(("purpose", "channel", "status", "at", "source"))


def written_consent(record: Any) -> bool:
    """A consent record of exactly the shape an export writes: a dict of five texts."""
    return record.__class__ is dict and record.keys() == _CONSENT_KEYS \
        and all(value.__class__ is str for value in record.values())


def _consents(f: dict[str, Any]) -> tuple[Consent, ...] | None:
    """`_structured(f, "consents", Consent)`, with records of exactly the written shape (five
    texts) built straight, as the converter would build them; on anything else, or any
    error, the converter, which names what is wrong."""
    records = f.get("consents")
    if records.__class__ is list:
        try:
            built = []
            for record in records:
                if not written_consent(record):
                    break
                built.append(Consent(record["purpose"], record["channel"], record["status"],
                                     datetime.fromisoformat(record["at"]), record["source"]))
            else:
                del f["consents"]
                return tuple(built)
        except (ValidationError, ValueError):
            pass
    return _structured(f, "consents", Consent)


def new_customer(parsed: Parsed, *, region: str | None, now: Any) -> Customer:
    f = dict(parsed.fields)
    address = _address(f, None)
    others = _structured(f, "other_addresses", PostalAddress) or ()
    f["consents"] = _consents(f) or ()
    created = f.pop("created_at", now)
    if others and address is None:
        raise Refused("other_addresses", None, "come after a first address (country, city, ...)")
    try:
        return Customer.new(
            f.pop("name", None) or _missing("name"), id=f.pop("id", None), emails=f.pop("emails", ()),
            phones=f.pop("phones", ()), region=region, addresses=(address, *others) if address else (),
            tags=frozenset(f.pop("tags", ())), attributes=parsed.attributes,
            external_ids=parsed.external_ids, created_at=created, updated_at=now, **f,
        )
    except ValidationError as exc:
        raise Refused.of(exc) from None


def merge(stored: Customer, parsed: Parsed, *, region: str | None, now: Any) -> Customer:
    """The stored customer with the file's values: the file wins where it has a value."""
    f = dict(parsed.fields)
    f.pop("id", None)
    try:
        emails = [*stored.emails, *(v.email(e, "emails") for e in f.pop("emails", ()))]
        phones = [*stored.phones, *(v.phone(p, "phones", region or stored.country)
                                    for p in f.pop("phones", ()))]
        address = _address(f, stored.addresses[0] if stored.addresses else None)
        others = _structured(f, "other_addresses", PostalAddress)
        addresses = (address or (stored.addresses[0] if stored.addresses else None),
                     *(stored.addresses[1:] if others is None else others))
        answers = {(c.purpose, c.channel): c for c in stored.consents}
        answers.update({(c.purpose, c.channel): c for c in _consents(f) or ()})
        changed = attrs.evolve(
            stored, emails=_unique(emails), phones=_unique(phones),
            addresses=tuple(a for a in addresses if a is not None), consents=tuple(answers.values()),
            tags=stored.tags | frozenset(f.pop("tags", ())),
            attributes={**stored.attributes, **parsed.attributes},
            external_ids={**stored.external_ids, **parsed.external_ids}, **f,
        )
    except (ValidationError, TypeError) as exc:
        raise (Refused.of(exc) if isinstance(exc, ValidationError) else Refused("row", None, str(exc))) \
            from None
    return changed if changed == stored else attrs.evolve(changed, updated_at=now)


def account_id(parsed: Parsed) -> str:
    """The id the file gives an account, else one derived from its name, kind and parent
    (so the same id-less row imported twice is one account)."""
    given = parsed.fields.get("id")
    if given:
        return str(given)
    named = {k: parsed.fields.get(k) for k in ("name", "kind", "parent_id")}
    return hashlib.sha256(serialization.dumps(["account", named]).encode()).hexdigest()[:32]


def new_account(parsed: Parsed) -> Account:
    f = dict(parsed.fields)
    f.pop("id", None)
    members = _structured(f, "members", AccountMember) or ()
    try:
        return Account(account_id(parsed), f.pop("name", None) or _missing("name"), members=members, **f)
    except ValidationError as exc:
        raise Refused.of(exc) from None
    except TypeError as exc:
        raise Refused("row", None, str(exc)) from None


def merge_account(stored: Account, parsed: Parsed) -> Account:
    """The stored account with the file's values: the file wins where it has a value; its
    members are added, or their role replaced (members missing from the file stay)."""
    f = dict(parsed.fields)
    f.pop("id", None)
    members = _structured(f, "members", AccountMember) or ()
    try:
        changed = attrs.evolve(stored, **f)
        for member in members:
            changed = changed.with_member(member)
    except ValidationError as exc:
        raise Refused.of(exc) from None
    return changed


def _unique(items: list[str]) -> tuple[str, ...]:
    first: dict[str, str] = {}
    for item in items:
        first.setdefault(item.lower(), item)
    return tuple(first.values())


def _address(fields: dict[str, Any], stored: PostalAddress | None) -> PostalAddress | None:
    given = {_ADDRESS[k]: fields.pop(k) for k in list(fields) if k in _ADDRESS}
    if not given:
        return None
    if "lines" in given:
        given["lines"] = tuple(part.strip() for part in str(given["lines"]).split("|") if part.strip())
    if stored is not None:
        return attrs.evolve(stored, **given)
    if "country" not in given:
        raise Refused("country", None, "an address needs a country (ISO 3166 alpha-2, e.g. 'FR')")
    given["country"] = str(given["country"]).upper()
    return PostalAddress(**given)


def _missing(field: str) -> Any:
    raise Refused(field, None, "is required")


def content_id(kind: str, parsed: Parsed, customer_id: str) -> str:
    """A stable id for a record the file gives none: the same row imported twice is one record."""
    data = serialization.dumps([kind, customer_id, sorted(parsed.fields.items()), list(parsed.lines)])
    return hashlib.sha256(data.encode()).hexdigest()[:32]


def record_id(parsed: Parsed, customer_id: str) -> str:
    """The id the file gives a purchase, interaction or case, else its content id."""
    given = parsed.fields.get("id")
    return str(given) if given else content_id(parsed.kind, parsed, customer_id)


def owned_record(
    parsed: Parsed, customer_id: str, *, now: Any, id: str | None = None
) -> Purchase | Interaction | Case:
    """The purchase, interaction or case a parsed row describes, for the customer it names."""
    f = dict(parsed.fields)
    f.pop("id", None)
    key = id or record_id(parsed, customer_id)
    try:
        if parsed.kind == "purchases":
            lines = tuple(_order_line(line) for line in parsed.lines)
            return Purchase(key, customer_id, f.pop("ordered_at", None) or _missing("ordered_at"),
                            lines, **f)
        if parsed.kind == "interactions":
            if "duration" in f:
                from datetime import timedelta

                f["duration"] = timedelta(seconds=f["duration"])
            return Interaction(key, customer_id, f.pop("channel", None) or _missing("channel"),
                               f.pop("direction", None) or _missing("direction"),
                               f.pop("occurred_at", None) or _missing("occurred_at"), **f)
        return Case(key, customer_id, f.pop("kind", None) or _missing("kind"),
                    f.pop("subject", None) or _missing("subject"), f.pop("opened_at", now), **f)
    except ValidationError as exc:
        raise Refused.of(exc) from None
    except TypeError as exc:
        raise Refused("row", None, str(exc)) from None


LINES_KEPT = 1 << 14
"""Order lines remembered by their cells: a catalogue repeats (product, price, quantity),
and a frozen line is shared safely, so each is built and validated once."""
_LINES: dict[tuple[Any, ...], OrderLine] = {}


def _order_line(line: dict[str, Any]) -> OrderLine:
    key = tuple((name, str(value)) for name, value in line.items())
    known = _LINES.get(key)
    if known is None:
        known = _built_line(line)
        if len(_LINES) >= LINES_KEPT:
            _LINES.clear()
        _LINES[key] = known
    return known


def _built_line(line: dict[str, Any]) -> OrderLine:
    price = line.get("unit_price")
    if price is None:
        _missing("unit_price")
    money = v.Money(price, line.get("currency") or _missing("currency"))
    return OrderLine(line.get("product") or _missing("product"), money, line.get("quantity", 1),
                     line.get("category", ""))


def customer_exists(uow: UnitOfWork, customer_id: str) -> bool:
    """Whether a customer id is stored, without loading the record where the storage speaks SQL."""
    dialect = dialect_of(uow)
    if dialect is None:
        return uow.customers.find(customer_id) is not None
    sql = f"SELECT 1 FROM customers WHERE id = {dialect.placeholder}"  # noqa: S608 (the id is bound)
    return bool(cast(SqlUnitOfWork, uow).select(sql, (customer_id,)))


def stored_record(uow: UnitOfWork, kind: str, record_id: str) -> Any:
    repo = getattr(uow, kind)
    try:
        return repo.get(record_id)
    except NotFound:
        return None
