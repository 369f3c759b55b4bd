"""Outside text never becomes a header on the wire of a real SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Customer, ValidationError
from crmcore.operational.mail import Mailer, Status, Template
from crmcore.testing.hostile import INJECTIONS, LINE_BREAKS, hostile_texts, outcome
from tests.email.servers import Recorder, smtp_server

SENDER = "Shop <news@shop.example>"
UNSUBSCRIBE = "unsubscribe@shop.example"
EVIL = "=?utf-8?q?Eve=0D=0AReply-To:_x@evil.example=0D=0A=0D=0APay?="
HEADERS = {
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-unsubscribe",
    "content-type",
    "content-transfer-encoding",
    "mime-version",
}
"""Every header a marketing message may carry: anything else on the wire was injected."""
NOTE = Template(subject="$name: $note", text="Hello $name, $note", name="note")


@pytest.fixture(scope="module")
def wire() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        yield recorder, port


@pytest.fixture
def crm() -> Iterator[crmcore.CRM]:
    with crmcore.open("sqlite://") as opened:
        yield opened


def consenting(crm: crmcore.CRM, name: str, email: str = "eve@example.org", **fields: Any) -> Customer:
    stored = crm.customers.add(Customer.new(name, emails=[email], **fields))
    return crm.customers.set_consent(
        stored.id, "marketing", crmcore.Channel.EMAIL, crmcore.ConsentStatus.GRANTED, source="test"
    )


def mailer(crm: crmcore.CRM, port: int) -> Mailer:
    return crm.operational.mail.mailer(
        f"smtp://127.0.0.1:{port}", sender=SENDER, unsubscribe=UNSUBSCRIBE, backoff=0.001
    )


def headers_on_the_wire(raw: bytes) -> set[str]:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    return {
        line.split(b":", 1)[0].decode("ascii", "replace").strip().lower()
        for line in head.splitlines()
        if line and line[:1] not in (b" ", b"\t")
    }


@pytest.mark.parametrize("where", ["name", "attribute", "context"])
def test_an_encoded_line_break_never_reaches_the_wire(
    crm: crmcore.CRM, wire: tuple[Recorder, int], where: str
) -> None:
    """Issue 13 (1): an encoded word decoding to CR LF went out as extra headers and a new body."""
    recorder, port = wire
    sent = len(recorder.messages)
    who = consenting(
        crm, EVIL if where == "name" else "Eve", attributes={"note": EVIL} if where == "attribute" else {}
    )
    context = {"note": EVIL} if where == "context" else ({} if where == "attribute" else {"note": "hi"})

    with pytest.raises(ValidationError) as refused:
        mailer(crm, port).send(who.id, NOTE, purpose="marketing", context=context)

    assert refused.value.field in ("to", "subject")
    assert len(recorder.messages) == sent and crm.interactions.timeline(who.id) == []


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_unicode_line_separators_fail_one_message_not_the_campaign(
    crm: crmcore.CRM, wire: tuple[Recorder, int], separator: str
) -> None:
    """Issue 13 (1): U+2028 in a subject value raised a raw ValueError and send_many stopped."""
    recorder, port = wire
    people = [consenting(crm, name, f"{name.lower()}@example.org") for name in ("Ann", "Ben", "Cy")]
    notes = {people[0].id: f"one{separator}two", people[1].id: "fine", people[2].id: "fine too"}

    outcomes = list(
        mailer(crm, port).send_many(
            [p.id for p in people], NOTE, purpose="marketing", context=lambda c: {"note": notes[c.id]}
        )
    )

    assert [o.status for o in outcomes] == [Status.FAILED, Status.SENT, Status.SENT]
    assert isinstance(outcomes[0].error, ValidationError)
    assert [m[1] for m in recorder.messages[-2:]] == [["ben@example.org"], ["cy@example.org"]]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    name=hostile_texts,
    note=st.one_of(hostile_texts, st.sampled_from(INJECTIONS)),
    brk=st.sampled_from(("", *LINE_BREAKS)),
)
def test_hostile_names_and_values_on_a_real_server(
    wire: tuple[Recorder, int], name: str, note: str, brk: str
) -> None:
    """The wire law: a message goes out with only our headers, reading back as written, or is refused."""
    recorder, port = wire
    with crmcore.open("memory://") as crm:
        who = outcome(lambda: consenting(crm, name))
        if isinstance(who, crmcore.CRMError):
            return
        before = len(recorder.messages)
        sent = outcome(
            lambda: mailer(crm, port).send(who.id, NOTE, purpose="marketing", context={"note": note + brk})
        )
        if isinstance(sent, crmcore.CRMError):
            assert isinstance(sent, ValidationError) and len(recorder.messages) == before
            return
        assert sent.status is Status.SENT
        raw = recorder.messages[-1][2]
        assert headers_on_the_wire(raw) <= HEADERS, raw[:600]
        back = message_from_bytes(raw, policy=policy.default)
        assert back["Subject"] == f"{who.name}: {note}{brk}".strip()
        assert back["To"].addresses[0].display_name == who.name
