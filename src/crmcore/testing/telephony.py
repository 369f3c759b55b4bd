"""The telephony conformance suite: two phones of the backend under test call each other.

    class TestMyPhones(TelephonyContract):
        def open_pair(self) -> tuple[Telephony, Telephony, str]:
            return caller, callee, address_the_caller_dials_to_reach_the_callee

Every event is checked as a listener sees it; every finished call must leave a
`CallRecord` whose times and outcome tell what happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from crmcore.errors import NotFound
from crmcore.model.channels import Direction
from crmcore.ports.telephony import CallEvent, CallEventKind, CallOutcome, CallRecord, Telephony

RINGING, ANSWERED, ENDED = CallEventKind.RINGING, CallEventKind.ANSWERED, CallEventKind.ENDED


class CallLog:
    """A call listener a test can wait on."""

    def __init__(self) -> None:
        self.events: list[CallEvent] = []
        self._changed = threading.Condition()

    def __call__(self, event: CallEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def wait(self, kind: CallEventKind, timeout: float = 10.0, **match: Any) -> CallEvent:
        """The first event of this kind whose attributes equal `match`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event.kind is kind and all(getattr(event, k) == v for k, v in match.items()):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind} event {match} within {timeout}s; saw {self.events}")
                self._changed.wait(left)

    def record(self, **match: Any) -> CallRecord:
        found = self.wait(ENDED, **match).record
        assert found is not None
        return found


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


class TelephonyContract:
    """Ringing, answering, hanging up, rejecting and giving up, as both phones report them."""

    def open_pair(self) -> tuple[Telephony, Telephony, str]:
        raise NotImplementedError("return (caller, callee, the address that reaches the callee)")

    @pytest.fixture
    def pair(self) -> Iterator[tuple[Telephony, CallLog, Telephony, CallLog, str]]:
        caller, callee, address = self.open_pair()
        heard, rang = CallLog(), CallLog()
        caller.subscribe(heard)
        callee.subscribe(rang)
        try:
            yield caller, heard, callee, rang, address
        finally:
            caller.close()
            callee.close()

    def test_an_answered_call_leaves_a_record_on_both_sides(
        self, pair: tuple[Telephony, CallLog, Telephony, CallLog, str]
    ) -> None:
        caller, heard, callee, rang, address = pair
        dialled = caller.dial(address)
        ringing = rang.wait(RINGING)
        assert ringing.direction is Direction.INBOUND
        eventually(lambda: ringing.call_id in callee.live_calls())
        callee.answer(ringing.call_id)
        heard.wait(ANSWERED, call_id=dialled)
        rang.wait(ANSWERED, call_id=ringing.call_id)
        time.sleep(0.1)
        caller.hangup(dialled)
        mine, theirs = heard.record(call_id=dialled), rang.record(call_id=ringing.call_id)
        for record, direction in ((mine, Direction.OUTBOUND), (theirs, Direction.INBOUND)):
            assert record.outcome is CallOutcome.ANSWERED and record.direction is direction
            assert record.answered_at is not None and record.duration >= timedelta(seconds=0.05)
            assert record.started_at <= record.answered_at <= record.ended_at
        eventually(lambda: dialled not in caller.live_calls() and ringing.call_id not in callee.live_calls())

    def test_a_rejected_call_is_not_answered(
        self, pair: tuple[Telephony, CallLog, Telephony, CallLog, str]
    ) -> None:
        caller, heard, callee, rang, address = pair
        dialled = caller.dial(address)
        ringing = rang.wait(RINGING)
        callee.hangup(ringing.call_id)
        record = heard.record(call_id=dialled)
        assert record.outcome in (CallOutcome.REJECTED, CallOutcome.BUSY)
        assert record.answered_at is None and record.duration == timedelta(0)
        assert rang.record(call_id=ringing.call_id).outcome is not CallOutcome.ANSWERED

    def test_nobody_answering_ends_as_no_answer(
        self, pair: tuple[Telephony, CallLog, Telephony, CallLog, str]
    ) -> None:
        caller, heard, _callee, rang, address = pair
        started = time.monotonic()
        dialled = caller.dial(address, no_answer_after=0.5)
        rang.wait(RINGING)
        record = heard.record(call_id=dialled)
        assert record.outcome is CallOutcome.NO_ANSWER and record.answered_at is None
        assert time.monotonic() - started >= 0.45
        assert record.ring_time >= timedelta(seconds=0.45)

    def test_answering_a_call_that_is_not_there_is_not_found(
        self, pair: tuple[Telephony, CallLog, Telephony, CallLog, str]
    ) -> None:
        _caller, _heard, callee, _rang, _address = pair
        with pytest.raises(NotFound):
            callee.answer("no-such-call")
