"""Lifetime-value benchmark: CDNOW fits (against the `lifetimes` package) and scoring a
synthetic customer base end to end from SQLite.

    python benchmarks/bench_clv.py                       # CDNOW + 1,000,000 customers
    python benchmarks/bench_clv.py --customers 100000    # smaller base
    bash benchmarks/setup-lifetimes.sh && python benchmarks/bench_clv.py   # with the reference
    python benchmarks/bench_clv.py --customers 100000 --postgres postgresql://postgres@127.0.0.1/test

1. CDNOW: the sample is loaded through crmcore into SQLite, the calibration summary
   is computed by SQL, then BG/NBD, Pareto/NBD and Gamma-Gamma are fitted (best of
   `--repeat` runs). If a Python with `lifetimes` is given (default:
   .venv-lifetimes/bin/python, made by setup-lifetimes.sh), its BetaGeoFitter,
   ParetoNBDFitter and GammaGammaFitter are timed on the same summary in a subprocess,
   and the ratio and parameter differences are printed.
2. Synthetic base: customers simulated from the BG/NBD and Gamma-Gamma processes
   (CDNOW's parameters), imported with `crm.bulk_import` into a SQLite file (kept
   and reused between runs, `--fresh` rebuilds it). Then, in a fresh process so its
   peak memory is its own: summary from SQLite, fit, P(alive), CLV, each timed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

import crmcore
from crmcore import Customer, Money, OrderLine, Purchase
from crmcore.scoring.clv import BetaGeo, GammaGamma, LifetimeModel, ParetoNBD, lifetime_value
from crmcore.scoring.datasets import cdnow
from crmcore.scoring.summary import Summary, summarize

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
CDNOW = next(
    (p for p in (REPO / ".." / "shared" / "data" / "cdnow", Path("/work/shared/data/cdnow"))
     if (p / "CDNOW_sample.txt").is_file()),
    None,
)
LIFETIMES_PYTHON = Path(__file__).resolve().parents[1] / ".venv-lifetimes" / "bin" / "python"
"""Made by benchmarks/setup-lifetimes.sh."""
START = datetime(2020, 1, 1, tzinfo=UTC)
TRUE = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "gamma": 15.44}


def best_of(repeat: int, task: Callable[[], T]) -> tuple[float, T]:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        result = task()
        times.append(time.perf_counter() - began)
    return min(times), result


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---- 1. CDNOW ----

LIFETIMES_SCRIPT = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
d = pd.read_csv(sys.argv[1]); repeat = int(sys.argv[2])
def best(task):
    times = []
    for _ in range(repeat):
        t = time.perf_counter(); out = task(); times.append(time.perf_counter() - t)
    return min(times), out
k = d[(d["frequency"] > 0) & (d["monetary"] > 0)]
t_bg, bg = best(lambda: BetaGeoFitter().fit(d["frequency"], d["recency"], d["T"]))
t_gg, gg = best(lambda: GammaGammaFitter().fit(k["frequency"], k["monetary"]))
t_pn, pn = best(lambda: ParetoNBDFitter().fit(d["frequency"], d["recency"], d["T"]))
print(json.dumps({"bg": [t_bg, dict(bg.params_)], "gg": [t_gg, dict(gg.params_)],
                  "pareto": [t_pn, dict(pn.params_)]}))
"""


LIFETIMES_SCORE_SCRIPT = """
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np, pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
data = np.load(sys.argv[1]); params = json.loads(sys.argv[2])
x, tx, T, m = (pd.Series(data[k]) for k in ("x", "tx", "T", "m"))
bg, gg = BetaGeoFitter(), GammaGammaFitter()
bg.params_ = pd.Series({k: params[k] for k in ("r", "alpha", "a", "b")})
gg.params_ = pd.Series({"p": params["p"], "q": params["q"], "v": params["gamma"]})
bg.predict = bg.conditional_expected_number_of_purchases_up_to_time  # what fit() would set
gg.customer_lifetime_value(bg, x[:10], tx[:10], T[:10], m[:10], time=12, discount_rate=0.01, freq="W")
t = time.perf_counter(); alive = bg.conditional_probability_alive(x, tx, T); t_alive = time.perf_counter() - t
t = time.perf_counter()
clv = gg.customer_lifetime_value(bg, x, tx, T, m, time=12, discount_rate=0.01, freq="W")
t_clv = time.perf_counter() - t
np.savez(sys.argv[3], p_alive=np.asarray(alive, dtype=float), clv=np.asarray(clv, dtype=float))
print(json.dumps({"p_alive_s": t_alive, "clv_s": t_clv}))
"""
WEEKS_PER_MONTH = 4.345
"""lifetimes' month when T is in weeks (`freq="W"`); used to compare CLV like for like."""


def compare_scoring(lifetimes: Path | None, x: Any, tx: Any, age: Any, m: Any, bg: BetaGeo,
                    gg: GammaGamma, folder: Path) -> None:
    """Time lifetimes' P(alive) and CLV on the same summary and fitted parameters, and check
    that both libraries give the same figures."""
    if lifetimes is None or not lifetimes.exists():
        return
    data, out = folder / "lifetimes-in.npz", folder / "lifetimes-out.npz"
    np.savez(data, x=x, tx=tx, T=age, m=m)
    params = json.dumps({**bg.params, **gg.params})
    done = subprocess.run([str(lifetimes), "-c", LIFETIMES_SCORE_SCRIPT, str(data), params, str(out)],
                          capture_output=True, text=True, timeout=7200)
    if done.returncode:
        print(f"  lifetimes scoring failed: {done.stderr.strip().splitlines()[-1:]}")
        return
    theirs_t = json.loads(done.stdout.strip().splitlines()[-1])
    theirs = np.load(out)
    lifetime_value(bg, gg, x[:10], tx[:10], age[:10], m[:10])  # warm up, like lifetimes
    began = time.perf_counter()
    alive = bg.p_alive(x, tx, age)
    t_alive = time.perf_counter() - began
    began = time.perf_counter()
    clv = lifetime_value(bg, gg, x, tx, age, m, periods=12, period=WEEKS_PER_MONTH)
    t_clv = time.perf_counter() - began
    n = len(x)
    print(f"  lifetimes P(alive) {theirs_t['p_alive_s']:.3f} s vs crmcore {t_alive:.3f} s "
          f"({theirs_t['p_alive_s'] / t_alive:.1f}x); largest difference "
          f"{np.max(np.abs(alive - theirs['p_alive'])):.1e}")
    print(f"  lifetimes CLV      {theirs_t['clv_s']:.3f} s vs crmcore {t_clv:.3f} s "
          f"({theirs_t['clv_s'] / t_clv:.1f}x, {n / t_clv:,.0f} customers/s); largest relative "
          f"difference {np.max(np.abs(clv - theirs['clv']) / np.maximum(np.abs(theirs['clv']), 1e-9)):.1e}")


def bench_cdnow(repeat: int, lifetimes: Path | None) -> None:
    if CDNOW is None:
        print("CDNOW data not found (shared/data/cdnow): skipped")
        return
    with tempfile.TemporaryDirectory() as tmp:
        crm = crmcore.open(f"sqlite:///{tmp}/cdnow.db")
        began = time.perf_counter()
        crm.bulk_import(cdnow(CDNOW / "CDNOW_sample.txt"))
        loaded = time.perf_counter() - began
        t_summary, s = best_of(repeat, lambda: _summary(crm, datetime(1997, 10, 1, tzinfo=UTC), 7))
        crm.close()
        print(f"CDNOW: import {loaded:.3f} s; calibration summary (SQL) {t_summary * 1000:.1f} ms "
              f"for {len(s)} customers")
        x, tx, age, m = (np.frombuffer(c) for c in (s.frequency, s.recency, s.T, s.monetary))
        t_bg, bg = best_of(repeat, lambda: BetaGeo.fit(x, tx, age))
        t_gg, gg = best_of(repeat, lambda: GammaGamma.fit(x, m))
        t_pn, pn = best_of(repeat, lambda: ParetoNBD.fit(x, tx, age))
        mine: dict[str, tuple[float, BetaGeo | GammaGamma | ParetoNBD]] = {
            "bg": (t_bg, bg), "gg": (t_gg, gg), "pareto": (t_pn, pn)}
        for key, (took, model) in mine.items():
            params = ", ".join(f"{k}={v:.4f}" for k, v in model.params.items())
            print(f"  crmcore {key:7s} fit {took * 1000:8.2f} ms  {params}")
        print(f"  crmcore BG/NBD log-likelihood {bg.log_likelihood:.2f} (published -9582.4)")
        if lifetimes is None or not lifetimes.exists():
            print("  lifetimes: no Python with it given (--lifetimes); no comparison")
            return
        path = Path(tmp) / "summary.csv"
        rows = np.column_stack((x, tx, age, m))
        np.savetxt(path, rows, delimiter=",", header="frequency,recency,T,monetary", comments="")
        done = subprocess.run([str(lifetimes), "-c", LIFETIMES_SCRIPT, str(path), str(repeat)],
                              capture_output=True, text=True, timeout=3600)
        if done.returncode:
            print(f"  lifetimes failed: {done.stderr.strip().splitlines()[-1:]}")
            return
        ref = json.loads(done.stdout.strip().splitlines()[-1])
        names = {"bg": {"r": "r", "alpha": "alpha", "a": "a", "b": "b"},
                 "gg": {"p": "p", "q": "q", "gamma": "v"},
                 "pareto": {"r": "r", "alpha": "alpha", "s": "s", "beta": "beta"}}
        for key, (took, model) in mine.items():
            their_time, their = ref[key]
            worst = max(abs(getattr(model, k) / their[n] - 1) for k, n in names[key].items())
            print(f"  lifetimes {key:7s} fit {their_time * 1000:8.2f} ms  -> crmcore is "
                  f"{their_time / took:6.1f}x faster; largest parameter difference {worst:.2e}")
        theirs = BetaGeo(**{k: ref["bg"][1][k] for k in ("r", "alpha", "a", "b")})
        print(f"  lifetimes BG/NBD log-likelihood {theirs.log_likelihoods(x, tx, age).sum():.2f}")
        compare_scoring(lifetimes, x, tx, age, m, bg, gg, Path(tmp))


def _summary(crm: crmcore.CRM, as_of: datetime, unit: float) -> Summary:
    with crm.transaction() as uow:
        return summarize(uow, as_of, unit_days=unit)


# ---- 2. synthetic base ----


def simulate(customers: int, seed: int, chunk: int = 20_000) -> Iterator[Customer | Purchase]:
    """Customers joining over a year, buying by BG/NBD, spending by Gamma-Gamma (in days)."""
    rng = np.random.default_rng(seed)
    horizon = 730
    for low in range(0, customers, chunk):
        n = min(chunk, customers - low)
        joined = rng.integers(0, 365, n)
        rate = rng.gamma(TRUE["r"], 1 / TRUE["alpha"], n) / 7  # per day
        drop = rng.beta(TRUE["a"], TRUE["b"], n)
        mean_spend = 1 / rng.gamma(TRUE["q"], 1 / TRUE["gamma"], n)  # 1 / nu; spend ~ Gamma(p, nu)
        ids = [f"s{low + i:08d}" for i in range(n)]
        yield from (Customer(id=c, name=c, created_at=START, updated_at=START) for c in ids)
        for i, cid in enumerate(ids):
            day, number = float(joined[i]), 0
            while day < horizon:
                spend = rng.gamma(TRUE["p"], mean_spend[i])
                yield Purchase(
                    id=f"{cid}-{number}", customer_id=cid, ordered_at=START + timedelta(days=day),
                    lines=(OrderLine("item", Money(Decimal(f"{max(spend, 0.01):.2f}"), "USD")),),
                )
                number += 1
                if number > 1 and rng.random() < drop[i]:  # may drop out after a repeat purchase
                    break
                day += rng.exponential(1 / rate[i]) if rate[i] > 0 else horizon


def build(url: str, customers: int, seed: int) -> None:
    began = time.perf_counter()
    crm = crmcore.open(url)
    count = crm.bulk_import(simulate(customers, seed))
    crm.close()
    print(f"synthetic base: imported {count:,} records through crm.bulk_import in "
          f"{time.perf_counter() - began:.1f} s -> {url}")


def score(url: str, keep: Path) -> dict[str, float]:
    """End to end on a stored base; run in its own process (see main). The summary is kept
    in `keep` for the comparison with lifetimes."""
    crm = crmcore.open(url)
    as_of = START + timedelta(days=730)
    marks = {"start": time.perf_counter()}
    base = _summary(crm, as_of, 7)
    marks["summary"] = time.perf_counter()
    model = LifetimeModel.fit(base)
    marks["fit"] = time.perf_counter()
    x, tx, age, m = (np.frombuffer(c) for c in (base.frequency, base.recency, base.T, base.monetary))
    alive = model.purchases.p_alive(x, tx, age)
    marks["p_alive"] = time.perf_counter()
    valuation = model.value(base)
    marks["clv"] = time.perf_counter()
    crm.close()
    np.savez(keep, x=x, tx=tx, T=age, m=m)
    return {
        "customers": len(base), "summary_s": marks["summary"] - marks["start"],
        "fit_s": marks["fit"] - marks["summary"], "p_alive_s": marks["p_alive"] - marks["fit"],
        "clv_s": marks["clv"] - marks["p_alive"], "total_s": marks["clv"] - marks["start"],
        "peak_mb": peak_mb(), "mean_p_alive": float(alive.mean()),
        "mean_clv": float(valuation.clv.mean()),
        **{k: float(v) for k, v in model.purchases.params.items()},
        **{k: float(v) for k, v in model.spend.params.items()},
    }


def bench_base(url: str, label: str, lifetimes: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        keep = Path(tmp) / "summary.npz"
        done = subprocess.run(
            [sys.executable, __file__, "--score", url, "--keep", str(keep)], capture_output=True,
            text=True, timeout=7200, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
        if done.returncode:
            raise SystemExit(done.stderr)
        f = json.loads(done.stdout.strip().splitlines()[-1])
        n = f["customers"]
        print(f"synthetic base, {n:,.0f} customers ({label}, end to end in a fresh process):")
        print(f"  summary (SQL)  {f['summary_s']:8.3f} s  ({n / f['summary_s']:,.0f} customers/s)")
        print(f"  fit BG/NBD+GG  {f['fit_s']:8.3f} s")
        print(f"  P(alive)       {f['p_alive_s']:8.3f} s  ({n / f['p_alive_s']:,.0f} customers/s)")
        print(f"  CLV (12 months){f['clv_s']:8.3f} s  ({n / f['clv_s']:,.0f} customers/s)")
        print(f"  total          {f['total_s']:8.3f} s; peak memory {f['peak_mb']:.0f} MB")
        print("  fitted vs simulated: " + ", ".join(
            f"{k}={f[k]:.3f} ({TRUE[k]})" for k in ("r", "alpha", "a", "b", "p", "q", "gamma")))
        saved = np.load(keep)
        bg = BetaGeo(*(f[k] for k in ("r", "alpha", "a", "b")))
        gg = GammaGamma(*(f[k] for k in ("p", "q", "gamma")))
        compare_scoring(lifetimes, saved["x"], saved["tx"], saved["T"], saved["m"], bg, gg, Path(tmp))


def bench_sqlite(customers: int, seed: int, folder: Path, fresh: bool, lifetimes: Path | None) -> None:
    """The base is kept in a file and reused by later runs of the same size and seed."""
    db = folder / f"crmcore-bench-clv-{customers}-{seed}.db"
    if fresh or not db.exists():
        for stale in folder.glob(db.name + "*"):
            stale.unlink()
        build(f"sqlite:///{db}", customers, seed)
    bench_base(f"sqlite:///{db}", "SQLite", lifetimes)


def bench_postgres(server: str, customers: int, seed: int) -> None:
    """The base is built in a schema of its own, dropped afterwards."""
    import psycopg

    schema = f"crmcore_bench_clv_{os.getpid()}"
    url = f"{server}{'&' if '?' in server else '?'}schema={schema}"
    try:
        build(url, customers, seed)
        bench_base(url, "PostgreSQL", None)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1997)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lifetimes", type=Path,
                        default=LIFETIMES_PYTHON if LIFETIMES_PYTHON.exists() else None)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--fresh", action="store_true", help="rebuild the synthetic base")
    parser.add_argument("--skip-cdnow", action="store_true")
    parser.add_argument("--postgres", metavar="URL",
                        help="also score a base built on this PostgreSQL server (in its own schema)")
    parser.add_argument("--score", help=argparse.SUPPRESS)
    parser.add_argument("--keep", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.score:
        print(json.dumps(score(args.score, args.keep)))
        return
    if not args.skip_cdnow:
        bench_cdnow(args.repeat, args.lifetimes)
    if args.customers > 0:
        bench_sqlite(args.customers, args.seed, args.folder, args.fresh, args.lifetimes)
        if args.postgres:
            bench_postgres(args.postgres, args.customers, args.seed)


if __name__ == "__main__":
    main()
