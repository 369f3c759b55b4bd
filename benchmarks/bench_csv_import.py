"""CSV import against `bulk_import` of the same records built in Python.

    python benchmarks/bench_csv_import.py                   # 20,000 customers, 200,000 purchases
    python benchmarks/bench_csv_import.py --customers 1000000 --purchases 10000000   # full size

The synthetic records go into one SQLite base with `crm.bulk_import` (the baseline: the
records already built in Python, one all-or-nothing transaction), are exported to
customers.csv and purchases.csv, and the files are imported into an empty base with
`crmcore.io.import_file` (parse, convert, look up, upsert, batch transactions,
checkpoints; the default batch: 1,000 records a transaction on the row path, regions of
40,000 lines on the columnar path). Each timed step runs in its own process, so its peak RSS is its own;
times are CPU seconds of the process (wall clock shown too). Prints records/s of both,
their ratio (aim: 0.7) and the import's peak memory, which should not grow with the file.
`--row-path` also imports the files with the columnar path off (`columnar=False`) and
prints that ratio too, measured in the same run. `--repeat N` times the import and
`bulk_import` N times each, alternated on the same files, and prints each pair with the
load average beside it, then the medians: on a shared machine a single run's ratio moves
by 0.1 or more.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import crmcore
from crmcore.io import export_file, import_file
from crmcore.synthetic import SyntheticBase


def records(customers: int, purchases: int, seed: int) -> Any:
    base = SyntheticBase(size=customers, seed=seed,
                         purchases_per_customer=1.25 * purchases / max(customers, 1))
    return itertools.chain(base.customers(), itertools.islice(base.purchases(), purchases))


def measure(work: Any) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    count = work()
    return {"records": count, "cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def step_bulk(folder: Path, customers: int, purchases: int, seed: int) -> dict[str, float]:
    items = list(records(customers, purchases, seed))  # built before the clock starts
    (folder / "bulk.db").unlink(missing_ok=True)  # a repeated run (the files are exported already)
    with crmcore.open(f"sqlite:///{folder / 'bulk.db'}") as crm:
        return measure(lambda: crm.bulk_import(items))


def step_export(folder: Path, *_: int) -> dict[str, float]:
    with crmcore.open(f"sqlite:///{folder / 'bulk.db'}") as crm:
        return measure(lambda: sum(export_file(crm, kind, folder / f"{kind}.csv")
                                   for kind in ("customers", "purchases")))


def step_import(folder: Path, *_: int, columnar: bool = True) -> dict[str, float]:
    (folder / "imported.db").unlink(missing_ok=True)
    with crmcore.open(f"sqlite:///{folder / 'imported.db'}") as crm:
        by_kind: dict[str, float] = {}

        def work() -> int:
            done = 0
            for kind in ("customers", "purchases"):
                cpu = time.process_time()
                result = import_file(crm, kind, folder / f"{kind}.csv", columnar=columnar)
                by_kind[f"{kind}_cpu"] = time.process_time() - cpu
                assert result.refused == 0, result.refusals[:3]
                done += result.inserted
            return done
        return {**measure(work), **by_kind}


def step_import_rows(folder: Path, *_: int) -> dict[str, float]:
    return step_import(folder, columnar=False)


STEPS = {"bulk": step_bulk, "export": step_export, "import": step_import, "import-rows": step_import_rows}


def child(step: str, folder: Path, customers: int, purchases: int, seed: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--step", step, "--dir", str(folder),
                           "--customers", str(customers), "--purchases", str(purchases),
                           "--seed", str(seed)],
                          capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def repeated(times: int, bulk: dict[str, float], imported: dict[str, float], folder: Path,
             *size: int) -> tuple[dict[str, float], dict[str, float]]:
    """`times` pairs (the first run's and more), alternated, each printed with the load
    average; returns the medians of each figure."""
    bulks, imports = [bulk], [imported]
    for turn in range(1, times):
        for step, runs in (("import", imports), ("bulk", bulks))[:: 1 if turn % 2 else -1]:
            load = os.getloadavg()[0]
            runs.append(child(step, folder, *size))
            print(f"  {step:>6} run {turn + 1}: {runs[-1]['cpu']:.2f} s CPU (load {load:.1f})", flush=True)
    for index, (one, other) in enumerate(zip(bulks, imports, strict=True)):
        print(f"  pair {index + 1}: ratio {one['cpu'] / other['cpu']:.2f}, import customers/purchases "
              f"{other['customers_cpu']:.1f}/{other['purchases_cpu']:.1f} s", flush=True)
    return ({key: statistics.median(run[key] for run in bulks) for key in bulk},
            {key: statistics.median(run[key] for run in imports) for key in imported})


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--row-path", action="store_true", help="also time the row path (columnar=False)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time import and bulk_import this many times each, alternated; print medians")
    parser.add_argument("--step", choices=tuple(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](args.dir, args.customers, args.purchases, args.seed)))
        return
    print("CSV import (crmcore.io.import_file) vs crm.bulk_import of the same records, SQLite")
    header = ("customers", "purchases", "bulk rec/s", "import rec/s", "ratio", "ratio (wall)",
              "import peak RSS", "bulk peak RSS", "CSV size", "import CPU c/p",
              *(("row path ratio",) if args.row_path else ()))
    print("  ".join(f"{h:>15}" for h in header))
    sizes = ((args.customers // 4, args.purchases // 4), (args.customers, args.purchases))
    for customers, purchases in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            bulk = child("bulk", folder, customers, purchases, args.seed)
            child("export", folder, customers, purchases, args.seed)
            size = sum((folder / f"{k}.csv").stat().st_size for k in ("customers", "purchases"))
            imported = child("import", folder, customers, purchases, args.seed)
            rows = child("import-rows", folder, customers, purchases, args.seed) if args.row_path else None
            if args.repeat > 1:
                bulk, imported = repeated(args.repeat, bulk, imported, folder,
                                          customers, purchases, args.seed)
        assert imported["records"] == bulk["records"], (imported, bulk)
        n = bulk["records"]
        cells = (f"{customers:,}", f"{int(n) - customers:,}", f"{n / bulk['cpu']:,.0f}",
                 f"{n / imported['cpu']:,.0f}", f"{bulk['cpu'] / imported['cpu']:.2f}",
                 f"{bulk['wall'] / imported['wall']:.2f}", f"{imported['peak_rss_mb']:,.0f} MB",
                 f"{bulk['peak_rss_mb']:,.0f} MB", f"{size / 1e6:,.1f} MB",
                 f"{imported['customers_cpu']:.1f}/{imported['purchases_cpu']:.1f} s")
        if rows is not None:
            cells += (f"{bulk['cpu'] / rows['cpu']:.2f}",)
        print("  ".join(f"{c:>15}" for c in cells), flush=True)
    print("records/s on CPU time; ratio = import rec/s / bulk rec/s (aim: 0.7). The bulk run holds its\n"
          "records in memory (built before the clock), the import streams: its peak RSS should not grow.")


if __name__ == "__main__":
    main()
