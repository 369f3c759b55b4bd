"""The columnar path of a CSV import gives what the row path gives, on SQLite and PostgreSQL.

Each file is imported twice into two fresh bases, once with the columnar path allowed
and once on the row path only (`columnar=False`): the results (counts, refusals with
their lines, fields and reasons), the error files and the stored rows (documents and
purchase totals included) must be the same.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.io.importer import ImportResult
from crmcore.io.regions import Regions
from crmcore.scoring.totals import recount
from tests.io import parity

pytest.importorskip("pyarrow")

SQL_BACKENDS = ("sqlite", "postgresql")
CUSTOMERS = ("c0", "c1", "c2")
HEADER = ("id", "customer_id", "ordered_at", "product", "unit_price", "currency", "quantity",
          "category", "channel", "service_point", "notes")
GOOD = ("o1", "c0", "2024-03-05T10:00:00+00:00", "Socks", "7.00", "EUR", "2", "fashion", "visit", "paris", "")


def purchase_rows(count: int, start: int = 0) -> list[tuple[str, ...]]:
    """Plain rows: orders of one or two lines, their customers and dates varied."""
    rows = []
    for n in range(start, start + count):
        order = f"o{n // 2:05d}"
        rows.append((order, CUSTOMERS[(n // 2) % 3], f"2024-03-{1 + (n // 2) % 28:02d}T10:{n % 60:02d}:00Z",
                     f"Product {n % 7}", f"{1 + n % 9}.{n % 100:02d}", "EUR", str(1 + n % 3),
                     "toys" if n % 2 else "", "app" if n % 4 else "", "web" if n % 5 else "", "note"))
    return rows


def render(rows: list[tuple[str, ...]], *, delimiter: str = ",", newline: str = "\n",
           header: tuple[str, ...] = HEADER) -> str:
    return parity.render(header, rows, delimiter=delimiter, newline=newline)


@pytest.fixture
def bases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[crmcore.CRM, crmcore.CRM]]:
    with ExitStack() as stack:
        yield two_bases(stack, request.param, tmp_path)


def two_bases(stack: ExitStack, backend: str, folder: Path) -> tuple[crmcore.CRM, crmcore.CRM]:
    """Two fresh bases holding the same customers."""
    def seed(crm: crmcore.CRM) -> None:
        for name in CUSTOMERS:
            crm.customers.add(crmcore.Customer.new(name.upper(), id=name))
    return parity.paired(stack, backend, folder, seed)


def stored(crm: crmcore.CRM) -> tuple[list[Any], list[Any]]:
    with crm.reading() as uow:
        purchases = uow.select("SELECT id, customer_id, ordered_at, channel, service_point, currency, "  # type: ignore[attr-defined]
                               "total, doc FROM purchases ORDER BY id")
        totals = uow.select("SELECT * FROM purchase_totals ORDER BY customer_id, currency")  # type: ignore[attr-defined]
    return purchases, totals


def both(pair: tuple[crmcore.CRM, crmcore.CRM], folder: Path, data: bytes,
         **options: Any) -> tuple[ImportResult, ImportResult]:
    fast, slow = parity.both(pair, folder, "purchases", data, stored, **options)
    assert_totals_recounted(pair[0])
    return fast, slow


def assert_totals_recounted(crm: crmcore.CRM) -> None:
    """The purchase totals the import's batches folded in equal a recount from scratch."""
    with crm.reading() as uow:
        bought = [p for c in CUSTOMERS for p in uow.purchases.for_customer(c, limit=None)]
        assert uow.purchase_totals.all() == recount(bought)


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
def test_plain_rows_take_the_columnar_path_and_store_what_the_row_path_stores(
        bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    fast, _ = both(bases, tmp_path, render(purchase_rows(60)).encode(), batch=7)
    assert fast.inserted == 30 and fast.columnar == 30 and fast.ignored_columns == ["notes"]
    again, _ = both(bases, tmp_path, render(purchase_rows(60)).encode(), batch=7)
    assert (again.inserted, again.unchanged, again.columnar) == (0, 30, 0)
    bought = bases[0].purchases.for_customer("c0", limit=None)
    assert bought and all(len(p.lines) == 2 for p in bought)


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
def test_fractions_of_a_second_before_and_after_1970_take_the_columnar_path(
        bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    """Plain rows whose instants have a fraction, also before the epoch (where Arrow's
    remainder is negative): once a crash (a lossy cast), then a wrong document."""
    moments = ("2024-03-05T10:00:00.5Z", "1969-03-05T10:00:00.25+01:00", "1969-12-31T23:59:59.999999Z",
               "1969-12-31T23:59:59Z", "1000-01-01T00:00:00.000001Z")
    rows = [(f"o{n}", CUSTOMERS[n % 3], moment, "Hat", "9.00", "EUR", "1", "", "", "", "")
            for n, moment in enumerate(moments)]
    fast, _ = both(bases, tmp_path, render(rows).encode())
    assert fast.columnar == len(moments)


HOSTILE = [
    GOOD,
    ("o2", "c1", "2024-03-05T10:00:00+01:00", "Jeans; blue", "49,90", "EUR", "1", "", "app", "",
     "decimal comma"),
    ("o3", "c1", "2024-02-30T10:00:00Z", "Hat", "9.00", "EUR", "1", "", "", "", "bad date"),
    ("o4", "c2", "2024-03-06T10:00:00Z", "Two\nlines", "5.00", "EUR", "1", "", "", "", "quoted newline"),
    ("o5", "nobody", "2024-03-06T10:00:00Z", "Hat", "9.00", "EUR", "1", "", "", "", "no customer"),
    ("o6", "c2", "2024-03-07T10:00:00Z", "Café crème", "3.50", "EUR", "", "", "kiosk", "", "Latin-1"),
    ("o6", "c2", "2024-03-07T10:00:00Z", "Café crème", "3.50", "EUR", "", "", "kiosk", "", "second line"),
    ("o7", "c0", "2024-03-08", "Hat", "9.00", "EUR", "1", "", "", "", "a date without time"),
    ("o8", "c0", "2024-03-08T10:00:00Z", " Hat ", "abc", "EUR", "x", "", "pigeon", "", "bad cells"),
    ("o9", "c0", "2024-03-08T10:00:00.250Z", 'Board "Go"', "12.00", "EUR", "1", "", "", "", "quotes"),
    GOOD,
]


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
@pytest.mark.parametrize(("encoding", "delimiter", "newline"),
                         [("utf-8-sig", ";", "\r\n"), ("cp1252", ",", "\n"), ("utf-8", "\t", "\n")])
def test_hostile_files_give_the_same_base_and_error_file(
        bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path, encoding: str, delimiter: str,
        newline: str) -> None:
    rows = [*purchase_rows(20), *HOSTILE, *purchase_rows(20, start=100)]
    text = render(rows, delimiter=delimiter, newline=newline)
    text = text.replace(newline + "o00055", newline * 2 + "o00055")  # a blank line inside an order
    fast, _ = both(bases, tmp_path, text.encode(encoding), batch=6)
    assert fast.columnar > 0 and fast.refused > 0
    assert {r.field for r in fast.refusals} >= {"ordered_at", "customer_id", "unit_price"}


@pytest.mark.parametrize("bases", ["sqlite"], indirect=True)
def test_dry_run_and_all_or_nothing_agree(bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    clean = render(purchase_rows(30)).encode()
    dry, _ = both(bases, tmp_path, clean, batch=4, dry_run=True)
    assert dry.inserted == 15 and dry.columnar == 15 and not dry.written
    assert not stored(bases[0])[0]
    dirty = render([*purchase_rows(30), HOSTILE[2]]).encode()
    refused, _ = both(bases, tmp_path, dirty, batch=4, all_or_nothing=True)
    assert refused.refused == 1 and not refused.written and not stored(bases[0])[0]
    done, _ = both(bases, tmp_path, clean, batch=4, all_or_nothing=True)
    assert done.written and len(stored(bases[0])[0]) == 15


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
def test_an_interrupted_columnar_import_resumes(bases: tuple[crmcore.CRM, crmcore.CRM],
                                                tmp_path: Path) -> None:
    rows = [*purchase_rows(40), HOSTILE[3], *purchase_rows(40, start=200)]
    source = tmp_path / "p.csv"
    source.write_text(render(rows), encoding="utf-8")
    result = parity.interrupted(bases, source, "purchases", stored)
    assert result.skipped > 0


cells = {
    "id": st.sampled_from(["o1", "o2", "o3", "", " o1"]),
    "customer_id": st.sampled_from(["c0", "c1", "c2", "cX", ""]),
    "ordered_at": st.sampled_from(["2024-03-05T10:00:00+00:00", "2024-03-05T10:00:00Z",
                                   "2024-03-05 23:30:00.5-02:00", "2024-03-05T10:00:00", "2024-03-05",
                                   "2024-02-30T00:00:00Z", "05/03/2024", ""]),
    "product": st.sampled_from(["Socks", " Socks", "Jeans, blue", 'Say "hi"', "Two\nlines", "Café", "",
                                "x" * 101, "Tab\there", "back\\slash"]),
    "unit_price": st.sampled_from(["7.00", "7", "0.5", "1,5", "abc", "-3.20", " 4.00", "1e3", "007",
                                   "0.12345", "2.0001", "-0.5"]),
    "currency": st.sampled_from(["EUR", "USD", "eur", ""]),
    "quantity": st.sampled_from(["", "1", "3", "0", "1.0", "x", "1000001"]),
    "category": st.sampled_from(["", "fashion"]),
    "channel": st.sampled_from(["", "visit", "web", "VISIT"]),
    "service_point": st.sampled_from(["", "paris", "p" * 65]),
    "notes": st.text(max_size=3),
}
plain_row = st.builds(lambda n: purchase_rows(1, start=n)[0], st.integers(0, 40))
odd_row = st.fixed_dictionaries(cells).map(lambda cell: tuple(cell[c] for c in HEADER))


@pytest.mark.parametrize("backend", SQL_BACKENDS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(plain_row, plain_row, odd_row), min_size=1, max_size=25),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]),
       delimiter=st.sampled_from([",", ";"]), newline=st.sampled_from(["\n", "\r\n"]),
       blank=st.integers(0, 30), batch=st.integers(1, 8))
def test_both_paths_give_the_same_base_and_error_file(
        backend: str, rows: list[tuple[str, ...]], encoding: str, delimiter: str, newline: str,
        blank: int, batch: int) -> None:
    lines = render(rows, delimiter=delimiter, newline=newline).split(newline)
    if blank < len(lines) - 1:
        lines.insert(blank + 1, "")  # a blank line somewhere
    data = newline.join(lines).encode(encoding, errors="replace")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        both(two_bases(stack, backend, folder), folder, data, batch=batch)


@pytest.mark.parametrize("bases", ["sqlite"], indirect=True)
def test_an_encoding_whose_bytes_are_not_ascii_takes_the_row_path(
        bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    data = render(purchase_rows(10)).encode("utf-16")
    fast, _ = both(bases, tmp_path, data, batch=4, encoding="utf-16")
    assert fast.inserted == 5 and fast.columnar == 0


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='ab,;"\r\n ', max_size=60), delimiter=st.sampled_from([",", ";"]),
       width=st.integers(1, 3))
def test_the_plain_lines_test_never_backtracks_and_finds_what_backtracking_finds(
        tmp_path_factory: pytest.TempPathFactory, text: str, delimiter: str, width: int) -> None:
    """`Regions` tells plain lines with possessive quantifiers (a quoted JSON cell made the
    backtracking form cost as much as reading the lines): a `""` pair can never end a
    quoted cell, since no cell goes on with a quote, so both forms match the same lines."""
    path = tmp_path_factory.mktemp("plain") / "f.csv"
    path.write_bytes(delimiter.join(f"c{i}" for i in range(width)).encode() + b"\n")
    with Regions(path, encoding="utf-8", delimiter=delimiter) as regions:
        field = re.escape(delimiter.encode())
        cell = rb'(?:"(?:[^"\r\n]|"")*"|[^"\r\n' + field + rb"]*)"
        line = cell + (rb"(?:" + field + cell + rb"){%d}" % (width - 1))
        backtracking = re.compile(rb"(?:" + line + rb"\r?\n)*")
        data = text.encode()
        assert regions._plain.match(data).end() == backtracking.match(data).end()  # type: ignore[union-attr]
