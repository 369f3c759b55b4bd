"""The columnar path of a CSV import: a region of purchase rows checked column by column.

The row path turns every cell into a Python value and every record into a model
object; most of an import's time went there. Here a region of plain lines (see
`regions`) is parsed by Arrow in one call, and each column is checked at once
(`pyarrow.compute`) against rules *stricter* than the row path's: a cell passes only
when the row path would read it to the very same value (no surrounding spaces, plain
numbers, ISO 8601 instants with an offset, known channels, lengths within the model's
limits). Passing rows become storage rows and JSON documents directly, no model object
per row. The documents are those `serialization.dumps` writes: assembled column-wise
(`_documents`) when no cell holds a character JSON escapes, else per purchase in Python
with order lines built as real `OrderLine`s (`_purchases`); either way each region's
first purchase is rebuilt as a real `Purchase` and must give the same document, a
guard against this path and the model drifting apart. When any row of the region
fails a check, or the mapping or file is one this path does not judge, `encode` answers
None and the importer reads the region through the row path, which refuses rows with
their line, field and reason as always.

pyarrow is optional (the `dataframes` extra); without it every import takes the row path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crmcore import limits, serialization
from crmcore.errors import CRMError
from crmcore.io.mapping import Target
from crmcore.model import Channel, OrderLine, Purchase
from crmcore.ports.storage import EncodedPurchases
from crmcore.values import MONEY_SCALE, Money, from_micros

try:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
except ImportError:  # pragma: no cover - the row path serves
    pa = None

REQUIRED = ("id", "customer_id", "ordered_at", "product", "unit_price", "currency")
OPTIONAL = ("quantity", "category", "channel", "service_point")
_MAX_LENGTH = {"id": 64, "customer_id": 64, "product": 100, "category": 100, "service_point": 64}
_WHITESPACE = "".join(f"\\x{{{ord(c):x}}}" for c in map(chr, range(0x110000)) if c.isspace())
_UNTRIMMED = f"^[{_WHITESPACE}]|[{_WHITESPACE}]$|\\x00"
"""Cells the row path would change (Python's `str.strip`) or refuse (NUL): left to it."""
_UNUSUAL = f'{_UNTRIMMED}|["\\\\\\x00-\\x1f]'
"""The cells above, and those with characters JSON escapes (a cell without any is written
between quotes as it is)."""
_PATTERNS = {
    "unit_price": r"^-?(0|[1-9][0-9]{0,13})(\.[0-9]{1,4})?$",
    "currency": r"^[A-Z]{3}$",
    "quantity": r"^([1-9][0-9]{0,5}|1000000)?$",
    "ordered_at": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
                  r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
}
"""Plain spellings only: `Decimal(cell)` prints back as the cell, `int(cell)` is in the
model's range, and Arrow and `datetime.fromisoformat` read the instant alike."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BOUNDS = ((limits.FIRST_INSTANT - _EPOCH) // timedelta(microseconds=1),
           (limits.LAST_INSTANT - _EPOCH) // timedelta(microseconds=1))
_CHANNELS = tuple(c.value for c in Channel)
_quote = json.encoder.encode_basestring  # what the compact encoder writes for a str (no ASCII escaping)
LINES_KEPT = 1 << 14


def available() -> bool:
    return pa is not None


def layout(kind: str, planned: Sequence[tuple[str, Target]]) -> dict[str, str] | None:
    """Field -> column when this path can judge every mapped column of a file of `kind`."""
    if pa is None or kind != "purchases":
        return None
    fields: dict[str, str] = {}
    for column, target in planned:
        if target.field not in REQUIRED + OPTIONAL or target.field in fields or not column:
            return None
        fields[target.field] = column
    return fields if all(f in fields for f in REQUIRED) else None


Encoded = EncodedPurchases
"""A region's purchases, ready for storage (`EncodedPurchases`: columns and documents)."""


_LINES: dict[tuple[str, str, str, str, str], tuple[str, Decimal]] = {}


def _line(product: str, price: str, currency: str, quantity: str, category: str) -> tuple[str, Decimal]:
    """An order line's JSON and total, built (and validated) as a real `OrderLine` once."""
    key = (product, price, currency, quantity, category)
    known = _LINES.get(key)
    if known is None:
        line = OrderLine(product, Money(Decimal(price), currency), int(quantity or 1), category)
        known = (serialization.dumps(line), line.unit_price.amount * line.quantity)
        if len(_LINES) >= LINES_KEPT:
            _LINES.clear()
        _LINES[key] = known
    return known


def _checked(table: Any, fields: Mapping[str, str]) -> tuple[dict[str, Any], bool] | None:
    """The region's columns by field (and `instants`, microseconds since the epoch), when
    every cell passes, and whether no cell holds a character JSON escapes; None at the
    first failure."""
    plain = True
    columns = {field: table.column(column).combine_chunks() for field, column in fields.items()}
    for field, column in columns.items():
        if pc.any(pc.match_substring_regex(column, _UNUSUAL)).as_py():
            if pc.any(pc.match_substring_regex(column, _UNTRIMMED)).as_py():
                return None
            plain = False  # characters JSON escapes: the documents are written in Python
        pattern = _PATTERNS.get(field)
        if pattern is not None and not pc.all(pc.match_substring_regex(column, pattern)).as_py():
            return None
        lengths = None
        if field in REQUIRED:
            lengths = pc.utf8_length(column)
            if pc.min(lengths).as_py() < 1:
                return None
        if field in _MAX_LENGTH:
            lengths = pc.utf8_length(column) if lengths is None else lengths
            if pc.max(lengths).as_py() > _MAX_LENGTH[field]:
                return None
    channel = columns.get("channel")
    if channel is not None and not pc.all(pc.is_in(channel, pa.array(("", *_CHANNELS)))).as_py():
        return None
    try:
        instants = pc.cast(pc.cast(columns["ordered_at"], pa.timestamp("us", tz="UTC")), pa.int64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    low, high = pc.min_max(instants).values()
    if low.as_py() < _BOUNDS[0] or high.as_py() > _BOUNDS[1]:
        return None
    columns["instants"] = instants
    return columns, plain


def encode(data: bytes, columns: Sequence[str], delimiter: str, fields: Mapping[str, str],
           lines: int) -> Encoded | None:
    """The purchases of a region (`lines` plain lines of UTF-8 `data`), or None when the
    row path must read it."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=list(columns), use_threads=False,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(dict.fromkeys(fields.values())),
                column_types={column: pa.string() for column in fields.values()},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != lines:
        return None
    checked = _checked(table, fields)
    if checked is None:
        return None
    columns_of, plain = checked
    if plain and pc.min(pc.year(_as_time(columns_of["instants"]))).as_py() >= 1000:
        return _documents(columns_of, table.num_rows)
    values = {field: column.to_pylist() for field, column in columns_of.items() if field != "ordered_at"}
    values["ordered_at"] = values.pop("instants")
    return _purchases(values, table.num_rows)


def _as_time(instants: Any) -> Any:
    return pc.cast(instants, pa.timestamp("us", tz="UTC"))


def _json_text(column: Any) -> Any:
    """Each cell as a JSON string, null for an empty one (cells hold no character JSON escapes)."""
    quoted = pc.binary_join_element_wise('"', column, '"', "")
    return pc.if_else(pc.equal(column, ""), pa.scalar("null"), quoted)


def _documents(columns: dict[str, Any], count: int) -> Encoded | None:
    """`_purchases`, with each document assembled column-wise: one Arrow call per piece
    instead of Python work per purchase."""
    ids, customers = columns["id"], columns["customer_id"]
    if count > 1:
        changed = pc.or_(pc.not_equal(ids.slice(1), ids.slice(0, count - 1)),
                         pc.not_equal(customers.slice(1), customers.slice(0, count - 1)))
        starts = [0, *(index + 1 for index in pc.indices_nonzero(changed).to_pylist())]
    else:
        starts = [0]
    offsets = pa.array([*starts, count], pa.int32())
    first = pa.array(starts, pa.int32())
    currency = columns["currency"]
    owner = pc.cumulative_sum(pc.cast(pc.is_in(pa.array(range(count)), value_set=first), pa.int32()))
    if not pc.all(pc.equal(currency, pc.take(pc.take(currency, first), pc.subtract(owner, 1)))).as_py():
        return None  # a purchase's lines in several currencies: the row path says which
    quantities = columns.get("quantity")
    quantity = pa.array(["1"] * count) if quantities is None else \
        pc.if_else(pc.equal(quantities, ""), pa.scalar("1"), quantities)
    category = columns.get("category", pa.array([""] * count))
    lines = pc.binary_join_element_wise(
        '{"product":"', columns["product"], '","unit_price":{"amount":"', columns["unit_price"],
        '","currency":"', currency, '"},"quantity":', quantity, ',"category":"', category,
        '","unit_cost":null}', "")
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, pc.cast(lines, pa.string())), ",")
    instants = pc.take(columns["instants"], first)
    seconds = pc.cast(_as_time(instants), pa.timestamp("s", tz="UTC"))
    moments = pc.strftime(seconds, format="%Y-%m-%dT%H:%M:%S")
    fraction = pc.binary_join_element_wise(
        ".", pc.utf8_lpad(pc.cast(pc.remainder(instants, 1_000_000), pa.string()), 6, "0"), "")
    fraction = pc.if_else(pc.equal(pc.remainder(instants, 1_000_000), 0), pa.scalar(""), fraction)
    nothing = pa.array([""] * len(starts))
    channel = pc.take(columns["channel"], first) if "channel" in columns else nothing
    point = pc.take(columns["service_point"], first) if "service_point" in columns else nothing
    key, customer = pc.take(ids, first), pc.take(customers, first)
    docs = pc.binary_join_element_wise(
        '{"id":"', key, '","customer_id":"', customer, '","ordered_at":"', moments, fraction,
        '+00:00","lines":[', joined, '],"channel":', _json_text(channel), ',"service_point":',
        _json_text(point), "}", "")
    keys = key.to_pylist()
    if len(set(keys)) != len(keys):
        return None
    line_units = _units(columns["unit_price"], quantity)
    if line_units is None:
        return None
    units, places = line_units
    try:  # a purchase's total: the running sum of its lines' at its last line, less at its first
        running = pa.concat_arrays([pa.array([0], pa.int64()), pc.cumulative_sum_checked(units)])
    except (pa.ArrowInvalid, OverflowError):
        return None
    amounts = pc.subtract(pc.take(running, offsets.slice(1)), pc.take(running, offsets.slice(0, len(starts))))
    scales = pa.table({"owner": owner, "places": places}).group_by("owner", use_threads=False) \
        .aggregate([("places", "max")]).sort_by("owner").column("places_max")
    return _assembled(keys, customer, instants, channel, point, pc.take(currency, first), amounts, scales,
                      docs.to_pylist())


def _units(prices: Any, quantities: Any) -> tuple[Any, Any] | None:
    """Each line's total in 1/10,000ths (price units times quantity) and its price's decimal
    places, column-wise (prices are plain numbers with at most 4 decimals, quantities whole
    numbers); None if a total does not fit in 64 bits (the row path decides)."""
    parts = pc.extract_regex(prices, r"^(?P<whole>-?[0-9]+)(?:\.(?P<fraction>[0-9]*))?$")
    fraction = pc.struct_field(parts, "fraction")
    digits = pc.binary_join_element_wise(pc.struct_field(parts, "whole"), pc.utf8_rpad(fraction, 4, "0"), "")
    try:
        units = pc.multiply_checked(pc.cast(digits, pa.int64()), pc.cast(quantities, pa.int64()))
    except (pa.ArrowInvalid, OverflowError):
        return None
    return units, pc.utf8_length(fraction)


_MONEY_UNITS = int(limits.MONEY.scaleb(MONEY_SCALE))


def _assembled(ids: list[str], customers: Any, micros: Any, channels: Any, points: Any, currencies: Any,
               amounts: Any, scales: Any, docs: list[str]) -> EncodedPurchases | None:
    """The region's purchases from their columns (Arrow arrays, one value per purchase),
    their sums per customer, currency and day computed column-wise; None when a total is
    out of the model's range or the first purchase, built by the model, differs."""
    try:
        largest = pc.max(pc.abs_checked(amounts)).as_py() if len(ids) else 0
        if largest >= _MONEY_UNITS:
            return None
        if largest * len(ids) >= 1 << 62 \
                and pc.sum(pc.cast(pc.abs(amounts), pa.float64())).as_py() >= 1 << 62:
            return None  # a day's sum might not fit in 64 bits: the row path sums it
    except (pa.ArrowInvalid, OverflowError):
        return None
    days = pc.cast(pc.cast(_as_time(micros), pa.date32()), pa.int32())
    summed = pa.table({"customer": customers, "currency": currencies, "day": days, "amount": amounts,
                       "places": scales, "at": micros}) \
        .group_by(["customer", "currency", "day"], use_threads=False) \
        .aggregate([("amount", "sum"), ("places", "max"), ("at", "max")])
    nothing = pa.scalar(None, pa.string())
    encoded = EncodedPurchases(
        ids, customers.to_pylist(), micros.to_pylist(),
        pc.if_else(pc.equal(channels, ""), nothing, channels).to_pylist(),
        pc.if_else(pc.equal(points, ""), nothing, points).to_pylist(),
        currencies.to_pylist(), amounts.to_pylist(), scales.to_pylist(), docs,
        list(zip(*(summed.column(name).to_pylist() for name in
                   ("customer", "currency", "day", "amount_sum", "places_max", "at_max")), strict=True)))
    return encoded if _same_as_model(encoded) else None


def _purchases(values: dict[str, Any], count: int) -> Encoded | None:
    """Consecutive rows with one id and customer are one purchase (as `records.grouped`)."""
    ids, customers, instants = values["id"], values["customer_id"], values["ordered_at"]
    products, prices, currencies = values["product"], values["unit_price"], values["currency"]
    quantities = values.get("quantity") or [""] * count
    categories = values.get("category") or [""] * count
    channels = values.get("channel") or [""] * count
    points = values.get("service_point") or [""] * count
    columns: dict[str, list[Any]] = {name: [] for name in ("id", "customer", "at", "channel", "point",
                                                            "currency", "amount", "places")}
    docs: list[str] = []
    seen: set[str] = set()
    quote = _quote
    index = 0
    try:
        while index < count:
            key, customer = ids[index], customers[index]
            end = index + 1
            while end < count and ids[end] == key and customers[end] == customer:
                end += 1
            currency = currencies[index]
            parts: list[str] = []
            amount = Decimal(0)
            for at in range(index, end):
                if currencies[at] != currency:
                    return None
                fragment, total = _line(products[at], prices[at], currency, quantities[at], categories[at])
                parts.append(fragment)
                amount += total
            if key in seen or abs(amount) >= limits.MONEY:
                return None
            seen.add(key)
            moment = _EPOCH + timedelta(microseconds=instants[index])
            channel, point = channels[index] or None, points[index] or None
            exponent = int(amount.as_tuple().exponent)
            for name, value in (("id", key), ("customer", customer), ("at", instants[index]),
                                ("channel", channels[index]), ("point", points[index]),
                                ("currency", currency), ("amount", int(amount.scaleb(MONEY_SCALE))),
                                ("places", max(0, -exponent))):
                columns[name].append(value)
            docs.append(f'{{"id":{quote(key)},"customer_id":{quote(customer)},'
                        f'"ordered_at":"{moment.isoformat()}","lines":[{",".join(parts)}],'
                        f'"channel":{"null" if channel is None else quote(channel)},'
                        f'"service_point":{"null" if point is None else quote(point)}}}')
            index = end
    except (CRMError, ValueError, ArithmeticError):
        return None
    texts = {name: pa.array(columns[name], pa.string())
             for name in ("customer", "channel", "point", "currency")}
    return _assembled(columns["id"], texts["customer"], pa.array(columns["at"], pa.int64()), texts["channel"],
                      texts["point"], texts["currency"], pa.array(columns["amount"], pa.int64()),
                      pa.array(columns["places"], pa.int32()), docs)


def _same_as_model(encoded: EncodedPurchases) -> bool:
    """The first purchase built as the model builds it writes the same document and has
    the same total: a guard against this path and the model drifting apart."""
    doc = encoded.docs[0]
    try:
        lines = [serialization.structure(line, OrderLine)
                 for line in json.loads(doc)["lines"]]
        purchase = Purchase(encoded.ids[0], encoded.customer_ids[0], from_micros(encoded.ordered_at[0]),
                            tuple(lines), encoded.channels[0], encoded.service_points[0])
    except (CRMError, ValueError, TypeError, KeyError):
        return False
    amount = purchase.amount
    return (serialization.dumps(purchase) == doc
            and amount == Decimal(encoded.amounts[0]).scaleb(-MONEY_SCALE)
            and max(0, -int(amount.as_tuple().exponent)) == encoded.scales[0])
