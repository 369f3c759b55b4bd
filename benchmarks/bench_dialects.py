"""Segment and analytics queries on the example DuckDB dialect against the same queries on
SQLite, same data (the baseline): what a backend brings, as a ratio.

    python benchmarks/bench_dialects.py                    # 2,000 customers, a few seconds per query set
    python benchmarks/bench_dialects.py --customers 50000  # a larger base

Both bases are files in a temporary directory, loaded with the same
`crmcore.synthetic.SyntheticBase` through `crm.bulk_import`; each query runs
`--repeat` times and the best time counts. The answers are compared too: a ratio
of different answers would mean nothing. Needs `pip install -e examples/crmcore-duckdb`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import crmcore
from crmcore.synthetic import AS_OF, SyntheticBase

RULES = (
    'tier in ("gold", "platinum") and country = "FR"',
    "sum(purchases.total, last 365 days) > 500",
    "count(purchases, last 90 days) = 0 and count(purchases) >= 3",
    'tags contains "newsletter" and consent.newsletter.email',
    'count(interactions where family = "collaborative", last 365 days) >= 2',
)


def queries(crm: crmcore.CRM) -> dict[str, Callable[[], Any]]:
    found: dict[str, Callable[[], Any]] = {
        f"segment {n + 1}": (lambda rule=rule: crm.customers.ids_matching(rule, as_of=AS_OF))
        for n, rule in enumerate(RULES)
    }
    found["summary (CLV input)"] = lambda: list(crm.analytical.summary(AS_OF).total)
    found["rfm"] = lambda: crm.analytical.rfm(AS_OF)
    found["service quality"] = lambda: crm.analytical.service_quality(AS_OF)
    found["cross-sell rules"] = lambda: crm.analytical.cross_sell_rules(AS_OF, min_support=0.005)
    return found


def best(run: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, answer = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        answer = run()
        times.append(time.perf_counter() - start)
    return min(times), answer


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = SyntheticBase(size=args.customers, seed=3)
    with tempfile.TemporaryDirectory() as folder:
        crms = {
            "sqlite": crmcore.open(f"sqlite:///{Path(folder) / 'crm.db'}", clock=lambda: AS_OF),
            "duckdb": crmcore.open(f"duckdb:///{Path(folder) / 'crm.duckdb'}", clock=lambda: AS_OF),
        }
        print(f"{args.customers:,} customers (seed 3), best of {args.repeat}; ratio = duckdb / sqlite time")
        for name, crm in crms.items():
            start = time.perf_counter()
            base.load(crm)
            print(f"load into {name}: {time.perf_counter() - start:.1f} s")
        with crms["sqlite"].reading() as uow:
            purchases = uow.purchases.count()
        print(f"{purchases:,} purchases\n")
        print(f"{'query':<22}{'sqlite s':>10}{'duckdb s':>10}{'ratio':>8}")
        total = {"sqlite": 0.0, "duckdb": 0.0}
        plans = {name: queries(crm) for name, crm in crms.items()}
        for query in plans["sqlite"]:
            timed = {name: best(plans[name][query], args.repeat) for name in crms}
            if timed["sqlite"][1] != timed["duckdb"][1]:
                raise SystemExit(f"{query}: the two backends disagree; no ratio to report")
            for name in crms:
                total[name] += timed[name][0]
            ratio = timed["duckdb"][0] / timed["sqlite"][0]
            print(f"{query:<22}{timed['sqlite'][0]:>10.3f}{timed['duckdb'][0]:>10.3f}{ratio:>8.2f}")
        print(f"{'all':<22}{total['sqlite']:>10.3f}{total['duckdb']:>10.3f}"
              f"{total['duckdb'] / total['sqlite']:>8.2f}")
        for crm in crms.values():
            crm.close()


if __name__ == "__main__":
    main()
