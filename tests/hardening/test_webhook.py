"""Issue 13 (6): a webhook server on the Internet stays flat under forged, stalled and replayed requests."""

from __future__ import annotations

import gc
import socket
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcore.errors import ValidationError
from crmcore.model import Direction
from crmcore.ports.telephony import CallEvent, CallEventKind
from crmcore.testing.hostile import hostile_texts, hostile_webhook_params, outcome
from crmcore_adapters.telephony.baresip import NetstringDecoder
from crmcore_adapters.telephony.tracker import REMEMBER_ERRORS, CallTracker
from crmcore_adapters.telephony.webhook import SIGNATURE_HEADER, WebhookTelephony, signature
from tests.hardening.conftest import NOW
from tests.telephony.conftest import Recorder

TOKEN = "12345678901234567890123456789012"
PUBLIC = "https://crm.example.org"


@pytest.fixture
def provider() -> Iterator[tuple[WebhookTelephony, str]]:
    telephony = WebhookTelephony(
        TOKEN,
        public_url=PUBLIC,
        clock=lambda: NOW,
        max_clients=8,
        request_timeout=0.5,
        replay_window=timedelta(hours=1),
    )
    local = telephony.listen("127.0.0.1", 0, "/voice")
    yield telephony, local
    telephony.close()


def post(local: str, params: dict[str, str], *, sign: bool = True) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        headers[SIGNATURE_HEADER] = signature(TOKEN, f"{PUBLIC}/voice", params)
    request = urllib.request.Request(local, data=urlencode(params).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def event(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {
        "CallSid": sid,
        "From": "+33612345678",
        "To": "+18005550100",
        "Direction": "inbound",
        "CallStatus": status,
        **extra,
    }


def test_forged_requests_leave_no_trace_in_memory(provider: tuple[WebhookTelephony, str]) -> None:
    """3,000 forged requests once cost 34 MB that was never given back."""
    telephony, local = provider
    for i in range(50):  # warm up: threads, caches
        post(local, event(f"W{i}", "ringing"), sign=False)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(1_000):
        assert post(local, event(f"F{i}", "ringing", Junk="x" * 2_000), sign=False) == 403
    gc.collect()  # what is still referenced after a collection is what the server kept
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(telephony.errors) == REMEMBER_ERRORS
    assert grown < 1_000_000, f"{grown:,} bytes kept after 1,000 forged requests"


def test_stalled_clients_are_bounded_and_dropped(provider: tuple[WebhookTelephony, str]) -> None:
    """300 stalled clients once held 300 threads, for ever."""
    telephony, local = provider
    host, port = local.split("/")[2].split(":")
    threads = threading.active_count()
    stalled = [socket.create_connection((host, int(port))) for _ in range(60)]
    try:
        time.sleep(0.2)
        assert threading.active_count() - threads <= telephony.max_clients
        time.sleep(1.0)  # past request_timeout: every stalled client has been let go
        for client in stalled:  # each was closed by the server (unanswered, or after its timeout)
            client.settimeout(2)
            assert client.recv(1024) == b""
        assert post(local, event("CA1", "ringing")) == 204  # and genuine requests get through
    finally:
        for client in stalled:
            client.close()
    deadline = time.monotonic() + 3
    while threading.active_count() > threads + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() <= threads + 1  # the event delivery thread may have started


def test_replays_outside_the_window_are_refused(provider: tuple[WebhookTelephony, str]) -> None:
    telephony, local = provider
    recorder = Recorder()
    telephony.subscribe(recorder)
    fresh = format_datetime(NOW - timedelta(minutes=1))
    stale = format_datetime(NOW - timedelta(hours=2))
    assert post(local, event("CA7", "ringing", Timestamp=fresh)) == 204
    assert post(local, event("CA7", "completed", Timestamp=fresh)) == 204
    recorder.wait(CallEventKind.ENDED, call_id="CA7")
    assert post(local, event("CA8", "ringing", Timestamp=stale)) == 403  # a replay of an old request
    assert post(local, event("CA8", "ringing", Timestamp="yesterday")) == 400
    assert post(local, event("CA7", "ringing", Timestamp=fresh)) == 204  # within the window: remembered
    assert telephony.tracker.drain()
    assert [e.kind for e in recorder.events if e.call_id == "CA7"] == [
        CallEventKind.RINGING,
        CallEventKind.ENDED,
    ]
    assert telephony.live_calls() == []


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=hostile_webhook_params())
def test_hostile_signed_events_are_applied_or_refused(params: dict[str, list[str]]) -> None:
    """Even a correctly signed request may carry anything: it is applied or a ValidationError."""
    telephony = WebhookTelephony(TOKEN, clock=lambda: NOW)
    url = "https://crm.example.org/voice"
    given_signature = signature(TOKEN, url, params)
    result = outcome(lambda: telephony.handle(url, params, given_signature))
    assert result is None or isinstance(result, ValidationError)
    telephony.close()


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    chunks=st.lists(
        st.binary(max_size=40) | st.sampled_from([b"5:hello,", b"99999999999:", b"3:ab", b":,"]), max_size=5
    ),
    peer=hostile_texts,
    display=hostile_texts,
)
def test_hostile_sip_frames_and_callers(chunks: list[bytes], peer: str, display: str) -> None:
    """baresip's control stream and the caller it names: framed or refused; stored clean and bounded."""
    decoder = NetstringDecoder()
    for chunk in chunks:
        framed = outcome(lambda chunk=chunk: decoder.feed(chunk))  # type: ignore[misc]
        if isinstance(framed, ValidationError):
            break
        assert all(len(frame) <= decoder.max_length for frame in framed)
    tracker = CallTracker(clock=lambda: NOW)
    seen: list[CallEvent] = []
    tracker.listeners.append(seen.append)
    tracker.ringing("c1", Direction.INBOUND, peer, display)
    assert tracker.drain()
    [ringing] = seen
    assert ringing.peer.isprintable() and ringing.display_name.isprintable()
    assert len(ringing.peer) <= 998 and len(ringing.display_name) <= 200
