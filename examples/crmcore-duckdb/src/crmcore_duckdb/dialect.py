"""DuckDB's SQL dialect for crmcore.

Values are stored as in SQLite (instants as integer microseconds since the epoch,
money as integer 1/10,000ths, dates as ISO text, documents as JSON text), so
comparisons and sums stay exact; what differs is spelling: integer division is
`//`, calendar buckets go through `make_timestamp`, JSON arrays are read with
`json_each` whose values are JSON (so texts are taken out with
`json_extract_string`), and `at` is a reserved word.

Custom attributes (`attributes.x` in a segment rule) are not spelt here: those
parts of a rule run in Python, which gives the same answers.
"""

# ruff: noqa: S608 - identifiers are constants of crmcore's compilers; every value is a bound parameter
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from crmcore.sql import Cursor, Dialect, SQLite
from crmcore.sql.dialect import EPOCH_SHIFT_DAYS, MICROS_PER_DAY

_PLAIN_INSERT = re.compile(r"(INSERT INTO [^()]+ \([^()]+\) VALUES )(\(\?(?:, \?)*\))")
ROWS_PER_STATEMENT = 500


class DuckDB(SQLite):
    name = "duckdb"
    translations = ("postgresql",)
    """char_length() and translate() behave as in PostgreSQL (DuckDB's lower() is not ASCII-only)."""
    reserved = SQLite.reserved | {"pivot", "unpivot", "qualify", "summarize", "describe", "show"}

    def executemany(self, cursor: Cursor, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Plain INSERTs go in as multi-row VALUES, ROWS_PER_STATEMENT at a time: DuckDB's
        executemany runs one statement per row, a hundred times slower than one per batch."""
        plain = _PLAIN_INSERT.fullmatch(sql)
        if plain is None:
            super().executemany(cursor, sql, rows)
            return
        head, row = plain.groups()
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            batch = rows[start:start + ROWS_PER_STATEMENT]
            cursor.execute(self.sql(head + ", ".join([row] * len(batch))),
                           [value for item in batch for value in item])

    def limit(self, count: int | None) -> int | None:
        return count  # LIMIT NULL is every row (a negative LIMIT is refused)

    def epoch_day(self, instant: str) -> str:
        # `//` truncates towards zero, as SQLite's integer division does
        return (f"({instant} // {MICROS_PER_DAY} - "
                f"CASE WHEN {instant} % {MICROS_PER_DAY} < 0 THEN 1 ELSE 0 END)")

    def day_key(self, instant: str) -> str:
        # `/` divides as reals in DuckDB: the integer division is `//`
        return f"(({instant} + {EPOCH_SHIFT_DAYS * MICROS_PER_DAY}) // {MICROS_PER_DAY})"

    def period(self, instant: str, unit: str) -> str:
        fmt = {"day": "%Y-%m-%d", "month": "%Y-%m", "year": "%Y"}[unit]
        return f"strftime(make_timestamp({instant}), '{fmt}')"

    def dates_between(self, later: str, earlier: str) -> str:
        return f"(CAST({later} AS DATE) - CAST({earlier} AS DATE))"

    def json_text(self, doc: str, key: str) -> str:
        return f"json_extract_string({doc}, '$.{key}')"

    def json_integer(self, doc: str, key: str) -> str:
        return f"CAST(json_extract_string({doc}, '$.{key}') AS BIGINT)"

    def json_array_contains(self, doc: str, key: str, needle: str) -> str:
        return (f"EXISTS (SELECT 1 FROM json_each({doc}, '$.{key}') AS t "
                f"WHERE json_extract_string(t.value, '$') = {needle})")

    def json_elements(self, doc: str, key: str, alias: str) -> str:
        return f"json_each({doc}, '$.{key}') AS {alias}"

    def json_element_text(self, alias: str, field: str) -> str:
        return f"json_extract_string({alias}.value, '$.{field}')"

    def consent_granted(self, doc: str, purpose: str, channel: str, at: str) -> str:
        return (f"EXISTS (SELECT 1 FROM json_each({doc}, '$.consents') AS k WHERE "
                f"json_extract_string(k.value, '$.purpose') = {purpose} AND "
                f"json_extract_string(k.value, '$.channel') = {channel} AND "
                "json_extract_string(k.value, '$.status') = 'granted' AND "
                f"json_extract_string(k.value, '$.at') <= {at})")

    # custom attributes: not spelt here, so those parts of a rule run in Python
    attribute_kind = Dialect.attribute_kind
    attribute = Dialect.attribute


DUCKDB = DuckDB()
