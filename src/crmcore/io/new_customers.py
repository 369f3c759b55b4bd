"""The columnar path of a CSV import of customers: a region of new customers written as rows.

On the row path every new customer is read cell by cell (`records.parse`), built as a
`Customer`, and turned back into plain data, JSON and rows by storage (`add_many`): most
of a customer file's import time. Here Arrow parses a region of plain lines in one call,
every mapped column is checked at once to hold no cell the row path would trim (so a cell
is the row path's value as it is), and each row is then encoded straight to the plain data
`serialization.unstructure` gives a `Customer`, with the model's own rules: each value
goes through the row path's converter for its column and the model's attrs validator for
its field (a value seen before in the column is not checked again: the checks are pure),
the e-mails and phones through `values.email` and `values.phone` as `Customer.new`
normalises them, the address through the row path's builder (a `PostalAddress`), and
consents of the exported shape with one `Consent` built per spelling of their purpose,
channel, status and source, each instant through `Consent.at`'s own converter and
validator (any other consents cell through the row path's builder). What is skipped is
the `Customer` object, its round trip through cattrs, the copy storage makes at version
1, and the row path's per-record bookkeeping. Each region's first customer is built by
the model from the same row and must give the same document: a guard against the two
drifting apart.

`encode` answers None, and the importer reads the region through the row path (which
refuses rows with their line, field and reason as always), when any row is not one this
path vouches for: a cell with surrounding white space, a missing id or name, another
address list (`other_addresses`), any value the model or a converter refuses; so are ids,
e-mails and external ids given twice in the region (the importer also sends a region to
the row path when one of them is stored). `layout` turns the path off for a whole file
whose mapping it does not cover (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import attrs

from crmcore import serialization
from crmcore import values as v
from crmcore.errors import CRMError
from crmcore.io import columnar
from crmcore.io import records as r
from crmcore.io.mapping import ColumnMapping, Target, parts
from crmcore.io.sources import Row
from crmcore.model import Consent, Customer, PostalAddress
from crmcore.model.customer import LifecycleStage, PartyKind, dedupe
from crmcore.ports.storage import EncodedCustomers

try:
    import pyarrow as pa
    import pyarrow.compute as pc
except ImportError:  # pragma: no cover - the row path serves
    pa = None

_TEXT = ("id", "name", "language", "tier", "service_point")
"""Fields whose value is the cell itself, checked by the model's validator."""
_ADDRESS = ("country", "city", "postal_code", "street", "address_region", "address_kind")
_TYPED = ("birth_date", "created_at", "consents")
"""Fields read by the row path's converter for their column."""
_FIELDS = frozenset((*_TEXT, *_ADDRESS, *_TYPED, "kind", "lifecycle", "emails", "phones", "tags",
                     "other_addresses"))
_ATTRIBUTE_TYPES = frozenset(("text", "int", "bool", "decimal", "date"))
_ORDER = ("id", "name", "kind", "emails", "phones", "addresses", "birth_date", "language", "lifecycle",
          "tier", "tags", "attributes", "external_ids", "consents", "service_point", "created_at",
          "updated_at", "version", "pending", "owner", "assignment")
"""The fields of `Customer`, in the order cattrs writes them."""
_MODEL = attrs.fields_dict(Customer)
_CONSENT_AT = attrs.fields_dict(Consent)["at"]
_SOME_INSTANT = datetime(2000, 1, 1, tzinfo=UTC)
"""Any valid instant: a consent's other fields are checked with it, once per spelling."""
_PLAIN, _TYPED_SLOT, _ADDRESS_SLOT, _ATTRIBUTE, _EXTERNAL = (object() for _ in range(5))
"""Where a column's cell goes in `Encoder._row`."""


def _slot(field: str) -> object:
    if field in _ADDRESS:
        return _ADDRESS_SLOT
    if field in _TYPED:
        return _TYPED_SLOT
    return {"attributes": _ATTRIBUTE, "external_id": _EXTERNAL}.get(field, _PLAIN)


def _fields(cls: type[Any]) -> tuple[str, ...]:
    return tuple(field.name for field in attrs.fields(cls))


def available() -> bool:
    """pyarrow is there, and the model's fields are the ones this module writes."""
    return (pa is not None and _fields(Customer) == _ORDER
            and _fields(PostalAddress) == ("country", "lines", "city", "postal_code", "region", "kind")
            and _fields(Consent) == ("purpose", "channel", "status", "at", "source"))


def layout(mapping: ColumnMapping, planned: Mapping[str, Target]) -> dict[str, Target] | None:
    """Column -> target when this path can take the file: every mapped target is a field
    above (each once), an external id or an attribute of a plain type, `id` and `name`
    are mapped, and dates are ISO 8601 (no `date_format`)."""
    if not available() or mapping.date_format is not None:
        return None
    seen: set[str] = set()
    for target in planned.values():
        spelled = target.spelled
        if spelled in seen:
            return None
        seen.add(spelled)
        if target.field == "attributes" and target.type not in _ATTRIBUTE_TYPES:
            return None
        if target.field not in _FIELDS and target.field not in ("attributes", "external_id"):
            return None
    return dict(planned) if {"id", "name"} <= seen else None


def _check(name: str, value: Any) -> Any:
    """The model's validator for one field of `Customer` (raises what it raises)."""
    field = _MODEL[name]
    if field.validator is not None:
        field.validator(None, field, value)
    return value


class Encoder:
    """One region's new customers as rows (see the module)."""

    def __init__(self, mapping: ColumnMapping, columns: Mapping[str, Target], clock: Callable[[], datetime]):
        self.mapping = mapping
        self.columns = columns
        self.clock = clock
        self.slots = [(_slot(target.field), target.field, target.name, mapping.converter(target))
                      for target in columns.values()]
        """Per column, in order: where its cell goes, the field, the target's name, the converter."""
        self.seen: dict[str, set[Any]] = {}
        """Values each checked field has accepted (a check is a pure function of the value)."""
        self.consents: dict[tuple[str, ...], tuple[str, str, str, str]] = {}
        """A consent's purpose, channel, status and source, as the model wrote them, once it
        accepted them (only its instant differs from row to row)."""
        self.first: tuple[dict[str, str], datetime] | None = None

    def encode(self, data: bytes, names: Sequence[str], delimiter: str,
               lines: int) -> EncodedCustomers | None:
        """The customers of a region (`lines` plain lines of UTF-8 `data`), or None."""
        cells = self._cells(data, names, delimiter, lines)
        if cells is None:
            return None
        out = _Rows()
        try:
            for index, row in enumerate(zip(*cells.values(), strict=True)):
                now = self.clock()
                if not self._row(row, now, out):
                    return None
                if index == 0:
                    self.first = (dict(zip(cells, row, strict=True)), now)
        except (CRMError, ValueError, TypeError, KeyError, r.Refused):
            return None
        emails = [email for email, _ in out.emails]
        externals = [(source, external) for source, external, _ in out.external_ids]
        if any(len(set(keys)) != len(keys) for keys in (out.ids, emails, externals)):
            return None
        if not out.ids or not self._same_as_model(out.docs[0]):
            return None
        return EncodedCustomers(out.ids, out.columns, out.created_at, out.updated_at, out.docs, out.emails,
                                out.phones, out.external_ids)

    def _cells(self, data: bytes, names: Sequence[str], delimiter: str,
               lines: int) -> dict[str, list[str]] | None:
        """The mapped columns' cells, when Arrow reads `lines` rows and no cell would be
        trimmed by the row path (or holds NUL)."""
        mapped = list(self.columns)
        table = columnar.read_region(data, names, delimiter, mapped, lines)
        if table is None:
            return None
        cells = {}
        for column in mapped:
            values = table.column(column).combine_chunks()
            if pc.any(pc.match_substring_regex(values, columnar.UNTRIMMED)).as_py():
                return None
            cells[column] = values.to_pylist()
        return cells

    def _seen(self, name: str, value: Any, check: Callable[[str, Any], Any]) -> None:
        known = self.seen.setdefault(name, set())
        if value not in known:
            check(name, value)
            known.add(value)

    def _row(self, row: Sequence[str], now: datetime, out: _Rows) -> bool:
        """Encode one row (its cells in the columns' order) into `out`; False when it is not
        a new customer this path takes."""
        fields: dict[str, Any] = {}
        address: dict[str, Any] = {}
        attributes: dict[str, Any] = {}
        external: dict[str, str] = {}
        for (slot, name, key, convert), cell in zip(self.slots, row, strict=True):
            if not cell:
                continue
            if slot is _PLAIN:
                fields[name] = cell
            elif slot is _TYPED_SLOT:
                fields[name] = convert(cell)
            elif slot is _ADDRESS_SLOT:
                address[name] = cell
            elif slot is _ATTRIBUTE:
                attributes[key] = convert(cell)
            else:
                external[key] = cell
        if "id" not in fields or "name" not in fields or "other_addresses" in fields:
            return False
        plain: dict[str, Any] = {}
        for name in ("id", "name"):  # each its own: nothing to remember
            plain[name] = _check(name, fields[name])
        plain["kind"] = str(_check("kind", PartyKind(fields.get("kind", PartyKind.PERSON))))
        postal = r._address(address, None) if address else None
        region = self.mapping.region or (postal.country if postal is not None else None)
        emails = dedupe(v.email(e, f"emails[{i}]") for i, e in enumerate(_parts(fields.get("emails"))))
        phones = dedupe(v.phone(p, f"phones[{i}]", region)
                        for i, p in enumerate(_parts(fields.get("phones"))))
        plain["emails"] = list(_check("emails", emails))
        plain["phones"] = list(_check("phones", phones))
        _check("addresses", () if postal is None else (postal,))
        plain["addresses"] = [] if postal is None else [{
            "country": postal.country, "lines": list(postal.lines), "city": postal.city,
            "postal_code": postal.postal_code, "region": postal.region, "kind": postal.kind}]
        birth = fields.get("birth_date")
        if birth is not None:
            self._seen("birth_date", birth, _check)
        plain["birth_date"] = None if birth is None else birth.isoformat()
        plain["language"] = self._text("language", fields)
        lifecycle = LifecycleStage(fields.get("lifecycle", LifecycleStage.LEAD))
        plain["lifecycle"] = str(_check("lifecycle", lifecycle))
        plain["tier"] = self._text("tier", fields)
        tags = frozenset(_parts(fields.get("tags")))
        for tag in tags:
            self._seen("tag", tag, lambda _n, x: v.name(x, "tags"))
        plain["tags"] = sorted(tags)
        _check("attributes", attributes)
        plain["attributes"] = {key: serialization.unstructure_attribute(value)
                               for key, value in attributes.items()}
        _check("external_ids", external)
        plain["external_ids"] = external
        plain["consents"] = self._consents(fields["consents"]) if "consents" in fields else []
        plain["service_point"] = self._text("service_point", fields)
        created = _check("created_at", v.as_utc(fields.get("created_at", now)))
        updated = _check("updated_at", v.as_utc(now))
        plain.update(created_at=created.isoformat(), updated_at=updated.isoformat(), version=1, pending=[],
                     owner=None, assignment=None)
        key = plain["id"]
        out.ids.append(key)
        out.columns.append((plain["kind"], plain["name"], plain["tier"], plain["lifecycle"],
                            postal.country if postal is not None else None, plain["birth_date"],
                            plain["language"], plain["service_point"]))
        out.created_at.append(created)
        out.updated_at.append(updated)
        out.docs.append(serialization.dumps_data(plain))
        out.emails.extend((email.lower(), key) for email in emails)
        out.phones.extend((phone, key) for phone in phones)
        out.external_ids.extend((source, value, key) for source, value in external.items())
        return True

    def _consents(self, records: Any) -> list[dict[str, str]]:
        """The consents' plain data: records of the written shape (`records.written_consent`)
        take the model's word for their purpose, channel, status and source once, and each
        instant is converted and checked as `Consent` converts and checks it; any other
        cell, or two answers for one purpose and channel, is built and judged by the row
        path's builder and the model."""
        plain = self._written_consents(records)
        if plain is None or len({(c["purpose"], c["channel"]) for c in plain}) != len(plain):
            consents = r._consents({"consents": records}) or ()
            _check("consents", consents)
            return [{"purpose": c.purpose, "channel": str(c.channel), "status": str(c.status),
                     "at": c.at.isoformat(), "source": c.source} for c in consents]
        return plain

    def _written_consents(self, records: Any) -> list[dict[str, str]] | None:
        """`_consents` for a list of records of the written shape; None for any other cell."""
        if records.__class__ is not list:
            return None
        plain = []
        for record in records:
            if not r.written_consent(record):
                return None
            key = (record["purpose"], record["channel"], record["status"], record["source"])
            known = self.consents.get(key)
            if known is None:
                model = Consent(key[0], key[1], key[2], _SOME_INSTANT, key[3])
                known = (model.purpose, str(model.channel), str(model.status), model.source)
                self.consents[key] = known
            at = _CONSENT_AT.converter(datetime.fromisoformat(record["at"]))  # type: ignore[misc, operator]
            _CONSENT_AT.validator(None, _CONSENT_AT, at)  # type: ignore[misc]
            plain.append({"purpose": known[0], "channel": known[1], "status": known[2],
                          "at": at.isoformat(), "source": known[3]})
        return plain

    def _text(self, name: str, fields: dict[str, Any]) -> str | None:
        value = fields.get(name)
        if value is not None:
            self._seen(name, value, _check)
        return value

    def _same_as_model(self, doc: str) -> bool:
        """The region's first customer, built by the row path's model from the same cells,
        writes the same document."""
        if self.first is None:
            return False
        row, now = self.first
        plan = r.Plan.of(self.mapping, self.columns)
        try:
            built = r.new_customer(r.parse(plan, Row(0, dict(row))), region=self.mapping.region, now=now)
        except (r.Refused, CRMError):
            return False
        return serialization.dumps(attrs.evolve(built, version=1)) == doc


@attrs.define
class _Rows:
    """The columns of `EncodedCustomers`, filled row by row."""

    ids: list[str] = attrs.Factory(list)
    columns: list[tuple[Any, ...]] = attrs.Factory(list)
    created_at: list[datetime] = attrs.Factory(list)
    updated_at: list[datetime] = attrs.Factory(list)
    docs: list[str] = attrs.Factory(list)
    emails: list[tuple[str, str]] = attrs.Factory(list)
    phones: list[tuple[str, str]] = attrs.Factory(list)
    external_ids: list[tuple[str, str, str]] = attrs.Factory(list)


def _parts(cell: Any) -> list[str]:
    """A list cell's values, as the row path splits it; none for an absent cell."""
    return [] if cell is None else parts(cell)
