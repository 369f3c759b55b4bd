"""Segment rules on a large SQLite base: crmcore's pushed-down SQL against hand-written SQL.

    python benchmarks/bench_segments.py --customers 1000000 --purchases 10000000

The base is built once per path (rows written straight into crmcore's own
schema, the purchase index built after the load) and reused by later runs.
Prints the time of the rule through crmcore, of two hand-written queries of the
same meaning on the same file, their ratio, and the Python engine's speed.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import crmcore
from crmcore.segments import Context, select_ids
from crmcore.segments.evaluate import UowSource, members
from crmcore.segments.parse import checked
from crmcore.values import MONEY_SCALE, to_micros

AS_OF = datetime(2025, 1, 1, tzinfo=UTC)
RULE = ('tier = "platinum" and country = "FR" and lifecycle = "customer" '
        'and sum(purchases.total, last 365 days) > 1000')
TIERS = ("bronze", "silver", "gold", "platinum", None)
COUNTRIES = ("FR", "DE", "GB", "ES", "IT", "NL", "BE", "US")
LIFECYCLES = ("lead", "prospect", "customer", "former_customer")


def iso(moment: datetime) -> str:
    return moment.isoformat()


def customer_rows(count: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    created = AS_OF - timedelta(days=2000)
    for n in range(count):
        cid = f"c{n:09d}"
        tier = rng.choice(TIERS)
        country = rng.choice(COUNTRIES)
        lifecycle = rng.choice(LIFECYCLES)
        born = date(1940, 1, 1) + timedelta(days=rng.randrange(25_000))
        doc: dict[str, Any] = {
            "id": cid, "name": f"Customer {n}", "kind": "person", "emails": [], "phones": [],
            "addresses": [{"country": country, "lines": [], "city": "", "postal_code": "", "region": "",
                           "kind": "home"}],
            "birth_date": born.isoformat(), "language": None, "lifecycle": lifecycle, "tier": tier,
            "tags": [], "attributes": {}, "external_ids": {}, "consents": [], "service_point": None,
            "created_at": iso(created), "updated_at": iso(created), "version": 1,
        }
        yield (cid, 1, "person", f"Customer {n}", tier, lifecycle, country, born.isoformat(), None, None,
               to_micros(created), to_micros(created), json.dumps(doc, separators=(",", ":")))


def purchase_rows(count: int, customers: int, rng: random.Random) -> Iterator[tuple[Any, ...]]:
    span = 3 * 365 * 86_400
    for n in range(count):
        cid = f"c{rng.randrange(customers):09d}"
        at = AS_OF - timedelta(seconds=rng.randrange(span))
        amount = rng.randrange(100, 100_000) / 100
        doc = {
            "id": f"p{n:010d}", "customer_id": cid, "ordered_at": iso(at),
            "lines": [{"product": "sku", "unit_price": {"amount": f"{amount:.2f}", "currency": "EUR"},
                       "quantity": 1, "category": ""}],
            "channel": None, "service_point": None,
        }
        yield (f"p{n:010d}", cid, to_micros(at), None, None, "EUR", round(amount * 10**MONEY_SCALE),
               json.dumps(doc, separators=(",", ":")))


def build(path: Path, customers: int, purchases: int, seed: int) -> None:
    """Create the base at `path` unless it is already there with these sizes."""
    if path.exists():
        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM purchases)")
            if found.fetchone() == (customers, purchases):
                print(f"reusing {path}")
                return
        path.unlink()
    started = time.perf_counter()
    crmcore.open(f"sqlite:///{path}").close()  # crmcore creates its schema
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("DROP INDEX purchases_summary")
    conn.execute("BEGIN")
    conn.executemany(f"INSERT INTO customers VALUES ({', '.join('?' * 13)})", customer_rows(customers, rng))
    conn.executemany(f"INSERT INTO purchases VALUES ({', '.join('?' * 8)})",
                     purchase_rows(purchases, customers, rng))
    conn.execute("CREATE INDEX purchases_summary ON purchases (customer_id, ordered_at, currency, total)")
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    print(f"built {path}: {customers:,} customers, {purchases:,} purchases "
          f"in {time.perf_counter() - started:.0f} s")


HAND_CORRELATED = """
SELECT c.id FROM customers c
WHERE c.created_at <= ? AND c.tier = 'platinum' AND c.country = 'FR' AND c.lifecycle = 'customer'
  AND (SELECT sum(p.total) FROM purchases p
       WHERE p.customer_id = c.id AND p.ordered_at >= ? AND p.ordered_at <= ?) > ?
ORDER BY c.id
"""
HAND_JOIN = """
SELECT c.id FROM customers c JOIN purchases p ON p.customer_id = c.id
WHERE c.created_at <= ? AND c.tier = 'platinum' AND c.country = 'FR' AND c.lifecycle = 'customer'
  AND p.ordered_at >= ? AND p.ordered_at <= ?
GROUP BY c.id HAVING sum(p.total) > ?
ORDER BY c.id
"""


class Cached:
    """A Source that keeps what it read, to time the engine apart from storage reads."""

    def __init__(self, inner: UowSource) -> None:
        self.inner = inner
        self.seen: dict[tuple[str, str], list[Any]] = {}

    def records(self, source: str, customer_id: str) -> list[Any]:
        key = (source, customer_id)
        if key not in self.seen:
            self.seen[key] = self.inner.records(source, customer_id)
        return self.seen[key]

    def score(self, customer_id: str, scorer: str, as_of: datetime) -> Any:
        return self.inner.score(customer_id, scorer, as_of)


def best(runs: int, works: list[Callable[[], Any]]) -> list[tuple[float, Any]]:
    """The best time and the result of each work, taking turns so load on the machine hits all alike."""
    times: list[list[float]] = [[] for _ in works]
    results: list[Any] = [None] * len(works)
    for _ in range(runs):
        for index, work in enumerate(works):
            started = time.perf_counter()
            results[index] = work()
            times[index].append(time.perf_counter() - started)
    return [(min(spent), result) for spent, result in zip(times, results, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--purchases", type=int, default=1_000_000)
    parser.add_argument("--path", type=Path, default=None, help="the base (default: /tmp/crmcore-seg-C-P.db)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--python-customers", type=int, default=100_000,
                        help="customers the Python engine is timed on")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    path = args.path or Path(f"/tmp/crmcore-seg-{args.customers}-{args.purchases}.db")
    build(path, args.customers, args.purchases, args.seed)

    crm = crmcore.open(f"sqlite:///{path}")
    start = AS_OF - timedelta(days=365)
    params = (to_micros(AS_OF), to_micros(start), to_micros(AS_OF), 1000 * 10**MONEY_SCALE)
    raw = sqlite3.connect(path)
    raw.execute("SELECT count(*) FROM customers").fetchone()  # warm the cache for everyone

    (ours, found), (correlated, hand), (joined, hand_join) = best(args.runs, [
        lambda: crm.customers.ids_matching(RULE, as_of=AS_OF),
        lambda: [r[0] for r in raw.execute(HAND_CORRELATED, params)],
        lambda: [r[0] for r in raw.execute(HAND_JOIN, params)],
    ])
    assert found == hand == hand_join, "crmcore and the hand-written SQL disagree"

    rule, types = checked(RULE)
    with crm.transaction() as uow:
        sample = uow.customers.list(limit=args.python_customers)
        source = Cached(UowSource(uow))
        started = time.perf_counter()
        in_python = members(rule, types, Context(AS_OF), sample, source)
        python_time = time.perf_counter() - started
        started = time.perf_counter()
        again = members(rule, types, Context(AS_OF), sample, source)
        evaluation_time = time.perf_counter() - started
        in_sql = set(select_ids(uow, RULE, as_of=AS_OF))
    assert again == in_python
    assert all(c.id in in_sql for c in in_python)
    assert {c.id for c in in_python} == {i for i in in_sql if i <= sample[-1].id}

    print(f"rule: {RULE}")
    print(f"base: {args.customers:,} customers, {args.purchases:,} purchases ({path}); "
          f"{len(found):,} members")
    print(f"crmcore (pushed-down SQL):          {ours * 1000:9.1f} ms")
    print(f"hand-written SQL, correlated:       {correlated * 1000:9.1f} ms   ratio {ours / correlated:.2f}x")
    print(f"hand-written SQL, join + group by:  {joined * 1000:9.1f} ms   ratio {ours / joined:.2f}x")
    for label, spent in (("reading records from SQLite:", python_time),
                         ("records already in memory:", evaluation_time)):
        print(f"Python engine, {label:27} {len(sample):,} customers in {spent:.2f} s = "
              f"{len(sample) / spent:,.0f} customers/s")
    print(f"(best of {args.runs} runs each)")
    crm.close()


if __name__ == "__main__":
    main()
