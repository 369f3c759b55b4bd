"""The purchase summary (frequency, recency, T, monetary per customer) computed by crmcore's
SQL on SQLite and PostgreSQL, against pandas (and polars, when installed) on the same data.

    python benchmarks/bench_summary.py                                   # 20,000 / 200,000
    python benchmarks/bench_summary.py --customers 1000000 --purchases 10000000
    python benchmarks/bench_summary.py --postgres postgresql://postgres@127.0.0.1/test
    python benchmarks/bench_summary.py --direct ...       # purchases written by the driver (fast)
    python benchmarks/bench_summary.py --cutoff-days 30   # a past as-of: the full query

The base is imported once through `crm.bulk_import` (kept in the temp folder, reused,
`--fresh` rebuilds it; on PostgreSQL a schema of its own). Each measurement runs in a
fresh process so that its peak memory (max RSS) is its own: crmcore's summary reads
aggregates only, never the purchases; pandas and polars work on the purchases already
in memory as a data frame (the time to read them from the database is printed
separately, and is not in their figure). Ratios are baseline time / crmcore time:
above 1.0, crmcore is faster. RFM scoring is timed on the summary against the same
scores computed with pandas ranks, and whole (`crm.analytical.rfm`, from the database,
against the pandas summary plus ranks). A full lifetime-value run (`crm.analytical.clv`:
summary, BG/NBD and Gamma-Gamma fits, valuation) is timed against the pandas summary
followed by the same fits and valuation on its columns (the numerical part is shared, so
the ratio shows the data step). crmcore's summary says where it was read: from the
purchase totals kept with every write, or aggregated from the purchases. The fits on a
base simulated from the BG/NBD process, against `lifetimes`, are `benchmarks/bench_clv.py`.
"""

from __future__ import annotations

import argparse
import array
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase
from crmcore.scoring.rfm import rfm
from crmcore.scoring.summary import summarize
from crmcore.sql import dialect_of

START = datetime(2022, 1, 1, tzinfo=UTC)
AS_OF = START + timedelta(days=730)


def simulate(customers: int, purchases: int, seed: int = 1) -> Iterator[Customer | Purchase]:
    """Customers with a geometric number of purchases (mean purchases / customers) spread
    over two years, each worth 1.00 to 200.00 EUR; a few on the same day (one purchase day)."""
    rng = np.random.default_rng(seed)
    mean = purchases / customers
    for low in range(0, customers, 10_000):
        n = min(10_000, customers - low)
        counts = rng.geometric(1 / mean, n)
        ids = [f"c{low + i:08d}" for i in range(n)]
        yield from (Customer(id=c, name=c, created_at=START, updated_at=START) for c in ids)
        for cid, k in zip(ids, counts, strict=True):
            minutes = np.sort(rng.integers(0, 730 * 1440, k))
            cents = rng.integers(100, 20_000, k)
            for j in range(k):
                yield Purchase(id=f"{cid}-{j}", customer_id=cid,
                               ordered_at=START + timedelta(minutes=int(minutes[j])),
                               lines=(OrderLine("item", Money(Decimal(int(cents[j])) / 100, "EUR")),))


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best(repeat: int, task: Any) -> tuple[float, float, Any]:
    """Best wall-clock and best CPU seconds of this process over `repeat` runs, and a result.
    On a loaded machine the CPU seconds are the steadier figure; they leave out the work a
    database server does for the process (PostgreSQL), which the wall clock includes."""
    walls, cpus, result = [], [], None
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = task()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus), result


def read_frame(url: str) -> Any:
    """The purchases as a pandas frame: customer id, UTC instant, total."""
    import pandas as pd

    crm = crmcore.open(url)
    with crm.reading() as uow:
        d = dialect_of(uow)
        assert d is not None, url
        rows = uow.select(  # type: ignore[attr-defined]
            f"SELECT customer_id, ordered_at, {d.money_number('total')} FROM purchases")
        frame = pd.DataFrame(rows, columns=["customer_id", "ordered_at", "total"])
        micros = d.types["instant"] == "BIGINT"  # instants stored as integer microseconds
        frame["ordered_at"] = pd.to_datetime(frame["ordered_at"], unit="us" if micros else None, utc=True)
        frame["total"] = frame["total"] / 10**d.money_scale
    crm.close()
    return frame


def pandas_summary(frame: Any) -> Any:
    """The same figures in pandas: one row per customer and day, then per customer."""
    through = np.datetime64(AS_OF.date() - timedelta(days=1))
    kept = frame[frame["ordered_at"] < AS_OF]
    days = kept.assign(day=kept["ordered_at"].dt.tz_localize(None).dt.floor("D"))
    daily = days.groupby(["customer_id", "day"], sort=True)["total"].sum().reset_index()
    per = daily.groupby("customer_id", sort=True).agg(
        n=("day", "size"), first=("day", "min"), last=("day", "max"), spent=("total", "sum"),
        first_value=("total", "first"))
    week = np.timedelta64(7, "D")
    return {"frequency": per["n"] - 1, "recency": (per["last"] - per["first"]) / week,
            "T": (through - per["first"].values) / week,
            "monetary": ((per["spent"] - per["first_value"]) / (per["n"] - 1)).where(per["n"] > 1, 0.0),
            "spent": per["spent"]}


def pandas_rfm(summary: Any) -> Any:
    """crmcore's scores in pandas: 1 + floor(5 * share of the others strictly worse), at most 5."""
    n = max(len(summary["frequency"]) - 1, 1)

    def score(values: Any, higher_is_better: bool) -> Any:
        worse = values.rank(method="min") - 1 if higher_is_better else (
            len(values) - values.rank(method="max"))
        return np.minimum(5, 1 + (5 * worse) // n).astype(int)

    idle = ((summary["T"] - summary["recency"]) * 7).round(6)
    spent = summary["spent"].round(4)  # amounts are exact to 1/10,000: the float sums are not
    return (score(idle, False) * 100 + score(summary["frequency"] + 1, True) * 10
            + score(spent, True))


def pandas_clv(frame: Any) -> Any:
    """A full lifetime-value run from the frame: the pandas summary, then the same fits and
    valuation crmcore runs (the numerical part is shared: the ratio is the data step's)."""
    from crmcore.scoring.clv import LifetimeModel
    from crmcore.scoring.summary import Period, Summary

    per = pandas_summary(frame)
    columns = {k: array.array("d", np.asarray(per[k], dtype=float)) for k in ("frequency", "recency", "T",
                                                                           "monetary", "spent")}
    base = Summary(Period.as_of(AS_OF, 7.0), [str(i) for i in per["spent"].index],
                   columns["frequency"], columns["recency"], columns["T"], columns["monetary"],
                   columns["spent"], currency="EUR")
    return LifetimeModel.fit(base).value(base).clv


def polars_summary(frame: Any) -> Any:
    import polars as pl

    through = AS_OF.date() - timedelta(days=1)
    daily = (frame.filter(pl.col("ordered_at") < AS_OF.replace(tzinfo=None))
             .with_columns(pl.col("ordered_at").dt.date().alias("day"))
             .group_by(["customer_id", "day"]).agg(pl.col("total").sum())
             .sort(["customer_id", "day"]))
    return (daily.group_by("customer_id", maintain_order=True).agg(
        (pl.len() - 1).alias("frequency"),
        ((pl.col("day").max() - pl.col("day").min()).dt.total_days() / 7).alias("recency"),
        ((pl.lit(through) - pl.col("day").min()).dt.total_days() / 7).alias("T"),
        pl.when(pl.len() > 1).then((pl.col("total").sum() - pl.col("total").first()) / (pl.len() - 1))
        .otherwise(0.0).alias("monetary")))


def measure(what: str, url: str, repeat: int) -> dict[str, Any]:
    """One measurement, in this (fresh) process."""
    from crmcore.scoring.clv import require

    require()  # scipy imported before any timing, in every process alike
    if what == "crmcore":
        crm = crmcore.open(url)

        def run() -> Any:
            with crm.reading() as uow:
                return summarize(uow, AS_OF, unit_days=7)

        took, took_cpu, found = best(repeat, run)
        summary_peak = peak_mb()
        rfm_took, rfm_cpu, scores = best(repeat, lambda: rfm(found))
        whole_rfm, whole_rfm_cpu, _ = best(repeat, lambda: crm.analytical.rfm(AS_OF))
        clv_took, clv_cpu, valuation = best(1, lambda: crm.analytical.clv(AS_OF))
        crm.close()
        return {"seconds": took, "customers": len(found), "peak_mb": peak_mb(),
                "check": float(np.sum(found.monetary)), "rfm_seconds": rfm_took,
                "rfm_check": sum(s.r * 100 + s.f * 10 + s.m for s in scores),
                "rfm_total_seconds": whole_rfm, "clv_seconds": clv_took,
                "clv_check": float(np.sum(valuation.clv)), "source": found.source,
                "summary_peak_mb": summary_peak, "cpu": took_cpu, "rfm_cpu": rfm_cpu,
                "rfm_total_cpu": whole_rfm_cpu, "clv_cpu": clv_cpu}
    began = time.perf_counter()
    frame = read_frame(url)
    read = time.perf_counter() - began
    if what == "pandas":
        took, took_cpu, found = best(repeat, lambda: pandas_summary(frame))
        summary_peak = peak_mb()
        check = float(found["monetary"].sum())
        customers = len(found["monetary"])
        rfm_took, rfm_cpu, codes = best(repeat, lambda: pandas_rfm(found))
        clv_took, clv_cpu, clv = best(1, lambda: pandas_clv(frame))
        return {"seconds": took, "customers": customers, "peak_mb": peak_mb(), "read_seconds": read,
                "check": check, "rfm_seconds": rfm_took, "rfm_check": int(codes.sum()),
                "rfm_total_seconds": took + rfm_took, "clv_seconds": clv_took,
                "clv_check": float(np.sum(clv)), "summary_peak_mb": summary_peak, "cpu": took_cpu,
                "rfm_cpu": rfm_cpu, "rfm_total_cpu": took_cpu + rfm_cpu, "clv_cpu": clv_cpu}
    else:
        import polars as pl

        frame = pl.DataFrame({  # plain columns: no pyarrow needed
            "customer_id": frame["customer_id"].astype(str).tolist(),
            "ordered_at": frame["ordered_at"].dt.tz_localize(None).to_numpy(),
            "total": frame["total"].to_numpy(dtype=float)})
        took, took_cpu, found = best(repeat, lambda: polars_summary(frame))
        check, customers = float(found["monetary"].sum()), found.height
    return {"seconds": took, "customers": customers, "peak_mb": peak_mb(), "read_seconds": read,
            "check": check, "cpu": took_cpu}


def purchase_rows(customers: int, purchases: int, seed: int = 1) -> Iterator[list[tuple[Any, ...]]]:
    """The purchases of a base like `simulate`'s (geometric counts, minutes over two years,
    1.00 to 200.00 EUR), as (id, customer id, minutes since START, cents) rows, 10,000
    customers at a time, drawn with numpy: no model object per purchase."""
    rng = np.random.default_rng(seed)
    mean = purchases / customers
    for low in range(0, customers, 10_000):
        n = min(10_000, customers - low)
        counts = rng.geometric(1 / mean, n)
        owner = np.repeat(np.arange(low, low + n), counts)
        minutes = rng.integers(0, 730 * 1440, owner.size)
        order = np.lexsort((minutes, owner))
        owner, minutes = owner[order], minutes[order]
        cents = rng.integers(100, 20_000, owner.size)
        number = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
        yield [(f"c{o:08d}-{j}", f"c{o:08d}", int(m), int(c))
               for o, j, m, c in zip(owner.tolist(), number.tolist(), minutes.tolist(), cents.tolist(),
                                     strict=True)]


def build_direct(url: str, customers: int, purchases: int) -> None:
    """Customers through `bulk_import`; purchases written by the driver (COPY on PostgreSQL,
    executemany on SQLite) with an empty document, which nothing measured here reads; then
    the purchase totals recounted by the statement the migration backfills them with.
    Hours instead of days at 10,000,000 purchases on a shared machine."""
    from crmcore_adapters.storage.totals import recount_sql

    began = time.perf_counter()
    crm = crmcore.open(url)
    crm.bulk_import(Customer(id=f"c{i:08d}", name=f"c{i:08d}", created_at=START, updated_at=START)
                    for i in range(customers))
    crm.close()
    stored = 0
    start = int(START.timestamp() * 1_000_000)
    if url.startswith("sqlite:"):
        import sqlite3

        from crmcore.sql import SQLITE

        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        for rows in purchase_rows(customers, purchases):
            con.executemany(
                "INSERT INTO purchases (id, customer_id, ordered_at, currency, total, doc) "
                "VALUES (?, ?, ?, 'EUR', ?, '{}')",
                [(i, c, start + m * 60_000_000, cents * 100) for i, c, m, cents in rows])
            stored += len(rows)
        con.execute(recount_sql(SQLITE))
        con.commit()
        con.close()
    else:
        from psycopg import connect

        from crmcore.sql import POSTGRESQL

        server, _, query = url.partition("?")
        schema = dict(part.split("=", 1) for part in query.split("&") if part)["schema"]
        with connect(server) as conn:
            conn.execute(f'SET search_path TO "{schema}"')
            with conn.cursor().copy(
                    "COPY purchases (id, customer_id, ordered_at, currency, total, doc) FROM STDIN") as copy:
                for rows in purchase_rows(customers, purchases):
                    for i, c, m, cents in rows:
                        at = START + timedelta(minutes=m)
                        copy.write_row((i, c, at, "EUR", Decimal(cents) / 100, "{}"))
                    stored += len(rows)
            conn.execute(recount_sql(POSTGRESQL))
    print(f"  wrote {customers:,} customers and {stored:,} purchases directly in "
          f"{time.perf_counter() - began:.1f} s")


def build(url: str, customers: int, purchases: int, direct: bool = False) -> None:
    if direct:
        build_direct(url, customers, purchases)
        return
    began = time.perf_counter()
    crm = crmcore.open(url)
    count = crm.bulk_import(simulate(customers, purchases))
    with crm.reading() as uow:
        stored = uow.purchases.count()
    crm.close()
    print(f"  imported {count:,} records ({stored:,} purchases) in {time.perf_counter() - began:.1f} s")


def compare(name: str, url: str, repeat: int, cutoff: int = 0) -> None:
    baselines = ["pandas"]
    try:
        import polars  # noqa: F401

        baselines.append("polars")
    except ImportError:
        print("  polars not installed: pandas only")
    figures = {}
    for what in ["crmcore", *baselines]:
        done = subprocess.run([sys.executable, __file__, "--measure", what, "--url", url,
                               "--repeat", str(repeat), "--cutoff-days", str(cutoff)],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"  {what} failed: {done.stderr.strip().splitlines()[-3:]}")
            continue
        figures[what] = json.loads(done.stdout.strip().splitlines()[-1])
    mine = figures.get("crmcore")
    if mine is None:
        return
    print(f"  {name}: crmcore summary {mine['seconds']:.3f} s for {mine['customers']:,} customers "
          f"(read from {mine['source']}), peak {mine['summary_peak_mb']:.0f} MB after the summary, "
          f"{mine['peak_mb']:.0f} MB after all; RFM scoring "
          f"{mine['rfm_seconds']:.3f} s, RFM from the database {mine['rfm_total_seconds']:.3f} s, "
          f"CLV from the database {mine['clv_seconds']:.3f} s")
    if "pandas" in figures:
        f = figures["pandas"]
        print(f"    pandas  RFM scoring {f['rfm_seconds']:.3f} s -> ratio "
              f"{f['rfm_seconds'] / mine['rfm_seconds']:.2f}x (CPU {f['rfm_cpu'] / mine['rfm_cpu']:.2f}x); "
              f"same scores: {f['rfm_check'] == mine['rfm_check']}")
        print(f"    pandas  RFM (summary + ranks) {f['rfm_total_seconds']:.3f} s -> ratio "
              f"{f['rfm_total_seconds'] / mine['rfm_total_seconds']:.2f}x "
              f"(CPU {f['rfm_total_cpu'] / mine['rfm_total_cpu']:.2f}x)")
        agree = abs(f["clv_check"] - mine["clv_check"]) <= 1e-6 * max(1.0, abs(mine["clv_check"]))
        print(f"    pandas  CLV (summary + the same fits) {f['clv_seconds']:.3f} s -> ratio "
              f"{f['clv_seconds'] / mine['clv_seconds']:.2f}x (CPU {f['clv_cpu'] / mine['clv_cpu']:.2f}x); "
              f"same total CLV: {agree}")
    for what in baselines:
        if what in figures:
            f = figures[what]
            agree = abs(f["check"] - mine["check"]) <= 1e-6 * max(1.0, abs(mine["check"]))
            print(f"    {what:7s} {f['seconds']:.3f} s (+ {f['read_seconds']:.1f} s to read the purchases), "
                  f"peak {f.get('summary_peak_mb', f['peak_mb']):.0f} MB after the summary -> "
                  f"crmcore/{what} speed ratio "
                  f"{f['seconds'] / mine['seconds']:.2f}x (CPU {f['cpu'] / mine['cpu']:.2f}x) "
                  f"({(f['seconds'] + f['read_seconds']) / mine['seconds']:.2f}x counting the read); "
                  f"same figures: {agree}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL: also measure there")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fresh", action="store_true")
    parser.add_argument("--cutoff-days", type=int, default=0,
                        help="end the period this many days before the last purchase day: a "
                             "past as-of, which the kept totals cannot answer (the full query)")
    parser.add_argument("--direct", action="store_true",
                        help="write the purchases with the driver, not bulk_import (see build_direct)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    global AS_OF
    AS_OF -= timedelta(days=args.cutoff_days)
    if args.measure:
        print(json.dumps(measure(args.measure, args.url, args.repeat)))
        return
    tag = f"{args.customers}-{args.purchases}" + ("-direct" if args.direct else "")
    path = Path(tempfile.gettempdir()) / f"crmcore-bench-summary-{tag}.db"
    if args.fresh and path.exists():
        path.unlink()
    print(f"{args.customers:,} customers, about {args.purchases:,} purchases")
    if not path.exists():
        build(f"sqlite:///{path}", args.customers, args.purchases, args.direct)
    compare("SQLite", f"sqlite:///{path}", args.repeat, args.cutoff_days)
    if args.postgres:
        from psycopg import connect

        schema = f"bench_summary_{tag.replace('-', '_')}"
        with connect(args.postgres, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone()
            if args.fresh and exists:
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
                exists = None
        url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={schema}"
        if not exists:
            build(url, args.customers, args.purchases, args.direct)
            with connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'VACUUM ANALYZE "{schema}".purchases')
        compare("PostgreSQL", url, args.repeat, args.cutoff_days)


if __name__ == "__main__":
    main()
