"""Reading a real IMAP mailbox (a private dovecot) onto customers' timelines."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import crmcore
from crmcore import CaseKind, Channel, Direction, LifecycleStage
from crmcore.operational.mail import Handled, Poller, Status, Template
from crmcore.ports.email import Cursor, MailboxError
from crmcore.testing.pytest_plugin import EventLog
from crmcore_adapters.email.imap import ImapMailbox
from tests.email.conftest import customer
from tests.email.servers import Dovecot, Recorder, free_port

SUPPORT = "support@shop.example"
UNSUBSCRIBE = "unsubscribe@shop.example"


def mail(sender: str, subject: str, *, to: str = "sales@shop.example", body: str = "Hello.",
         **headers: str) -> bytes:
    """A plain message as bytes; extra headers given as Header_Name='value'."""
    lines = [f"From: {sender}", f"To: {to}", f"Subject: {subject}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def poller(crm: crmcore.CRM, dovecot: Dovecot, folder: str, state: Path, **options: object) -> Poller:
    options.setdefault("support", [SUPPORT])
    options.setdefault("unsubscribe", UNSUBSCRIBE)
    return crm.operational.mail.poller(dovecot.url(folder), state=state, **options)


def test_a_customer_message_lands_on_the_timeline(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    dovecot.append(folder, mail("Ada <ada@example.org>", "Where is my order?", Message_ID="<q1@example.org>"))

    report = poller(crm, dovecot, folder, tmp_path / "cursor").poll()

    assert report.handled == {Handled.LOGGED: 1} and report.cursor is not None and report.cursor.uid == 1
    [logged] = crm.interactions.timeline(ada.id)
    assert (logged.channel, logged.direction) == (Channel.EMAIL, Direction.INBOUND)
    assert (logged.subject, logged.reference) == ("Where is my order?", "<q1@example.org>")
    assert logged.case_id is None
    assert crm.cases.for_customer(ada.id) == []


def test_a_message_to_support_opens_a_case(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    dovecot.append(folder, mail("ada@example.org", "Broken kettle", to=f"Support <{SUPPORT}>"))

    report = poller(crm, dovecot, folder, tmp_path / "cursor").poll()

    assert report.handled == {Handled.CASE: 1}
    [case] = crm.cases.for_customer(ada.id)
    assert (case.kind, case.subject, case.channel) == (CaseKind.REQUEST, "Broken kettle", Channel.EMAIL)
    [logged] = crm.interactions.timeline(ada.id)
    assert logged.case_id == case.id


def test_a_reply_threads_to_the_message_it_answers(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path, recorder: Recorder, smtp_port: int
) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    case = crm.cases.open(ada.id, CaseKind.COMPLAINT, "Late delivery")
    out = crm.operational.mail.mailer(f"smtp://127.0.0.1:{smtp_port}", sender="care@shop.example",
                                      marketing=[], exempt=["service"])
    sent = out.send(ada.id, Template(subject="Your complaint", text="Sorry, $first_name."),
                    purpose="service", case_id=case.id)
    assert sent.status is Status.SENT
    dovecot.append(folder, mail("ada@example.org", "Re: Your complaint", In_Reply_To=str(sent.message_id),
                                References=f"<older@x> {sent.message_id}"))

    report = poller(crm, dovecot, folder, tmp_path / "cursor").poll()

    assert report.handled == {Handled.LOGGED: 1}
    reply = crm.interactions.timeline(ada.id)[0]
    assert reply.direction is Direction.INBOUND
    assert (reply.in_reply_to, reply.case_id) == (sent.message_id, case.id)
    assert crm.cases.get(case.id).contacts == 2


@pytest.mark.parametrize("unknown", ["lead", "park"])
def test_unknown_senders_become_leads_or_are_parked(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path, events: EventLog, unknown: str
) -> None:
    dovecot.append(folder, mail('"Newcomer, Nora" <nora@example.net>', "Prices?", to=SUPPORT))

    report = poller(crm, dovecot, folder, tmp_path / "cursor", unknown=unknown).poll()

    nora = crm.customers.by_email("nora@example.net")
    if unknown == "lead":
        assert report.handled == {Handled.LEAD: 1}
        assert nora is not None and (nora.name, nora.lifecycle) == ("Newcomer, Nora", LifecycleStage.LEAD)
        [logged] = crm.interactions.timeline(nora.id)
        assert logged.subject == "Prices?" and logged.case_id is not None  # written to support
    else:
        assert report.handled == {Handled.PARKED: 1} and nora is None
        [parked] = events.of("email.parked")
        assert parked.payload["uid"] == 1 and parked.payload["reason"] == "unknown sender"
        assert parked.payload["sender"] == '"Newcomer, Nora" <nora@example.net>'


DSN = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example>\r
To: news@shop.example\r
Subject: Undelivered Mail Returned to Sender\r
Message-ID: <dsn1@mx.example>\r
MIME-Version: 1.0\r
Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r
\r
--B\r
Content-Type: text/plain\r
\r
I'm sorry to have to inform you that your message could not be delivered.\r
--B\r
Content-Type: message/delivery-status\r
\r
Reporting-MTA: dns; mx.example\r
\r
Final-Recipient: rfc822; {address}\r
Action: failed\r
Status: 5.1.1\r
\r
--B--\r
"""


def test_a_hard_bounce_withdraws_email_consent(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path, events: EventLog
) -> None:
    ada = customer(crm, "Ada", "ada@example.org", "marketing", "surveys")
    delayed = DSN.replace("failed", "delayed").replace("5.1.1", "4.4.1")
    dovecot.append(folder, DSN.format(address="ada@example.org").encode(),
                   delayed.format(address="ada@example.org").encode())

    report = poller(crm, dovecot, folder, tmp_path / "cursor").poll()

    assert report.handled == {Handled.BOUNCE: 1, Handled.PARKED: 1}  # a delay is not a bounce
    stored = crm.customers.get(ada.id)
    assert not stored.has_consent("marketing", Channel.EMAIL)
    assert not stored.has_consent("surveys", Channel.EMAIL)
    assert {c.source for c in stored.consents} == {"bounce 5.1.1"}
    [bounced] = events.of("email.bounced")
    assert bounced.payload["withdrawn"] == ["marketing", "surveys"]
    assert crm.interactions.timeline(ada.id) == []  # a bounce is not a contact


def test_a_bounce_read_again_withdraws_nothing_twice_and_names_its_report(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path, events: EventLog
) -> None:
    """After a crash before the cursor write the reports are read again: consent is not touched
    twice, and each `email.bounced` names its report by an id that is the same on every read."""
    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    bob = customer(crm, "Bob", "bob@example.org", "marketing")
    no_id = DSN.replace("Message-ID: <dsn1@mx.example>\r\n", "")
    dovecot.append(folder, DSN.format(address="ada@example.org").encode(),
                   no_id.format(address="bob@example.org").encode())
    state = tmp_path / "cursor"
    assert poller(crm, dovecot, folder, state).poll().handled == {Handled.BOUNCE: 2}
    stored = {c.id: crm.customers.get(c.id) for c in (ada, bob)}
    changes = len(events.of("consent.changed"))

    state.unlink()
    again = poller(crm, dovecot, folder, state).poll()

    assert again.total == 2
    assert {c: crm.customers.get(c) for c in stored} == stored
    assert len(events.of("consent.changed")) == changes
    named: dict[str, set[str]] = {ada.id: set(), bob.id: set()}
    for event in events.of("email.bounced"):
        named[event.aggregate_id].add(event.payload["message_id"])
    assert named[ada.id] == {"<dsn1@mx.example>"}
    [digest] = named[bob.id]
    assert digest.endswith("@no-message-id.invalid>")


def test_an_unsubscribe_reply_withdraws_marketing_consent(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    ada = customer(crm, "Ada", "ada@example.org", "marketing", "surveys")
    bob = customer(crm, "Bob", "bob@example.org", "marketing", "newsletter")
    dovecot.append(
        folder,
        mail("ada@example.org", "unsubscribe marketing", to=UNSUBSCRIBE),
        mail("bob@example.org", "Unsubscribe me please", to="sales@shop.example"),
    )

    report = poller(crm, dovecot, folder, tmp_path / "cursor",
                    marketing=["marketing", "newsletter"]).poll()

    assert report.handled == {Handled.UNSUBSCRIBED: 2}
    ada, bob = crm.customers.get(ada.id), crm.customers.get(bob.id)
    assert not ada.has_consent("marketing", Channel.EMAIL) and ada.has_consent("surveys", Channel.EMAIL)
    assert not bob.has_consent("marketing", Channel.EMAIL)
    assert not bob.has_consent("newsletter", Channel.EMAIL)
    assert ada.consent("marketing", Channel.EMAIL).source == "email-unsubscribe"  # type: ignore[union-attr]
    assert [i.outcome for i in crm.interactions.timeline(ada.id)] == ["unsubscribed"]


def test_nothing_is_read_twice_or_skipped_across_restarts(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    state = tmp_path / "state" / "cursor.json"
    dovecot.append(folder, *(mail("ada@example.org", f"m{i}", Message_ID=f"<m{i}@x>") for i in range(3)))

    first = poller(crm, dovecot, folder, state).poll(limit=2)
    second = poller(crm, dovecot, folder, state).poll()  # a restart: a new poller, the same state file
    dovecot.append(folder, *(mail("ada@example.org", f"m{i}", Message_ID=f"<m{i}@x>") for i in (3, 4)))
    third = poller(crm, dovecot, folder, state, batch=1).poll()
    idle = poller(crm, dovecot, folder, state).poll()

    assert [r.total for r in (first, second, third, idle)] == [2, 1, 2, 0]
    assert idle.cursor is not None and idle.cursor.uid == 5
    subjects = sorted(i.subject for i in crm.interactions.timeline(ada.id))
    assert subjects == ["m0", "m1", "m2", "m3", "m4"]


def test_a_reread_after_a_lost_cursor_or_new_uidvalidity_adds_nothing(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    state = tmp_path / "cursor"
    messages = [mail("ada@example.org", f"m{i}", Message_ID=f"<m{i}@x>") for i in range(2)]
    no_id = mail("ada@example.org", "no id")
    dovecot.append(folder, *messages, no_id, when=time.time() - 3 * 3600)  # copies come later
    assert poller(crm, dovecot, folder, state).poll().total == 3

    state.unlink()  # a crash between the commit and the cursor write, at worst
    again = poller(crm, dovecot, folder, state).poll()
    first_validity = again.cursor.uidvalidity if again.cursor else None
    dovecot.delete(folder)
    dovecot.create(folder)  # the server renumbers: a new UIDVALIDITY
    dovecot.append(folder, *messages, mail("ada@example.org", "m9", Message_ID="<m9@x>"))
    renumbered = poller(crm, dovecot, folder, state).poll()

    assert again.handled == {Handled.DUPLICATE: 3}
    assert renumbered.cursor is not None and renumbered.cursor.uidvalidity != first_validity
    assert renumbered.handled == {Handled.DUPLICATE: 2, Handled.LOGGED: 1}
    assert sorted(i.subject for i in crm.interactions.timeline(ada.id)) == ["m0", "m1", "m9", "no id"]


HOSTILE = [
    b"\x00\xff\xfe garbage with no header at all",
    b"From: \r\nSubject: empty sender\r\n\r\nx\r\n",
    b"From: ada@example.org\r\nSubject: =?x-unknown?q?caf=E9?= =?utf-8?b?////?=\r\n"
    b"Content-Type: text/plain; charset=\"bogus\"\r\n\r\nh\xe9llo\r\n",
    b"From: ada@example.org\r\nSubject: broken mime\r\nContent-Type: multipart/mixed; boundary=\"nope\"\r\n"
    b"\r\n--wrong\r\nContent-Type: text/plain\r\n\r\nhalf\r\n",
    b"From: ada@example.org\r\nSubject: injected\r\nBcc: x@y.z\r\n\r\n\r\nBcc: body@y.z\r\n",
    b"From: \"=?utf-8?q?Ev=0D=0Ale?=\" <ada@example.org>\r\n"
    b"Subject: =?utf-8?q?line=0D=0ABcc:_x@y?=\r\n\r\nx\r\n",
    b"From: ada@example.org\r\nSubject: long id\r\nMessage-ID: <" + b"x" * 2000 + b"@long>\r\n\r\nbody\r\n",
    b"From: ada@example.org\r\nSubject: " + "é".encode() * 3000 + b"\r\n\r\nlong subject\r\n",
    b"From: <<<@@@>>>\r\nSubject: odd address\r\n\r\nx\r\n",
    b"From: ada@example.org\r\nSubject: huge\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + b"QUFB" * 300_000 + b"\r\n--b--\r\n",
]


def test_hostile_messages_never_stop_the_poller_and_none_is_lost(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path, events: EventLog
) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    dovecot.append(folder, *HOSTILE)

    report = poller(crm, dovecot, folder, tmp_path / "cursor", max_bytes=200_000).poll()

    assert report.total == len(HOSTILE) and report.cursor is not None and report.cursor.uid == len(HOSTILE)
    parked = {e.payload["uid"]: e.payload for e in events.of("email.parked")}
    assert report.handled == {Handled.PARKED: len(parked), Handled.LOGGED: len(HOSTILE) - len(parked)}
    assert sorted(parked) == [1, 2, 9]  # no header, empty sender, no address
    assert {p["reason"] for p in parked.values()} == {"no usable sender address"}
    logged = {i.subject: i for i in crm.interactions.timeline(ada.id, limit=None)}
    assert all("\r" not in s and "\n" not in s and len(s) <= 1000 for s in logged)
    assert {"broken mime", "injected", "long id", "huge", "é" * 1000, "line Bcc: x@y"} <= logged.keys()
    assert any(s.startswith("caf") for s in logged)  # undecodable charset: kept, not fatal
    assert logged["long id"].reference is not None and logged["long id"].reference.endswith(".invalid>")
    assert crm.customers.by_email("x@y.z") is None and crm.customers.by_email("body@y.z") is None


def test_mailbox_errors_are_typed(dovecot: Dovecot, folder: str) -> None:
    for url in (dovecot.url("NoSuchFolder"), f"imap://crm:x@127.0.0.1:{free_port()}/INBOX?timeout=2"):
        box = ImapMailbox(url)
        with pytest.raises(MailboxError):
            box.fetch(None, limit=1, max_bytes=100)
        box.close()


def test_a_refused_login_is_a_mailbox_error_that_hides_the_password(tmp_path: Path) -> None:
    # its own server: dovecot slows every later login from an address after a failed one
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="crmcore-dovecot-"))
    server = Dovecot(root)
    try:
        server.start()
        box = ImapMailbox(server.url().replace("s3cret", "wrong"))
        with pytest.raises(MailboxError) as raised:
            box.fetch(None, limit=1, max_bytes=100)
        assert "AUTHENTICATIONFAILED" in str(raised.value) and "wrong" not in str(raised.value)
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_adapter_reads_by_uid_without_touching_flags(dovecot: Dovecot, folder: str) -> None:
    dovecot.append(folder, *(mail("a@example.org", f"m{i}") for i in range(4)))
    box = ImapMailbox(dovecot.url(folder))
    try:
        everything = box.fetch(None, limit=10, max_bytes=10_000)
        after_two = box.fetch(Cursor(everything.uidvalidity, 2), limit=10, max_bytes=10_000)
        stale = box.fetch(Cursor(everything.uidvalidity + 1, 3), limit=2, max_bytes=10_000)
        past_end = box.fetch(Cursor(everything.uidvalidity, 4), limit=10, max_bytes=10_000)
    finally:
        box.close()
    assert [m.uid for m in everything.messages] == [1, 2, 3, 4]
    assert [m.uid for m in after_two.messages] == [3, 4]
    assert [m.uid for m in stale.messages] == [1, 2]  # another UIDVALIDITY: from the start
    assert past_end.messages == ()  # "UID 5:*" still matches the last message; it is not returned
    with dovecot.client() as imap:
        imap.select(f'"{folder}"')
        assert imap.search(None, "UNSEEN")[1][0].split() == [b"1", b"2", b"3", b"4"]


def test_mail_sent_over_smtp_arrives_through_imap(
    crm: crmcore.CRM, dovecot: Dovecot, tmp_path: Path
) -> None:
    """The whole trip: crmcore -> SMTP (aiosmtpd) -> Maildir -> IMAP (dovecot) -> crmcore."""
    from tests.email.servers import MaildirDelivery, smtp_server

    ada = customer(crm, "Ada", "ada@example.org", "marketing")
    with smtp_server(MaildirDelivery(dovecot.maildir)) as port:
        out = crm.operational.mail.mailer(f"smtp://127.0.0.1:{port}", sender="ada@example.org",
                                          unsubscribe=UNSUBSCRIBE)
        sent = out.send(ada.id, Template(subject="Note to self", text="hi"), purpose="marketing")
    report = poller(crm, dovecot, "INBOX", tmp_path / "cursor").poll()
    assert report.handled == {Handled.LOGGED: 1}
    logged = {i.direction: i for i in crm.interactions.timeline(ada.id)}
    assert logged[Direction.OUTBOUND].reference == logged[Direction.INBOUND].reference == sent.message_id
    assert logged[Direction.INBOUND].subject == "Note to self"


@pytest.mark.parametrize("scheme", ["imaps", "imap+starttls"])
def test_tls_mailboxes(crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path, scheme: str) -> None:
    ada = customer(crm, "Ada", "ada@example.org")
    dovecot.append(folder, mail("ada@example.org", "over TLS"))

    report = crm.operational.mail.poller(dovecot.url(folder, scheme), state=tmp_path / "c").poll()

    assert report.handled == {Handled.LOGGED: 1}
    assert [i.subject for i in crm.interactions.timeline(ada.id)] == ["over TLS"]
    untrusted = ImapMailbox(dovecot.url(folder, scheme).split("?")[0])
    with pytest.raises(MailboxError, match="certificate"):
        untrusted.fetch(None, limit=1, max_bytes=100)


def test_run_keeps_polling_until_stopped(
    crm: crmcore.CRM, dovecot: Dovecot, folder: str, tmp_path: Path
) -> None:
    import threading

    ada = customer(crm, "Ada", "ada@example.org")
    loop = poller(crm, dovecot, folder, tmp_path / "cursor")
    stop = threading.Event()
    worker = threading.Thread(target=loop.run, args=(stop,), kwargs={"interval": 0.05})
    worker.start()
    try:
        dovecot.append(folder, mail("ada@example.org", "first"))
        dovecot.append(folder, mail("ada@example.org", "second"))
        deadline = time.monotonic() + 10
        while len(crm.interactions.timeline(ada.id)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
    assert sorted(i.subject for i in crm.interactions.timeline(ada.id)) == ["first", "second"]
