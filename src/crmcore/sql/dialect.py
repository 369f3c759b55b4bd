"""One object that says how a database spells what the core compiles.

Segments, the purchase summary (RFM, lifetime value), service quality and the
baskets of cross-sell are compiled by the core into SQL; the repositories the
built-in SQL adapters share write rows. Everything in that SQL which is not
standard goes through a `Dialect`: how values are stored (instants, money,
dates, booleans, JSON documents), how parameters and identifiers are written,
day arithmetic on stored instants, upserts, bulk loads, and the JSON reads of the
segment language. SQLite and PostgreSQL are two instances; a storage plugin adds
a backend by subclassing `Dialect` (or one of the two) and returning an instance
as its unit of work's `dialect` attribute.

A method that has no spelling in a dialect raises `Unsupported`: the segment
engine then runs that part of the rule in Python, and the analytics fall back
to Python, so a partial dialect still gives the same answers, only slower.

Every method returns SQL built from constants and the SQL it was given; values
always travel as bound parameters (`bind` gives the marker for one).
"""

# ruff: noqa: S608 - identifiers are constants of the callers; every value is a bound parameter
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, Protocol

from crmcore.values import MONEY_SCALE, from_micros, to_micros

Bind = Callable[[Any], str]
"""Binds one value and returns the marker to put in the SQL text where it goes."""

MICROS_PER_DAY = 86_400_000_000
PERIODS = ("day", "month", "year")
"""Calendar buckets `Dialect.period` knows."""
_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")
EPOCH_SHIFT_DAYS = 719_163
"""Days from 0001-01-01 to the epoch: shifted by them, every instant Python can hold is positive."""


class Unsupported(Exception):
    """This construct has no SQL in this dialect; the caller computes it in Python."""


class Parameters:
    """Values bound while SQL is composed: each `bind` leaves a marker, and `finish` spells
    the markers as the dialect's placeholders in the order they finally appear (so a
    translation may reorder or repeat its arguments)."""

    _MARK = re.compile("\x00(\\d+)\x00")

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.values: list[Any] = []

    def bind(self, value: Any) -> str:
        self.values.append(value)
        return f"\x00{len(self.values) - 1}\x00"

    def finish(self, sql: str) -> tuple[str, tuple[Any, ...]]:
        ordered: list[Any] = []

        def spell(match: re.Match[str]) -> str:
            ordered.append(self.values[int(match.group(1))])
            return self.dialect.placeholder

        return self._MARK.sub(spell, sql), tuple(ordered)


class Cursor(Protocol):
    """The part of a DB-API cursor the shared SQL uses."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any] = ...) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Dialect:
    """Standard SQL with driver-native values; subclass and override what your database spells
    otherwise. Instances hold no state and are shared freely between threads."""

    name: ClassVar[str] = "sql"
    """Also the key of a rule function's SQL translation (`RuleFunction.sql`)."""
    placeholder: ClassVar[str] = "?"
    """How a bound parameter is written (`?`, `%s`)."""
    money_scale: ClassVar[int] = 0
    """Money columns hold amount * 10**money_scale (0: an exact decimal type)."""
    text_order: ClassVar[str] = ""
    """Appended to a text in an ordering comparison, so SQL orders by code point like Python."""
    translations: ClassVar[tuple[str, ...]] = ()
    """Other dialects whose rule-function translations also fit this one, tried in order."""
    reserved: ClassVar[frozenset[str]] = frozenset({
        "all", "and", "any", "as", "asc", "at", "between", "both", "by", "case", "cast", "check",
        "column", "constraint", "create", "cross", "current", "default", "desc", "distinct", "do",
        "else", "end", "except", "exists", "false", "fetch", "for", "foreign", "from", "full",
        "grant", "group", "having", "in", "inner", "intersect", "into", "is", "join", "key",
        "leading", "left", "like", "limit", "natural", "not", "null", "offset", "on", "or",
        "order", "outer", "primary", "references", "right", "select", "table", "then", "to",
        "trailing", "true", "union", "unique", "user", "using", "values", "when", "where", "with",
    })
    """Words that must be quoted to name a column (`at`, `left`, ...)."""
    row_lock: ClassVar[str] = ""
    """Appended to a SELECT of a row the transaction will change or delete, so concurrent
    writers wait for it (PostgreSQL: FOR UPDATE); empty where writers are serialised anyway."""
    key_lock: ClassVar[str] = ""
    """Appended to a SELECT checking that a row exists until commit, as a foreign key would
    (PostgreSQL: FOR KEY SHARE: it waits for a deletion, never for an update)."""

    rule_columns: ClassVar[tuple[str, ...]] = ()
    """Columns that storages of this dialect keep in `customers` and `customer_states` beside
    `doc`, derived from it for segment rules to read (`collection_contains`); the
    customers-as-of relation (`lifecycle.states`) carries them through. None by default:
    rules read the document."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def planner_settings(self, *, past: bool = False) -> str | None:
        """A query run just before a segment rule's query, in its transaction, to set the
        planner for such reads (its rows are ignored); None: nothing to set. `past`: the
        rule reads the customers as of a past instant (`lifecycle.states`)."""
        return None

    # ---- values as stored and bound ----

    def instant(self, moment: datetime) -> Any:
        """An aware UTC instant as stored and bound."""
        return moment

    def from_instant(self, value: Any) -> datetime:
        """A stored instant read back as an aware UTC datetime."""
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def money(self, amount: Decimal) -> Any:
        """An exact amount as stored and bound."""
        return amount * 10**self.money_scale if self.money_scale else amount

    def instants_of(self, micros: Sequence[int]) -> Sequence[Any]:
        """Instants given as microseconds since the epoch (UTC), as stored and bound (a
        batch at once: where the column holds the microseconds, nothing per value)."""
        return [self.instant(from_micros(value)) for value in micros]

    def money_of(self, units: Sequence[int], scales: Sequence[int]) -> Sequence[Any]:
        """Exact amounts given in 1/10,000ths, each with the decimal places its `Decimal`
        is written with, as stored and bound (a batch at once, as `instants_of`)."""
        return [self.money(Decimal(unit // 10 ** (MONEY_SCALE - scale)).scaleb(-scale))
                for unit, scale in zip(units, scales, strict=True)]

    def from_money(self, value: Any) -> float:
        """A stored amount (or a sum of them) as a float in currency units."""
        return float(value) / 10**self.money_scale if self.money_scale else float(value)

    def exact_money(self, value: int | float | Decimal) -> Decimal:
        """A stored amount (or a sum of them) as an exact Decimal in currency units."""
        if self.money_scale:
            return Decimal(value).scaleb(-self.money_scale)
        return value if isinstance(value, Decimal) else Decimal(str(value))

    def day(self, value: date) -> Any:
        """A calendar date as stored and bound."""
        return value

    def boolean(self, value: bool) -> Any:
        """A truth value as stored and bound."""
        return value

    def json_column(self, text: str) -> Any:
        """A JSON document (as text) as bound to a document column."""
        return text

    def limit(self, count: int | None) -> Any:
        """The value bound to `LIMIT ?`; None means every row."""
        return count

    # ---- spelling ----

    def sql(self, text: str) -> str:
        """Shared SQL is written with `?`; this spells the parameters the dialect's way."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    def quote(self, identifier: str) -> str:
        """A column or table name, quoted when it is a reserved word or not a plain name."""
        if _PLAIN.fullmatch(identifier) and identifier not in self.reserved:
            return identifier
        return '"' + identifier.replace('"', '""') + '"'

    types: ClassVar[Mapping[str, str]] = {
        "text": "TEXT", "int": "BIGINT", "real": "DOUBLE PRECISION", "bool": "BOOLEAN",
        "date": "DATE", "instant": "TIMESTAMP WITH TIME ZONE", "money": "NUMERIC",
    }
    """The column type that holds each kind of value (text, int, money, real, instant, date, bool)."""

    def money_number(self, sql: str) -> str:
        """A stored amount (or a sum of them) as the number it leaves the database as: a
        double, or the stored integer units; dividing it by 10**money_scale gives currency
        units (an exact decimal costs more to read than it is worth for statistics)."""
        return self.cast(sql, "real")

    def cast(self, sql: str, kind: str) -> str:
        """`sql` (often a bound parameter, whose type a server cannot guess when it is NULL)
        as a value of a kind, in its stored form."""
        return f"CAST({sql} AS {self.types[kind]})"

    def upsert(self, table: str, columns: Sequence[str], key: Sequence[str]) -> str:
        """INSERT of `columns` (as `?` parameters) that replaces the row with the same `key`."""
        names = ", ".join(map(self.quote, columns))
        marks = ", ".join("?" for _ in columns)
        sets = ", ".join(f"{self.quote(c)} = excluded.{self.quote(c)}" for c in columns if c not in key)
        keys = ", ".join(map(self.quote, key))
        return self.sql(
            f"INSERT INTO {self.quote(table)} ({names}) VALUES ({marks}) "
            f"ON CONFLICT ({keys}) DO UPDATE SET {sets}"
        )

    def together(self, *writes: str) -> str | None:
        """Writes (written with `?`, each one's parameters bound before the next one's, none
        reading what another writes) as one statement: one round trip to a server instead
        of one each. None where the database runs one at a time; the caller then runs each."""
        return None

    def state_parts(self, row: str) -> tuple[str, ...]:
        """Conditions on a kept customer state (`row`: its columns' qualifier, "s." in a
        query, "" in an index predicate) that split the states into parts each indexed on
        its own; the customers-as-of relation reads each part as a branch. "": one part."""
        return ("",)

    def one_of(self, sql: str, values: Sequence[Any], bind: Bind) -> str:
        """`sql` equals one of `values` (none: false), spelled so that an index led by `sql`
        is sought once per value (the customers as of an instant: one seek per later day)."""
        if not values:
            return "(1 = 0)"
        return f"({sql} IN ({', '.join(bind(value) for value in values)}))"

    def recursive(self, name: str, columns: Sequence[str], anchor: str, step: str, body: str) -> str:
        """A subquery: `body` (a SELECT) over `name`, which holds the rows of `anchor` and
        those `step` (a SELECT reading `name`) adds from them, repeated until it adds none:
        a tree walk (an account and every account below it) in one statement."""
        return (f"(WITH RECURSIVE {name}({', '.join(columns)}) AS ({anchor} UNION ALL {step}) "
                f"{body})")

    def executemany(self, cursor: Cursor, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement (written with `?`) once per row; an empty batch runs nothing
        (some drivers refuse an empty `executemany`)."""
        if rows:
            cursor.executemany(self.sql(sql), rows)

    def insert_many(self, cursor: Cursor, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Append many rows with one of the shared `INSERT INTO t (...) VALUES (?, ...)`
        statements, the fastest way the database has (`executemany` here; PostgreSQL
        streams them through COPY). No conflict clause, no rows returned."""
        self.executemany(cursor, sql, rows)

    def translation(self, translations: Mapping[str, Callable[..., str]]) -> Callable[..., str] | None:
        """A rule function's SQL for this dialect, or None."""
        for name in (self.name, *self.translations):
            if name in translations:
                return translations[name]
        return None

    # ---- time on stored instants ----

    def epoch_day(self, instant: str) -> str:
        """The UTC day of a stored instant, counted from 1970-01-01 (an integer)."""
        return f"(CAST(({instant} AT TIME ZONE 'UTC') AS DATE) - DATE '1970-01-01')"

    def day_key(self, instant: str) -> str:
        """A value that is the same for two stored instants exactly when they fall on the same
        UTC day (what counting distinct days needs, run once per row): the epoch day, unless
        the dialect has something cheaper."""
        return self.epoch_day(instant)

    def day_start(self, day: str) -> str:
        """The stored instant at which epoch day `day` (an integer expression) begins."""
        return f"(CAST(DATE '1970-01-01' + ({day}) AS TIMESTAMP) AT TIME ZONE 'UTC')"

    def period(self, instant: str, unit: str) -> str:
        """The UTC calendar bucket of a stored instant as text: 2025-01-31, 2025-01 or 2025."""
        raise Unsupported(f"no calendar periods in {self.name}")

    def month_day(self, day: str) -> str:
        """The 'MM-DD' text of a stored date."""
        raise Unsupported(f"no month-day in {self.name}")

    def date_month(self, day: str) -> str:
        """The 'YYYY-MM' text of a stored date."""
        raise Unsupported(f"no date months in {self.name}")

    def days_between(self, later: str, earlier: str) -> str:
        """The days (a real) from stored instant `earlier` to stored instant `later`."""
        raise Unsupported(f"no instant arithmetic in {self.name}")

    def dates_between(self, later: str, earlier: str) -> str:
        """The days (a number) from stored date `earlier` to stored date `later`."""
        return f"({later} - {earlier})"

    def money_factor(self, sql: str) -> str:
        """A real factor (a probability) that multiplies a stored amount and keeps its kind:
        an exact decimal stays exact."""
        return self.cast(sql, "money")

    def contains_text(self, haystack: str, needle: str) -> str:
        """True when `needle` occurs in `haystack` (both texts; NULL when either is)."""
        return f"(strpos({haystack}, {needle}) > 0)"

    # ---- JSON documents (customers' `doc` column) ----

    def json_text(self, doc: str, key: str) -> str:
        """The text `doc.key` (a top-level key; `key` is a constant name), NULL when absent."""
        raise Unsupported(f"no JSON reads in {self.name}")

    def json_integer(self, doc: str, key: str) -> str:
        """The integer `doc.key` (a top-level key of a record's document; `key` is a constant
        name), NULL when absent."""
        raise Unsupported(f"no JSON reads in {self.name}")

    def json_array_contains(self, doc: str, key: str, needle: str) -> str:
        """True when the array `doc.key` (texts) holds `needle`; `key` is a constant name."""
        raise Unsupported(f"no JSON arrays in {self.name}")

    def json_array_length(self, doc: str, key: str) -> str:
        """The length of the array `doc.key`."""
        raise Unsupported(f"no JSON arrays in {self.name}")

    def collection_contains(self, row: str, key: str, needle: str) -> str:
        """True when the customer's text array `key` (tags, emails, phones; a constant name)
        holds `needle`; `row` is the alias of a relation with the columns of `customers`.
        Read from the document (`json_array_contains` on `row.doc`) unless the dialect
        keeps the arrays in `rule_columns` of their own."""
        return self.json_array_contains(f"{row}.doc", key, needle)

    def collection_length(self, row: str, key: str) -> str:
        """The length of the customer's text array `key` (as `collection_contains`)."""
        return self.json_array_length(f"{row}.doc", key)

    def json_elements(self, doc: str, key: str, alias: str) -> str:
        """A FROM item with one row per element of the array `doc.key`, named `alias`."""
        raise Unsupported(f"no JSON arrays in {self.name}")

    def json_element_text(self, alias: str, field: str) -> str:
        """The text of `field` in an element of `json_elements`."""
        raise Unsupported(f"no JSON arrays in {self.name}")

    def consent_granted(self, doc: str, purpose: str, channel: str, at: str) -> str:
        """True when the customer document holds a consent (purpose, channel) granted at or
        before `at` (an ISO text): the arguments are bound markers."""
        raise Unsupported(f"no consent reads in {self.name}")

    def attribute_kind(self, doc: str, key: str, bind: Bind) -> str:
        """The JSON type of custom attribute `key`, NULL when absent."""
        raise Unsupported(f"no custom attributes in {self.name}")

    def attribute(self, doc: str, key: str, kind: str, bind: Bind) -> str:
        """Custom attribute `key` read as `kind` (text, real, bool, date, instant), NULL when
        the stored value is of another type. Numbers written `{"$decimal": ...}` read as
        real, dates and instants are tagged `$date` and `$datetime` (ISO texts)."""
        raise Unsupported(f"no custom attributes in {self.name}")

    def attribute_instant(self, moment: datetime) -> Any:
        """An instant bound to compare with `attribute(..., "instant", ...)`."""
        return self.instant(moment)


def json_path(key: str, tag: str | None = None) -> str:
    """A JSON path into the custom attributes; the key is a checked machine name."""
    path = f"$.attributes.{json.dumps(key)}"
    return path if tag is None else f"{path}.{json.dumps(tag)}"


class SQLite(Dialect):
    """SQLite: instants as integer microseconds, money as integer 1/10,000ths, JSON as text."""

    name = "sqlite"
    money_scale = MONEY_SCALE
    types = {**Dialect.types, "money": "BIGINT", "instant": "BIGINT", "date": "TEXT", "bool": "INTEGER"}

    def instant(self, moment: datetime) -> int:
        return to_micros(moment)

    def from_instant(self, value: Any) -> datetime:
        return from_micros(value)

    def money(self, amount: Decimal) -> int:
        return int(amount * 10**self.money_scale)

    def instants_of(self, micros: Sequence[int]) -> Sequence[Any]:
        return micros

    def money_of(self, units: Sequence[int], scales: Sequence[int]) -> Sequence[Any]:
        return units  # stored in 1/10,000ths already (money_scale == MONEY_SCALE)

    def day(self, value: date) -> str:
        return value.isoformat()

    def boolean(self, value: bool) -> int:
        return int(value)

    def limit(self, count: int | None) -> int | None:
        return -1 if count is None else count

    def epoch_day(self, instant: str) -> str:
        # floor division: integer division in SQLite truncates towards zero
        return f"({instant} / {MICROS_PER_DAY} - ({instant} % {MICROS_PER_DAY} < 0))"

    def day_key(self, instant: str) -> str:
        # shifted so that every instant Python can hold is positive: truncating division floors
        return f"(({instant} + {EPOCH_SHIFT_DAYS * MICROS_PER_DAY}) / {MICROS_PER_DAY})"

    def day_start(self, day: str) -> str:
        return f"(({day}) * {MICROS_PER_DAY})"

    def money_number(self, sql: str) -> str:
        return sql  # integer units, read as they are

    def money_factor(self, sql: str) -> str:
        return sql  # integer units times a real: the product is read back through exact_money

    def date_month(self, day: str) -> str:
        return f"substr({day}, 1, 7)"  # dates are ISO texts

    def days_between(self, later: str, earlier: str) -> str:
        return f"(({later}) - ({earlier})) / {float(MICROS_PER_DAY)!r}"

    def dates_between(self, later: str, earlier: str) -> str:
        return f"(julianday({later}) - julianday({earlier}))"

    def period(self, instant: str, unit: str) -> str:
        fmt = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[unit]
        # whole seconds by floor division (SQLite's truncates towards zero: wrong before 1970)
        return f"strftime('{fmt}', {instant} / 1000000 - ({instant} % 1000000 < 0), 'unixepoch')"

    def month_day(self, day: str) -> str:
        return f"substr({day}, 6, 5)"

    def contains_text(self, haystack: str, needle: str) -> str:
        return f"(instr({haystack}, {needle}) > 0)"

    def json_text(self, doc: str, key: str) -> str:
        return f"json_extract({doc}, '$.{key}')"

    def json_integer(self, doc: str, key: str) -> str:
        return f"json_extract({doc}, '$.{key}')"

    def json_array_contains(self, doc: str, key: str, needle: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each({doc}, '$.{key}') AS t WHERE t.value = {needle})"

    def json_array_length(self, doc: str, key: str) -> str:
        return f"json_array_length({doc}, '$.{key}')"

    def json_elements(self, doc: str, key: str, alias: str) -> str:
        return f"json_each({doc}, '$.{key}') AS {alias}"

    def json_element_text(self, alias: str, field: str) -> str:
        return f"json_extract({alias}.value, '$.{field}')"

    def consent_granted(self, doc: str, purpose: str, channel: str, at: str) -> str:
        return (f"EXISTS (SELECT 1 FROM json_each({doc}, '$.consents') AS k WHERE "
                f"json_extract(k.value, '$.purpose') = {purpose} AND "
                f"json_extract(k.value, '$.channel') = {channel} AND "
                "json_extract(k.value, '$.status') = 'granted' AND "
                f"json_extract(k.value, '$.at') <= {at})")

    def attribute_kind(self, doc: str, key: str, bind: Bind) -> str:
        return f"json_type({doc}, {bind(json_path(key))})"

    def attribute(self, doc: str, key: str, kind: str, bind: Bind) -> str:
        path = bind(json_path(key))
        found = f"json_type({doc}, {path})"
        value = f"json_extract({doc}, {path})"

        def tagged(tag: str) -> str:
            return f"json_extract({doc}, {bind(json_path(key, tag))})"

        if kind == "text":
            return f"(CASE WHEN {found} = 'text' THEN {value} END)"
        if kind == "real":
            return (f"(CASE WHEN {found} IN ('integer', 'real') THEN {value} "
                    f"ELSE {_sqlite_real(tagged('$decimal'))} END)")
        if kind == "bool":
            return f"(CASE {found} WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
        if kind == "date":
            return tagged("$date")
        if kind == "instant":
            return tagged("$datetime")
        raise Unsupported(f"no {kind} attributes")

    def attribute_instant(self, moment: datetime) -> str:
        return moment.isoformat()  # custom instants are stored as ISO text in UTC


def _sqlite_real(text: str) -> str:
    """A decimal's text as the nearest double, like Python's float(Decimal).

    SQLite's CAST is not always correctly rounded; its JSON number reader is, and
    refuses NaN and Infinity (which read as unknown, as in the Python engine).
    """
    wrapped = f"('[' || {text} || ']')"
    return f"(CASE WHEN json_valid({wrapped}) THEN json_extract({wrapped}, '$[0]') * 1.0 END)"


INDEXED_TAGS = 24
"""Tags a kept customer state may have and still be read from the states' day index alone
on PostgreSQL (`PostgreSQL.state_parts`): 24 of 64 characters and every other indexed
column at its longest (4-byte characters) make an entry of about 2,050 bytes, under the
B-tree's 2,704 (tests/postgres/test_adapter.py writes one)."""


class PostgreSQL(Dialect):
    """PostgreSQL: timestamptz, numeric money, `json` documents, texts in the "C" collation."""

    name = "postgresql"
    placeholder = "%s"
    text_order = ' COLLATE "C"'
    row_lock = "FOR UPDATE"
    key_lock = "FOR KEY SHARE"
    rule_columns: ClassVar[tuple[str, ...]] = ("rule_tags", "rule_emails", "rule_phones")
    """The text arrays as `jsonb`, generated from the document (a PostgreSQL migration):
    a `json` document is text parsed again on every access (8-14 us each), `jsonb` is
    read as it is stored. The document itself stays `json`, which keeps floats, -0.0
    and key order as written; for arrays of texts the two are the same."""

    def together(self, *writes: str) -> str:
        *first, then = writes  # a data-modifying WITH always runs, to completion
        return f"WITH {', '.join(f'write_{n} AS ({w})' for n, w in enumerate(first))} {then}"

    def state_parts(self, row: str) -> tuple[str, ...]:
        # The states' day index carries the columns rules test, for reads from the index
        # alone, `rule_tags` among them; a B-tree entry holds 2,704 bytes at most, so a
        # state with more tags (64 characters each at most) than `INDEXED_TAGS` is in a
        # second index without them, else its write would fail
        tags = (f"(CASE WHEN jsonb_typeof({row}rule_tags) = 'array' "
                f"THEN jsonb_array_length({row}rule_tags) ELSE 0 END)")
        return f"{tags} <= {INDEXED_TAGS}", f"{tags} > {INDEXED_TAGS}"

    def one_of(self, sql: str, values: Sequence[Any], bind: Bind) -> str:
        # one array bound, whatever the count: one statement text for the planner
        return f"({sql} = ANY(CAST({bind(list(values))} AS integer[])))"

    def planner_settings(self, *, past: bool = False) -> str:
        # JIT compiled an as-of rule's plan over a million customers for 0.8-3.7 s and
        # saved less: the work is reading rows and documents, not evaluating
        # expressions. Local to the transaction (`set_config(..., true)`): the server's
        # setting stays for every other transaction. As of a past instant, index reads
        # costed as cheap as they are on SSDs and cached pages: the states valid then
        # are the first change after the instant of each customer, written together,
        # which the planner cannot know; at the server's default (4) it read all ten
        # million states for a rule the day index does not cover (2.8-3.3 s against
        # 1.05 s at a million customers). Turning sequential scans off (session 7) read
        # today's rows by `customers_since` even when they all were valid then.
        cost = ", set_config('random_page_cost', '1.1', true)" if past else ""
        return f"SELECT set_config('jit', 'off', true){cost}"

    def epoch_day(self, instant: str) -> str:
        return f"(({instant} AT TIME ZONE 'UTC')::date - DATE '1970-01-01')"

    def day_key(self, instant: str) -> str:
        return f"({instant} AT TIME ZONE 'UTC')::date"

    def day_start(self, day: str) -> str:
        return f"((DATE '1970-01-01' + ({day}))::timestamp AT TIME ZONE 'UTC')"

    def period(self, instant: str, unit: str) -> str:
        fmt = {"day": "YYYY-MM-DD", "month": "YYYY-MM", "year": "YYYY"}[unit]
        return f"to_char({instant} AT TIME ZONE 'UTC', '{fmt}')"

    def month_day(self, day: str) -> str:
        return f"to_char({day}, 'MM-DD')"

    def date_month(self, day: str) -> str:
        return f"to_char({day}, 'YYYY-MM')"

    def days_between(self, later: str, earlier: str) -> str:
        return f"extract(epoch from (({later}) - ({earlier}))) / 86400.0"

    def json_text(self, doc: str, key: str) -> str:
        return f"({doc} ->> '{key}')"

    def json_integer(self, doc: str, key: str) -> str:
        return f"({doc} ->> '{key}')::integer"

    def json_array_contains(self, doc: str, key: str, needle: str) -> str:
        # No subquery: PostgreSQL pushes a filter free of subqueries into each branch
        # of the as-of relation's UNION ALL, where parallel workers run it, and a
        # set-returning function started per row cost about 4 us more. `?` on a
        # jsonb array is true when a string element equals the text; NULL (no array)
        # is false, so that `not ... contains` holds for a missing array as before.
        return f"coalesce(({doc} -> '{key}')::jsonb ? ({needle})::text, false)"

    def json_array_length(self, doc: str, key: str) -> str:
        return f"json_array_length({doc} -> '{key}')"

    def collection_contains(self, row: str, key: str, needle: str) -> str:
        # NULL (no array) is false, so that `not ... contains` holds as for a document
        return f"coalesce({row}.rule_{key} ? ({needle})::text, false)"

    def collection_length(self, row: str, key: str) -> str:
        return f"jsonb_array_length({row}.rule_{key})"

    def json_elements(self, doc: str, key: str, alias: str) -> str:
        return f"json_array_elements({doc}::json -> '{key}') AS {alias}"

    def json_element_text(self, alias: str, field: str) -> str:
        return f"{alias} ->> '{field}'"

    def consent_granted(self, doc: str, purpose: str, channel: str, at: str) -> str:
        return (f"EXISTS (SELECT 1 FROM json_array_elements({doc} -> 'consents') AS k(v) WHERE "
                f"k.v ->> 'purpose' = {purpose} AND k.v ->> 'channel' = {channel} "
                f"AND k.v ->> 'status' = 'granted' AND (k.v ->> 'at') COLLATE \"C\" <= {at})")

    def attribute_kind(self, doc: str, key: str, bind: Bind) -> str:
        return f"json_typeof({doc} -> 'attributes' -> {bind(key)})"

    def attribute(self, doc: str, key: str, kind: str, bind: Bind) -> str:
        node = f"({doc} -> 'attributes' -> {bind(key)})"
        found = f"json_typeof({node})"
        spelt = {
            "text": f"(CASE WHEN {found} = 'string' THEN {node} #>> '{{}}' END)",
            "real": (f"(CASE WHEN {found} = 'number' THEN ({node} #>> '{{}}')::numeric "
                     f"WHEN ({node} ->> '$decimal') ~ '^-?[0-9]' "
                     f"THEN ({node} ->> '$decimal')::float8 END)"),
            "bool": f"(CASE WHEN {found} = 'boolean' THEN ({node} #>> '{{}}')::boolean END)",
            "date": f"({node} ->> '$date')::date",
            "instant": f"({node} ->> '$datetime')::timestamptz",
        }
        if kind not in spelt:
            raise Unsupported(f"no {kind} attributes")
        return spelt[kind]


SQLITE = SQLite()
POSTGRESQL = PostgreSQL()
BUILTIN: Mapping[str, Dialect] = {d.name: d for d in (SQLITE, POSTGRESQL)}


def dialect_of(uow: object) -> Dialect | None:
    """The dialect a unit of work speaks (its `dialect` attribute: a `Dialect`, or the name of
    a built-in one), or None when the core must compute in Python."""
    found = getattr(uow, "dialect", None)
    if isinstance(found, Dialect):
        return found
    if isinstance(found, str):
        return BUILTIN.get(found)
    return None
