"""PostgreSQL: crmcore's bulk import against a raw COPY, and a segment rule against hand-written SQL.

    python benchmarks/bench_postgres_import.py                     # 100,000 customers, 1,000,000 purchases
    python benchmarks/bench_postgres_import.py --customers 10000 --purchases 100000

The server is CRMCORE_TEST_POSTGRES_URL, else the URL in .postgres-url. Both runs load
the same synthetic records (crmcore.synthetic) into fresh schemas with the same tables
and indexes, each in one transaction. crmcore starts from model objects (it serialises
them, fills the lookup tables and COPYs); the raw run COPYs rows prepared beforehand,
so the ratio raw/crmcore is what crmcore's conveniences cost. Aim: 0.5 or better.

Then, on the base crmcore imported (after ANALYZE), a segment rule runs through
crmcore's compiler (pushed down as SQL) and as two hand-written queries of the same
meaning; all three must find the same members. Figures are the best of --runs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
from psycopg import sql as pg_sql

import crmcore
from crmcore import serialization
from crmcore.model import Customer, Purchase
from crmcore.synthetic import AS_OF, SyntheticBase
from crmcore_adapters.storage import sql
from crmcore_adapters.storage.postgres import DIALECT, PostgresStorage, copy_sql

RULE = ('tier in ("gold", "platinum") and country = "FR" and lifecycle = "customer" '
        "and sum(purchases.total, last 365 days) > 500")
HAND_CORRELATED = """
SELECT c.id FROM customers c
WHERE c.created_at <= %(as_of)s AND c.tier IN ('gold', 'platinum') AND c.country = 'FR'
  AND c.lifecycle = 'customer'
  AND (SELECT sum(p.total) FROM purchases p
       WHERE p.customer_id = c.id AND p.ordered_at >= %(start)s AND p.ordered_at <= %(as_of)s) > 500
ORDER BY c.id
"""
HAND_JOIN = """
SELECT c.id FROM customers c JOIN purchases p ON p.customer_id = c.id
WHERE c.created_at <= %(as_of)s AND c.tier IN ('gold', 'platinum') AND c.country = 'FR'
  AND c.lifecycle = 'customer' AND p.ordered_at >= %(start)s AND p.ordered_at <= %(as_of)s
GROUP BY c.id HAVING sum(p.total) > 500
ORDER BY c.id
"""


def server_url() -> str:
    url = os.environ.get("CRMCORE_TEST_POSTGRES_URL")
    marker = Path(__file__).resolve().parent.parent / ".postgres-url"
    if not url and marker.exists():
        url = marker.read_text().strip()
    if not url:
        sys.exit("set CRMCORE_TEST_POSTGRES_URL (or run scripts/setup.sh to write .postgres-url)")
    return url


def records(customers: int, purchases: int) -> tuple[list[Customer], list[Purchase]]:
    base = SyntheticBase(size=customers, purchases_per_customer=max(purchases / max(customers, 1), 0.0))
    people = list(base.customers())
    bought = list(itertools.islice(base.purchases(), purchases))
    return people, bought


def raw_rows(people: list[Customer], bought: list[Purchase]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The rows crmcore would write, prepared up front as a hand-written loader would have them."""
    stored = [attrs.evolve(c, version=1) for c in people]
    tables: list[tuple[str, list[tuple[Any, ...]]]] = [
        (sql.insert_sql(sql.CUSTOMERS, DIALECT),
         [(c.id, *sql.CUSTOMERS.values(DIALECT, c), serialization.dumps(c)) for c in stored]),
        *sql.index_rows(stored),
        (sql.insert_sql(sql.PURCHASES, DIALECT),
         [(p.id, *sql.PURCHASES.values(DIALECT, p), serialization.dumps(p)) for p in bought]),
    ]
    return tables


def raw_copy(url: str, schema: str, tables: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.execute(pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(schema)))
        for insert, rows in tables:
            with cur.copy(copy_sql(insert)) as copy:
                for row in rows:
                    copy.write_row(row)


def in_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def fresh(url: str) -> tuple[PostgresStorage, str]:
    schema = f"crmcore_bench_{uuid.uuid4().hex[:12]}"
    return PostgresStorage(in_schema(url, schema)), schema


def best(runs: int, work: Any) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def segments(url: str, schema: str, runs: int) -> None:
    """The rule through crmcore's SQL compiler against hand-written SQL, on the same tables."""
    params = {"as_of": AS_OF, "start": AS_OF.replace(year=AS_OF.year - 1)}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(schema)))
        conn.execute("ANALYZE")
        crm = crmcore.open(in_schema(url, schema))
        try:
            ours, found = best(runs, lambda: crm.customers.ids_matching(RULE, as_of=AS_OF))
        finally:
            crm.close()
        correlated, hand = best(runs, lambda: [r[0] for r in conn.execute(HAND_CORRELATED, params)])
        joined, hand_join = best(runs, lambda: [r[0] for r in conn.execute(HAND_JOIN, params)])
    assert found == hand == hand_join, "crmcore and the hand-written SQL disagree"
    print(f"segment rule: {RULE}")
    print(f"  {len(found):,} members; best of {runs}")
    print(f"  crmcore (pushed-down SQL)          {ours * 1000:9.1f} ms")
    for label, hand_time in (("correlated subquery", correlated), ("join + group by", joined)):
        print(f"  hand-written, {label:<20} {hand_time * 1000:9.1f} ms   crmcore/hand {ours / hand_time:.2f}")


def checkpoint(url: str) -> None:
    """Flush the previous load's WAL first, so neither run pays for the other (needs rights)."""
    with psycopg.connect(url, autocommit=True) as conn, contextlib.suppress(psycopg.Error):
        conn.execute("CHECKPOINT")


def timed(label: str, url: str, run: Any) -> float:
    checkpoint(url)
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    print(f"{label:<28} {elapsed:8.2f} s")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--url", default=None, help="PostgreSQL server (default: the test server)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions of each segment query")
    args = parser.parse_args(argv)
    url = args.url or server_url()

    start = time.perf_counter()
    people, bought = records(args.customers, args.purchases)
    tables = raw_rows(people, bought)
    total = len(people) + len(bought)
    print(f"{len(people):,} customers, {len(bought):,} purchases "
          f"(generated and prepared in {time.perf_counter() - start:.1f} s, not timed)")

    schemas: list[str] = []
    try:
        store, schema = fresh(url)
        schemas.append(schema)

        def stream() -> Iterator[Any]:
            yield from people
            yield from bought

        ours = timed("crmcore bulk_import", url, lambda: store.bulk_import(stream()))
        store.close()
        raw_store, raw_schema = fresh(url)
        schemas.append(raw_schema)
        raw_store.close()
        raw = timed("raw psycopg COPY", url, lambda: raw_copy(url, raw_schema, tables))
        with psycopg.connect(url) as conn:
            for name in schemas:
                counts = conn.execute(pg_sql.SQL(
                    "SELECT (SELECT count(*) FROM {s}.customers), (SELECT count(*) FROM {s}.purchases)"
                ).format(s=pg_sql.Identifier(name))).fetchone()
                assert counts == (len(people), len(bought)), (name, counts)
        print(f"crmcore: {total / ours:,.0f} records/s; raw: {total / raw:,.0f} records/s")
        print(f"ratio raw/crmcore = {raw / ours:.2f} (aim: 0.5 or better)")
        segments(url, schema, args.runs)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            for name in schemas:
                conn.execute(pg_sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(pg_sql.Identifier(name)))


if __name__ == "__main__":
    main()
