"""What keeping the purchase totals costs a purchase write: `crm.purchases.record` (one
transaction each) with the totals kept, against the same writes with the totals statement
switched off (the library as it was before them), on SQLite and on PostgreSQL.

    python benchmarks/bench_totals_write.py                     # 3,000 purchases, SQLite
    python benchmarks/bench_totals_write.py --postgres postgresql://postgres@127.0.0.1/test

Purchases go to 300 customers in date order, except every `--late`-th one (default 10),
dated a week earlier: that one takes the recount path. Best of `--repeat`, in CPU
seconds of this process (load on a shared machine skews both runs alike; on PostgreSQL
the server's work is not in it) and in wall-clock seconds; the ratios are writes per
second with the totals / without them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from unittest import mock

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase
from crmcore_adapters.storage import totals

START = datetime(2024, 1, 1, tzinfo=UTC)


def run(url: str, writes: int, late: int, tag: str) -> tuple[float, float]:
    crm = crmcore.open(url)
    crm.bulk_import(Customer(id=f"{tag}{i:04d}", name=f"c{i}", created_at=START, updated_at=START)
                    for i in range(300))
    early = timedelta(days=7)
    purchases = [
        Purchase(id=f"{tag}-{n}", customer_id=f"{tag}{n % 300:04d}",
                 ordered_at=START + timedelta(hours=n) - (early if n % late == 0 else timedelta()),
                 lines=(OrderLine("item", Money(Decimal(n % 97 + 1), "EUR")),))
        for n in range(1, writes + 1)
    ]
    cpu, wall = time.process_time(), time.perf_counter()
    for purchase in purchases:
        crm.purchases.record(purchase)
    took = time.process_time() - cpu, time.perf_counter() - wall
    crm.close()
    return took


def best(repeat: int, task: Callable[[int], tuple[float, float]]) -> tuple[float, float]:
    runs = [task(attempt) for attempt in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs)


def measure(name: str, url: Callable[[str], str], writes: int, late: int, repeat: int) -> None:
    kept = best(repeat, lambda k: run(url(f"k{k}"), writes, late, f"k{k}"))
    with mock.patch.object(totals, "count_in", lambda *args: None):
        bare = best(repeat, lambda k: run(url(f"b{k}"), writes, late, f"b{k}"))
    for label, k, b in (("CPU", kept[0], bare[0]), ("wall", kept[1], bare[1])):
        print(f"  {name} ({label}): {writes / k:,.0f} writes/s with the totals kept, "
              f"{writes / b:,.0f} without -> ratio {b / k:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--late", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--postgres", help="a PostgreSQL URL: also measure there (schemas of its own)")
    args = parser.parse_args()
    print(f"{args.writes:,} purchases, one transaction each; every {args.late}th dated a week early")
    with tempfile.TemporaryDirectory() as folder:
        measure("SQLite", lambda tag: f"sqlite:///{Path(folder) / tag}.db", args.writes, args.late,
                args.repeat)
    if args.postgres:
        from psycopg import connect

        schemas: list[str] = []

        def url(tag: str) -> str:
            schemas.append(f"bench_totals_write_{tag}")
            return f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schemas[-1]}"

        try:
            measure("PostgreSQL", url, args.writes, args.late, args.repeat)
        finally:
            with connect(args.postgres, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
