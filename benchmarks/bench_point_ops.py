"""Point reads and one-customer writes through crmcore against the plain driver.

    python benchmarks/bench_point_ops.py [--customers 2000] [--reads 20000] [--writes 2000]
    CRMCORE_TEST_POSTGRES_URL=postgresql://... python benchmarks/bench_point_ops.py

Read: `crm.customers.get(id)` against the driver running the same SELECT of the stored
document plus `json.loads`, in one transaction each (SQLite: a deferred BEGIN/COMMIT in
autocommit mode; PostgreSQL: a pooled connection and a READ ONLY transaction).
Write: `crm.customers.add(customer)` (document, e-mail and phone lookup rows, one
outbox event, one history change) against the driver writing the same five rows with
the same settings in one transaction (SQLite WAL, synchronous=NORMAL, BEGIN IMMEDIATE). Events are not
delivered in either run (no subscriber). CPU seconds of the process, so load on a shared
machine skews both sides alike; the ratio is library/driver throughput (aims: read
>= 0.3, write >= 0.5).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crmcore
from crmcore import Customer, serialization
from crmcore.events import Event
from crmcore_adapters.storage import sql
from crmcore_adapters.storage.sqlite import DIALECT as SQLITE


def per_second(count: int, work: Callable[[], None]) -> float:
    start = time.process_time()
    work()
    return count / max(time.process_time() - start, 1e-9)


def people(n: int, prefix: str) -> list[Customer]:
    return [Customer.new(f"Person {i}", id=f"{prefix}{i:08d}", emails=[f"{prefix}{i}@example.org"],
                         phones=[f"+3312{i:07d}"], tier="gold") for i in range(n)]


def sqlite_runs(args: argparse.Namespace, directory: Path) -> dict[str, float]:
    url = f"sqlite:///{directory}/crm.db"
    crm = crmcore.open(url)
    crm.bulk_import(people(args.customers, "c"))
    ids = [f"c{random.randrange(args.customers):08d}" for _ in range(args.reads)]
    conn = sqlite3.connect(directory / "crm.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")

    def raw_reads() -> None:
        for id in ids:
            conn.execute("BEGIN")
            row = conn.execute("SELECT doc FROM customers WHERE id = ?", (id,)).fetchone()
            json.loads(row[0])
            conn.execute("COMMIT")

    def crm_reads() -> None:
        for id in ids:
            crm.customers.get(id)

    fresh_raw, fresh_crm = people(args.writes, "r"), people(args.writes, "w")
    insert = sql.insert_sql(sql.CUSTOMERS, SQLITE)
    history = ('INSERT INTO history (kind, aggregate_id, version, op, "at", diff, actor) '
               "VALUES (?, ?, ?, ?, ?, ?, ?)")
    outbox = ("INSERT INTO outbox (id, topic, aggregate_id, occurred_at, available_at, doc) "
              "VALUES (?, ?, ?, ?, ?, ?)")

    def raw_writes() -> None:
        for customer in fresh_raw:
            stored = serialization.unstructure(customer)
            stored["version"] = 1
            row = sql.CUSTOMERS.row(SQLITE, customer)
            event = Event("customer.added", customer.id, {}, customer.created_at)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(insert, (*row[:-1], json.dumps(stored)))
            conn.execute("INSERT INTO customer_emails (email, customer_id) VALUES (?, ?)",
                         (customer.emails[0], customer.id))
            conn.execute("INSERT INTO customer_phones (phone, customer_id) VALUES (?, ?)",
                         (customer.phones[0], customer.id))
            conn.execute(outbox, (event.id, event.topic, event.aggregate_id,
                                  SQLITE.instant(event.occurred_at), SQLITE.instant(event.occurred_at),
                                  serialization.dumps(event)))
            conn.execute(history, ("customer", customer.id, 1, "added", SQLITE.instant(customer.created_at),
                                   json.dumps({k: [None, v] for k, v in sorted(stored.items())}), None))
            conn.execute("COMMIT")

    def crm_writes() -> None:
        for customer in fresh_crm:
            crm.customers.add(customer)

    crm_reads()  # warm: converter built, pages cached, pool filled
    figures = {
        "sqlite read driver/s": per_second(len(ids), raw_reads),
        "sqlite read crmcore/s": per_second(len(ids), crm_reads),
        "sqlite write driver/s": per_second(len(fresh_raw), raw_writes),
        "sqlite write crmcore/s": per_second(len(fresh_crm), crm_writes),
    }
    conn.close()
    crm.close()
    return figures


def postgres_runs(args: argparse.Namespace, url: str) -> dict[str, float]:
    import psycopg

    schema = f"bench_point_{os.getpid()}"
    crm = crmcore.open(f"{url}{'&' if '?' in url else '?'}schema={schema}")
    try:
        crm.bulk_import(people(args.customers, "c"))
        reads = max(args.reads // 4, 100)
        ids = [f"c{random.randrange(args.customers):08d}" for _ in range(reads)]
        storage: Any = crm.storage
        pool = storage._pool

        def raw_reads() -> None:
            for id in ids:
                with pool.connection() as conn:
                    conn.read_only = True
                    row = conn.execute("SELECT doc::text FROM customers WHERE id = %s", (id,)).fetchone()
                    json.loads(row[0])

        def crm_reads() -> None:
            for id in ids:
                crm.customers.get(id)

        crm_reads()
        return {
            "postgresql read driver/s": per_second(len(ids), raw_reads),
            "postgresql read crmcore/s": per_second(len(ids), crm_reads),
        }
    finally:
        crm.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--reads", type=int, default=20_000)
    parser.add_argument("--writes", type=int, default=2_000)
    args = parser.parse_args()
    random.seed(1)
    with tempfile.TemporaryDirectory() as directory:
        figures = sqlite_runs(args, Path(directory))
    url = os.environ.get("CRMCORE_TEST_POSTGRES_URL")
    if url:
        figures |= postgres_runs(args, url)
    for name, value in figures.items():
        print(f"{name:28s} {value:12,.0f}")
    for backend in ("sqlite", "postgresql"):
        for op in ("read", "write"):
            raw = figures.get(f"{backend} {op} driver/s")
            lib = figures.get(f"{backend} {op} crmcore/s")
            if raw and lib:
                print(f"{backend} {op}: crmcore/driver = {lib / raw:.2f}")


if __name__ == "__main__":
    main()
