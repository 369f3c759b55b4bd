"""What only the SQLite adapter has: a file, WAL, migrations, indexed lookups, error translation."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import crmcore
from crmcore.errors import StorageError, ValidationError
from crmcore_adapters.storage.sqlite import MIGRATIONS, SQLiteStorage


def test_file_is_wal_and_migrated_once(tmp_path: Path) -> None:
    path = tmp_path / "crm.db"
    first = SQLiteStorage(f"sqlite:///{path}")
    assert first.migrate() == len(MIGRATIONS)
    with first.transaction() as uow:
        uow.customers.add(crmcore.Customer.new("Ada", id="ada"))
    first.close()
    again = SQLiteStorage(f"sqlite:///{path}")
    assert again.migrate() == len(MIGRATIONS)
    with again.transaction() as uow:
        assert uow.customers.get("ada").name == "Ada"
    again.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    raw.close()


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        ("SELECT customer_id FROM customer_emails WHERE email = 'a@b.c'", "customer_emails"),
        ("SELECT customer_id FROM customer_phones WHERE phone = '+331'", "customer_phones"),
        ("SELECT customer_id FROM customer_external_ids WHERE source = 'erp' AND external_id = '1'",
         "customer_external_ids"),
        ("SELECT doc FROM interactions WHERE customer_id = 'x' ORDER BY occurred_at DESC",
         "interactions_customer"),
    ],
)
def test_lookups_use_an_index(tmp_path: Path, sql: str, index: str) -> None:
    storage = SQLiteStorage(f"sqlite:///{tmp_path}/crm.db")
    with storage.transaction(readonly=True) as uow:
        plan = " ".join(str(row) for row in uow.select(f"EXPLAIN QUERY PLAN {sql}"))
    storage.close()
    assert "SCAN" not in plan.replace("SCAN CONSTANT", ""), plan
    assert "INDEX" in plan or "PRIMARY KEY" in plan, plan


def test_bad_urls_and_broken_files_are_crmcore_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        crmcore.open(f"sqlite:///{tmp_path}/missing/dir/crm.db")
    assert caught.value.field == "url"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError):
        crmcore.open(f"sqlite:///{junk}")


def test_driver_errors_never_leak(tmp_path: Path) -> None:
    storage = SQLiteStorage(f"sqlite:///{tmp_path}/crm.db")
    with pytest.raises(StorageError) as caught, storage.transaction() as uow:
        uow.select("SELECT * FROM no_such_table")
    assert not isinstance(caught.value, sqlite3.Error)
    assert caught.value.__cause__ is None
    storage.close()


def test_writers_keep_a_larger_page_cache(tmp_path: Path) -> None:
    """An import's transactions touch the same index pages again and again: writers keep
    `cache_mb` of them (negative `cache_size`: KiB); readers keep SQLite's default."""
    storage = SQLiteStorage(f"sqlite:///{tmp_path}/crm.db")
    default = SQLiteStorage(f"sqlite:///{tmp_path}/other.db?cache_mb=8")
    with storage.transaction() as uow:
        assert uow.select("PRAGMA cache_size") == [(-64 * 1024,)]
    with default.transaction() as uow:
        assert uow.select("PRAGMA cache_size") == [(-8 * 1024,)]
    with storage.transaction(readonly=True) as uow:
        assert uow.select("PRAGMA cache_size") == [(-2000,)]
    storage.close()
    default.close()
    with pytest.raises(ValidationError) as caught:
        SQLiteStorage(f"sqlite:///{tmp_path}/crm.db?cache_mb=-1")
    assert caught.value.field == "url" and "cache_mb" in caught.value.reason
