"""Reading and writing record files: CSV and JSON Lines, streamed.

A file is read as numbered records, one at a time, so memory stays flat however
long the file is. CSV quirks of real exports are handled here and nowhere else:
a byte-order mark, `;` or tab separators (sniffed), newlines inside quoted cells,
and Latin-1 or Windows-1252 text (when the sample is not UTF-8, or when asked).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import attrs

from crmcore.errors import ValidationError

FORMATS = ("csv", "jsonl")
SAMPLE = 64 * 1024
"""Bytes read ahead to sniff the encoding and the CSV separator."""


@attrs.frozen
class Row:
    """One record of a file: the line it starts on (1-based, the header is line 1) and its cells."""

    line: int
    cells: Mapping[str, Any]


def file_format(path: Path, given: str | None = None) -> str:
    """The format asked for, else the one the file name says (`.jsonl`/`.ndjson` or CSV)."""
    chosen = given or ("jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    if chosen not in FORMATS:
        raise ValidationError("format", chosen, f"must be one of {', '.join(FORMATS)}")
    return chosen


def detect_encoding(sample: bytes) -> str:
    """UTF-8 (with or without a BOM) when the sample decodes as such, else Windows-1252.

    Windows-1252 is Latin-1 with printable characters where Latin-1 has control codes,
    which is what spreadsheet exports called "Latin-1" usually are.
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut by the end of the sample
            return "cp1252"
    return "utf-8"


def header_columns(cells: Sequence[str]) -> tuple[str, ...]:
    """The column names of a CSV header; a name given twice is refused."""
    columns = tuple(name.strip() for name in cells)
    seen: set[str] = set()
    for name in columns:
        if name in seen:
            raise ValidationError("columns", name, "appears twice in the header")
        seen.add(name)
    return columns


def csv_row(line: int, cells: Sequence[str], columns: Sequence[str]) -> Row | None:
    """The record of one CSV row starting on `line`; None for a row of blank cells (skipped)."""
    if not any(cell.strip() for cell in cells):
        return None
    if len(cells) > len(columns):
        return Row(line, {"": cells})  # refused by the importer, with its line
    return Row(line, dict(zip(columns, cells, strict=False)))


def encoding_error(encoding: str, position: int, exc: UnicodeDecodeError) -> ValidationError:
    return ValidationError(
        "encoding", encoding,
        f"the file is not {encoding} near byte {position}: {exc.reason}; "
        "pass the file's encoding (e.g. --encoding latin-1)",
    )


class Counted(io.RawIOBase):
    """A binary file that counts the bytes read from it, for progress."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


class Source:
    """An open record file: iterate it for `Row`s; `position` and `size` (bytes) show progress."""

    def __init__(self, path: Path, *, format: str | None = None, encoding: str | None = None,
                 delimiter: str | None = None) -> None:
        self.path = path
        self.format = file_format(path, format)
        try:
            self.size = path.stat().st_size
            raw = path.open("rb")
        except OSError as exc:
            raise ValidationError("file", str(path), f"cannot be read: {exc.strerror}") from None
        sample = raw.read(SAMPLE)
        raw.seek(0)
        # a UTF-8 byte-order mark says what the file is, whatever was guessed or given
        bom = sample.startswith(codecs.BOM_UTF8)
        self.encoding = "utf-8-sig" if bom else encoding or detect_encoding(sample)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raw.close()
            raise ValidationError("encoding", self.encoding, "is not a known text encoding") from None
        self._counted = Counted(raw)
        self._text = io.TextIOWrapper(io.BufferedReader(self._counted, SAMPLE), encoding=self.encoding,
                                      newline="")
        self.delimiter = delimiter or (self._sniff(sample) if self.format == "csv" else ",")
        self.columns: tuple[str, ...] = ()

    @property
    def position(self) -> int:
        return self._counted.position

    def _sniff(self, sample: bytes) -> str:
        text = sample.decode(self.encoding, errors="replace")
        head = text.lstrip("\ufeff").split("\n", 1)[0]
        counts = {d: head.count(d) for d in ",;\t|"}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] else ","

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._text.close()

    def __iter__(self) -> Iterator[Row]:
        try:
            yield from (self._csv() if self.format == "csv" else self._jsonl())
        except UnicodeDecodeError as exc:
            raise encoding_error(self.encoding, self.position, exc) from None

    def _csv(self) -> Iterator[Row]:
        reader = csv.reader(self._text, delimiter=self.delimiter)
        try:
            header = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ValidationError("file", str(self.path), f"line 1: {exc}") from None
        self.columns = header_columns(header)
        start = reader.line_num + 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ValidationError("file", str(self.path), f"line {start}: {exc}") from None
            row = csv_row(start, cells, self.columns)
            if row is not None:
                yield row
            start = reader.line_num + 1

    def _jsonl(self) -> Iterator[Row]:
        names: dict[str, None] = {}
        for number, text in enumerate(self._text, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                yield Row(number, {"": f"not JSON: {exc.msg}"})
                continue
            if not isinstance(record, dict):
                yield Row(number, {"": "not a JSON object"})
                continue
            for key in record:
                names.setdefault(key)
            self.columns = tuple(names)
            yield Row(number, record)


class Sink:
    """A record file being written: CSV (the given columns, UTF-8) or JSON Lines."""

    def __init__(self, target: IO[str], format: str, columns: Sequence[str]) -> None:
        self.format = format
        self.columns = list(columns)
        self._target = target
        # RFC 4180 line ends: a cell holding a bare \r is then quoted too
        self._csv = csv.writer(target, lineterminator="\r\n") if format == "csv" else None
        if self._csv is not None:
            self._csv.writerow(self.columns)

    def write(self, record: Mapping[str, Any]) -> None:
        if self._csv is not None:
            self._csv.writerow([_cell(record.get(name)) for name in self.columns])
        else:
            present = {k: v for k, v in record.items() if v not in (None, "", [], {})}
            self._target.write(json.dumps(present, ensure_ascii=False, default=str) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "|".join(str(item) for item in value)
    return str(value)
