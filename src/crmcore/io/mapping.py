"""Column mappings: which file column feeds which field, and how its text becomes a value.

A mapping names, per column of the file, a *target*: a field of the record kind
(`email`, `ordered_at`, ...), an external id (`external_id.erp`), a custom attribute
with its type (`attributes.points:int`), or `-` to ignore the column. Columns whose
name already is a target map themselves, so a file written by `crmcore export` needs
no mapping. Mappings come from flags (`--column "E-mail=email"`) or a TOML file:

    [columns]
    "E-mail" = "email"
    "Loyalty points" = "attributes.points:int"

    [options]
    region = "FR"              # national phone numbers are read in this country
    date_format = "%d/%m/%Y"   # else ISO 8601
    timezone = "Europe/Paris"  # times without an offset are read here (default UTC)
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from crmcore import serialization
from crmcore import values as v
from crmcore.errors import ValidationError

KINDS = ("customers", "accounts", "purchases", "interactions", "cases")
OWNED = ("purchases", "interactions", "cases")
"""Kinds whose records belong to a customer a `customer_*` column names."""
LIST_SEPARATOR = "|"
"""Separator of several values in one CSV cell (e-mails, phones, tags)."""

_REFERENCES = ("customer_id", "customer_email", "customer_phone")
FIELDS: dict[str, tuple[str, ...]] = {
    "customers": ("id", "name", "kind", "emails", "phones", "country", "city", "postal_code", "street",
                  "address_region", "address_kind", "birth_date", "language", "lifecycle", "tier", "tags",
                  "service_point", "created_at", "other_addresses", "consents"),
    "accounts": ("id", "name", "kind", "parent_id", "tier", "owner", "service_point", "members"),
    "purchases": ("id", *_REFERENCES, "ordered_at", "product", "unit_price", "currency", "quantity",
                  "category", "channel", "service_point"),
    "interactions": ("id", *_REFERENCES, "channel", "direction", "occurred_at", "service_point", "agent",
                     "duration", "subject", "outcome", "satisfaction", "nps", "case_id", "reference",
                     "in_reply_to"),
    "cases": ("id", *_REFERENCES, "kind", "subject", "opened_at", "priority", "status", "sla_due",
              "resolved_at", "resolution", "channel", "service_point", "agent", "contacts"),
}
"""The fields each kind of record file can carry, in export order."""

ALIASES = {"email": "emails", "phone": "phones", "tag": "tags"}
"""Singular names accepted for list fields."""

TYPES = ("text", "int", "float", "decimal", "bool", "date", "datetime", "json")
"""Types a custom attribute column can declare (`attributes.name:type`); text by default."""

_FIELD_TYPES = {
    "birth_date": "date", "created_at": "datetime", "ordered_at": "datetime", "occurred_at": "datetime",
    "opened_at": "datetime", "sla_due": "datetime", "resolved_at": "datetime", "quantity": "int",
    "unit_price": "decimal", "duration": "float", "satisfaction": "int", "nps": "int",
    "priority": "int", "contacts": "int", "emails": "list", "phones": "list", "tags": "list",
    "other_addresses": "records", "consents": "records", "members": "records",
}
JSON_FIELDS = frozenset(f for f, t in _FIELD_TYPES.items() if t == "records")
"""Fields that hold a list of records: JSON text in a CSV cell, a JSON list in JSON Lines."""
_TRUE = {"true", "yes", "y", "1", "oui", "ja", "x"}
_FALSE = {"false", "no", "n", "0", "non", "nein", ""}


@attrs.frozen
class Target:
    """Where a column's values go: a field, an external id source, or a typed custom attribute."""

    field: str
    """A field name, `external_id` or `customer_external_id` (with `source`), or `attributes`."""
    name: str = ""
    """The external id's source or the attribute's name."""
    type: str = "text"

    @property
    def spelled(self) -> str:
        if self.field == "attributes":
            return f"attributes.{self.name}" + ("" if self.type == "text" else f":{self.type}")
        return f"{self.field}.{self.name}" if self.name else self.field


def target(kind: str, spec: str) -> Target | None:
    """The target a mapping names (None for `-`: ignore the column); refuses unknown fields."""
    spec = spec.strip()
    if spec == "-":
        return None
    head, _, rest = spec.partition(".")
    if head == "attributes" and kind == "customers":
        name, _, kind_of = rest.partition(":")
        v.name(name, "attribute name")
        kind_of = kind_of or "text"
        if kind_of not in TYPES:
            raise ValidationError("mapping", spec, f"attribute type must be one of {', '.join(TYPES)}")
        return Target("attributes", name, kind_of)
    if (head == "external_id" and kind == "customers") or (head == "customer_external_id" and kind in OWNED):
        return Target(head, v.name(rest, "external id source"))
    field = ALIASES.get(spec, spec)
    if field not in FIELDS[kind]:
        extra = ", attributes.NAME[:type], external_id.SOURCE" if kind == "customers" \
            else ", customer_external_id.SOURCE" if kind in OWNED else ""
        raise ValidationError("mapping", spec, f"is not a {kind} field; known: "
                              f"{', '.join(FIELDS[kind])}{extra}")
    return Target(field, type=_FIELD_TYPES.get(field, "text"))


def _zone(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("timezone", name, "is not an IANA time zone such as 'Europe/Paris'") from None


@attrs.frozen
class ColumnMapping:
    """How the columns of one file become the fields of one kind of record."""

    kind: str = attrs.field()
    columns: Mapping[str, str] = attrs.field(factory=dict)
    """Column name -> target spelling, for columns not already named after their target."""
    region: str | None = None
    date_format: str | None = None
    timezone: str = "UTC"

    @kind.validator
    def _kind(self, _attribute: Any, value: str) -> None:
        if value not in KINDS:
            raise ValidationError("kind", value, f"must be one of {', '.join(KINDS)}")

    def __attrs_post_init__(self) -> None:
        for spec in self.columns.values():
            target(self.kind, spec)
        _zone(self.timezone)

    @classmethod
    def load(cls, kind: str, path: Path | None = None, columns: Iterable[str] = (),
             **options: Any) -> ColumnMapping:
        """A mapping from a TOML file and/or `column=target` pairs (pairs win); options override."""
        found: dict[str, str] = {}
        settings: dict[str, Any] = {}
        if path is not None:
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ValidationError("mapping", str(path), f"cannot be read: {exc}") from None
            found.update({str(k): str(t) for k, t in dict(data.get("columns", {})).items()})
            settings.update(data.get("options", {}))
            unknown = set(settings) - {"region", "date_format", "timezone"}
            if unknown:
                raise ValidationError("mapping", sorted(unknown), "unknown options")
        for pair in columns:
            column, sep, spec = pair.rpartition("=")
            if not sep or not column.strip():
                raise ValidationError("column", pair, 'must be written "column name=target"')
            found[column.strip()] = spec.strip()
        settings.update({k: value for k, value in options.items() if value is not None})
        return cls(kind, found, **settings)

    def plan(self, header: Iterable[str]) -> tuple[dict[str, Target], list[str]]:
        """Targets of the file's columns, and the columns nothing maps (ignored, reported)."""
        planned: dict[str, Target] = {}
        ignored: list[str] = []
        for column in header:
            spec = self.columns.get(column)
            if spec is None:
                try:
                    found = target(self.kind, column)
                except ValidationError:
                    ignored.append(column)
                    continue
            else:
                found = target(self.kind, spec)
            if found is not None:
                planned[column] = found
        return planned, ignored

    # ---- cells to values ----

    def value(self, target: Target, cell: Any) -> Any:
        """The typed value of one cell (None when empty); ValidationError names the field."""
        return self.converter(target)(cell)

    def converter(self, target: Target) -> Callable[[Any], Any]:
        """`value` for one column, with the conversion chosen once (an import compiles its
        columns into these before the first row)."""
        kind = target.type
        convert: Callable[[ColumnMapping, Any], Any] = _CONVERTERS.get(kind, _text)
        spelled = target.spelled
        text = kind == "text"

        def value(cell: Any) -> Any:
            if cell.__class__ is str:
                cell = cell.strip()
                if not cell:
                    return None
                if text:  # the common case, without a call
                    return cell
            elif cell is None:
                return None
            try:
                return convert(self, cell)
            except ValidationError as exc:
                raise ValidationError(spelled, cell, exc.reason) from None

        return value

    def instant(self, cell: Any) -> datetime:
        if isinstance(cell, datetime):
            moment = cell
        else:
            text = str(cell).strip()
            try:
                if self.date_format:
                    moment = datetime.strptime(text, self.date_format)
                else:
                    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError("time", cell, f"is not a date and time ({self._expected})") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(self.timezone))
        return moment.astimezone(UTC)

    def day(self, cell: Any) -> date:
        if isinstance(cell, date) and not isinstance(cell, datetime):
            return cell
        text = str(cell).strip()
        try:
            if self.date_format:
                return datetime.strptime(text, self.date_format).date()
            return date.fromisoformat(text)
        except ValueError:
            raise ValidationError("date", cell, f"is not a date ({self._expected})") from None

    @property
    def _expected(self) -> str:
        return f"expected {self.date_format}" if self.date_format else "expected ISO 8601, e.g. 2024-03-31"


def _text(_m: ColumnMapping, cell: Any) -> str:
    if isinstance(cell, bool | int | float | Decimal):
        return str(cell)
    if not isinstance(cell, str):
        raise ValidationError("value", cell, "must be text")
    return cell.strip()


def _int(_m: ColumnMapping, cell: Any) -> int:
    if isinstance(cell, bool):
        raise ValidationError("value", cell, "is not a whole number")
    if isinstance(cell, int):
        return cell
    try:
        number = Decimal(str(cell).strip().replace("\u00a0", "").replace(" ", ""))
    except InvalidOperation:
        raise ValidationError("value", cell, "is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValidationError("value", cell, "is not a whole number")
    return int(number)


def _decimal(_m: ColumnMapping, cell: Any) -> Decimal:
    if isinstance(cell, float):
        cell = repr(cell)
    text = str(cell).strip().replace("\u00a0", "").replace(" ", "")
    if "," in text and "." not in text:  # a decimal comma, as `;`-separated exports write it
        text = text.replace(",", ".")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValidationError("value", cell, "is not a number") from None
    if not number.is_finite():
        raise ValidationError("value", cell, "is not a finite number")
    return number


def _float(m: ColumnMapping, cell: Any) -> float:
    return float(_decimal(m, cell))


def _bool(_m: ColumnMapping, cell: Any) -> bool:
    if isinstance(cell, bool):
        return cell
    text = str(cell).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError("value", cell, "is not yes/no (true, false, 1, 0)")


def parts(cell: Any) -> list[str]:
    """A list cell's values (split at `LIST_SEPARATOR`, or a JSON list's items), each
    trimmed, the empty ones dropped."""
    if isinstance(cell, list):
        return [str(item).strip() for item in cell if str(item).strip()]
    return [part.strip() for part in str(cell).split(LIST_SEPARATOR) if part.strip()]


def _list(_m: ColumnMapping, cell: Any) -> list[str]:
    return parts(cell)


def _json(_m: ColumnMapping, cell: Any) -> Any:
    try:
        data = json.loads(cell) if isinstance(cell, str) else cell
    except json.JSONDecodeError as exc:
        raise ValidationError("value", cell, f"is not JSON: {exc.msg}") from None
    return serialization.structure(data, v.AttributeValue)  # type: ignore[arg-type]


def _records(_m: ColumnMapping, cell: Any) -> list[Any]:
    try:
        data = json.loads(cell) if isinstance(cell, str) else cell
    except json.JSONDecodeError as exc:
        raise ValidationError("value", cell, f"is not JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise ValidationError("value", cell, "must be a JSON list")
    return data


_CONVERTERS: dict[str, Callable[[ColumnMapping, Any], Any]] = {
    "text": _text, "int": _int, "float": _float, "decimal": _decimal, "bool": _bool,
    "date": ColumnMapping.day, "datetime": ColumnMapping.instant, "list": _list, "json": _json,
    "records": _records,
}
