"""Calls: who is calling, what the agent sees when the phone rings, and the record afterwards.

The caller's number arrives in whatever form the line gives it (a SIP URI, a
`tel:` URI, a national number); `identify` reads it as E.164 and finds the
customer. `screen_pop` gathers what an agent needs before saying hello. Every
finished call lands on the customer's timeline as a PHONE interaction; a call no
customer can be matched to is kept as a `call.unidentified` event in the outbox,
so no record is lost.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from crmcore import values as v
from crmcore.errors import CRMError, IntegrityError, ValidationError
from crmcore.model import Case, CaseKind, Channel, Customer, Direction, Interaction, Score
from crmcore.operational.routing import DEFAULT_POLICY, CallQueue, RoutingPolicy, WaitingCall
from crmcore.ports.telephony import CallEvent, CallEventKind, CallEvents, CallRecord, Telephony

if TYPE_CHECKING:
    from crmcore.crm import CRM

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"<([^>]*)>")
_SCHEME = re.compile(r"^(?:sips?|tel):", re.IGNORECASE)


def number_of(caller: str, region: str | None = None) -> str:
    """The E.164 number in a caller ID: `sip:+15551234567@host`, `tel:+1-555-123-4567`,
    `"Ada" <sip:0612345678@host;user=phone>` (national numbers need `region`)."""
    if not isinstance(caller, str):
        raise ValidationError("caller", caller, "must be a string")
    text = caller.strip()
    bracketed = _ADDRESS.search(text)
    if bracketed:
        text = bracketed.group(1)
    if _SCHEME.match(text):
        text = _SCHEME.sub("", text).split("@", 1)[0].split(";", 1)[0]
    if not text or not any(ch.isdigit() for ch in text):
        raise ValidationError("caller", caller, "carries no phone number (withheld or a name)")
    return v.phone(text, "caller", region)


@attrs.frozen
class Identification:
    """Who a caller is: one customer, several (a shared line), or nobody and why."""

    caller: str
    number: str | None
    customers: tuple[Customer, ...] = ()
    reason: str = ""

    @property
    def customer(self) -> Customer | None:
        return self.customers[0] if len(self.customers) == 1 else None


@attrs.frozen
class ScreenPop:
    """What the agent sees as the phone rings."""

    customer: Customer
    open_cases: tuple[Case, ...]
    recent: tuple[Interaction, ...]
    """Last contacts on every channel and at every service point, newest first."""
    scores: dict[str, Score]
    next_offer: Any | None
    call_id: str | None = None
    number: str | None = None

    @property
    def tier(self) -> str | None:
        return self.customer.tier

    @property
    def open_complaint(self) -> bool:
        return any(case.kind is CaseKind.COMPLAINT for case in self.open_cases)

    def score(self, scorer: str) -> float | None:
        found = self.scores.get(scorer)
        return found.value if found else None


PopListener = Callable[[CallEvent, Identification, "ScreenPop | None"], None]


class Calls:
    """Caller identification, screen pops and call records for one CRM."""

    value_scorer = "clv"
    churn_scorer = "churn"

    def __init__(self, crm: CRM, *, region: str | None = None) -> None:
        self.crm = crm
        self.region = region
        """Where national numbers are read (e.g. 'FR'); E.164 numbers need none."""

    def identify(self, caller: str, region: str | None = None) -> Identification:
        """Never raises on a bad caller ID: an unknown or malformed one is an answer too."""
        try:
            number = number_of(caller, region or self.region)
        except ValidationError as exc:
            return Identification(str(caller)[:200], None, (), exc.reason)
        found = tuple(self.crm.customers.by_phone(number))
        reason = "" if len(found) == 1 else (
            "no customer has this number" if not found else f"{len(found)} customers share this number"
        )
        return Identification(caller, number, found, reason)

    def screen_pop(
        self, customer_id: str, *, call_id: str | None = None, number: str | None = None,
        recent: int = 10,
    ) -> ScreenPop:
        with self.crm.reading():
            customer = self.crm.customers.get(customer_id)
            cases = tuple(self.crm.cases.for_customer(customer_id, open_only=True))
            timeline = tuple(self.crm.interactions.timeline(customer_id, limit=recent))
        # outside the transaction: a failing analytics read must not spoil the one above
        scores = self._analytics("latest_scores", customer_id) or {}
        offer = self._analytics("next_offer", customer_id)
        return ScreenPop(customer, cases, timeline, dict(scores), offer, call_id, number)

    def _analytics(self, name: str, customer_id: str) -> Any | None:
        """What the analytical family knows of the customer, when it offers it; None otherwise."""
        method = getattr(self.crm.analytical, name, None)
        if not callable(method):
            return None
        try:
            return method(customer_id)
        except CRMError as exc:
            log.info("screen pop without %s for %s: %s", name, customer_id, exc)
            return None

    def waiting_call(
        self, call_id: str, pop: ScreenPop | None, *, enqueued_at: datetime | None = None,
        skills: tuple[str, ...] = (),
    ) -> WaitingCall:
        """A caller as the queue sees them: status from the screen pop, or a stranger."""
        at = enqueued_at or self.crm.clock()
        if pop is None:
            return WaitingCall(call_id, at, skills=skills)
        churn = pop.score(self.churn_scorer)
        return WaitingCall(
            call_id, at, customer_id=pop.customer.id, tier=pop.tier,
            value=max(pop.score(self.value_scorer) or 0.0, 0.0), open_complaint=pop.open_complaint,
            churn_risk=min(max(churn or 0.0, 0.0), 1.0), skills=skills,
        )

    def record(
        self, record: CallRecord, *, customer_id: str | None = None,
        service_point: str | None = None, region: str | None = None,
    ) -> Interaction | None:
        """Put a finished call on the customer's timeline; once only, however often it is retried.

        Returns None when no single customer matches the other party: the record is
        then kept as a `call.unidentified` event instead.
        """
        if customer_id is None:
            identified = self.identify(record.peer, region)
            if identified.customer is None:
                self._unidentified(record, identified, service_point)
                return None
            customer_id = identified.customer.id
        interaction_id = "call-" + hashlib.sha256(record.call_id.encode()).hexdigest()[:32]
        try:
            return self.crm.interactions.log(
                customer_id, channel=Channel.PHONE, direction=record.direction,
                at=record.started_at, id=interaction_id, agent=record.agent,
                duration=record.duration, outcome=str(record.outcome),
                subject=f"{record.direction} call, {record.outcome}".replace("_", " ").capitalize(),
                reference=record.call_id, service_point=service_point,
            )
        except IntegrityError:
            return self.crm.interactions.get(interaction_id)

    def _unidentified(self, record: CallRecord, who: Identification, service_point: str | None) -> None:
        with self.crm.transaction():
            self.crm.emit(
                "call.unidentified", record.call_id, direction=str(record.direction),
                peer=record.peer, number=who.number, reason=who.reason,
                candidates=[c.id for c in who.customers], outcome=str(record.outcome),
                started_at=record.started_at.isoformat(), ended_at=record.ended_at.isoformat(),
                answered_at=record.answered_at.isoformat() if record.answered_at else None,
                agent=record.agent, service_point=service_point, cause=record.reason,
            )

    def queue(self, policy: RoutingPolicy = DEFAULT_POLICY) -> CallQueue:
        """A call queue on the CRM's clock; a `crmcore_route_call` plugin, if any, may override it."""
        hook = self.crm.plugins.hook.crmcore_route_call
        return CallQueue(clock=self.crm.clock, policy=policy,
                         override=hook if hook.get_hookimpls() else None)

    def desk(
        self, phone: CallEvents, *, service_point: str | None = None, region: str | None = None,
        on_pop: PopListener | None = None, queue: CallQueue | None = None,
    ) -> CallDesk:
        """Listen to a phone: identify callers as it rings, record every call as it ends.

        With a `queue`, inbound callers join it with their status as they ring, leave
        it when answered, and count as abandoned if they hang up first.
        """
        return CallDesk(self, phone, service_point=service_point, region=region, on_pop=on_pop,
                        queue=queue)


class CallDesk:
    """The link between one phone and the CRM; it never lets an error reach the phone."""

    def __init__(
        self, calls: Calls, phone: CallEvents, *, service_point: str | None = None,
        region: str | None = None, on_pop: PopListener | None = None, queue: CallQueue | None = None,
    ) -> None:
        self.calls = calls
        self.queue = queue
        self.phone = phone
        self.service_point = service_point
        self.region = region
        self.on_pop = on_pop
        self.customers: dict[str, str] = {}
        """Call id -> customer, for calls whose customer is known."""
        self.unrecorded: list[tuple[CallRecord, str | None]] = []
        """Records the CRM could not take (storage down); `retry()` tries again."""
        self._expected: dict[str, str] = {}
        self._lock = threading.Lock()
        phone.subscribe(self)

    def click_to_call(self, customer_id: str, number: str | None = None) -> str:
        """Ring a customer from the agent's phone; the call is recorded on their timeline."""
        if not hasattr(self.phone, "dial"):
            raise ValidationError("phone", self.phone, "cannot place calls")
        phone: Telephony = self.phone  # type: ignore[assignment]
        customer = self.calls.crm.customers.get(customer_id)
        target = v.phone(number, "number", self.region) if number else next(iter(customer.phones), None)
        if target is None:
            raise ValidationError("phones", customer.phones, f"customer {customer_id} has no number")
        with self._lock:
            self._expected[target] = customer_id
        call_id = phone.dial(target)
        with self._lock:
            self._expected.pop(target, None)
            if call_id in phone.live_calls():  # else it has ended, and was recorded already
                self.customers.setdefault(call_id, customer_id)
        return call_id

    def __call__(self, event: CallEvent) -> None:
        try:
            if event.kind is CallEventKind.RINGING:
                self._ringing(event)
            elif event.kind is CallEventKind.ANSWERED and self.queue is not None:
                self.queue.answered(event.call_id)
            elif event.kind is CallEventKind.ENDED and event.record is not None:
                if self.queue is not None:
                    self.queue.abandon(event.call_id)
                self._ended(event.record)
        except Exception:
            log.exception("call desk failed on %s %s", event.kind, event.call_id)
            if event.record is not None:
                self.unrecorded.append((event.record, self.customers.get(event.call_id)))

    def _ringing(self, event: CallEvent) -> None:
        customer_id = self._expected_for(event.peer)
        if customer_id is not None:
            with self._lock:
                self.customers[event.call_id] = customer_id
            return
        identified = self.calls.identify(event.peer, self.region)
        pop = None
        if identified.customer is not None:
            with self._lock:
                self.customers[event.call_id] = identified.customer.id
            pop = self.calls.screen_pop(identified.customer.id, call_id=event.call_id,
                                        number=identified.number)
        if self.queue is not None and event.direction is Direction.INBOUND:
            self.queue.enqueue(self.calls.waiting_call(event.call_id, pop, enqueued_at=event.at))
        if self.on_pop is not None:
            self.on_pop(event, identified, pop)

    def _expected_for(self, peer: str) -> str | None:
        with self._lock:
            if not self._expected:
                return None
        try:
            number = number_of(peer, self.region)
        except ValidationError:
            return None
        with self._lock:
            return self._expected.get(number)

    def _ended(self, record: CallRecord) -> None:
        with self._lock:
            customer_id = self.customers.pop(record.call_id, None)
        customer_id = customer_id or self._expected_for(record.peer)
        try:
            self.calls.record(record, customer_id=customer_id, service_point=self.service_point,
                              region=self.region)
        except CRMError:
            log.exception("call %s could not be recorded; kept for retry", record.call_id)
            self.unrecorded.append((record, customer_id))

    def retry(self) -> int:
        """Record what failed before; returns how many are still left."""
        pending, self.unrecorded = self.unrecorded, []
        for record, customer_id in pending:
            try:
                self.calls.record(record, customer_id=customer_id, service_point=self.service_point,
                                  region=self.region)
            except CRMError:
                self.unrecorded.append((record, customer_id))
        return len(self.unrecorded)
