"""A CSV file read as raw bytes, in regions of plain rows, for the columnar import path.

A *region* is a run of whole lines that are each exactly one record: no newline or bare
carriage return inside a quoted cell, no malformed quote, no blank line. In a region,
record k starts on line `first + k`, so a columnar reader (Arrow) can parse it in one
call and every refusal still gets its exact line. Whatever is not plain (a quoted
newline, a stray quote, a blank line) is read record by record with Python's `csv`
module, line counting included, exactly as `sources.Source` reads it, and comes out as
`Row`s. Purchases spread over consecutive rows (one per order line) are never split
between a region and the rows around it: a region gives back its trailing rows of one
order to what follows, and record-by-record reading goes on while the next row
continues the order.

Memory stays flat: the file is read in blocks, and a region is at most `batch` lines.
Only encodings where a byte below 128 is always that ASCII character (`TRANSPARENT`)
are read this way; the importer reads any other with `Source`.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import attrs

from crmcore.errors import ValidationError
from crmcore.io.sources import Row, csv_row, encoding_error, header_columns

TRANSPARENT = frozenset(("utf-8", "utf-8-sig", "cp1252", "iso8859-1", "iso8859-15", "ascii"))
"""Encodings (as `codecs.lookup` names them) whose separators, quotes and line ends are
the ASCII bytes, never part of another character: lines and cells can be cut as bytes."""
BLOCK = 1 << 20
"""Bytes read from the file at a time."""
MAX_REGION = 1 << 25
"""A region (or one line) longer than this is read record by record instead."""
_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\r|\n)")
"""One physical line as `open(newline="")` splits them (what `Source` counts)."""

Key = Callable[[Sequence[str]], object]
"""The cells that make consecutive rows one record (a purchase's id and customer)."""


@attrs.frozen
class Region:
    """Whole lines `first`..`last`, one record each, as read (`raw`) in the file's encoding."""

    raw: bytes
    offset: int
    """Where `raw` starts in the file (bytes)."""
    first: int
    last: int
    encoding: str
    delimiter: str
    columns: tuple[str, ...]

    def utf8(self) -> bytes | None:
        """The lines as UTF-8 (what Arrow reads); None if they are not valid text."""
        if self.encoding == "utf-8":
            return self.raw
        try:
            return self.raw.decode(self.encoding).encode("utf-8")
        except UnicodeDecodeError:
            return None

    def rows(self) -> list[Row]:
        """The region read as `Source` reads it: a `Row` per record, blank rows skipped."""
        try:
            text = self.raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise encoding_error(self.encoding, self.offset + exc.start, exc) from None
        lines = [line + "\n" for line in text.split("\n")[:-1]]
        found = []
        for index, cells in enumerate(csv.reader(lines, delimiter=self.delimiter)):
            row = csv_row(self.first + index, cells, self.columns)
            if row is not None:
                found.append(row)
        return found


class Regions:
    """An open CSV file: iterate `pieces` for regions and rows; `position`, `size` show progress."""

    def __init__(self, path: Path, *, encoding: str, delimiter: str) -> None:
        self.path = path
        self.delimiter = delimiter
        try:
            self.size = path.stat().st_size
            self._file: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise ValidationError("file", str(path), f"cannot be read: {exc.strerror}") from None
        self.encoding = "utf-8" if encoding in ("utf-8-sig", "utf_8_sig") else encoding
        self._buf = b""
        self._base = 0
        """File offset of `_buf[0]`."""
        self._pos = 0
        self._eof = False
        self.line = 0
        """Physical lines read so far (the header is line 1)."""
        self._reader = csv.reader(self._lines(), delimiter=delimiter)
        self.columns: tuple[str, ...] = ()
        try:
            self._fill(1 << 16)
            if self._buf.startswith(b"\xef\xbb\xbf"):
                self._pos = 3
            header = self._record()
            if header is not None:
                self.columns = header_columns(header[1])
        except BaseException:
            self._file.close()
            raise
        field = re.escape(delimiter.encode())
        # possessive: no backtracking into a cell (a quoted JSON cell made the plain test cost
        # as much as reading the lines), and a line it matches the backtracking form matches too
        cell = rb'(?:"(?:[^"\r\n]++|"")*+"|[^"\r\n' + field + rb"]*+)"
        line = cell + (rb"(?:" + field + cell + rb"){%d}" % (len(self.columns) - 1) if self.columns else b"")
        self._plain = re.compile(rb"(?:" + line + rb"\r?\n)*")
        """Lines that are each exactly one record of the header's width (Arrow's and csv's reading agree)."""
        self._avg = 100

    @property
    def position(self) -> int:
        return min(self._base + self._pos, self.size)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Regions:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- bytes ----

    def _fill(self, wanted: int) -> None:
        """At least `wanted` bytes after the current position, unless the file ends first."""
        while not self._eof and len(self._buf) - self._pos < wanted:
            if self._pos:
                self._buf = self._buf[self._pos:]
                self._base += self._pos
                self._pos = 0
            data = self._file.read(max(BLOCK, wanted))
            if data:
                self._buf += data
            else:
                self._eof = True
                if self._buf and not self._buf.endswith(b"\n"):
                    self._buf += b"\n"  # a last line without its end is still a line

    def _at_end(self) -> bool:
        self._fill(1)
        return self._pos >= len(self._buf)

    def _lines(self) -> Iterator[str]:
        """Decoded physical lines from the current position (the csv reader's input)."""
        while True:
            wanted = 1 << 12
            while True:
                self._fill(wanted)
                found = _LINE.match(self._buf, self._pos)
                # a \r at the end of the bytes read may be the first half of \r\n
                if found is not None and (found.end() < len(self._buf) or self._eof
                                          or not self._buf.endswith(b"\r")):
                    break
                if self._eof:
                    return
                wanted = 2 * (len(self._buf) - self._pos) + 1
            raw = found.group()
            try:
                text = raw.decode(self.encoding)
            except UnicodeDecodeError as exc:
                raise encoding_error(self.encoding, self._base + self._pos + exc.start, exc) from None
            self._pos = found.end()
            self.line += 1
            yield text

    def _record(self) -> tuple[int, list[str]] | None:
        """The next record read by the csv module: (its first line, its cells)."""
        start = self.line + 1
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            raise ValidationError("file", str(self.path), f"line {start}: {exc}") from None
        return start, cells

    # ---- regions ----

    def _plain_end(self, end: int) -> int:
        """Where the plain lines from the current position stop (at most `end`)."""
        chunk = self._buf[self._pos:end]
        blank = b"\n\n" in chunk or b"\n\r\n" in chunk or chunk.startswith((b"\n", b"\r\n"))
        simple = not blank and b'"' not in chunk and chunk.count(b"\r") == chunk.count(b"\r\n")
        if simple:  # the width of each line is checked by Arrow, which refuses a wrong one
            return end
        found = self._plain.match(self._buf, self._pos, end)
        return self._pos if found is None else found.end()

    def _next_line(self, key: Key | None) -> tuple[bool, object]:
        """Whether the next line is a plain record by itself, and then its key."""
        self._fill(1 << 16)
        found = self._plain.match(self._buf, self._pos, self._buf.find(b"\n", self._pos) + 1)
        if found is None or found.end() == self._pos:
            return False, None
        if key is None:
            return True, None
        text = self._buf[self._pos:found.end()].decode(self.encoding, errors="replace")
        return True, key(next(csv.reader([text], delimiter=self.delimiter)))

    def _region(self, batch: int, key: Key | None) -> Region | None:
        """The plain lines from here, at most about `batch`, not ending inside a record
        that goes on (by `key`); None when the next line is not plain."""
        size = self._avg * batch
        while True:
            self._fill(size + 1)
            limit = min(len(self._buf), self._pos + size)
            end = self._buf.rfind(b"\n", self._pos, limit) + 1
            if end <= self._pos:
                if size >= MAX_REGION:
                    return None
                size *= 2
                continue
            plain = self._plain_end(end)
            if plain == self._pos:
                return None
            lines = self._buf.count(b"\n", self._pos, plain)
            self._avg = max(1, (plain - self._pos) // lines)
            stopped_early = plain < end
            whole = plain >= len(self._buf) and self._eof
            if key is not None and not whole:
                kept = self._without_last_record(plain, key)
                if kept == self._pos:  # one record fills the region: read more, or row by row
                    if stopped_early or size >= MAX_REGION:
                        return None
                    size *= 2
                    continue
                lines -= self._buf.count(b"\n", kept, plain)
                plain = kept
            raw = self._buf[self._pos:plain]
            offset, first = self._base + self._pos, self.line + 1
            self._pos = plain
            self.line += lines
            return Region(raw, offset, first, self.line, self.encoding, self.delimiter, self.columns)

    def _without_last_record(self, end: int, key: Key) -> int:
        """Where the trailing lines sharing the last line's key start (they may go on)."""
        last_key: object = None
        cut = end
        while cut > self._pos:
            start = self._buf.rfind(b"\n", self._pos, cut - 1) + 1
            start = max(start, self._pos)
            text = self._buf[start:cut].decode(self.encoding, errors="replace")
            this = key(next(csv.reader([text], delimiter=self.delimiter)))
            if cut == end:
                last_key = this
            elif this != last_key:
                return cut
            cut = start
        return cut

    def pieces(self, batch: int, key: Key | None = None, after: int = 0) -> Iterator[Region | Row]:
        """The file after its header: regions of plain lines, and rows read one by one where
        the lines are not plain (and up to line `after`, which a resumed import skips)."""
        if not self.columns:
            return
        previous: object = None
        while not self._at_end():
            if self.line >= after:
                region = self._region(batch, key)
                if region is not None:
                    yield region
                    previous = None
                    continue
            while True:
                record = self._record()
                if record is None:
                    return
                start, cells = record
                row = csv_row(start, cells, self.columns)
                if row is not None:  # a blank row is skipped: the rows around it are consecutive
                    yield row
                    if key is not None:
                        previous = key(cells)
                if self._at_end() or self.line < after:
                    break
                plain, following = self._next_line(key)
                if plain and (key is None or following != previous):
                    break
