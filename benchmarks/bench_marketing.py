"""Marketing: audience freeze + holdout, response analysis in SQL, campaign send throughput.

    python benchmarks/bench_marketing.py [--customers N] [--purchases P] [--messages M]
                                         [--postgres URL]

1. Launch (freeze the audience as of now, draw a stratified holdout, write the
   members): customers/s, and Python's peak memory (tracemalloc) for the full
   audience against a tenth of it: flat memory means a ratio near 1.
2. Response analysis (`crm.marketing.analyse`, counting in one SQL query)
   against a hand-written SQL query giving the same counts: time ratio (aim <= 1.3).
3. Sending (`crm.marketing.send`: eligibility, compose, SMTP, member and timeline
   records) against plain smtplib over one connection to the same aiosmtpd
   sink: messages/s ratio (aim >= 0.7).

Defaults run in about a minute; `--customers 1000000 --purchases 10000000` is the full figure.
"""

from __future__ import annotations

import argparse
import random
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_email import raw_send, sink_server

import crmcore
from crmcore.marketing import analysis, audience
from crmcore.model import Channel, Consent, ConsentStatus, Customer, OrderLine, Purchase
from crmcore.sql.dialect import dialect_of

NOW = datetime(2026, 6, 1, tzinfo=UTC)
CREATED = NOW - timedelta(days=400)
LATER = NOW + timedelta(days=31)
"""The clock of the run: the campaign launched at NOW, its 30-day window is over."""


def base(count: int, purchases: int, seed: int = 1) -> Iterator[Customer | Purchase]:
    """Customers (gold/silver/bronze, e-mail consent) each followed by their purchases."""
    rnd = random.Random(seed)
    per = purchases / max(count, 1)
    consent = (Consent("marketing", Channel.EMAIL, ConsentStatus.GRANTED, CREATED, "bench"),)
    for i in range(count):
        customer = Customer(
            id=f"{i:012d}",
            name=f"Customer {i}",
            emails=(f"c{i}@example.org",),
            tier=rnd.choice(("gold", "silver", "bronze")),
            consents=consent,
            created_at=CREATED,
            updated_at=CREATED,
        )
        yield customer
        for j in range(int(per) + (rnd.random() < per - int(per))):
            at = NOW + timedelta(days=rnd.uniform(-30, 30))
            yield Purchase(
                f"{i:012d}-{j}",
                customer.id,
                at,
                (OrderLine("item", crmcore.Money(Decimal(rnd.randint(5, 200)))),),
            )


def launch(crm: crmcore.CRM, id: str, rule: str) -> tuple[float, int]:
    crm.marketing.create(
        id,
        id,
        channel="email",
        rule=rule,
        subject="Hi",
        text="Hello $name",
        control_fraction=0.1,
        seed="bench",
        stratify="tier",
        ends_at=NOW + timedelta(days=30),
        budget=crmcore.Money(Decimal(1000)),
    )
    start = time.perf_counter()
    launched = crm.marketing.launch(id, at=NOW)
    return time.perf_counter() - start, launched.target + launched.control


def peak(crm: crmcore.CRM, id: str, rule: str) -> int:
    tracemalloc.start()
    launch(crm, id, rule)
    _, top = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return top


def hand_written(dialect: str) -> str:
    """The same counts as `analysis.analysis_sql`, written the obvious way with joins."""
    ph = "?" if dialect == "sqlite" else "%s"
    stratum = "json_extract(m.doc, '$.stratum')" if dialect == "sqlite" else "(m.doc ->> 'stratum')"
    scale = "10000.0" if dialect == "sqlite" else "1.0"
    real = "REAL" if dialect == "sqlite" else "double precision"
    return f"""
        WITH spend AS (
            SELECT customer_id, CAST(sum(total) AS {real}) / {scale} AS revenue FROM purchases
            WHERE ordered_at >= {ph} AND ordered_at < {ph} AND currency = {ph} GROUP BY customer_id),
        contact AS (
            SELECT DISTINCT customer_id FROM interactions
            WHERE occurred_at >= {ph} AND occurred_at < {ph} AND direction = 'inbound'
              AND (outcome IS NULL OR outcome <> 'unsubscribed'))
        SELECT m.grp, {stratum}, count(*),
               sum(CASE WHEN s.customer_id IS NOT NULL OR c.customer_id IS NOT NULL THEN 1 ELSE 0 END),
               sum(CASE WHEN s.customer_id IS NOT NULL THEN 1 ELSE 0 END),
               sum(coalesce(s.revenue, 0)), sum(coalesce(s.revenue, 0) * coalesce(s.revenue, 0))
        FROM campaign_members m
        LEFT JOIN spend s ON s.customer_id = m.customer_id
        LEFT JOIN contact c ON c.customer_id = m.customer_id
        WHERE m.campaign_id = {ph} AND m.status IN ({", ".join(ph for _ in analysis.ANALYSED)})
        GROUP BY m.grp, {stratum}"""


def analyse(crm: crmcore.CRM, id: str, rounds: int) -> tuple[float, float]:
    """(crmcore seconds, hand-written seconds), medians over rounds; checks the counts agree."""
    with crm.transaction() as uow:  # as a send run leaves them: targets sent, controls held
        uow.cur.execute(  # type: ignore[attr-defined]
            "UPDATE campaign_members SET status = CASE grp WHEN 'control' THEN 'held' ELSE 'sent' END "
            f"WHERE campaign_id = {'?' if crm.storage.url.startswith('sqlite') else '%s'}",
            (id,),
        )
    campaign = crm.marketing.get(id)
    start, end = analysis.window(campaign, crm.clock())
    ours, theirs = [], []
    for _ in range(rounds):
        began = time.perf_counter()
        report = crm.marketing.analyse(id)
        ours.append(time.perf_counter() - began)
        with crm.reading() as uow:
            d = dialect_of(uow)
            assert d is not None
            params = (
                d.instant(start),
                d.instant(end),
                "EUR",
                d.instant(start),
                d.instant(end),
                id,
                *(str(s) for s in analysis.ANALYSED),
            )
            began = time.perf_counter()
            rows = uow.select(hand_written(d.name), params)  # type: ignore[attr-defined]
            theirs.append(time.perf_counter() - began)
    converters = sum(int(r[4]) for r in rows)
    assert converters == report.overall.target.converters + report.overall.control.converters, converters
    return statistics.median(ours), statistics.median(theirs)


def send(crm: crmcore.CRM, count: int, rounds: int) -> None:
    with crm.transaction():
        for i in range(count):
            crm.customers.add(
                Customer.new(
                    name=f"Sendee {i}",
                    emails=[f"s{i}@example.org"],
                    tier="gold",
                    created_at=CREATED,
                    consents=[Consent("marketing", Channel.EMAIL, ConsentStatus.GRANTED, CREATED, "bench")],
                )
            )
    ratios, ours_all, raw_all = [], [], []
    with sink_server() as port:
        smtp = smtplib.SMTP("127.0.0.1", port)
        mailer = crm.operational.mail.mailer(
            f"smtp://127.0.0.1:{port}",
            sender="Shop <news@shop.example>",
            unsubscribe="unsubscribe@shop.example",
        )
        for r in range(rounds):
            raw = raw_send(smtp, count)
            id = f"send{r}"
            crm.marketing.create(
                id,
                id,
                channel="email",
                rule='name >= "Sendee"',
                subject="$first_name, your $tier offer",
                text="Hello $name,\nyour offer.\n",
                html="<p>Hello <b>$name</b></p>",
                control_fraction=0.0,
                seed="b",
            )
            crm.marketing.launch(id)
            began = time.perf_counter()
            report = crm.marketing.send(id, mailer=mailer, page=200)
            ours = report.sent / (time.perf_counter() - began)
            assert report.sent == count, report.explain()
            ratios.append(ours / raw)
            ours_all.append(ours)
            raw_all.append(raw)
        smtp.quit()
        mailer.close()
    print(
        f"send      raw smtplib        {statistics.median(raw_all):9.0f} msg/s   (median of {rounds} rounds)"
    )
    print(
        f"send      crm.marketing.send {statistics.median(ours_all):9.0f} msg/s   "
        f"ratio {statistics.median(ratios):.2f} (aim >= 0.70)"
    )


def run(url: str, label: str, args: argparse.Namespace) -> None:
    print(f"-- {label}: {args.customers:,} customers, ~{args.purchases:,} purchases")
    with crmcore.open(url, clock=lambda: LATER) as crm:
        began = time.perf_counter()
        crm.bulk_import(base(args.customers, args.purchases))
        print(f"load      {time.perf_counter() - began:8.1f} s (bulk import, not measured against anything)")
        seconds, members = launch(crm, "all", 'tier in ("gold", "silver", "bronze")')
        print(f"launch    {members / seconds:9.0f} customers/s   ({members:,} members in {seconds:.1f} s)")
        quarter = f'tier in ("gold", "silver", "bronze") and id < "{args.customers // 4:012d}"'
        small = peak(crm, "quarter", quarter)
        full = peak(crm, "again", 'tier in ("gold", "silver", "bronze")')
        print(
            f"memory    peak {full / 2**20:6.1f} MiB for all, {small / 2**20:6.1f} MiB for a quarter: "
            f"ratio {full / max(small, 1):.2f} (flat: near 1 once a quarter exceeds a page of "
            f"{audience.PAGE:,})"
        )
        ours, theirs = analyse(crm, "all", args.rounds)
        print(
            f"analyse   crmcore {ours * 1000:8.1f} ms, hand-written SQL {theirs * 1000:8.1f} ms: "
            f"ratio {ours / theirs:.2f} (aim <= 1.3)"
        )
        if not args.skip_send:
            send(crm, args.messages, args.rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--purchases", type=int, default=200_000)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", help="also run on this PostgreSQL URL (a fresh schema is used)")
    parser.add_argument("--skip-send", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crmcore-bench-marketing-"))
    try:
        run(f"sqlite:///{workdir / 'crm.db'}", "SQLite", args)
        if args.postgres:
            schema = f"bench_marketing_{int(time.time())}"
            sep = "&" if "?" in args.postgres else "?"
            try:
                run(f"{args.postgres}{sep}schema={schema}", "PostgreSQL", args)
            finally:
                import psycopg

                with psycopg.connect(args.postgres, autocommit=True) as connection:
                    connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
