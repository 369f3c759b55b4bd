"""The whole loop on SQLite and PostgreSQL: real SMTP out, real HTTP clicks, real IMAP replies
(dovecot), purchases, attribution, analysis and close, with the events of every step."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

import crmcore
from crmcore.marketing import Links
from crmcore.marketing.tracking import serve
from crmcore.model import MemberGroup, MemberStatus
from crmcore.model.marketing import CampaignStatus
from crmcore.testing.pytest_plugin import EventLog
from tests.email.servers import Dovecot, Recorder, smtp_server
from tests.marketing.conftest import Clock, open_crm, populate, purchase

UNSUBSCRIBE = "unsub@shop.example.org"


@pytest.fixture(params=["sqlite", "postgresql"])
def crm(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, events: EventLog
) -> Iterator[crmcore.CRM]:
    yield from open_crm(request.param, tmp_path, clock, events)


def reply(sender: str, message_id: str, subject: str, to: str = "news@shop.example.org") -> bytes:
    lines = [
        f"From: {sender}",
        f"To: {to}",
        f"Subject: {subject}",
        f"In-Reply-To: {message_id}",
        f"Message-ID: <r-{abs(hash(sender + subject))}@example.org>",
    ]
    return ("\r\n".join(lines) + "\r\n\r\nYes please.\r\n").encode()


def test_the_whole_loop(
    crm: crmcore.CRM, clock: Clock, events: EventLog, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    customers = populate(crm, 120)
    by_id = {c.id: c for c in customers}
    crm.segments.save("everyone", "Everyone", 'tier in ("gold", "silver")')
    crm.marketing.create(
        "spring",
        "Spring sale",
        channel="email",
        segment="everyone",
        subject="Spring, $first_name",
        text="Hello $name, the sale: $link_shop",
        links={"shop": "https://shop.example.org/sale"},
        control_fraction=0.25,
        seed="2026",
        stratify="tier",
        budget=crmcore.Money(Decimal(300)),
        ends_at=clock.at + timedelta(days=14),
    )
    launched = crm.marketing.launch("spring")
    assert launched.control == 30

    recorder = Recorder()
    links = Links(b"tracking-secret-0123456789", "http://127.0.0.1")
    with smtp_server(recorder) as port:
        mailer = crm.operational.mail.mailer(
            f"smtp://127.0.0.1:{port}", sender="news@shop.example.org", unsubscribe=UNSUBSCRIBE
        )
        sent = crm.marketing.send("spring", mailer=mailer, links=links)
    assert sent.sent == 90 and sent.held == 30 and len(recorder.messages) == 90

    members = {m.customer_id: m for m in crm.marketing.members("spring")}
    targets = sorted(c for c, m in members.items() if m.group is MemberGroup.TARGET)
    controls = sorted(c for c, m in members.items() if m.group is MemberGroup.CONTROL)

    # clicks through a real HTTP server
    clock.advance(hours=1)
    httpd = serve(crm.marketing.click_app(links), "127.0.0.1", 0)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        for customer_id in targets[:10]:
            path = links.url("spring", customer_id, "shop", now=clock.at).removeprefix("http://127.0.0.1")
            connection = http.client.HTTPConnection("127.0.0.1", httpd.server_address[1], timeout=10)
            connection.request("GET", path)
            response = connection.getresponse()
            assert (
                response.status == 302 and response.getheader("Location") == "https://shop.example.org/sale"
            )
            connection.close()
    finally:
        httpd.shutdown()
        httpd.server_close()

    # replies and an unsubscribe through the real IMAP server, read by the e-mail poller
    when = (clock.at + timedelta(hours=2)).timestamp()
    for customer_id in targets[10:15]:
        address = by_id[customer_id].emails[0]
        dovecot.append(folder, reply(address, members[customer_id].reference or "", "Re: Spring"), when=when)
    unsubscriber = targets[15]
    dovecot.append(
        folder, reply(by_id[unsubscriber].emails[0], "<none@x>", "unsubscribe", to=UNSUBSCRIBE), when=when
    )
    clock.advance(hours=3)
    poll = crm.operational.mail.poller(
        dovecot.url(folder), state=tmp_path / "cursor", unsubscribe=UNSUBSCRIBE
    ).poll()
    assert poll.total == 6

    # purchases: 30 % of targets, 10 % of controls inside the window; others outside or in another currency
    clock.advance(days=2)
    buyers_t, buyers_c = targets[:27], controls[:3]
    for customer_id in buyers_t + buyers_c:
        crm.purchases.record(purchase(customer_id, Decimal("40.00"), clock.at))
    crm.purchases.record(purchase(targets[40], Decimal("99.00"), clock.at, currency="USD"))
    crm.purchases.record(purchase(targets[41], Decimal("10.00"), clock.at - timedelta(days=30)))

    collected = crm.marketing.collect("spring")
    assert collected.converted == 27 and collected.revenue == Decimal("1080.00")
    stored = {m.customer_id: m for m in crm.marketing.members("spring")}
    assert {stored[c].response for c in targets[10:15]} == {"replied"}
    assert stored[unsubscriber].response == "unsubscribed"
    assert all(stored[c].status is MemberStatus.CONVERTED for c in buyers_t)
    assert crm.customers.ids_matching('campaign_converted(id, "spring") = true') == sorted(buyers_t)

    clock.advance(days=20)  # after the window
    crm.purchases.record(purchase(controls[5], Decimal("500.00"), clock.at))  # too late to count
    report = crm.marketing.close("spring")
    overall = report.overall
    assert (overall.target.members, overall.control.members) == (90, 30)
    assert (overall.conversion.target.successes, overall.conversion.control.successes) == (27, 3)
    assert overall.response.target.successes == len(
        set(buyers_t) | set(targets[:15])
    )  # buys, clicks, replies
    assert overall.conversion.difference == pytest.approx(0.3 - 0.1)
    assert overall.conversion.p_value < 0.05 and overall.conversion.low > 0
    assert overall.incremental_conversions == pytest.approx(18.0)
    assert overall.incremental_revenue == crmcore.Money(Decimal("720.00"))
    assert overall.cost_per_incremental_conversion == crmcore.Money(Decimal("16.67"))
    assert set(report.strata) == {"gold", "silver"}
    assert report.engine == "sql"
    assert crm.marketing.get("spring").status is CampaignStatus.CLOSED
    text = report.explain()
    assert "Newcombe" in text and "Welch" in text and "16.67 EUR per incremental conversion" in text

    assert {
        "campaign.launched",
        "campaign.sent",
        "campaign.responded",
        "campaign.converted",
        "campaign.closed",
    } <= set(events.topics())
    assert len(events.of("campaign.converted")) == 27
    assert {e.payload["kind"] for e in events.of("campaign.responded")} == {
        "clicked",
        "replied",
        "unsubscribed",
    }
