"""Sales analytics and quote pricing: crmcore's SQL against hand-written SQL.

    python benchmarks/bench_sales.py                                   # 20,000 opportunities
    python benchmarks/bench_sales.py --opportunities 1000000           # the full figure
    python benchmarks/bench_sales.py --postgres postgresql://postgres@127.0.0.1/test

Every opportunity has six history steps (opening plus 5 changes: three moves, a
close-date push, then won or lost), written straight into crmcore's
`opportunity_history` table (the table its analytics read). Prints, as of an
instant in the middle of the history: the time of `crm.sales.cycle` plus
`crm.sales.forecast` against hand-written queries for the same figures (a
different formulation: the last step by `max(seq)` and a self-join instead of
window functions), their ratio (aim: 1.3 or less), the peak Python memory of the
crmcore run, and quote lines priced per second through the price book.
"""

from __future__ import annotations

import argparse
import random
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import crmcore
from crmcore.exchange import Rate
from crmcore.model import PriceBook, Product
from crmcore.model.sales import default_probability
from crmcore.values import MONEY_SCALE, to_micros

START = datetime(2024, 1, 1, tzinfo=UTC)
AS_OF = datetime(2024, 7, 1, tzinfo=UTC)
OWNERS = ("ann", "bob", "cho", "dev", "eve", "fay")
PATH = ("qualification", "needs_analysis", "proposal", "negotiation")


def history(count: int, seed: int, sqlite: bool) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed)
    for n in range(count):
        at = START + timedelta(seconds=rng.randrange(300 * 86_400))
        owner = rng.choice(OWNERS)
        currency = "EUR" if rng.random() < 0.7 else "USD"
        amount = Decimal(rng.randrange(10_000, 5_000_000)) / 100
        stored: Any = int(amount * 10**MONEY_SCALE) if sqlite else amount
        close = (at + timedelta(days=rng.randrange(20, 120))).date()
        stages = [PATH[0], PATH[1 + rng.randrange(2)], "proposal", "negotiation", "negotiation",
                  "won" if rng.random() < 0.55 else "lost"]
        for seq, stage in enumerate(stages):
            if seq == 4:
                close += timedelta(days=rng.randrange(1, 30))
            if seq == 5:
                close = (at + timedelta(seconds=1)).date()
            yield (f"o{n:09d}", seq, to_micros(at) if sqlite else at, "default", stage,
                   default_probability(stage), close.isoformat(), currency, stored, owner, None)
            at += timedelta(seconds=rng.randrange(3_600, 20 * 86_400))


INSERT = ("INSERT INTO opportunity_history (opportunity_id, seq, at, pipeline, stage, probability, "
          "close_date, currency, amount, owner, team) VALUES ({})")


def load(crm: crmcore.CRM, count: int, seed: int) -> None:
    with crm.transaction() as uow:
        dialect = getattr(uow, "dialect")  # noqa: B009
        cur = uow.cur  # type: ignore[attr-defined]
        marks = ", ".join(["?" if dialect == "sqlite" else "%s"] * 11)
        batch: list[tuple[Any, ...]] = []
        for row in history(count, seed, dialect == "sqlite"):
            batch.append(row)
            if len(batch) >= 50_000:
                cur.executemany(INSERT.format(marks), batch)
                batch.clear()
        cur.executemany(INSERT.format(marks), batch)
    if dialect == "postgresql":
        with crm.transaction() as uow:
            uow.cur.execute("ANALYZE opportunity_history")  # type: ignore[attr-defined]


def hand_written(dialect: str) -> list[str]:
    """The same figures, written by hand without crmcore's CTE."""
    sqlite = dialect == "sqlite"
    month = "substr(h.close_date, 1, 7)" if sqlite else "to_char(h.close_date, 'YYYY-MM')"
    days = ("(COALESCE(n.at, :t) - h.at) / 86400000000.0" if sqlite
            else "extract(epoch from (COALESCE(n.at, %(t)s) - h.at)) / 86400.0")
    t = ":t" if sqlite else "%(t)s"
    last = (f"(SELECT opportunity_id, max(seq) AS seq, min(at) AS opened FROM opportunity_history "
            f"WHERE at <= {t} GROUP BY opportunity_id) l")
    won_days = ("(h.at - l.opened) / 86400000000.0" if sqlite
                else "extract(epoch from (h.at - l.opened)) / 86400.0")
    close_days = ("julianday(h.close_date) - julianday(p.close_date)" if sqlite
                  else "h.close_date - p.close_date")
    return [
        f"SELECT {month}, h.owner, h.currency, count(*), "
        "sum(CASE WHEN h.stage = 'won' THEN h.amount ELSE 0 END), "
        "sum(CASE WHEN h.stage <> 'won' THEN h.amount ELSE 0 END), "
        "sum(CASE WHEN h.stage <> 'won' AND h.probability >= 0.4 THEN h.amount ELSE 0 END), "
        "sum(CASE WHEN h.stage <> 'won' AND h.probability >= 0.7 THEN h.amount ELSE 0 END), "
        "sum(CASE WHEN h.stage <> 'won' THEN h.amount * h.probability ELSE 0 END) "
        f"FROM opportunity_history h JOIN {last} ON h.opportunity_id = l.opportunity_id "
        "AND h.seq = l.seq WHERE h.stage <> 'lost' GROUP BY 1, 2, 3",
        f"SELECT h.stage, count(DISTINCT h.opportunity_id), sum({days}) FROM opportunity_history h "
        "LEFT JOIN opportunity_history n ON n.opportunity_id = h.opportunity_id AND n.seq = h.seq + 1 "
        f"AND n.at <= {t} WHERE h.at <= {t} AND h.stage NOT IN ('won', 'lost') GROUP BY h.stage",
        "SELECT r, count(*) FROM (SELECT opportunity_id, max(CASE stage WHEN 'qualification' THEN 0 "
        "WHEN 'needs_analysis' THEN 1 WHEN 'proposal' THEN 2 WHEN 'negotiation' THEN 3 "
        f"WHEN 'won' THEN 4 END) AS r FROM opportunity_history WHERE at <= {t} "
        "GROUP BY opportunity_id) f WHERE r IS NOT NULL GROUP BY r",
        "SELECT CASE WHEN h.stage IN ('won', 'lost') THEN h.stage ELSE 'open' END, h.currency, "
        f"count(*), sum(h.amount), sum({won_days}) FROM opportunity_history h JOIN {last} "
        "ON h.opportunity_id = l.opportunity_id AND h.seq = l.seq GROUP BY 1, 2",
        f"SELECT count(DISTINCT h.opportunity_id), sum({close_days}) FROM opportunity_history h "
        "JOIN opportunity_history p ON p.opportunity_id = h.opportunity_id AND p.seq = h.seq - 1 "
        f"WHERE h.at <= {t} AND h.stage NOT IN ('won', 'lost') AND h.close_date > p.close_date",
    ]


def best(repeat: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


def analytics(crm: crmcore.CRM, repeat: int) -> None:
    def ours() -> object:
        return crm.sales.cycle("default", AS_OF), crm.sales.forecast(AS_OF, by="owner")

    with crm.reading() as uow:
        dialect = getattr(uow, "dialect")  # noqa: B009
    queries = hand_written(dialect)
    params = {"t": to_micros(AS_OF) if dialect == "sqlite" else AS_OF}

    def theirs() -> object:
        with crm.reading() as uow:
            cur = uow.cur  # type: ignore[attr-defined]
            return [cur.execute(q, params).fetchall() for q in queries]

    ours()
    theirs()  # warm the caches of both
    mine = best(repeat, ours)
    hand = best(repeat, theirs)
    tracemalloc.start()
    ours()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  crmcore cycle + forecast: {mine * 1000:9.1f} ms")
    print(f"  hand-written SQL:         {hand * 1000:9.1f} ms")
    print(f"  ratio crmcore / hand:     {mine / hand:9.2f}  (aim: <= 1.3)")
    print(f"  peak Python memory (crmcore run): {peak / 2**20:.1f} MiB")


def pricing(lines: int) -> None:
    crm = crmcore.open("memory://")
    rng = random.Random(3)
    products = [Product(f"sku{n:05d}", f"Product {n}", f"cat{n % 20}") for n in range(2_000)]
    for product in products:
        crm.sales.catalogue.add_product(product)
    crm.sales.catalogue.add_price_book(PriceBook("eur", "EUR", {
        p.id: Decimal(rng.randrange(100, 100_000)) / 100 for p in products}))
    crm.sales.catalogue.add_price_book(PriceBook("eur-gold", "EUR", {
        p.id: Decimal(rng.randrange(100, 100_000)) / 100 for p in products[::3]}, tier="gold"))
    crm.rates.load([Rate("EUR", "USD", date(2024, 1, 1), Decimal("1.0871"))])
    for currency in ("EUR", "USD"):
        prices = crm.sales.catalogue.price_list(currency, "gold", date(2024, 6, 1))
        items = [{"product": rng.choice(products).id, "quantity": rng.randrange(1, 50),
                  "discount": "0.05", "tax_rate": "0.2"} for _ in range(lines)]
        began = time.perf_counter()
        for index, item in enumerate(items):
            prices.line(item, index)
        spent = time.perf_counter() - began
        note = "converted from EUR" if currency == "USD" else "tier book, then currency book"
        print(f"  quote lines priced in {currency} ({note}): {lines / spent:,.0f} lines/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=20_000)
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--sqlite", default="sqlite:///:memory:",
                        help="SQLite URL (a file path keeps the base between runs; default: in memory)")
    parser.add_argument("--postgres", help="also run on this PostgreSQL server (a fresh schema)")
    args = parser.parse_args()
    targets = [("SQLite", args.sqlite)]
    if args.postgres:
        schema = f"bench_sales_{uuid.uuid4().hex[:12]}"
        joiner = "&" if "?" in args.postgres else "?"
        targets.append(("PostgreSQL", f"{args.postgres}{joiner}schema={schema}"))
    print(f"{args.opportunities:,} opportunities x 6 history steps, as of {AS_OF.date()}")
    for name, url in targets:
        crm = crmcore.open(url)
        try:
            began = time.perf_counter()
            load(crm, args.opportunities, args.seed)
            print(f"{name}: loaded in {time.perf_counter() - began:.1f} s")
            analytics(crm, args.repeat)
        finally:
            if name == "PostgreSQL":
                with crm.transaction() as uow:
                    uow.cur.execute(f"DROP SCHEMA {url.rsplit('schema=', 1)[1]} CASCADE")  # type: ignore[attr-defined]
            crm.close()
    print("Quote pricing through the price book:")
    pricing(args.lines)


if __name__ == "__main__":
    main()
