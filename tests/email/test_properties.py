"""Laws of the inbound side, checked on generated mail against the in-memory storage.

A list-backed `Mailbox` (it implements the port) stands in for IMAP here so that
hypothesis can try hundreds of inputs in seconds; the same code runs against
dovecot in test_inbound.py.
"""

from __future__ import annotations

import hypothesis.strategies as st
import pytest
from hypothesis import event, given, settings

import crmcore
from crmcore.errors import StorageError
from crmcore.operational.mail import Handled, Poller
from crmcore.ports.email import Cursor
from tests.email.fakes import ListMailbox, MemoryCursor

header_names = st.sampled_from(
    ["From", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References", "Content-Type",
     "Content-Transfer-Encoding", "MIME-Version", "Auto-Submitted", "X-Odd"]
)
header_values = st.one_of(
    st.text(max_size=80),
    st.sampled_from([
        "ada@example.org", "Ada <ada@example.org>", "=?utf-8?b?////?=", "=?x-unknown?q?caf=E9?=",
        "multipart/report; report-type=delivery-status; boundary=b", "multipart/mixed; boundary=\"\"",
        "text/plain; charset=bogus", "base64", "<a@b> <c@d>", "<<>>", "support@shop.example",
        "unsubscribe marketing", "auto-replied", "MAILER-DAEMON@mx.example",
    ]),
)
messages = st.one_of(
    st.binary(max_size=300),
    st.builds(
        lambda sender, headers, body: (
            sender + "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        ).encode("utf-8", "surrogatepass") + body,
        st.sampled_from(["", "From: ada@example.org\r\n", "From: Nora <nora@example.net>\r\n"]),
        st.lists(st.tuples(header_names, header_values), max_size=8),
        st.binary(max_size=200),
    ),
)


def _poller(crm: crmcore.CRM, box: ListMailbox, state: MemoryCursor, batch: int = 100) -> Poller:
    return Poller(crm, box, state, support=["support@shop.example"], unsubscribe="unsubscribe@shop.example",
                  unknown="lead", batch=batch, max_bytes=400)


@settings(max_examples=150, deadline=None)
@given(raw=messages)
def test_any_message_ends_in_exactly_one_outcome(raw: bytes) -> None:
    crm = crmcore.open("memory://")
    ada = crm.customers.add(crmcore.Customer.new(name="Ada", emails=["ada@example.org"]))
    crm.customers.set_consent(ada.id, "marketing", crmcore.Channel.EMAIL, crmcore.ConsentStatus.GRANTED,
                              source="t")
    box = ListMailbox([raw])

    report = _poller(crm, box, MemoryCursor()).poll()

    assert report.total == 1 and report.cursor == Cursor(7, 1)
    [outcome] = report.handled
    assert isinstance(outcome, Handled)
    event(str(outcome))


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(0, 12),
    limits=st.lists(st.integers(1, 5), min_size=1, max_size=12),
    batch=st.integers(1, 4),
)
def test_restarts_neither_skip_nor_repeat(count: int, limits: list[int], batch: int) -> None:
    crm = crmcore.open("memory://")
    ada = crm.customers.add(crmcore.Customer.new(name="Ada", emails=["ada@example.org"]))
    box = ListMailbox(
        [f"From: ada@example.org\r\nSubject: m{i}\r\nMessage-ID: <m{i}@x>\r\n\r\nx".encode()
         for i in range(count)]
    )
    state = MemoryCursor()

    handled = 0
    for limit in [*limits, count]:  # each poll is a fresh poller: a restart
        handled += _poller(crm, box, state, batch).poll(limit=limit).total

    assert handled == count
    subjects = sorted(i.subject for i in crm.interactions.timeline(ada.id, limit=None))
    assert subjects == sorted(f"m{i}" for i in range(count))
    state.cursor = None  # the cursor is lost: reading again changes nothing
    again = _poller(crm, box, state, batch).poll()
    assert again.handled == ({Handled.DUPLICATE: count} if count else {})


def test_a_storage_failure_stops_the_poll_without_moving_past_the_message() -> None:
    crm = crmcore.open("memory://")
    ada = crm.customers.add(crmcore.Customer.new(name="Ada", emails=["ada@example.org"]))
    box = ListMailbox([f"From: ada@example.org\r\nSubject: m{i}\r\n\r\nx".encode() for i in range(5)])
    state = MemoryCursor()
    log = crm.interactions.log

    def failing(customer_id: str, **fields: object) -> object:
        if fields.get("subject") == "m2":
            raise StorageError("disk full")
        return log(customer_id, **fields)  # type: ignore[arg-type]

    crm.interactions.log = failing  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        _poller(crm, box, state, batch=10).poll()
    assert state.cursor == Cursor(7, 2)  # m0 and m1 handled; m2 not skipped
    crm.interactions.log = log  # type: ignore[method-assign]
    report = _poller(crm, box, state, batch=10).poll()
    assert report.handled == {Handled.LOGGED: 3}
    assert sorted(i.subject for i in crm.interactions.timeline(ada.id)) == [f"m{i}" for i in range(5)]
