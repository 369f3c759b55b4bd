"""Sending a campaign through a real SMTP server (aiosmtpd) and as a mail merge:
eligibility with reasons, controls held, timeline tagged, and no one sent twice after a crash."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import time, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from pathlib import Path

import attrs
import pytest

import crmcore
from crmcore.errors import ValidationError
from crmcore.marketing import Links, Policy
from crmcore.model import Direction, MemberGroup, MemberStatus
from crmcore.ports.email import EmailTransport
from crmcore.testing.pytest_plugin import EventLog
from tests.email.servers import Recorder, smtp_server
from tests.marketing.conftest import Clock, open_crm, populate

LINKS = Links(b"0123456789abcdef-secret", "http://127.0.0.1:9/")


@pytest.fixture(params=["sqlite", "postgresql"])
def crm(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, events: EventLog
) -> Iterator[crmcore.CRM]:
    yield from open_crm(request.param, tmp_path, clock, events)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def smtp_url(recorder: Recorder) -> Iterator[str]:
    with smtp_server(recorder) as port:
        yield f"smtp://127.0.0.1:{port}"


def campaign(crm: crmcore.CRM, id: str = "spring", **fields: object) -> None:
    options: dict[str, object] = dict(
        channel="email",
        rule='tier in ("gold", "silver")',
        subject="Spring, $first_name",
        text="Hello $name, see $link_shop",
        links={"shop": "https://shop.example.org/s"},
        control_fraction=0.2,
        seed="s",
    )
    options.update(fields)
    crm.marketing.create(id, "Spring", **options)  # type: ignore[arg-type]
    crm.marketing.launch(id)


def recipients(recorder: Recorder) -> list[str]:
    return [to for _, tos, _ in recorder.messages for to in tos]


def test_a_send_reaches_the_eligible_targets_only_and_says_why_not_the_others(
    crm: crmcore.CRM, clock: Clock, events: EventLog, recorder: Recorder, smtp_url: str
) -> None:
    customers = populate(crm, 40, consent_every=10)  # 4 without consent
    crm.customers.change(customers[1].id, tags=frozenset({"do-not-mail"}))
    campaign(crm)
    mailer = crm.operational.mail.mailer(
        smtp_url, sender="news@shop.example.org", unsubscribe="unsub@shop.example.org"
    )
    policy = Policy(suppressed=[customers[2].emails[0]], suppress_tags=["do-not-mail"])
    report = crm.marketing.send("spring", mailer=mailer, links=LINKS, policy=policy, page=7)
    members = {m.customer_id: m for m in crm.marketing.members("spring")}
    skipped = {c: m.reason for c, m in members.items() if m.status is MemberStatus.SKIPPED}
    assert skipped[customers[0].id] == "no email consent for marketing"
    assert skipped[customers[1].id] == "suppressed by tag do-not-mail"
    assert skipped[customers[2].id] == "address on the suppression list"
    assert len(skipped) == 6
    sent = {c for c, m in members.items() if m.status is MemberStatus.SENT}
    held = {c for c, m in members.items() if m.status is MemberStatus.HELD}
    assert all(members[c].group is MemberGroup.TARGET for c in sent)
    assert all(members[c].group is MemberGroup.CONTROL for c in held)
    assert report.sent == len(sent) == len(recorder.messages) and report.held == len(held)
    assert len(sent) + len(held) + len(skipped) == 40
    by_address = {c.emails[0]: c.id for c in customers}
    assert sorted(by_address[a] for a in recipients(recorder)) == sorted(sent)
    message = message_from_bytes(recorder.messages[0][2])
    assert message["List-Unsubscribe"] and "/c/" in message.get_payload(decode=True).decode()
    customer_id = by_address[recipients(recorder)[0]]
    [entry] = crm.interactions.timeline(customer_id)
    assert entry.campaign_id == "spring" and entry.direction is Direction.OUTBOUND
    assert entry.reference == members[customer_id].reference == message["Message-ID"]
    announced = [c for e in events.of("campaign.sent") for c in e.payload["customers"]]
    assert sorted(announced) == sorted(sent)  # one event a page, naming its customers
    assert {e.payload["reason"] for e in events.of("campaign.member_skipped")} >= set(skipped.values())
    again = crm.marketing.send("spring", mailer=mailer, links=LINKS, policy=policy)
    assert again.sent == 0 and len(recorder.messages) == len(sent)


def test_frequency_cap_counts_every_campaign_and_quiet_hours_defer(
    crm: crmcore.CRM, clock: Clock, recorder: Recorder, smtp_url: str
) -> None:
    populate(crm, 20)
    campaign(crm, "first", control_fraction=0.0)
    campaign(crm, "second", control_fraction=0.0)
    mailer = crm.operational.mail.mailer(
        smtp_url, sender="news@shop.example.org", unsubscribe="unsub@shop.example.org"
    )
    capped = Policy(frequency_cap=1, frequency_window=timedelta(days=7))
    assert crm.marketing.send("first", mailer=mailer, links=LINKS, policy=capped).sent == 20
    clock.advance(days=1)
    second = crm.marketing.send("second", mailer=mailer, links=LINKS, policy=capped)
    assert second.sent == 0 and second.skipped == {"frequency cap": 20}
    campaign(crm, "third", control_fraction=0.0)
    clock.at = clock.at.replace(hour=22)  # 23:00 in Paris
    quiet = Policy(quiet_hours=(time(21), time(8)), timezone="Europe/Paris")
    deferred = crm.marketing.send("third", mailer=mailer, links=LINKS, policy=quiet)
    assert deferred.deferred == 20 and deferred.sent == 0
    clock.advance(hours=10)
    assert crm.marketing.send("third", mailer=mailer, links=LINKS, policy=quiet).sent == 20


class Crashing:
    """A transport that passes messages to a real one and raises a non-delivery error after `after`."""

    def __init__(self, inner: EmailTransport, after: int) -> None:
        self.inner = inner
        self.after = after

    def send(self, message: EmailMessage) -> None:
        if self.after == 0:
            raise KeyboardInterrupt("the operator pressed Ctrl-C")
        self.after -= 1
        self.inner.send(message)

    def close(self) -> None:
        self.inner.close()


def test_a_crash_in_mid_send_resumes_without_sending_anyone_twice(
    crm: crmcore.CRM, recorder: Recorder, smtp_url: str
) -> None:
    populate(crm, 50)
    campaign(crm, control_fraction=0.0)
    real = crm.operational.mail.mailer(
        smtp_url, sender="news@shop.example.org", unsubscribe="unsub@shop.example.org"
    )
    crashing = crm.operational.mail.mailer(
        Crashing(real.transport, 17), sender="news@shop.example.org", unsubscribe="unsub@shop.example.org"
    )
    with pytest.raises(KeyboardInterrupt):
        crm.marketing.send("spring", mailer=crashing, links=LINKS, page=10)
    assert len(recorder.messages) == 17
    counts = crm.marketing.counts("spring")
    assert counts == {("target", "sent"): 17, ("target", "selected"): 33}
    report = crm.marketing.send("spring", mailer=real, links=LINKS, page=10)
    assert report.sent == 33
    assert sorted(recipients(recorder)) == sorted({f"c{i}@example.org" for i in range(50)})


def test_members_a_killed_run_left_sending_are_never_sent_again(
    crm: crmcore.CRM, recorder: Recorder, smtp_url: str
) -> None:
    populate(crm, 10)
    campaign(crm, control_fraction=0.0)
    members = crm.marketing.members("spring")
    with crm.transaction() as uow:  # what a process killed between hand-over and record leaves
        for member in members[:3]:
            uow.campaign_members.put(attrs.evolve(member, status=MemberStatus.SENDING, reference="<x@y>"))
    mailer = crm.operational.mail.mailer(
        smtp_url, sender="news@shop.example.org", unsubscribe="unsub@shop.example.org"
    )
    report = crm.marketing.send("spring", mailer=mailer, links=LINKS)
    assert report.recovered == 3 and report.sent == 7 and len(recorder.messages) == 7
    failed = [m for m in crm.marketing.members("spring") if m.status is MemberStatus.FAILED]
    assert {m.customer_id for m in failed} == {m.customer_id for m in members[:3]}
    assert all("interrupted" in (m.reason or "") for m in failed)


def test_a_refused_message_fails_that_member_only(
    crm: crmcore.CRM, recorder: Recorder, smtp_url: str
) -> None:
    populate(crm, 5)
    campaign(crm, control_fraction=0.0)
    recorder.replies.append("550 no such mailbox")
    mailer = crm.operational.mail.mailer(
        smtp_url, sender="news@shop.example.org", unsubscribe="unsub@shop.example.org"
    )
    report = crm.marketing.send("spring", mailer=mailer, links=LINKS)
    assert report.failed == 1 and report.sent == 4


def test_letters_are_a_mail_merge_a_printer_can_take(crm: crmcore.CRM, tmp_path: Path) -> None:
    address = crmcore.PostalAddress("FR", ["1 rue de la Paix"], city="Paris", postal_code="75002")
    for customer in populate(crm, 8, addresses=[address]):
        crm.customers.set_consent(customer.id, "marketing", "letter", "granted", source="test")
    crm.marketing.create(
        "post",
        "Post",
        channel="letter",
        rule='tier in ("gold", "silver")',
        subject="Dear $name",
        text="We write to $address, $postal_code $city.",
        control_fraction=0.25,
        seed="p",
    )
    crm.marketing.launch("post")
    members = crm.marketing.members("post")
    crm.customers.change(members[0].customer_id, addresses=[])
    crm.customers.change(members[1].customer_id, name='=HYPERLINK("http://evil.example")')
    folder = tmp_path / "merge"
    report = crm.marketing.send("post", letters=folder)
    with open(folder / "letters.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == report.sent and report.skipped.get("no postal address", 0) <= 1
    for row in rows:
        text = (folder / row["file"]).read_text(encoding="utf-8")
        assert "We write to 1 rue de la Paix, 75002 Paris." in text and row["city"] == "Paris"
        assert not row["name"].startswith("=")  # a spreadsheet will not run a customer's name
    with pytest.raises(ValidationError):
        crm.marketing.send("post")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValidationError):
        crm.marketing.send("post", letters=tmp_path / "a-file" / "merge")
