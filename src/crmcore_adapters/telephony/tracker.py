"""Book-keeping every telephony adapter shares: live calls, time stamps, finished records.

Backends report calls without times (baresip) or with times of their own
clock; the tracker stamps each step with the adapter's clock so every record
is measured the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta

import attrs

from crmcore import values as v
from crmcore.model import Direction
from crmcore.ports.telephony import CallEvent, CallEventKind, CallListener, CallOutcome, CallRecord

log = logging.getLogger(__name__)
REMEMBER_ENDED = 200_000
"""Ended calls remembered at most (a backstop: `remember` is the window that matters)."""
REMEMBER_ERRORS = 100
"""Faults kept for inspection: the newest ones; a flood of bad requests costs no memory."""


@attrs.define
class _Live:
    direction: Direction
    peer: str
    display_name: str
    started_at: datetime
    answered_at: datetime | None = None


class CallTracker:
    """Live calls of one phone; turns backend steps into `CallEvent`s for the listeners."""

    def __init__(
        self, *, agent: str | None = None, clock: Callable[[], datetime] = v.now,
        remember: timedelta = timedelta(hours=24),
    ) -> None:
        self.agent = agent
        self.clock = clock
        self.remember = remember
        self.listeners: list[CallListener] = []
        self.errors: deque[BaseException] = deque(maxlen=REMEMBER_ERRORS)
        """Listener failures and malformed backend messages: the newest REMEMBER_ERRORS, for inspection."""
        self._live: dict[str, _Live] = {}
        self._ended: OrderedDict[str, datetime] = OrderedDict()
        """Calls ended within `remember`: a late or replayed report of one does not bring it back."""
        self._lock = threading.Lock()
        self._queue: queue.Queue[CallEvent] = queue.Queue()
        self._worker: threading.Thread | None = None

    def live(self) -> list[str]:
        with self._lock:
            return list(self._live)

    def is_live(self, call_id: str) -> bool:
        with self._lock:
            return call_id in self._live

    def answered(self, call_id: str) -> bool:
        with self._lock:
            leg = self._live.get(call_id)
            return leg is not None and leg.answered_at is not None

    def ringing(self, call_id: str, direction: Direction, peer: str, display_name: str = "",
                at: datetime | None = None) -> None:
        """A new call; repeated reports of the same call are ignored."""
        with self._lock:
            if call_id in self._live or call_id in self._ended:
                return
            leg = self._live[call_id] = _Live(
                direction, _clean(peer, 998), _clean(display_name, 200), at or self.clock()
            )
        self._emit(CallEventKind.RINGING, call_id, leg)

    def answer(self, call_id: str) -> None:
        with self._lock:
            leg = self._live.get(call_id)
            if leg is None or leg.answered_at is not None:
                return
            leg.answered_at = max(self.clock(), leg.started_at)
        self._emit(CallEventKind.ANSWERED, call_id, leg)

    def end(self, call_id: str, outcome: Callable[[bool], CallOutcome] | CallOutcome, reason: str) -> None:
        """Close a call; `outcome` may depend on whether it had been answered."""
        with self._lock:
            leg = self._live.pop(call_id, None)
            if leg is None:
                return
            now = self.clock()
            self._forget_ended(now)
            self._ended[call_id] = now
            if len(self._ended) > REMEMBER_ENDED:
                self._ended.popitem(last=False)
        ended = max(now, leg.answered_at or leg.started_at)
        chosen = outcome if isinstance(outcome, CallOutcome) else outcome(leg.answered_at is not None)
        record = CallRecord(
            call_id=call_id, direction=leg.direction, peer=leg.peer, started_at=leg.started_at,
            answered_at=leg.answered_at, ended_at=ended, outcome=chosen, reason=reason[:500],
            agent=self.agent,
        )
        self._emit(CallEventKind.ENDED, call_id, leg, record)

    def _forget_ended(self, now: datetime) -> None:
        """Drop the ended calls older than the window (the oldest are first); under the lock."""
        horizon = now - self.remember
        while self._ended and next(iter(self._ended.values())) < horizon:
            self._ended.popitem(last=False)

    def end_all(self, reason: str) -> None:
        """The phone vanished: every live call ends as FAILED, so no record is lost."""
        for call_id in self.live():
            self.end(call_id, CallOutcome.FAILED, reason)

    def fault(self, error: BaseException, *, level: int = logging.WARNING) -> None:
        """Keep a fault for inspection; `level` lets a flood of refused requests stay out of the logs."""
        log.log(level, "telephony: %s", error)
        error.__context__ = None  # kept without the frames (and request buffers) it was raised in
        self.errors.append(error.with_traceback(None))

    def _emit(self, kind: CallEventKind, call_id: str, leg: _Live, record: CallRecord | None = None) -> None:
        event = CallEvent(
            kind=kind, call_id=call_id, direction=leg.direction, peer=leg.peer,
            at=record.ended_at if record else (leg.answered_at or leg.started_at),
            display_name=leg.display_name, record=record, agent=self.agent,
        )
        self._queue.put(event)
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._deliver, name="call-events", daemon=True)
                self._worker.start()

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every event so far reached the listeners; False on timeout."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def _deliver(self) -> None:
        """Listeners run on their own thread, in order: they may drive the phone without deadlock."""
        while True:
            event = self._queue.get()
            try:
                for listener in list(self.listeners):
                    try:
                        listener(event)
                    except Exception as exc:  # a listener must never take the phone down
                        log.exception("telephony listener failed on %s %s", event.kind, event.call_id)
                        self.errors.append(exc)
            finally:
                self._queue.task_done()


class Tracked:
    """The listener and live-call members of an adapter whose calls its `tracker` keeps."""

    tracker: CallTracker

    @property
    def errors(self) -> deque[BaseException]:
        return self.tracker.errors

    def subscribe(self, listener: CallListener) -> None:
        self.tracker.listeners.append(listener)

    def live_calls(self) -> list[str]:
        return self.tracker.live()


def _clean(text: str, limit: int) -> str:
    """Text from the wire made safe for the model: no control characters, bounded length."""
    return "".join(ch for ch in str(text) if ch.isprintable())[:limit]
