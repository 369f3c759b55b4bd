"""The adapter's own pieces: netstring framing, close reasons, the call tracker."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore.errors import ValidationError
from crmcore.model import Direction
from crmcore.ports.telephony import CallEvent, CallEventKind, CallOutcome
from crmcore_adapters.telephony.baresip import NetstringDecoder, netstring, outcome_of
from crmcore_adapters.telephony.tracker import CallTracker

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=10), st.lists(st.integers(0, 4000), max_size=8))
def test_netstrings_survive_any_split_of_the_stream(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(netstring(f) for f in frames)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    decoder = NetstringDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += decoder.feed(stream[start:end])
    assert out == frames


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_a_validation_error_or_a_wait_never_a_crash(junk: bytes) -> None:
    decoder = NetstringDecoder(max_length=1000)
    try:
        decoder.feed(junk)
    except ValidationError as exc:
        assert exc.field == "netstring"


@pytest.mark.parametrize("junk", [b"x:ab,", b"3:abcd", b"99999999:", b"-1:", b":", b"12345"])
def test_broken_framing_is_refused(junk: bytes) -> None:
    with pytest.raises(ValidationError):
        NetstringDecoder(max_length=1000).feed(junk)


@pytest.mark.parametrize(
    ("reason", "answered", "rejected", "gave_up", "expected"),
    [
        ("Connection reset by user", True, False, False, CallOutcome.ANSWERED),
        ("Connection reset by peer", True, True, False, CallOutcome.ANSWERED),
        ("rtp stream error", True, False, False, CallOutcome.FAILED),
        ("Connection reset by user", False, True, False, CallOutcome.REJECTED),
        ("Connection reset by user", False, False, True, CallOutcome.NO_ANSWER),
        ("Connection reset by peer", False, False, False, CallOutcome.NO_ANSWER),
        ("486 Busy Here", False, False, False, CallOutcome.BUSY),
        ("600 Busy Everywhere", False, False, False, CallOutcome.BUSY),
        ("486 Rejected", False, False, False, CallOutcome.REJECTED),
        ("603 Decline", False, False, False, CallOutcome.REJECTED),
        ("480 Temporarily Unavailable", False, False, False, CallOutcome.NO_ANSWER),
        ("404 Not Found", False, False, False, CallOutcome.FAILED),
        ("Connection refused", False, False, False, CallOutcome.FAILED),
        ("Connection timed out", False, False, False, CallOutcome.FAILED),
        ("", False, False, False, CallOutcome.FAILED),
    ],
)
def test_close_reasons(reason: str, answered: bool, rejected: bool, gave_up: bool,
                       expected: CallOutcome) -> None:
    assert outcome_of(reason, answered, rejected=rejected, gave_up=gave_up) is expected


def test_tracker_stamps_times_and_survives_a_failing_listener() -> None:
    ticks = iter(T0 + timedelta(seconds=s) for s in (0, 2, 9))
    tracker = CallTracker(agent="ann", clock=lambda: next(ticks))
    seen: list[CallEvent] = []

    def broken(event: CallEvent) -> None:
        raise RuntimeError("listener bug")

    tracker.listeners += [broken, seen.append]
    tracker.ringing("c1", Direction.INBOUND, "sip:+33612345678@x\x00\x07", "Ada\n")
    tracker.ringing("c1", Direction.INBOUND, "again")  # repeated reports are ignored
    tracker.answer("c1")
    tracker.end("c1", lambda answered: CallOutcome.ANSWERED if answered else CallOutcome.FAILED, "bye")
    tracker.end("c1", CallOutcome.FAILED, "late duplicate")
    tracker.ringing("c1", Direction.INBOUND, "a late report of an ended call")
    assert tracker.drain()
    assert [e.kind for e in seen] == [CallEventKind.RINGING, CallEventKind.ANSWERED, CallEventKind.ENDED]
    assert (seen[0].peer, seen[0].display_name) == ("sip:+33612345678@x", "Ada")
    record = seen[-1].record
    assert record is not None and record.agent == "ann"
    assert (record.started_at, record.answered_at, record.ended_at) == (
        T0, T0 + timedelta(seconds=2), T0 + timedelta(seconds=9))
    assert len(tracker.errors) == 3 and all(isinstance(e, RuntimeError) for e in tracker.errors)


def test_tracker_ends_every_live_call_when_the_phone_vanishes() -> None:
    tracker = CallTracker()
    seen: list[CallEvent] = []
    tracker.listeners.append(seen.append)
    tracker.ringing("a", Direction.INBOUND, "sip:1@x")
    tracker.ringing("b", Direction.OUTBOUND, "sip:2@x")
    tracker.answer("b")
    tracker.end_all("phone vanished")
    assert tracker.drain() and tracker.live() == []
    ended = {e.call_id: e.record for e in seen if e.record}
    assert {k: (r.outcome, r.answered_at is not None) for k, r in ended.items()} == {
        "a": (CallOutcome.FAILED, False), "b": (CallOutcome.FAILED, True)}
