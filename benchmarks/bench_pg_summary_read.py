"""Ways to read the purchase summary out of PostgreSQL's `purchase_totals`, alternated.

    python benchmarks/bench_pg_summary_read.py "postgresql://postgres@127.0.0.1/db?schema=s" [--runs 7]

The URL is a base built by `bench_summary.py --postgres ...` (its schema). Each round runs
every way once, in turn; printed are the median wall clock and client CPU seconds of each:
the summary as shipped (binary protocol, columns computed on the server), the same
columns through COPY in binary counting the bytes only (no parsing: a lower bound for any
COPY reader), the text protocol, the raw stored columns, and the same expressions summed
on the server (what computing them costs there, with nothing sent).
"""

from __future__ import annotations

import argparse
import operator
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import crmcore
from crmcore.scoring.summary import Period, summarize

AS_OF = datetime(2022, 1, 1, tzinfo=UTC) + timedelta(days=730)  # as bench_summary.py


def columns(through_day: int) -> str:
    """The summary's columns as the shipped query computes them (weeks, 4 decimal places)."""
    return ("customer_id, days - 1, (last_day - first_day) / 7.0::float8, "
            f"({through_day} - first_day) / 7.0::float8, "
            "(total - first_day_total)::float8 / 10000.0 / (CASE WHEN days > 1 THEN days - 1 ELSE 1 END), "
            "total::float8 / 10000.0")


def ways(crm: crmcore.CRM) -> dict[str, Callable[[], Any]]:
    through = Period.as_of(AS_OF, 7).through_day

    def shipped() -> Any:
        with crm.reading() as uow:
            return summarize(uow, AS_OF, unit_days=7)

    def fetched(sql: str, binary: bool) -> int:
        with crm.reading() as uow:
            cursor = uow._psycopg  # type: ignore[attr-defined]
            cursor.execute(sql, binary=binary)
            rows = cursor.fetchall()
            rows.sort(key=operator.itemgetter(0))
            return len(rows)

    def copy_bytes() -> int:
        with crm.reading() as uow:
            size = 0
            sql = f"COPY (SELECT {columns(through)} FROM purchase_totals) TO STDOUT (FORMAT binary)"
            with uow._psycopg.copy(sql) as copy:  # type: ignore[attr-defined]
                for block in copy:
                    size += len(block)
            return size

    def summed() -> Any:
        with crm.reading() as uow:
            sums = ", ".join(f"sum({c})" for c in columns(through).split(", ")[1:])
            return uow.select(f"SELECT count(*), {sums} FROM purchase_totals")  # type: ignore[attr-defined]

    return {
        "shipped (binary)": shipped,
        "COPY binary, bytes only": copy_bytes,
        "text protocol": lambda: fetched(f"SELECT {columns(through)} FROM purchase_totals", False),
        "raw stored columns": lambda: fetched(
            "SELECT customer_id, days, first_day, last_day, total, first_day_total "
            "FROM purchase_totals", True),
        "expressions summed on the server": summed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    crm = crmcore.open(args.url)
    chosen = ways(crm)
    chosen["shipped (binary)"]()  # warm the server's cache
    walls: dict[str, list[float]] = {name: [] for name in chosen}
    cpus: dict[str, list[float]] = {name: [] for name in chosen}
    for _ in range(args.runs):
        for name, way in chosen.items():
            wall, cpu = time.perf_counter(), time.process_time()
            way()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    for name in chosen:
        print(f"{name:34s} wall {statistics.median(walls[name]):.3f} s, "
              f"client CPU {statistics.median(cpus[name]):.3f} s (medians of {args.runs})")
    crm.close()


if __name__ == "__main__":
    main()
