"""Sending through a real SMTP server (aiosmtpd on loopback): consent, retry, timeline."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

import crmcore
from crmcore import Channel, ConsentError, ConsentStatus, Direction, ValidationError
from crmcore.operational.mail import Mailer, Status, Template
from crmcore.ports.email import DeliveryError
from crmcore.testing.pytest_plugin import EventLog
from tests.email.conftest import customer
from tests.email.servers import Recorder, free_port, server_tls, smtp_server

SENDER = "Shop <news@shop.example>"
UNSUBSCRIBE = "unsubscribe@shop.example"
NEWS = Template(
    subject="$first_name, your $tier offer",
    text="Hello $name,\nyour code is $code.\n",
    html="<p>Hello <b>$name</b>, your code is $code.</p>",
    name="news",
)


def mailer(crm: crmcore.CRM, url: str, **options: object) -> Mailer:
    options.setdefault("backoff", 0.001)
    return crm.operational.mail.mailer(url, sender=SENDER, unsubscribe=UNSUBSCRIBE, **options)


def parsed(raw: bytes) -> Any:
    return message_from_bytes(raw, policy=policy.default)


def test_marketing_message_is_personalised_and_logged(crm: crmcore.CRM, recorder: Recorder,
                                                      smtp_port: int) -> None:
    ada = customer(crm, "Ada <Lovelace> & Co", "ada@example.org", "marketing", tier="gold")
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}")

    outcome = out.send(ada.id, NEWS, purpose="marketing", context={"code": "X1"})

    assert outcome.status is Status.SENT and outcome.attempts == 1
    [(mail_from, rcpt_tos, raw)] = recorder.messages
    assert (mail_from, rcpt_tos) == ("news@shop.example", ["ada@example.org"])
    message = parsed(raw)
    assert message["Subject"] == "Ada, your gold offer"
    assert message["To"].addresses[0].display_name == "Ada <Lovelace> & Co"
    assert message["List-Unsubscribe"].strip() == f"<mailto:{UNSUBSCRIBE}?subject=unsubscribe%20marketing>"
    assert message["Message-ID"] == outcome.message_id
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Hello Ada <Lovelace> & Co,\nyour code is X1." in text.replace("\r\n", "\n")
    assert "<b>Ada &lt;Lovelace&gt; &amp; Co</b>" in html  # values are escaped in HTML
    [logged] = crm.interactions.timeline(ada.id)
    assert logged == outcome.interaction
    assert (logged.channel, logged.direction) == (Channel.EMAIL, Direction.OUTBOUND)
    assert (logged.reference, logged.subject) == (outcome.message_id, "Ada, your gold offer")


def test_each_customer_gets_the_template_in_their_language(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int
) -> None:
    hello = Template(subject="Hello $first_name", text="Hi.", name="hello", translations={
        "fr": Template(subject="Bonjour $first_name", text="Salut."),
        "pt-BR": Template(subject="Olá $first_name", text="Oi."),
    })
    people = [
        customer(crm, "Zoé Martin", "zoe@example.org", "marketing", language="fr-CA"),
        customer(crm, "João Silva", "joao@example.org", "marketing", language="pt-br"),
        customer(crm, "Hans Meier", "hans@example.org", "marketing", language="de"),
        customer(crm, "Ann Lee", "ann@example.org", "marketing"),
    ]
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}")

    outcomes = list(out.send_many([p.id for p in people], hello, purpose="marketing"))

    assert [o.status for o in outcomes] == [Status.SENT] * 4
    subjects = [parsed(raw)["Subject"] for _, _, raw in recorder.messages]
    assert subjects == ["Bonjour Zoé", "Olá João", "Hello Hans", "Hello Ann"]
    assert [o.interaction.subject for o in outcomes if o.interaction] == subjects
    with pytest.raises(ValidationError):
        Template(subject="x", text="y", translations={"fr": "Bonjour"})  # type: ignore[dict-item]


def test_without_consent_nothing_leaves_and_the_refusal_is_recorded(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int, events: EventLog
) -> None:
    silent = customer(crm, "Silent", "silent@example.org")
    withdrawn = customer(crm, "Gone", "gone@example.org", "marketing")
    crm.customers.set_consent(withdrawn.id, "marketing", Channel.EMAIL, ConsentStatus.WITHDRAWN, source="t")
    other_purpose = customer(crm, "Other", "other@example.org", "surveys")
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}")

    outcomes = [out.send(c.id, NEWS, purpose="marketing", context={"code": "1"})
                for c in (silent, withdrawn, other_purpose)]

    assert [o.status for o in outcomes] == [Status.REFUSED] * 3
    assert all(isinstance(o.error, ConsentError) for o in outcomes)
    with pytest.raises(ConsentError):
        outcomes[0].raise_for_status()
    assert recorder.messages == []
    assert all(crm.interactions.timeline(c.id) == [] for c in (silent, withdrawn, other_purpose))
    refused = events.of("email.refused")
    assert [e.aggregate_id for e in refused] == [silent.id, withdrawn.id, other_purpose.id]
    assert refused[0].payload["purpose"] == "marketing" and refused[0].payload["template"] == "news"


def test_exempt_purpose_needs_no_grant_and_carries_no_unsubscribe(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int
) -> None:
    bob = customer(crm, "Bob", "bob@example.org")
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}", exempt=["service"])
    reply = Template(subject="About your case", text="Dear $name, done.")

    outcome = out.send(bob.id, reply, purpose="service", in_reply_to="<question@example.org>")

    assert outcome.status is Status.SENT
    message = parsed(recorder.messages[0][2])
    assert message["List-Unsubscribe"] is None
    assert message["In-Reply-To"] == "<question@example.org>"
    assert outcome.interaction is not None and outcome.interaction.in_reply_to == "<question@example.org>"


def test_temporary_failures_are_retried_with_backoff(crm: crmcore.CRM, recorder: Recorder,
                                                     smtp_port: int) -> None:
    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    slept: list[float] = []
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}", backoff=0.01, sleep=slept.append)
    recorder.replies = ["451 4.3.0 try later", "421 4.3.2 busy"]

    outcome = out.send(ada.id, NEWS, purpose="marketing", context={"code": "1"})

    assert outcome.status is Status.SENT and outcome.attempts == 3
    assert slept == [0.01, 0.02]
    assert len(recorder.messages) == 1
    assert len(crm.interactions.timeline(ada.id)) == 1


@pytest.mark.parametrize(
    ("replies", "attempts", "temporary"),
    [(["550 5.1.1 no such user"], 1, False), (["451 4.3.0 later"] * 3, 3, True)],
    ids=["permanent", "exhausted"],
)
def test_a_failed_send_is_never_logged_as_sent(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int, events: EventLog,
    replies: list[str], attempts: int, temporary: bool,
) -> None:
    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}", attempts=3)
    recorder.replies = list(replies)

    outcome = out.send(ada.id, NEWS, purpose="marketing", context={"code": "1"})

    assert outcome.status is Status.FAILED and outcome.attempts == attempts
    assert isinstance(outcome.error, DeliveryError) and outcome.error.temporary is temporary
    assert recorder.messages == [] and crm.interactions.timeline(ada.id) == []
    [failed] = events.of("email.failed")
    assert failed.aggregate_id == ada.id and failed.payload["message_id"] == outcome.message_id


def test_server_down_is_a_temporary_failure(crm: crmcore.CRM) -> None:
    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    out = mailer(crm, f"smtp://127.0.0.1:{free_port()}?timeout=2", attempts=2)

    outcome = out.send(ada.id, NEWS, purpose="marketing", context={"code": "1"})

    assert outcome.status is Status.FAILED and outcome.attempts == 2
    assert isinstance(outcome.error, DeliveryError) and outcome.error.temporary
    assert crm.interactions.timeline(ada.id) == []


def test_reconnects_after_the_server_restarts_on_the_same_port(crm: crmcore.CRM, recorder: Recorder) -> None:
    from aiosmtpd.controller import Controller

    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    port = free_port()
    first = Controller(recorder, hostname="127.0.0.1", port=port)
    first.start()
    out = mailer(crm, f"smtp://127.0.0.1:{port}", attempts=1)
    assert out.send(ada.id, NEWS, purpose="marketing", context={"code": "1"}).status is Status.SENT
    first.stop()
    second = Controller(recorder, hostname="127.0.0.1", port=port)
    second.start()
    try:
        outcome = out.send(ada.id, NEWS, purpose="marketing", context={"code": "2"})
    finally:
        second.stop()
    assert outcome.status is Status.SENT and outcome.attempts == 1
    assert len(recorder.messages) == 2


def test_an_idle_connection_closed_by_the_server_is_reopened(crm: crmcore.CRM, recorder: Recorder) -> None:
    import time

    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    with smtp_server(recorder, timeout=0.2) as port:  # the server hangs up after 0.2 s idle
        out = mailer(crm, f"smtp://127.0.0.1:{port}", attempts=1)
        first = out.send(ada.id, NEWS, purpose="marketing", context={"code": "1"})
        time.sleep(0.5)
        second = out.send(ada.id, NEWS, purpose="marketing", context={"code": "2"})
    assert (first.status, second.status) == (Status.SENT, Status.SENT)
    assert second.attempts == 1 and len(recorder.messages) == 2


def test_starttls_with_login(crm: crmcore.CRM, recorder: Recorder, certificate: tuple[Path, Path]) -> None:
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticate(server: object, session: object, envelope: object, mechanism: str,
                     data: object) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"shop", b"p@ss word")
        return AuthResult(success=ok, handled=False)

    cert, key = certificate
    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    tls = server_tls(cert, key)
    with smtp_server(recorder, tls_context=tls, require_starttls=True, authenticator=authenticate,
                     auth_required=True) as port:
        good = f"smtp://shop:p%40ss%20word@127.0.0.1:{port}?starttls=true&cafile={cert}&timeout=5"
        sent = mailer(crm, good).send(ada.id, NEWS, purpose="marketing", context={"code": "1"})
        plain = mailer(crm, f"smtp://127.0.0.1:{port}").send(
            ada.id, NEWS, purpose="marketing", context={"code": "2"})
        bad_login = mailer(crm, good.replace("p%40ss", "wrong")).send(
            ada.id, NEWS, purpose="marketing", context={"code": "3"})
        untrusted = mailer(crm, f"smtp://shop:x@127.0.0.1:{port}?starttls=true").send(
            ada.id, NEWS, purpose="marketing", context={"code": "4"})

    assert sent.status is Status.SENT
    for refused in (plain, bad_login, untrusted):  # permanent: no pointless retries
        assert refused.status is Status.FAILED and refused.attempts == 1, refused
    assert isinstance(untrusted.error, DeliveryError) and "certificate" in str(untrusted.error)
    assert len(recorder.messages) == 1 and len(crm.interactions.timeline(ada.id)) == 1


def test_smtps_implicit_tls(crm: crmcore.CRM, recorder: Recorder, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    with smtp_server(recorder, ssl_context=server_tls(cert, key)) as port:
        outcome = mailer(crm, f"smtps://127.0.0.1:{port}?cafile={cert}").send(
            ada.id, NEWS, purpose="marketing", context={"code": "1"})
    assert outcome.status is Status.SENT
    assert parsed(recorder.messages[0][2])["Subject"] == "Ada, your  offer"


def test_header_injection_is_a_clear_error_and_nothing_is_sent(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int
) -> None:
    with pytest.raises(ValidationError) as raised:  # a raw line break never gets stored
        customer(crm, "Eve\r\nBcc: all@victims.example", "eve@example.org", "marketing")
    assert raised.value.field == "name"
    # an encoded word decodes into one once in the header: the mailer checks what it means
    evil = customer(crm, "=?utf-8?q?Eve=0D=0ABcc:_all@victims.example?=", "eve@example.org", "marketing")
    fine = customer(crm, "Fine", "fine@example.org", "marketing")
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}")

    with pytest.raises(ValidationError) as raised:
        out.send(evil.id, NEWS, purpose="marketing", context={"code": "1"})
    assert raised.value.field == "to"
    with pytest.raises(ValidationError) as raised:
        out.send(fine.id, Template(subject="Hi $x", text="."), purpose="marketing",
                 context={"x": "there\nBcc: all@victims.example"})
    assert raised.value.field == "subject"
    with pytest.raises(ValidationError) as raised:
        out.send(fine.id, NEWS, purpose="marketing")
    assert (raised.value.field, raised.value.value) == ("template.text", "code")
    with pytest.raises(ValidationError) as raised:
        out.send(fine.id, NEWS, purpose="marketing", context={"code": "1"}, to="someone@else.example")
    assert raised.value.field == "to"
    with pytest.raises(ValidationError) as raised:
        out.send(fine.id, NEWS, purpose="marketing", context={"code": "1"}, in_reply_to="x\r\nBcc: a@b.c")
    assert raised.value.field == "in_reply_to"
    assert recorder.messages == []
    assert crm.interactions.timeline(evil.id) == crm.interactions.timeline(fine.id) == []


def test_bad_configuration_is_refused_up_front(crm: crmcore.CRM) -> None:
    with pytest.raises(ValidationError):
        crm.operational.mail.mailer("smtp://127.0.0.1:1", sender="not an address")
    with pytest.raises(ValidationError):  # marketing without a way to unsubscribe
        crm.operational.mail.mailer("smtp://127.0.0.1:1", sender=SENDER)
    with pytest.raises(ValidationError):
        crm.operational.mail.mailer(
            "smtps://127.0.0.1:1?starttls=true", sender=SENDER, unsubscribe=UNSUBSCRIBE
        )
    with pytest.raises(crmcore.UnknownScheme):
        crm.operational.mail.mailer("pigeon://loft", sender=SENDER, unsubscribe=UNSUBSCRIBE)
    with pytest.raises(ValidationError):
        Template(subject="Hi $", text=".")


_header_safe = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(name=_header_safe, value=st.text(max_size=40))
def test_a_rendered_subject_survives_the_wire_or_is_refused(name: str, value: str) -> None:
    """Law: what the template renders is exactly what the recipient reads, or a ValidationError."""
    crm = crmcore.open("memory://")
    if not name.strip():
        return
    who = crmcore.Customer.new(name=name, emails=["x@example.org"])
    out = Mailer(crm, _NoTransport(), sender=SENDER, unsubscribe=UNSUBSCRIBE)
    try:
        message = out.compose(who, Template(subject="$name: $v", text="$v"), purpose="marketing",
                              context={"v": value})
    except ValidationError as error:
        assert error.field == "subject"
        assert any((ord(ch) < 32 and ch != "\t") or ord(ch) == 127 or 0x80 <= ord(ch) < 0xA0
                   or ch in "\u2028\u2029" for ch in value)
        return
    back = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert back["Subject"] == f"{name}: {value}".strip()
    assert back["To"].addresses[0].addr_spec == "x@example.org"
    assert back["Bcc"] is None and back["Cc"] is None


class _NoTransport:
    def send(self, message: object) -> None:
        raise AssertionError("compose must not send")

    def close(self) -> None:
        pass



def test_send_many_keeps_order_and_every_rule_of_send(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int, events: EventLog
) -> None:
    people = [
        customer(crm, "Ada", "ada@example.org", "marketing"),
        customer(crm, "Silent", "silent@example.org"),
        customer(crm, "=?utf-8?q?Eve=0ABcc:_x@y.z?=", "eve@example.org", "marketing"),
        customer(crm, "Bob", "bob@example.org", "marketing"),
        customer(crm, "Cy", "cy@example.org", "marketing"),
    ]
    recorder.replies = ["250 OK", "550 5.1.1 no such user"]  # Ada accepted (not stored), Bob refused
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}")

    outcomes = list(out.send_many([p.id for p in people], NEWS, purpose="marketing",
                                  context=lambda c: {"code": c.name[:2]}))

    assert [o.customer_id for o in outcomes] == [p.id for p in people]
    assert [o.status for o in outcomes] == [
        Status.SENT, Status.REFUSED, Status.FAILED, Status.FAILED, Status.SENT]
    assert isinstance(outcomes[2].error, ValidationError) and outcomes[2].attempts == 0
    assert isinstance(outcomes[3].error, DeliveryError) and not outcomes[3].error.temporary
    for person, outcome in zip(people, outcomes, strict=True):
        logged = crm.interactions.timeline(person.id)
        expected = [outcome.message_id] if outcome.status is Status.SENT else []
        assert [i.reference for i in logged] == expected
    assert parsed(recorder.messages[-1][2])["To"].addresses[0].addr_spec == "cy@example.org"
    assert len(events.of("email.failed")) == 2 and len(events.of("email.refused")) == 1


def test_stopping_send_many_early_still_logs_what_went_out(
    crm: crmcore.CRM, recorder: Recorder, smtp_port: int
) -> None:
    people = [customer(crm, f"P{i}", f"p{i}@example.org", "marketing") for i in range(5)]
    out = mailer(crm, f"smtp://127.0.0.1:{smtp_port}")

    run = out.send_many([p.id for p in people], NEWS, purpose="marketing", context={"code": "1"}, batch=2)
    first = next(run)
    run.close()

    assert first.status is Status.SENT
    delivered = {rcpt for _, rcpts, _ in recorder.messages for rcpt in rcpts}
    logged = {p.emails[0] for p in people if crm.interactions.timeline(p.id)}
    assert delivered == logged == {"p0@example.org", "p1@example.org"}
