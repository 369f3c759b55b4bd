"""The columnar path of a CSV import: a region of purchase rows checked column by column.

The row path turns every cell into a Python value and every record into a model
object; most of an import's time went there. Here a region of plain lines (see
`regions`) is parsed by Arrow in one call, and each column is checked at once
(`pyarrow.compute`) against rules *stricter* than the row path's: a cell passes only
when the row path would read it to the very same value (no surrounding spaces, plain
numbers, ISO 8601 instants with an offset, known channels, lengths within the model's
limits). Passing rows become storage columns (`EncodedPurchases`: plain values, totals
in integer units, the sums per customer, currency and day) and JSON documents, no model
object per row, and without loading pandas (see `_texts`). The documents are those
`serialization.dumps` writes: assembled column-wise (`_documents`) when no cell holds a
character JSON escapes, else per purchase in Python with order lines built as real
`OrderLine`s (`_purchases`); either way each region's first purchase is rebuilt as a
real `Purchase` and must give the same document and total, a guard against this path
and the model drifting apart. When any row of the region fails a check, or the mapping
or file is one this path does not judge, `encode` answers None and the importer reads
the region through the row path, which refuses rows with their line, field and reason
as always.

pyarrow is optional (the `dataframes` extra); without it every import takes the row path.
"""

from __future__ import annotations

import functools
import itertools
import json
from array import array
from collections.abc import Iterable, Mapping, Sequence
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
UNTRIMMED = f"^[{_WHITESPACE}]|[{_WHITESPACE}]$|\\x00"
"""Cells the row path would change (Python's `str.strip`) or refuse (NUL): left to it."""
_UNUSUAL = f'{UNTRIMMED}|["\\\\\\x00-\\x1f]'
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
    channel = columns.get("channel")
    if channel is not None and not pc.all(pc.is_in(channel, _texts(("", *_CHANNELS)))).as_py():
        return None
    for field, column in columns.items():
        pattern = _PATTERNS.get(field)
        if pattern is not None:  # its characters are neither white space, nor ones JSON escapes
            if not pc.all(pc.match_substring_regex(column, pattern)).as_py():
                return None
        elif field != "channel" and pc.any(pc.match_substring_regex(column, _UNUSUAL)).as_py():
            if pc.any(pc.match_substring_regex(column, UNTRIMMED)).as_py():
                return None
            plain = False  # characters JSON escapes: the documents are written in Python
        lengths = None
        if field in REQUIRED:
            lengths = pc.utf8_length(column)
            if pc.min(lengths).as_py() < 1:
                return None
        if field in _MAX_LENGTH:
            lengths = pc.utf8_length(column) if lengths is None else lengths
            if pc.max(lengths).as_py() > _MAX_LENGTH[field]:
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


def read_region(data: bytes, columns: Sequence[str], delimiter: str, wanted: Sequence[str],
                lines: int) -> Any:
    """The `wanted` columns of a region (`lines` plain lines of UTF-8 `data`, its columns
    named `columns`) as an Arrow table of texts, or None when Arrow reads it otherwise
    than as `lines` rows (the row path then reads it)."""
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=list(columns), use_threads=False,
                                           block_size=max(1 << 20, len(data) + 1)),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(wanted), column_types={column: pa.string() for column in wanted},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == lines else None


def encode(data: bytes, columns: Sequence[str], delimiter: str, fields: Mapping[str, str],
           lines: int) -> EncodedPurchases | None:
    """The purchases of a region (`lines` plain lines of UTF-8 `data`), or None when the
    row path must read it."""
    table = read_region(data, columns, delimiter, list(dict.fromkeys(fields.values())), lines)
    if table is None:
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


def _texts(values: Sequence[str]) -> Any:
    """A string array built from its buffers: `pa.array` and `pa.scalar` (and compute
    functions given Python values) import pandas on first use, about 0.35 s of CPU and
    60 MB or more once per process, for nothing this path needs."""
    encoded = [value.encode() for value in values]
    offsets = array("i", [0])
    offsets.extend(itertools.accumulate(map(len, encoded)))
    return pa.Array.from_buffers(pa.string(), len(encoded),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])


def _integers(values: Iterable[int], kind: str = "q") -> Any:
    """An int64 ("q") or int32 ("i") array built from its buffer (see `_texts`)."""
    data = array(kind, values)
    return pa.Array.from_buffers(pa.int64() if kind == "q" else pa.int32(), len(data),
                                 [None, pa.py_buffer(data)])


@functools.cache
def _scalar(value: str | int) -> Any:
    return (_texts([value]) if isinstance(value, str) else _integers([value]))[0]


def _join(*pieces: Any) -> Any:
    """The pieces (arrays, or texts repeated on every row) joined row by row."""
    return pc.binary_join_element_wise(*(_scalar(p) if isinstance(p, str) else p for p in pieces),
                                       _scalar(""))


def _json_text(column: Any) -> Any:
    """Each cell as a JSON string, null for an empty one (cells hold no character JSON escapes)."""
    return pc.if_else(pc.equal(column, _scalar("")), _scalar("null"), _join('"', column, '"'))


def _documents(columns: dict[str, Any], count: int) -> EncodedPurchases | None:
    """`_purchases`, with each document assembled column-wise: one Arrow call per piece
    instead of Python work per purchase."""
    ids, customers = columns["id"], columns["customer_id"]
    if count > 1:
        changed = pc.or_(pc.not_equal(ids.slice(1), ids.slice(0, count - 1)),
                         pc.not_equal(customers.slice(1), customers.slice(0, count - 1)))
        starts = [0, *(index + 1 for index in pc.indices_nonzero(changed).to_pylist())]
    else:
        starts = [0]
    ends = [*(start - 1 for start in starts[1:]), count - 1]
    offsets = _integers([*starts, count], "i")
    first = _integers(starts, "i")
    currency = columns["currency"]
    owner = pc.cumulative_sum(pc.cast(pc.is_in(_integers(range(count), "i"), value_set=first), pa.int64()))
    owner = pc.subtract(owner, _scalar(1))  # each line's purchase: 0, 1, ...
    if not pc.all(pc.equal(currency, pc.take(pc.take(currency, first), owner))).as_py():
        return None  # a purchase's lines in several currencies: the row path says which
    quantities = columns.get("quantity")
    quantity = _texts(["1"] * count) if quantities is None else \
        pc.if_else(pc.equal(quantities, _scalar("")), _scalar("1"), quantities)
    category = columns.get("category", _texts([""] * count))
    lines = _join('{"product":"', columns["product"], '","unit_price":{"amount":"', columns["unit_price"],
                  '","currency":"', currency, '"},"quantity":', quantity, ',"category":"', category,
                  '","unit_cost":null}')
    joined = pc.binary_join(pa.ListArray.from_arrays(offsets, pc.cast(lines, pa.string())), _scalar(","))
    instants = pc.take(columns["instants"], first)
    million = _scalar(1_000_000)  # Arrow's remainder takes the dividend's sign: floored here
    micros = pc.remainder(pc.add(pc.remainder(instants, million), million), million)
    seconds = pc.cast(pc.divide(pc.subtract(instants, micros), million), pa.timestamp("s"))
    # years 1000 to 9999 here: the cast writes what strftime("%Y-%m-%d %H:%M:%S") would, 20 times faster
    moments = pc.replace_substring(pc.cast(seconds, pa.string()), " ", "T", max_replacements=1)
    fraction = pc.if_else(pc.equal(micros, _scalar(0)), _scalar(""),
                          _join(".", pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0")))
    nothing = _texts([""] * len(starts))
    channel = pc.take(columns["channel"], first) if "channel" in columns else nothing
    point = pc.take(columns["service_point"], first) if "service_point" in columns else nothing
    key, customer = pc.take(ids, first), pc.take(customers, first)
    docs = _join('{"id":"', key, '","customer_id":"', customer, '","ordered_at":"', moments, fraction,
                 '+00:00","lines":[', joined, '],"channel":', _json_text(channel), ',"service_point":',
                 _json_text(point), "}")
    keys = key.to_pylist()
    if len(set(keys)) != len(keys):
        return None
    line_units = _units(columns["unit_price"], quantity)
    amounts = None if line_units is None else _sums(line_units[0], ends)
    if line_units is None or amounts is None:
        return None
    return _assembled(keys, customer, instants, channel, point, pc.take(currency, first), amounts,
                      _most(line_units[1], owner, ends), docs.to_pylist())


def _units(prices: Any, quantities: Any) -> tuple[Any, Any] | None:
    """Each line's total in 1/10,000ths (price units times quantity) and its price's decimal
    places, column-wise (prices are plain numbers with at most 4 decimals, quantities whole
    numbers); None if a total does not fit in 64 bits (the row path decides)."""
    parts = pc.extract_regex(prices, r"^(?P<whole>-?[0-9]+)(?:\.(?P<fraction>[0-9]*))?$")
    fraction = pc.struct_field(parts, "fraction")
    digits = _join(pc.struct_field(parts, "whole"), pc.utf8_rpad(fraction, 4, "0"))
    try:
        units = pc.multiply_checked(pc.cast(digits, pa.int64()), pc.cast(quantities, pa.int64()))
    except (pa.ArrowInvalid, OverflowError):
        return None
    return units, pc.cast(pc.utf8_length(fraction), pa.int64())


def _sums(values: Any, ends: list[int]) -> Any:
    """The sums of consecutive runs of `values` (int64), each ending at one of `ends`
    (ascending, the last one the last value): running sums, differenced; None when a
    running sum does not fit in 64 bits."""
    try:
        running = pa.concat_arrays([_integers([0]), pc.cumulative_sum_checked(values)])
    except (pa.ArrowInvalid, OverflowError):
        return None
    return pc.subtract(pc.take(running, _integers(end + 1 for end in ends)),
                       pc.take(running, _integers([0, *(end + 1 for end in ends[:-1])])))


def _most(values: Any, runs: Any, ends: list[int]) -> Any:
    """The largest of `values` (0 to 7) in each run: `runs` numbers each value's run (0, 1,
    ... in order), so a running maximum of run * 8 + value restarts with every run."""
    tagged = pc.add(pc.multiply(runs, _scalar(8)), values)
    at_ends = _integers(ends)
    return pc.subtract(pc.take(pc.cumulative_max(tagged), at_ends),
                       pc.multiply(pc.take(runs, at_ends), _scalar(8)))


_MONEY_UNITS = int(limits.MONEY.scaleb(MONEY_SCALE))


def _assembled(ids: list[str], customers: Any, micros: Any, channels: Any, points: Any, currencies: Any,
               amounts: Any, scales: Any, docs: list[str]) -> EncodedPurchases | None:
    """The region's purchases from their columns (Arrow arrays, one value per purchase),
    their sums per customer, currency and day computed column-wise (sorted by them, in
    runs); None when a total is out of the model's range or does not fit in 64 bits, or
    the first purchase, built by the model, differs."""
    try:
        if pc.max(pc.abs_checked(amounts)).as_py() >= _MONEY_UNITS:
            return None
    except (pa.ArrowInvalid, OverflowError):
        return None
    table = pa.table({"customer": customers, "currency": currencies,
                      "day": pc.cast(pc.cast(_as_time(micros), pa.date32()), pa.int32()),
                      "at": micros, "amount": amounts, "places": scales})
    table = table.take(pc.sort_indices(table, sort_keys=[(name, "ascending") for name in
                                                          ("customer", "currency", "day", "at")]))
    count = len(ids)
    if count > 1:
        keys = [table.column(name).combine_chunks() for name in ("customer", "currency", "day")]
        changed = pc.or_(pc.or_(*(pc.not_equal(k.slice(1), k.slice(0, count - 1)) for k in keys[:2])),
                         pc.not_equal(keys[2].slice(1), keys[2].slice(0, count - 1)))
        ends = [*pc.indices_nonzero(changed).to_pylist(), count - 1]
        runs = pa.concat_arrays([_integers([0]), pc.cumulative_sum(pc.cast(changed, pa.int64()))])
    else:
        ends, runs = [0], _integers([0])
    sums = _sums(table.column("amount").combine_chunks(), ends)
    if sums is None:
        return None
    at_ends = _integers(ends)
    last = {name: pc.take(table.column(name), at_ends).to_pylist()
            for name in ("customer", "currency", "day", "at")}
    days = list(zip(last["customer"], last["currency"], last["day"], sums.to_pylist(),
                    _most(table.column("places").combine_chunks(), runs, ends).to_pylist(), last["at"],
                    strict=True))
    encoded = EncodedPurchases(
        ids, customers.to_pylist(), micros.to_pylist(), [c or None for c in channels.to_pylist()],
        [p or None for p in points.to_pylist()], currencies.to_pylist(), amounts.to_pylist(),
        scales.to_pylist(), docs, days)
    return encoded if _same_as_model(encoded) else None


def _purchases(values: dict[str, Any], count: int) -> EncodedPurchases | None:
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
    texts = {name: _texts(columns[name]) for name in ("customer", "channel", "point", "currency")}
    return _assembled(columns["id"], texts["customer"], _integers(columns["at"]), texts["channel"],
                      texts["point"], texts["currency"], _integers(columns["amount"]),
                      _integers(columns["places"]), docs)


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
