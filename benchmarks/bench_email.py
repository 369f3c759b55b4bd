"""E-mail throughput: crmcore against the plain standard library, on loopback servers.

    python benchmarks/bench_email.py [--messages N] [--storage sqlite|memory]

Out: messages/s through `Mailer.send` (template, consent check, send, timeline
write) against plain `smtplib.send_message` of a comparable `EmailMessage` over
one connection to the same aiosmtpd server; the aim is 0.7 of raw or better.
In: messages/s through `Poller.poll` (fetch, parse, match, log, cursor) against
a plain imaplib loop fetching the same messages from a private dovecot (root only).
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.email.servers import MAIL_UID, PASSWORD, USER, Dovecot, free_port

import crmcore
from crmcore.operational.mail import Mailer, Template

TEMPLATE = Template(
    subject="$first_name, your $tier offer",
    text="Hello $name,\nyour personal code is $code.\nSee you soon.\n",
    html="<p>Hello <b>$name</b>,</p><p>your personal code is $code.</p>",
    name="bench",
)


@contextmanager
def sink_server() -> Iterator[int]:
    """aiosmtpd in its own process (so it does not share our interpreter lock), accepting all."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("aiosmtpd did not start") from None
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait()


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds else float("inf")


def customers(crm: crmcore.CRM, count: int) -> list[str]:
    ids = []
    for i in range(count):
        c = crm.customers.add(crmcore.Customer.new(name=f"Customer {i}", emails=[f"c{i}@example.org"],
                                                   tier="gold"))
        crm.customers.set_consent(c.id, "marketing", crmcore.Channel.EMAIL, crmcore.ConsentStatus.GRANTED,
                                  source="bench")
        ids.append(c.id)
    return ids


def raw_send(smtp: smtplib.SMTP, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        message = EmailMessage()
        message["From"] = "Shop <news@shop.example>"
        message["To"] = f"Customer {i} <c{i}@example.org>"
        message["Subject"] = "Customer, your gold offer"
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(domain="shop.example")
        message.set_content(f"Hello Customer {i},\nyour personal code is {i}.\nSee you soon.\n")
        message.add_alternative(f"<p>Hello <b>Customer {i}</b>,</p><p>your code is {i}.</p>",
                                subtype="html")
        smtp.send_message(message)
    return rate(count, time.perf_counter() - start)


def crm_send(mailer: Mailer, ids: list[str]) -> float:
    start = time.perf_counter()
    for i, customer_id in enumerate(ids):
        mailer.send(customer_id, TEMPLATE, purpose="marketing", context={"code": i}).raise_for_status()
    return rate(len(ids), time.perf_counter() - start)


def crm_send_many(mailer: Mailer, ids: list[str]) -> float:
    start = time.perf_counter()
    codes = iter(range(len(ids)))
    sent = mailer.send_many(ids, TEMPLATE, purpose="marketing", context=lambda _: {"code": next(codes)})
    for outcome in sent:
        outcome.raise_for_status()
    return rate(len(ids), time.perf_counter() - start)


def outbound(crm: crmcore.CRM, count: int, rounds: int) -> None:
    """Each round runs raw, `send` and `send_many` back to back over `count` messages.

    The machine may be shared, so each round's ratio is taken against the raw
    run next to it, and the median ratio over the rounds is reported.
    """
    ids = customers(crm, count)
    with sink_server() as port:
        smtp = smtplib.SMTP("127.0.0.1", port)
        mailer = crm.operational.mail.mailer(f"smtp://127.0.0.1:{port}", sender="Shop <news@shop.example>",
                                             unsubscribe="unsubscribe@shop.example")
        runs = []
        for _ in range(rounds):
            runs.append((raw_send(smtp, count), crm_send(mailer, ids), crm_send_many(mailer, ids)))
        smtp.quit()
        mailer.close()
    logged = sum(len(crm.interactions.timeline(c, limit=None)) for c in ids)
    assert logged == 2 * count * rounds, logged
    raw, one, many = (statistics.median(r[i] for r in runs) for i in range(3))
    ratio_one = statistics.median(r[1] / r[0] for r in runs)
    ratio_many = statistics.median(r[2] / r[0] for r in runs)
    print(f"outbound  raw smtplib       {raw:8.0f} msg/s   (median of {rounds} rounds)")
    print(f"outbound  crmcore send      {one:8.0f} msg/s   ratio {ratio_one:.2f} (aim >= 0.70)")
    print(f"outbound  crmcore send_many {many:8.0f} msg/s   ratio {ratio_many:.2f} (aim >= 0.70)")


def inbound(crm: crmcore.CRM, count: int, workdir: Path) -> None:
    if os.geteuid() != 0 or shutil.which("dovecot") is None:
        print("inbound   skipped: needs root and dovecot-imapd")
        return
    root = Path(tempfile.mkdtemp(prefix="crmcore-bench-dovecot-"))
    server = Dovecot(root)
    try:
        server.start()
        new = server.maildir / "new"
        for i in range(count):  # delivered as an MDA would: straight into the Maildir
            path = new / f"{1_700_000_000 + i}.bench{i}.localhost"
            path.write_bytes(
                f"From: Customer {i} <c{i}@example.org>\r\nTo: support@shop.example\r\n"
                f"Subject: Question {i}\r\nMessage-ID: <in{i}@example.org>\r\n\r\nHello, a question.\r\n"
                .encode()
            )
            os.chown(path, MAIL_UID, MAIL_UID)

        import imaplib

        imap = imaplib.IMAP4("127.0.0.1", server.port)
        imap.login(USER, PASSWORD)
        start = time.perf_counter()
        imap.select("INBOX", readonly=True)
        uids = imap.uid("SEARCH", "UID 1:*")[1][0].split()
        for uid in uids:
            imap.uid("FETCH", uid, "(BODY.PEEK[])")
        raw = rate(len(uids), time.perf_counter() - start)
        imap.logout()

        poller = crm.operational.mail.poller(server.url(), state=workdir / "cursor.json",
                                             support=["support@shop.example"])
        start = time.perf_counter()
        report = poller.poll()
        ours = rate(report.total, time.perf_counter() - start)
        poller.close()
        assert report.total == count, report
        print(f"inbound   raw imaplib       {raw:8.0f} msg/s   (fetch only)")
        print(f"inbound   crmcore poll      {ours:8.0f} msg/s   (fetch, parse, match, case, log, cursor) "
              f"{dict(report.handled)}")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=200, help="messages per run (and inbound)")
    parser.add_argument("--storage", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="crmcore-bench-"))
    try:
        url = f"sqlite:///{workdir / 'crm.db'}" if args.storage == "sqlite" else "memory://"
        with crmcore.open(url) as crm:
            print(f"{args.messages} messages, storage {args.storage}")
            outbound(crm, args.messages, args.rounds)
        with crmcore.open(url.replace("crm.db", "crm-in.db")) as crm:
            customers(crm, args.messages)
            inbound(crm, args.messages, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
