"""The HTML report on a synthetic base: time and peak memory of `crmcore.report.write_report`.

    python benchmarks/bench_report.py                        # 20,000 customers
    python benchmarks/bench_report.py --customers 1000000    # the full figure (loading takes long)

The base is built with `bulk_import` (not timed), then the report is written in a fresh
process, whose peak RSS is the report's. Printed next to it, as the baseline measured
in the same run, is the time of the analytics the report calls (`rfm`, `fit_clv` +
`clv`, `repurchase`, `next_offers`, `service_quality`) run bare, so the ratio shows
what the report adds (aggregating, charting, the page) on top of the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import crmcore
from crmcore.report import write_report
from crmcore.synthetic import SyntheticBase


def measure(work: Any) -> dict[str, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return {"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def step_build(folder: Path, customers: int, seed: int) -> dict[str, float]:
    base = SyntheticBase(size=customers, seed=seed)
    with crmcore.open(f"sqlite:///{folder / 'crm.db'}", clock=lambda: base.as_of) as crm:
        return measure(lambda: base.load(crm))


def step_report(folder: Path, customers: int, seed: int) -> dict[str, float]:
    base = SyntheticBase(size=customers, seed=seed)
    with crmcore.open(f"sqlite:///{folder / 'crm.db'}", clock=lambda: base.as_of) as crm:
        figures = measure(lambda: write_report(crm, folder / "report.html"))
    return {**figures, "size_mb": (folder / "report.html").stat().st_size / 1e6}


def step_analytics(folder: Path, customers: int, seed: int) -> dict[str, float]:
    base = SyntheticBase(size=customers, seed=seed)
    with crmcore.open(f"sqlite:///{folder / 'crm.db'}", clock=lambda: base.as_of) as crm:
        a = crm.analytical

        def work() -> None:
            a.rfm()
            values = a.clv_by_currency()  # as the report does: the largest currency's model
            main = max(values, key=lambda code: len(values[code].customer_ids))
            a.fit_clv(currency=main)
            a.repurchase()
            a.next_offers()
            a.service_quality(by=("channel", "period"))
            a.service_quality(by=("service_point", "period"))

        return measure(work)


STEPS = {"build": step_build, "report": step_report, "analytics": step_analytics}


def child(step: str, folder: Path, customers: int, seed: int) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--step", step, "--dir", str(folder),
                           "--customers", str(customers), "--seed", str(seed)],
                          capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-only", action="store_true",
                        help="skip the quarter-size run (the full figure alone, when time is short)")
    parser.add_argument("--step", choices=tuple(STEPS), help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(STEPS[args.step](args.dir, args.customers, args.seed)))
        return
    print("HTML report on a synthetic SQLite base")
    header = ("customers", "report s", "analytics s", "ratio", "report peak RSS", "analytics RSS",
              "page size")
    print("  ".join(f"{h:>15}" for h in header))
    for customers in (args.customers,) if args.full_only else (args.customers // 4, args.customers):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            child("build", folder, customers, args.seed)
            report = child("report", folder, customers, args.seed)
            bare = child("analytics", folder, customers, args.seed)
        cells = (f"{customers:,}", f"{report['wall']:,.1f}", f"{bare['wall']:,.1f}",
                 f"{report['wall'] / bare['wall']:.2f}", f"{report['peak_rss_mb']:,.0f} MB",
                 f"{bare['peak_rss_mb']:,.0f} MB", f"{report['size_mb']:.2f} MB")
        print("  ".join(f"{c:>15}" for c in cells), flush=True)
    print("wall-clock seconds; ratio = report time / the same analytics run bare (the report's own cost\n"
          "is the part above 1). The page holds aggregates only, so its size barely grows with the base.")


if __name__ == "__main__":
    main()
