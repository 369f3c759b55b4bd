"""Bulk import into SQLite: crmcore's `bulk_import` against plain sqlite3 `executemany`.

    python benchmarks/bench_import.py [--customers 100000] [--purchases 1000000]

Both timed runs write the same rows (customers with their e-mail/phone/external-id
lookup rows, then purchases) into the same schema in one transaction, starting from
what each is given: the library from model objects, the raw run from the rows the
library's own row functions made from those objects before the clock started, so
the raw run is the floor the library sits on. Inputs are built first and frozen out
of the garbage collector's way; times are CPU seconds of the process, so other load
on a shared machine does not skew the ratio (wall-clock figures are printed too).

A third run streams straight from the synthetic generator into `bulk_import`, as an
import from a file would: its peak RSS is the library's memory at work, and it stays
flat from the small size to the large one. Every run is its own process.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import crmcore
from crmcore.synthetic import SyntheticBase
from crmcore_adapters.storage import sql
from crmcore_adapters.storage.sqlite import BULK_BATCH, DIALECT


def stream(customers: int, purchases: int, seed: int) -> Iterator[Any]:
    """The benchmark's records: every customer, then `purchases` purchases (fewer only for
    tiny bases, where the generator's random counts may fall short; the table shows them)."""
    base = SyntheticBase(size=customers, seed=seed,
                         purchases_per_customer=1.25 * purchases / max(customers, 1))
    return itertools.chain(base.customers(), itertools.islice(base.purchases(), purchases))


def timed(work: Callable[[], Any]) -> tuple[Any, float, float]:
    """(result, CPU seconds, wall seconds) of `work`."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, max(time.process_time() - cpu, 1e-9), max(time.perf_counter() - wall, 1e-9)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def best(repeat: int, folder: Path, attempt: Callable[[Path], tuple[int, float, float]]) -> dict[str, float]:
    """The attempt with the least CPU time out of `repeat`, each on a fresh database file."""
    results = []
    for n in range(repeat):
        db = folder / f"attempt-{n}.db"
        results.append(attempt(db))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    rows, cpu, wall = min(results, key=lambda result: result[1])
    return {"rows": rows, "cpu": cpu, "wall": wall}


def run_library(folder: Path, customers: int, purchases: int, seed: int, repeat: int) -> dict[str, float]:
    items = list(stream(customers, purchases, seed))
    gc.freeze()

    def attempt(db: Path) -> tuple[int, float, float]:
        with crmcore.open(f"sqlite:///{db}") as crm:
            return timed(lambda: crm.bulk_import(items))

    return best(repeat, folder, attempt)


def run_raw(folder: Path, customers: int, purchases: int, seed: int, repeat: int) -> dict[str, float]:
    statements: dict[str, list[tuple[Any, ...]]] = {}
    rows = 0
    for table, batch in sql.bulk_batches(stream(customers, purchases, seed), BULK_BATCH):
        statements.setdefault(sql.insert_sql(table, DIALECT), []).extend(sql.bulk_rows(DIALECT, table, batch))
        if table is sql.CUSTOMERS:
            for statement, index_rows in sql.index_rows(batch):
                statements.setdefault(statement, []).extend(index_rows)
        rows += len(batch)
    gc.freeze()

    def attempt(db: Path) -> tuple[int, float, float]:
        crmcore.open(f"sqlite:///{db}").close()  # the same schema, made by the library
        conn = sqlite3.connect(db, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")

        def insert() -> int:
            conn.execute("BEGIN IMMEDIATE")
            for statement, params in statements.items():
                conn.executemany(statement, params)
            conn.execute("COMMIT")
            return rows

        try:
            return timed(insert)
        finally:
            conn.close()

    return best(repeat, folder, attempt)


def run_stream(folder: Path, customers: int, purchases: int, seed: int, repeat: int) -> dict[str, float]:
    with crmcore.open(f"sqlite:///{folder / 'stream.db'}") as crm:
        rows, cpu, wall = timed(lambda: crm.bulk_import(stream(customers, purchases, seed)))
    return {"rows": rows, "cpu": cpu, "wall": wall, "peak_rss_mb": peak_rss_mb()}


RUNS = {"library": run_library, "raw": run_raw, "stream": run_stream}


def child(mode: str, customers: int, purchases: int, seed: int, repeat: int) -> dict[str, float]:
    """Run one measurement in a fresh process and read its figures back."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, __file__, "--run", mode, "--dir", tmp, "--customers", str(customers),
             "--purchases", str(purchases), "--seed", str(seed), "--repeat", str(repeat)],
            capture_output=True, text=True, check=True,
        )
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=2, help="timed attempts per run; the best counts")
    parser.add_argument("--run", choices=tuple(RUNS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run = RUNS[args.run]
        print(json.dumps(run(args.dir, args.customers, args.purchases, args.seed, max(args.repeat, 1))))
        return

    sizes = [(args.customers // 10, args.purchases // 10), (args.customers, args.purchases)]
    print("bulk import into SQLite, one transaction: customers (with their lookup rows), then purchases")
    header = ("customers", "purchases", "library rows/s", "raw rows/s", "ratio", "ratio (wall)",
              "stream rows/s", "stream peak RSS")
    print("  ".join(f"{h:>15}" for h in header))
    for customers, purchases in sizes:
        library, raw, streamed = (child(mode, customers, purchases, args.seed, args.repeat)
                                  for mode in ("library", "raw", "stream"))
        assert library["rows"] == raw["rows"] == streamed["rows"], (library, raw, streamed)
        rows = library["rows"]
        cells = (f"{customers:,}", f"{int(rows) - customers:,}", f"{rows / library['cpu']:,.0f}",
                 f"{rows / raw['cpu']:,.0f}", f"{raw['cpu'] / library['cpu']:.2f}",
                 f"{raw['wall'] / library['wall']:.2f}", f"{rows / streamed['wall']:,.0f}",
                 f"{streamed['peak_rss_mb']:,.0f} MB")
        print("  ".join(f"{c:>15}" for c in cells), flush=True)
    print(f"rows/s on CPU time, best of {args.repeat}; ratio = library rows/s / raw rows/s "
          "(aim: 0.5 or better).\nThe stream run generates the records as it imports them "
          "(wall clock, generator included);\nits peak RSS should not grow with the row count.")


if __name__ == "__main__":
    main()
