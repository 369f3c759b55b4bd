"""New customers written as rows (`crmcore.io.new_customers`) give what the row path gives.

Each customers file is imported twice into two fresh bases, on SQLite and PostgreSQL, once
with the columnar path allowed and once on the row path only (`columnar=False`), with the
same clock: the results (counts, refusals with their lines, fields and reasons), the error
files and the stored rows (customers with their documents, e-mails, phones, external ids,
history) must be the same.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.io.importer import ImportResult
from tests.io import parity

pytest.importorskip("pyarrow")

SQL_BACKENDS = ("sqlite", "postgresql")
NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
HEADER = ("id", "name", "kind", "emails", "phones", "country", "city", "street", "tags", "birth_date",
          "created_at", "consents", "external_id.erp", "attributes.points:int", "attributes.vip:bool",
          "attributes.limit:decimal", "attributes.since:date", "notes")
CONSENT = ('[{"purpose": "marketing", "channel": "email", "status": "granted", '
           '"at": "2024-01-01T10:00:00.250000+00:00", "source": "web"}]')


def customer_rows(count: int, start: int = 0) -> list[tuple[str, ...]]:
    """Plain rows of new customers, their fields varied."""
    return [(f"c{n:03d}", f"Name {n}", "organisation" if n % 3 == 0 else "", f"u{n}@ex.com|U{n}@Work.EX.com",
             f"+3361234{n:04d}" if n % 2 else "", "FR" if n % 4 else "", "Paris" if n % 4 else "",
             f"{n} rue A|Bât. B" if n % 4 else "", "vip|b2b" if n % 2 else "", "1990-01-31" if n % 3 else "",
             f"2024-03-05T10:{n % 60:02d}:00+02:00" if n % 2 else "", CONSENT if n % 2 else "[]",
             f"E{n}" if n % 3 else "", str(n), "yes" if n % 2 else "no", "10.50" if n % 2 else "",
             "2020-02-29", "x")
            for n in range(start, start + count)]


def render(rows: list[tuple[str, ...]], *, delimiter: str = ",", newline: str = "\n") -> str:
    return parity.render(HEADER, rows, delimiter=delimiter, newline=newline)


def two_bases(stack: ExitStack, backend: str, folder: Path) -> tuple[crmcore.CRM, crmcore.CRM]:
    """Two fresh bases with the same clock, each holding customer `a1` (e-mail taken@x.com)."""
    return parity.paired(stack, backend, folder, lambda crm: crm.customers.add(
        crmcore.Customer.new("Stored", id="a1", emails=["taken@x.com"])), clock=lambda: NOW)


@pytest.fixture
def bases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[crmcore.CRM, crmcore.CRM]]:
    with ExitStack() as stack:
        yield two_bases(stack, request.param, tmp_path)


def stored(crm: crmcore.CRM) -> list[Any]:
    with crm.reading() as uow:
        return [uow.select(sql) for sql in (  # type: ignore[attr-defined]
            "SELECT * FROM customers ORDER BY id", "SELECT * FROM customer_emails ORDER BY email",
            "SELECT * FROM customer_phones ORDER BY phone, customer_id",
            "SELECT * FROM customer_external_ids ORDER BY source, external_id",
            "SELECT count(*) FROM history")]


def both(pair: tuple[crmcore.CRM, crmcore.CRM], folder: Path, data: bytes,
         **options: Any) -> tuple[ImportResult, ImportResult]:
    return parity.both(pair, folder, "customers", data, stored, **options)


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
def test_new_customers_take_the_columnar_path_and_store_what_the_row_path_stores(
        bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    fast, _ = both(bases, tmp_path, render(customer_rows(30)).encode(), batch=7)
    assert fast.inserted == 30 and fast.columnar == 30


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
def test_a_stored_key_or_a_bad_row_sends_its_region_to_the_row_path(
        bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    rows = customer_rows(12)
    rows[2] = ("a1", *rows[2][1:])  # stored: an update
    rows[8] = (rows[8][0], rows[8][1], "robot", *rows[8][3:])  # refused
    rows[10] = (*rows[10][:3], "taken@x.com", *rows[10][4:])  # someone else's e-mail
    fast, _ = both(bases, tmp_path, render(rows).encode(), batch=4)
    assert fast.updated == 1 and fast.refused == 2 and 0 < fast.columnar < 9


@pytest.mark.parametrize("bases", ["sqlite"], indirect=True)
def test_dry_run_and_all_or_nothing_agree(bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    data = render(customer_rows(9)).encode()
    fast, _ = both(bases, tmp_path, data, batch=4, dry_run=True)
    assert not fast.written and fast.inserted == 9
    fast, _ = both(bases, tmp_path, data, batch=4, all_or_nothing=True)
    assert fast.written and fast.columnar == 9


@pytest.mark.parametrize("bases", SQL_BACKENDS, indirect=True)
def test_an_interrupted_import_resumes(bases: tuple[crmcore.CRM, crmcore.CRM], tmp_path: Path) -> None:
    rows = [*customer_rows(30), ("n1", "two\nlines", *customer_rows(1, 99)[0][2:]), *customer_rows(30, 200)]
    source = tmp_path / "c.csv"
    source.write_text(render(rows), encoding="utf-8")
    result = parity.interrupted(bases, source, "customers", stored)
    assert result.skipped > 0 and result.columnar > 0


cells = {
    "id": st.sampled_from(["a1", "n1", "n2", "n3", " n1", "", "x" * 65, "tab\tid"]),
    "name": st.sampled_from(["Ann", "Bob Smith", " Ann", "", "Zoë", 'Say "hi"', "two\nlines", "x" * 201]),
    "kind": st.sampled_from(["", "person", "organisation", "Person", "robot"]),
    "emails": st.sampled_from(["", "n@x.com", "N@X.COM|m@y.org", "bad", "n@x.com|N@x.com", " c@z.net",
                               "taken@x.com", "|"]),
    "phones": st.sampled_from(["", "+33612345678", "+1 202-555-0143|+33612345678", "0612345678", "123"]),
    "country": st.sampled_from(["", "FR", "fr", "US", "XX"]),
    "city": st.sampled_from(["", "Paris", "x" * 101]),
    "street": st.sampled_from(["", "1 rue A", "1 rue A|Bât. B", " |x", "a\\b"]),
    "tags": st.sampled_from(["", "vip", "b2b|vip", "VIP", "a|a"]),
    "birth_date": st.sampled_from(["", "1990-01-31", "1990-02-30", "31/01/1990", "20240101"]),
    "created_at": st.sampled_from(["", "2024-03-05T10:00:00+00:00", "2024-03-05T10:00:00Z",
                                   "2024-03-05 10:00:00", "2024-03-05T10:00:00.5-02:00", "nope",
                                   "0001-01-01"]),
    "consents": st.sampled_from(["", "[]", CONSENT, CONSENT[:-1] + ", " + CONSENT[1:],
                                 CONSENT.replace("email", "pigeon"), CONSENT.replace("+00:00", ""),
                                 CONSENT.replace("+00:00", "+02:00"), CONSENT.replace("+00:00", "Z"),
                                 CONSENT.replace("granted", "Granted"), CONSENT.replace('"web"', '""'),
                                 CONSENT.replace("10:00:00.25", "25:00:00.25"),
                                 CONSENT[:-1] + ", " + CONSENT[1:].replace("email", "sms"),
                                 '{"a": 1}', "not json", '[{"purpose": "Bad", "channel": "email"}]']),
    "external_id.erp": st.sampled_from(["", "E1", "E2", "x" * 201]),
    "attributes.points:int": st.sampled_from(["", "5", "x", "1.0", "-3"]),
    "attributes.vip:bool": st.sampled_from(["", "yes", "no", "maybe", "TRUE"]),
    "attributes.limit:decimal": st.sampled_from(["", "10.50", "1,5", "abc", "1e3"]),
    "attributes.since:date": st.sampled_from(["", "2020-02-29", "2021-02-29"]),
    "notes": st.text(max_size=3),
}
plain_row = st.builds(lambda n: customer_rows(1, start=n)[0], st.integers(0, 30))
odd_row = st.fixed_dictionaries(cells).map(lambda cell: tuple(cell[c] for c in HEADER))


@pytest.mark.parametrize("backend", SQL_BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.one_of(plain_row, plain_row, odd_row), min_size=1, max_size=20),
       encoding=st.sampled_from(["utf-8", "cp1252"]), delimiter=st.sampled_from([",", ";"]),
       newline=st.sampled_from(["\n", "\r\n"]), batch=st.integers(1, 8))
def test_both_paths_give_the_same_base_and_error_file(
        backend: str, rows: list[tuple[str, ...]], encoding: str, delimiter: str, newline: str,
        batch: int) -> None:
    data = render(rows, delimiter=delimiter, newline=newline).encode(encoding, errors="replace")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        folder = Path(tmp)
        both(two_bases(stack, backend, folder), folder, data, batch=batch)
