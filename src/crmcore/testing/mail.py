"""Conformance suites for the e-mail ports: an outbound transport and an inbound mailbox.

    class TestMyTransport(TransportContract):
        def open_transport(self) -> EmailTransport: ...       # talking to a server you run
        def received(self) -> list[bytes]: ...                 # what that server accepted
        def open_unreachable(self) -> EmailTransport: ...      # a server that is not there

    class TestMyMailbox(MailboxContract):
        def make_mailbox(self, messages: list[bytes]) -> Mailbox: ...  # a fresh folder holding them
"""

from __future__ import annotations

import email.policy
from collections.abc import Iterator
from datetime import UTC
from email import message_from_bytes
from email.message import EmailMessage

import pytest

from crmcore.ports.email import Cursor, DeliveryError, EmailTransport, Mailbox


def outgoing(n: int, subject: str = "Hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "crm@example.org"
    message["To"] = f"customer{n}@example.org"
    message["Subject"] = subject
    message["Message-ID"] = f"<contract-{n}@example.org>"
    message.set_content(f"Message {n}: café, naïve, ½\n")
    return message


class TransportContract:
    """A transport hands each message over whole, in order, and says why when it cannot."""

    def open_transport(self) -> EmailTransport:
        raise NotImplementedError("return a transport talking to a server you run")

    def received(self) -> list[bytes]:
        raise NotImplementedError("return the raw messages the server accepted, in order")

    def open_unreachable(self) -> EmailTransport:
        raise NotImplementedError("return a transport whose server does not answer")

    @pytest.fixture
    def transport(self) -> Iterator[EmailTransport]:
        opened = self.open_transport()
        yield opened
        opened.close()

    def test_messages_arrive_whole_and_in_order(self, transport: EmailTransport) -> None:
        start = len(self.received())
        for n in range(3):
            transport.send(outgoing(n, subject=f"Bonjour n°{n} \u2013 été"))
        arrived = [message_from_bytes(raw, policy=email.policy.default) for raw in self.received()[start:]]
        assert [m["Message-ID"] for m in arrived] == [f"<contract-{n}@example.org>" for n in range(3)]
        assert [str(m["Subject"]) for m in arrived] == [f"Bonjour n°{n} \u2013 été" for n in range(3)]
        body = arrived[0].get_body()
        assert body is not None and "café, naïve, ½" in body.get_content()

    def test_close_then_send_again_on_a_new_transport(self, transport: EmailTransport) -> None:
        start = len(self.received())
        transport.send(outgoing(10))
        transport.close()
        again = self.open_transport()
        try:
            again.send(outgoing(11))
        finally:
            again.close()
        assert len(self.received()) - start == 2

    def test_an_absent_server_is_a_temporary_delivery_error(self) -> None:
        transport = self.open_unreachable()
        try:
            with pytest.raises(DeliveryError) as caught:
                transport.send(outgoing(20))
            assert caught.value.temporary
        finally:
            transport.close()


def message(i: int, body: bytes = b"body") -> bytes:
    return f"From: a{i}@example.org\r\nSubject: m{i}\r\n\r\n".encode() + body + b"\r\n"


class MailboxContract:
    """A mailbox is read by UID, oldest first, exactly as stored, and reading changes nothing."""

    def make_mailbox(self, messages: list[bytes]) -> Mailbox:
        raise NotImplementedError("return a mailbox on a fresh folder holding these messages")

    def test_everything_in_uid_order_exactly_as_stored(self) -> None:
        sent = [message(i) for i in range(4)]
        batch = self._box(sent).fetch(None, limit=10, max_bytes=10_000)
        uids = [m.uid for m in batch.messages]
        assert uids == sorted(uids) and len(set(uids)) == 4
        assert [m.raw for m in batch.messages] == sent
        assert [m.size for m in batch.messages] == [len(raw) for raw in sent]
        assert all(not m.truncated and m.received_at.tzinfo is UTC for m in batch.messages)

    def test_after_a_cursor_and_within_the_limit(self) -> None:
        box = self._box([message(i) for i in range(5)])
        everything = box.fetch(None, limit=10, max_bytes=10_000)
        second = everything.messages[1].uid
        after = box.fetch(Cursor(everything.uidvalidity, second), limit=2, max_bytes=10_000)
        assert [m.raw for m in after.messages] == [message(2), message(3)]
        last = everything.messages[-1].uid
        assert box.fetch(Cursor(everything.uidvalidity, last), limit=10, max_bytes=10_000).messages == ()

    def test_reading_twice_gives_the_same(self) -> None:
        box = self._box([message(i) for i in range(3)])
        first = box.fetch(None, limit=10, max_bytes=10_000)
        assert box.fetch(None, limit=10, max_bytes=10_000) == first

    def test_another_uidvalidity_reads_from_the_start(self) -> None:
        box = self._box([message(i) for i in range(3)])
        validity = box.fetch(None, limit=1, max_bytes=10_000).uidvalidity
        stale = box.fetch(Cursor(validity + 1, 3), limit=10, max_bytes=10_000)
        assert stale.uidvalidity == validity and len(stale.messages) == 3

    def test_a_message_above_the_limit_comes_header_only(self) -> None:
        big = message(1, b"x" * 5000)
        [received] = self._box([big]).fetch(None, limit=1, max_bytes=1000).messages
        assert received.truncated and received.size == len(big)
        assert received.raw == b"From: a1@example.org\r\nSubject: m1\r\n\r\n"

    def test_an_empty_mailbox(self) -> None:
        batch = self._box([]).fetch(None, limit=10, max_bytes=10_000)
        assert batch.messages == () and batch.uidvalidity > 0

    def test_even_a_huge_header_is_cut_at_the_limit(self) -> None:
        huge = b"From: a@example.org\r\n" + b"X-Pad: " + b"y" * 4000 + b"\r\nSubject: s\r\n\r\nbody\r\n"
        [received] = self._box([huge]).fetch(None, limit=1, max_bytes=1000).messages
        assert received.truncated and received.size == len(huge)
        assert received.raw == huge[:1000]

    # one mailbox per test, closed after it
    @pytest.fixture(autouse=True)
    def _opened(self) -> Iterator[None]:
        self._boxes: list[Mailbox] = []
        yield
        for box in self._boxes:
            box.close()

    def _box(self, messages: list[bytes]) -> Mailbox:
        box = self.make_mailbox(messages)
        self._boxes.append(box)
        return box
