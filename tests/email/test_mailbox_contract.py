"""The Mailbox contract, run against dovecot (IMAP adapter) and the list fake alike."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC

import pytest

from crmcore.ports.email import Cursor, Mailbox
from crmcore_adapters.email.imap import ImapMailbox
from tests.email.fakes import ListMailbox

MakeMailbox = Callable[[list[bytes]], Mailbox]
_folders = itertools.count(1)


@pytest.fixture(params=["imap", "fake"])
def make(request: pytest.FixtureRequest) -> Iterator[MakeMailbox]:
    opened: list[Mailbox] = []

    def build(messages: list[bytes]) -> Mailbox:
        if request.param == "fake":
            return ListMailbox(list(messages))
        dovecot = request.getfixturevalue("dovecot")
        folder = f"Contract{next(_folders)}"
        dovecot.create(folder)
        if messages:
            dovecot.append(folder, *messages)
        box = ImapMailbox(dovecot.url(folder))
        opened.append(box)
        return box

    yield build
    for box in opened:
        box.close()


def message(i: int, body: bytes = b"body") -> bytes:
    return f"From: a{i}@example.org\r\nSubject: m{i}\r\n\r\n".encode() + body + b"\r\n"


def test_everything_in_uid_order_exactly_as_stored(make: MakeMailbox) -> None:
    sent = [message(i) for i in range(4)]
    batch = make(sent).fetch(None, limit=10, max_bytes=10_000)
    uids = [m.uid for m in batch.messages]
    assert uids == sorted(uids) and len(set(uids)) == 4
    assert [m.raw for m in batch.messages] == sent
    assert [m.size for m in batch.messages] == [len(raw) for raw in sent]
    assert all(not m.truncated and m.received_at.tzinfo is UTC for m in batch.messages)


def test_after_a_cursor_and_within_the_limit(make: MakeMailbox) -> None:
    box = make([message(i) for i in range(5)])
    everything = box.fetch(None, limit=10, max_bytes=10_000)
    second = everything.messages[1].uid
    after = box.fetch(Cursor(everything.uidvalidity, second), limit=2, max_bytes=10_000)
    assert [m.raw for m in after.messages] == [message(2), message(3)]
    last = everything.messages[-1].uid
    assert box.fetch(Cursor(everything.uidvalidity, last), limit=10, max_bytes=10_000).messages == ()


def test_another_uidvalidity_reads_from_the_start(make: MakeMailbox) -> None:
    box = make([message(i) for i in range(3)])
    validity = box.fetch(None, limit=1, max_bytes=10_000).uidvalidity
    stale = box.fetch(Cursor(validity + 1, 3), limit=10, max_bytes=10_000)
    assert stale.uidvalidity == validity and len(stale.messages) == 3


def test_a_message_above_the_limit_comes_header_only(make: MakeMailbox) -> None:
    big = message(1, b"x" * 5000)
    [received] = make([big]).fetch(None, limit=1, max_bytes=1000).messages
    assert received.truncated and received.size == len(big)
    assert received.raw == b"From: a1@example.org\r\nSubject: m1\r\n\r\n"


def test_an_empty_mailbox(make: MakeMailbox) -> None:
    batch = make([]).fetch(None, limit=10, max_bytes=10_000)
    assert batch.messages == () and batch.uidvalidity > 0


def test_even_a_huge_header_is_cut_at_the_limit(make: MakeMailbox) -> None:
    huge = b"From: a@example.org\r\n" + b"X-Pad: " + b"y" * 4000 + b"\r\nSubject: s\r\n\r\nbody\r\n"
    [received] = make([huge]).fetch(None, limit=1, max_bytes=1000).messages
    assert received.truncated and received.size == len(huge)
    assert received.raw == huge[:1000]
