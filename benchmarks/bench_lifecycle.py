"""What the data lifecycle costs: history on writes, duplicate detection, as-of segments.

    python benchmarks/bench_lifecycle.py                       # small, about a minute
    python benchmarks/bench_lifecycle.py --dedupe 100000        # the 100,000-customer scan
    python benchmarks/bench_lifecycle.py --url postgresql://... # writes and as-of on PostgreSQL
    python benchmarks/bench_lifecycle.py --only dedupe --dedupe 1000000 --url postgresql://...
    python benchmarks/bench_lifecycle.py --only as-of --customers 1000000 --direct [--url ...]

1. Writes: `crm.customers.change` in one transaction each, with history recorded,
   against the same calls through `Aggregates.update` as it was before history
   (no read of the record before the write, no change written), in alternated pairs
   (on/off, off/on, ...); each pair's ratio and the median, in CPU seconds of the process
   (SQLite works in it) and wall clock. Aim: ratio >= 0.7.
2. Duplicates: a synthetic base with 20% of people entered twice (`lifecycle.noisy`);
   pairs compared by blocking against all pairs, time, growth of the peak
   resident memory during the scan, precision/recall/F1 at the review threshold.
3. As-of: a rule over customers with `--edits` changes each, now (today's rows, SQL)
   against as of an instant before the last 1% of changes and as of the middle of the
   edits (every customer changed since): both read `customer_states` in SQL. Aim:
   within 2x. RULE matches nobody today and a third of the customers as of the middle,
   so the middle is also timed against MIRROR, which matches as many today. The edits
   are written through the CRM; with `--direct` (for a million customers) the rows the
   CRM would write (customers with the `since` of their row, history, superseded states)
   are generated and loaded in batches instead, documents carrying T0 as updated_at.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import crmcore
from crmcore.crm import Aggregates
from crmcore.lifecycle import duplicates, states
from crmcore.lifecycle.noisy import noisy_base
from crmcore.model import Customer

T0 = datetime(2025, 1, 1, tzinfo=UTC)
RULE = 'tier = "gold" and country = "FR" and tags contains "vip"'
MIRROR = 'tier = "gold" and country = "DE" and tags contains "vip"'
"""Matches today the third of the customers RULE matched as of the middle (RULE matches
nobody today): the current-state query doing the same work on the documents."""


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def open_crm(url: str | None, directory: Path, name: str, clock: Clock) -> crmcore.CRM:
    return crmcore.open(url or f"sqlite:///{directory}/{name}.db", clock=clock)


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def update_without_history(self: Aggregates[Any], item: Any) -> Any:
    """`Aggregates.update` as it was before history: no read before, no change written."""
    with self.crm.transaction() as uow:
        stored = self._repo(uow).update(self._checked(item))
        self.crm.emit(f"{self.topic}.updated", str(stored.id), version=int(stored.version))
        return stored


def writes(url: str | None, directory: Path, count: int, pairs: int) -> None:
    """`pairs` alternated pairs of runs (on/off, then off/on: a drifting machine load weighs
    on both sides alike), after one unmeasured pair that warms caches and imports; each
    pair's ratio of CPU seconds and of wall clock, and their medians."""

    def run(name: str, history: bool) -> tuple[float, float]:
        clock = Clock()
        original = Aggregates.update
        if not history:
            Aggregates.update = update_without_history  # type: ignore[method-assign]
        try:
            with open_crm(url, directory, name, clock) as crm:
                crm.bulk_import(Customer(f"{name}{n:05d}", "W", created_at=T0, updated_at=T0)
                                for n in range(100))
                wall, cpu = time.perf_counter(), time.process_time()
                for n in range(count):
                    crm.customers.change(f"{name}{n % 100:05d}", tier=("gold", "silver")[n % 2])
                return time.process_time() - cpu, time.perf_counter() - wall
        finally:
            Aggregates.update = original  # type: ignore[method-assign]

    run_id = f"{time.time_ns() % 10**9:09d}"  # ids of their own: a PostgreSQL schema may be reused
    run(f"w{run_id}wh", True), run(f"w{run_id}wb", False)  # warm-up, not counted
    cpu_ratios, wall_ratios = [], []
    for pair in range(pairs):
        order = (True, False) if pair % 2 == 0 else (False, True)
        done = {history: run(f"w{run_id}{'h' if history else 'b'}{pair}", history) for history in order}
        (on_cpu, on_wall), (off_cpu, off_wall) = done[True], done[False]
        cpu_ratios.append(off_cpu / on_cpu)
        wall_ratios.append(off_wall / on_wall)
        print(f"writes pair {pair + 1} ({'on/off' if order[0] else 'off/on'}): with history "
              f"{on_cpu:.2f} s CPU / {on_wall:.2f} s wall, without {off_cpu:.2f} s / {off_wall:.2f} s; "
              f"ratio CPU {cpu_ratios[-1]:.2f}, wall {wall_ratios[-1]:.2f}; "
              f"load average {os.getloadavg()[0]:.1f}")
    print(f"writes: {count} changes, {pairs} alternated pairs; ratio with history / without, median: "
          f"CPU {statistics.median(cpu_ratios):.2f} (min {min(cpu_ratios):.2f}, max {max(cpu_ratios):.2f}), "
          f"wall {statistics.median(wall_ratios):.2f} (aim >= 0.7); load average {os.getloadavg()[0]:.1f}")


def dedupe(people: int, url: str | None = None) -> None:
    """The scan over an in-memory base, or (with `url`) `crm.lifecycle.duplicates` over the
    base imported into that storage: read page by page, pairs kept from the review
    threshold (at a million, keeping every compared pair would take gigabytes)."""
    base = noisy_base(int(people / 1.2), 0.2, seed=7)
    total = len(base.customers)
    threshold = 0.0
    crm = None
    if url is not None:
        crm = crmcore.open(url)
        loaded = timed(lambda: crm.bulk_import(base.customers))
        print(f"duplicates: {total:,} customers imported into {crm.storage!r} in {loaded:.0f} s")
        threshold = duplicates.REVIEW
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    if crm is None:
        scan = duplicates.scan(base.customers, threshold=threshold)
    else:
        scan = crm.lifecycle.duplicates(threshold=threshold)
        crm.close()
    elapsed = time.perf_counter() - started
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    every = total * (total - 1) // 2
    review = {(c.left, c.right) for c in scan.pairs if c.score >= duplicates.REVIEW}
    hits = len(review & base.duplicates)
    precision, recall = hits / max(1, len(review)), hits / len(base.duplicates)
    print(f"duplicates: {total:,} customers, {scan.compared:,} pairs compared of {every:,} "
          f"({scan.compared / every:.5%}), {elapsed:.1f} s ({scan.compared / elapsed:,.0f} pairs/s), "
          f"peak RSS growth {peak / 2**20:,.0f} MiB (pairs kept from {threshold}); "
          f"at review {duplicates.REVIEW}: precision {precision:.3f}, "
          f"recall {recall:.3f}, F1 {2 * precision * recall / (precision + recall):.3f}")


def edited(n: int, round: int) -> dict[str, Any]:
    """Customer n's fields after edit `round` (-1: as imported)."""
    if round < 0:
        return {}
    return {"tier": ("gold", "silver")[(n + round) % 2], "tags": {"vip"} if n % 3 else set(),
            "addresses": (crmcore.PostalAddress(("FR", "DE")[n % 2]),)}


def load_directly(crm: crmcore.CRM, customers: int, edits: int) -> tuple[datetime, datetime]:
    """The rows `crm.customers.change` would write for `edits` rounds over every customer,
    generated from one template per distinct record and loaded in batches; returns the
    instants (middle, before the last 1%)."""
    from crmcore_adapters.storage import sql

    def at(round: int, n: int) -> datetime:
        return changed(customers, round, n)

    def since(round: int, n: int) -> datetime:
        return states.EARLIEST if round == 0 else at(round - 1, n)

    templates: dict[tuple[Any, ...], tuple[tuple[Any, ...], str]] = {}

    def row(n: int, round: int, dialect: Any) -> tuple[Any, ...]:
        fields = edited(n, round)
        key = (fields.get("tier"), bool(fields.get("tags")), n % 2 if fields else None, round)
        if key not in templates:
            template = Customer("@ID@", "A", created_at=T0, updated_at=T0, version=round + 2, **fields)
            templates[key] = (sql.CUSTOMERS.row(dialect, template), crmcore.serialization.dumps(template))
        values, doc = templates[key]
        id = f"a{n:07d}"
        return (id, *values[1:-1], dialect.json_column(doc.replace("@ID@", id)))

    batch = 20_000
    names = ("id", *sql.CUSTOMERS.columns, "doc", "since")  # today's row valid since the last change
    for start in range(0, customers, batch):
        with crm.storage.transaction() as uow:
            cur, d = uow.cur, uow.dialect  # type: ignore[attr-defined]
            insert = (f"INSERT INTO customers ({', '.join(map(d.quote, names))}) "
                      f"VALUES ({', '.join('?' for _ in names)})")
            ids = range(start, min(customers, start + batch))
            d.executemany(cur, insert, [(*row(n, edits - 1, d), d.instant(at(edits - 1, n))) for n in ids])
            for round in range(edits):  # the change first: SQLite keeps its state in its row
                d.executemany(cur, 'INSERT INTO history (kind, aggregate_id, version, op, "at", diff, actor) '
                              "VALUES (?, ?, ?, ?, ?, ?, ?)",
                              [("customer", f"a{n:07d}", round + 2, "updated", d.instant(at(round, n)),
                                d.json_column('{"tier":[null,"gold"]}'), None) for n in ids])
                sql.insert_state(cur, d, [(d.instant(at(round, n)), d.instant(since(round, n)), "updated",
                                           *row(n, round - 1, d))
                                          for n in ids])
    with crm.storage.transaction() as uow:
        uow.cur.execute("ANALYZE")  # type: ignore[attr-defined]  # same spelling in SQLite and PostgreSQL
    return instants(customers, edits)


def vacuumed(url: str) -> None:
    """VACUUM the states and customers of a PostgreSQL base after a load, as autovacuum does
    once 1% of the states are new (the storage sets that on them): an index-only scan then
    reads no row of the pages the visibility map knows all-visible. Outside a transaction,
    so on a connection of its own (the URL's options but crmcore's own)."""
    import psycopg

    from crmcore_adapters.storage.postgres import OWN_OPTIONS

    parts = urlsplit(url)
    options = parse_qsl(parts.query)
    schema = dict(options).get("schema", "public")
    kept = urlencode([(k, v) for k, v in options if k not in OWN_OPTIONS])
    with psycopg.connect(urlunsplit(parts._replace(query=kept)), autocommit=True,
                         options=f"-c search_path={schema}") as conn:
        conn.execute("VACUUM (ANALYZE) customer_states, customers, history")


def changed(customers: int, round: int, n: int) -> datetime:
    """When `load_directly` says customer n changed in edit `round`."""
    return T0 + timedelta(seconds=1 + round * customers + n)


def instants(customers: int, edits: int) -> tuple[datetime, datetime]:
    """The middle of the edits, and the instant before the last 1% of changes."""
    return (changed(customers, edits // 2, 0),
            changed(customers, edits - 1, customers - max(1, customers // 100)))


def as_of(url: str | None, directory: Path, customers: int, edits: int, direct: bool = False,
          loaded: bool = False) -> None:
    clock = Clock()
    with open_crm(url, directory, "as_of", clock) as crm:
        started = time.perf_counter()
        if loaded:  # the base a former `--direct` run left at `url`
            middle, recent = instants(customers, edits)
        elif direct:
            middle, recent = load_directly(crm, customers, edits)
        if loaded or direct:  # "now" after the loaded changes (they do not move the clock)
            clock.now = changed(customers, edits, 0)
        else:
            middle, recent = write_through_crm(crm, clock, customers, edits)
        if url is not None and url.startswith("postgres") and not loaded:
            vacuumed(url)
        built = time.perf_counter() - started
        now = min(timed(lambda: crm.customers.ids_matching(RULE)) for _ in range(3))
        past = min(timed(lambda: crm.customers.ids_matching(RULE, as_of=middle)) for _ in range(3))
        late = min(timed(lambda: crm.customers.ids_matching(RULE, as_of=recent)) for _ in range(3))
        mirror = min(timed(lambda: crm.customers.ids_matching(MIRROR)) for _ in range(3))
        print(f"as-of: {customers:,} customers x {edits} edits (written in {built:.1f} s), best of three; "
              f"rule now {now * 1000:,.1f} ms; as of before the last 1% of changes {late * 1000:,.1f} ms "
              f"({late / now:.1f}x); as of the middle (every customer changed since) "
              f"{past * 1000:,.0f} ms ({past / now:.1f}x); aim <= 2x; a rule matching as many "
              f"today as that one then ({MIRROR}) {mirror * 1000:,.0f} ms (middle: {past / mirror:.1f}x)")


def write_through_crm(
    crm: crmcore.CRM, clock: Clock, customers: int, edits: int
) -> tuple[datetime, datetime]:
    crm.bulk_import(Customer(f"a{n:07d}", "A", created_at=T0, updated_at=T0) for n in range(customers))
    middle = recent = T0
    for round in range(edits):
        if round == edits // 2:
            middle = clock.now
        with crm.transaction():
            for n in range(customers):
                if round == edits - 1 and n == customers - max(1, customers // 100):
                    recent = clock.now
                crm.customers.change(f"a{n:07d}", **edited(n, round))
    return middle, recent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="storage URL for writes and as-of (default: SQLite in a temp dir)")
    parser.add_argument("--writes", type=int, default=3000)
    parser.add_argument("--pairs", type=int, default=10, help="alternated pairs of write runs")
    parser.add_argument("--dedupe", type=int, default=20_000, help="customers in the duplicate scan")
    parser.add_argument("--customers", type=int, default=2000, help="customers in the as-of base")
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--direct", action="store_true",
                        help="load the as-of base's rows directly (for a million customers), "
                             "not through the CRM")
    parser.add_argument("--loaded", action="store_true",
                        help="time the as-of queries on the base a former --direct run left at --url "
                             "(same --customers and --edits), without loading it again")
    parser.add_argument("--only", choices=("writes", "dedupe", "as-of"), help="run one part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as directory:
        if args.only in (None, "writes"):
            writes(args.url, Path(directory), args.writes, args.pairs)
        if args.only in (None, "dedupe"):
            dedupe(args.dedupe, args.url if args.only == "dedupe" else None)
        if args.only in (None, "as-of"):
            as_of(args.url, Path(directory), args.customers, args.edits, args.direct, args.loaded)


if __name__ == "__main__":
    main()
