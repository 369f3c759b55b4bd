"""End to end over real SIP on loopback: baresip phones and sipp callers, crmcore on the agent's side."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import attrs
import pytest

import crmcore
from crmcore import Channel, Customer
from crmcore.errors import NotFound, PluginError, ValidationError
from crmcore.model import Score
from crmcore.operational.calls import CallDesk, Identification, ScreenPop
from crmcore.operational.routing import AgentState
from crmcore.plugins import get_plugin_manager, open_adapter
from crmcore.ports.telephony import CallEvent, CallEventKind, CallOutcome
from crmcore_adapters.telephony import baresip
from tests.telephony.conftest import CUSTOMER_NUMBER, SIPP_DIR, Phones, Recorder, sipp, wait_until

RINGING, ANSWERED, ENDED = CallEventKind.RINGING, CallEventKind.ANSWERED, CallEventKind.ENDED


def seed(crm: crmcore.CRM) -> Customer:
    """Ada: platinum, an open complaint, contacts on two channels at two service points, scored."""
    ada = crm.customers.add(Customer.new(
        "Ada Lovelace", phones=["(555) 123-4567"], region="US", tier="platinum",
        lifecycle="customer",
    ))
    crm.cases.open(ada.id, "complaint", "Card blocked abroad")
    crm.interactions.log(ada.id, channel=Channel.EMAIL, direction="inbound", service_point="web",
                         subject="Where is my card?")
    crm.interactions.log(ada.id, channel=Channel.VISIT, direction="inbound",
                         service_point="paris-branch", subject="Asked about travel insurance")
    with crm.transaction() as uow:
        uow.scores.put([Score(ada.id, "churn", crm.clock(), 0.4), Score(ada.id, "clv", crm.clock(), 5200.0)])
    return ada


def phone_calls(crm: crmcore.CRM, customer_id: str) -> list[crmcore.Interaction]:
    return [i for i in crm.interactions.timeline(customer_id) if i.channel is Channel.PHONE]


def call_on_timeline(crm: crmcore.CRM, customer_id: str, call_id: str) -> crmcore.Interaction:
    wait_until(lambda: any(i.reference == call_id for i in phone_calls(crm, customer_id)))
    return next(i for i in phone_calls(crm, customer_id) if i.reference == call_id)


def test_inbound_call_pops_the_customer_and_is_recorded(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)
    agent_phone, customer_phone = phones.start("agent100"), phones.start(CUSTOMER_NUMBER)
    pops: list[tuple[CallEvent, Identification, ScreenPop | None]] = []
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent, \
            baresip.open_phone(customer_phone.url()) as customer:
        agent.subscribe(recorder)
        crm.operational.calls.desk(agent, service_point="paris-cc",
                                   on_pop=lambda *seen: pops.append(seen))
        call_id = customer.dial(agent_phone.sip_uri)
        wait_until(lambda: bool(pops))
        event, who, pop = pops[0]
        assert (event.call_id, who.number) == (call_id, CUSTOMER_NUMBER)
        assert pop is not None and pop.customer.id == ada.id and pop.tier == "platinum"
        assert pop.open_complaint and [c.subject for c in pop.open_cases] == ["Card blocked abroad"]
        assert {i.service_point for i in pop.recent} == {"web", "paris-branch"}
        assert {i.channel for i in pop.recent} == {Channel.EMAIL, Channel.VISIT}
        assert (pop.score("churn"), pop.score("clv")) == (0.4, 5200.0)
        agent.answer(call_id)
        recorder.wait(ANSWERED, call_id=call_id)
        time.sleep(0.15)
        customer.hangup(call_id)
        record = recorder.wait(ENDED, call_id=call_id).record
    assert record is not None and record.outcome is CallOutcome.ANSWERED
    assert record.duration >= timedelta(seconds=0.15)
    call = call_on_timeline(crm, ada.id, call_id)
    assert (call.direction, call.outcome, call.agent, call.service_point) == (
        "inbound", "answered", "agent100", "paris-cc")
    assert (call.occurred_at, call.duration) == (record.started_at, record.duration)


def test_click_to_call_rings_the_customer_and_records_the_call(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)
    agent_phone, customer_phone = phones.start("agent100"), phones.start(CUSTOMER_NUMBER)
    gateway = f"127.0.0.1:{customer_phone.sip_port}"
    with baresip.open_phone(agent_phone.url(agent="agent100", gateway=gateway)) as agent, \
            baresip.open_phone(customer_phone.url()) as customer:
        customer.subscribe(recorder)
        desk = crm.operational.calls.desk(agent)
        call_id = desk.click_to_call(ada.id)
        ringing = recorder.wait(RINGING, call_id=call_id)
        assert ringing.direction == "inbound" and "agent100" in ringing.peer
        customer.answer(call_id)
        recorder.wait(ANSWERED, call_id=call_id)
        time.sleep(0.1)
        agent.hangup(call_id)
        recorder.wait(ENDED, call_id=call_id)
    call = call_on_timeline(crm, ada.id, call_id)
    assert (call.direction, call.outcome, call.agent) == ("outbound", "answered", "agent100")
    assert call.duration is not None and call.duration >= timedelta(seconds=0.1)


def test_customer_rejects_and_unanswered_calls_time_out(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)
    agent_phone, customer_phone = phones.start("agent100"), phones.start(CUSTOMER_NUMBER)
    gateway = f"127.0.0.1:{customer_phone.sip_port}"
    url = agent_phone.url(agent="agent100", gateway=gateway, no_answer="0.4")
    with baresip.open_phone(url) as agent, baresip.open_phone(customer_phone.url()) as customer:
        agent.subscribe(recorder)
        desk = crm.operational.calls.desk(agent)
        declined = desk.click_to_call(ada.id)
        wait_until(lambda: declined in customer.live_calls())
        customer.hangup(declined)
        rejected = recorder.wait(ENDED, call_id=declined).record
        started = time.monotonic()
        ignored = desk.click_to_call(ada.id)
        missed = recorder.wait(ENDED, call_id=ignored).record
        waited = time.monotonic() - started
    assert rejected is not None
    assert (rejected.outcome, rejected.reason) == (CallOutcome.REJECTED, "486 Rejected")
    assert missed is not None and missed.outcome is CallOutcome.NO_ANSWER and 0.35 < waited < 3
    assert missed.answered_at is None and missed.duration == timedelta(0)
    assert missed.ring_time >= timedelta(seconds=0.35)
    wait_until(lambda: len(phone_calls(crm, ada.id)) == 2)
    outcomes = {i.reference: i.outcome for i in phone_calls(crm, ada.id)}
    assert outcomes == {declined: "rejected", ignored: "no_answer"}


def test_busy_line_and_unreachable_peer_are_recorded(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)
    agent_phone = phones.start("agent100")
    busy_line, port = sipp("-sf", str(SIPP_DIR / "busy.xml"), background=True)
    with baresip.open_phone(agent_phone.url(agent="agent100", gateway=f"127.0.0.1:{port}")) as agent:
        agent.subscribe(recorder)
        desk = crm.operational.calls.desk(agent)
        busy = desk.click_to_call(ada.id)
        busy_record = recorder.wait(ENDED, call_id=busy).record
        closed = agent.dial(f"sip:{CUSTOMER_NUMBER}@127.0.0.1:{port + 1};transport=tcp")
        failed = recorder.wait(ENDED, call_id=closed).record
    busy_line.communicate(timeout=10)
    assert busy_line.returncode == 0
    assert busy_record is not None and (busy_record.outcome, busy_record.reason) == (
        CallOutcome.BUSY, "486 Busy Here")
    assert failed is not None and failed.outcome is CallOutcome.FAILED
    assert failed.reason == "Connection refused"
    wait_until(lambda: len(phone_calls(crm, ada.id)) == 2)
    assert {i.outcome for i in phone_calls(crm, ada.id)} == {"busy", "failed"}


@attrs.frozen
class Call:
    id: str
    agent: baresip.BaresipPhone
    agent_phone: baresip.Baresip
    customer_phone: baresip.Baresip


@contextlib.contextmanager
def answered_call(phones: Phones, crm: crmcore.CRM, recorder: Recorder) -> Iterator[Call]:
    """The customer's phone calls the agent's desk phone and the agent answers."""
    agent_phone, customer_phone = phones.start("agent100"), phones.start(CUSTOMER_NUMBER)
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent, \
            baresip.open_phone(customer_phone.url()) as customer:
        agent.subscribe(recorder)
        crm.operational.calls.desk(agent)
        call_id = customer.dial(agent_phone.sip_uri)
        recorder.wait(RINGING, call_id=call_id)
        agent.answer(call_id)
        recorder.wait(ANSWERED, call_id=call_id)
        yield Call(call_id, agent, agent_phone, customer_phone)


def test_agent_phone_vanishing_mid_call_still_leaves_the_record(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)
    with answered_call(phones, crm, recorder) as call:
        call.agent_phone.kill()
        record = recorder.wait(ENDED, call_id=call.id).record
        assert call.agent.live_calls() == []
        with pytest.raises(PluginError, match="gone"):
            call.agent.dial(call.customer_phone.sip_uri)
    call_id = call.id
    assert record is not None and record.outcome is CallOutcome.FAILED
    assert record.answered_at is not None and record.reason.startswith("phone vanished")
    assert call_on_timeline(crm, ada.id, call_id).outcome == "failed"


def test_customer_phone_vanishing_mid_call_is_a_failed_call(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)
    with answered_call(phones, crm, recorder) as call:
        call.customer_phone.kill()  # no BYE: only the silence of its media tells
        record = recorder.wait(ENDED, call_id=call.id, timeout=8).record
    call_id = call.id
    assert record is not None and (record.outcome, record.reason) == (CallOutcome.FAILED, "rtp stream error")
    assert call_on_timeline(crm, ada.id, call_id).outcome == "failed"


@pytest.mark.parametrize(
    ("caller", "known"),
    [("+442079460018", True), ("+33612345678", False), ("anonymous", False)],
)
def test_scripted_callers_with_any_caller_id(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder, caller: str, known: bool
) -> None:
    grace = crm.customers.add(Customer.new("Grace Hopper", phones=["020 7946 0018"], region="GB",
                                           tier="gold"))
    agent_phone = phones.start("agent100")
    pops: list[tuple[CallEvent, Identification, ScreenPop | None]] = []
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent:
        agent.subscribe(recorder)

        def pick_up(event: CallEvent, who: Identification, pop: ScreenPop | None) -> None:
            pops.append((event, who, pop))
            agent.answer(event.call_id)  # from the event thread: must not deadlock

        crm.operational.calls.desk(agent, on_pop=pick_up)
        crm.plugins.register(subscriber := Subscriber())
        caller_process, _port = sipp(
            f"127.0.0.1:{agent_phone.sip_port}", "-sf", str(SIPP_DIR / "caller.xml"),
            "-s", "agent100", "-key", "caller", caller, "-key", "display", "Scripted Caller", "-d", "100",
        )
        caller_process.communicate(timeout=15)
        ended = recorder.wait(ENDED)
    assert caller_process.returncode == 0, "sipp's call did not complete"
    assert ended.record is not None and ended.record.outcome is CallOutcome.ANSWERED
    assert ended.display_name == "Scripted Caller"
    _event, who, pop = pops[0]
    if known:
        assert pop is not None and (pop.customer.id, pop.tier) == (grace.id, "gold")
        assert call_on_timeline(crm, grace.id, ended.call_id).outcome == "answered"
    else:
        assert pop is None and who.customer is None and who.reason
        wait_until(lambda: bool(subscriber.events))
        kept = subscriber.events[0]
        assert (kept.topic, kept.aggregate_id) == ("call.unidentified", ended.call_id)
        assert (kept.payload["outcome"], kept.payload["reason"]) == ("answered", who.reason)
        assert phone_calls(crm, grace.id) == []
    crm.plugins.unregister(subscriber)


class Subscriber:
    def __init__(self) -> None:
        self.events: list[crmcore.Event] = []

    @crmcore.hookimpl
    def crmcore_on_event(self, event: crmcore.Event, crm: crmcore.CRM) -> None:
        if event.topic.startswith("call."):
            self.events.append(event)


def test_bad_commands_and_a_missing_phone_are_clear_errors(phones: Phones, recorder: Recorder) -> None:
    agent_phone = phones.start("agent100")
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent:
        with pytest.raises(NotFound):
            agent.answer("no-such-call")
        with pytest.raises(ValidationError, match="gateway"):
            agent.dial(CUSTOMER_NUMBER)
        with pytest.raises(ValidationError, match="number"):
            agent.dial("sip:bad uri with spaces")
        # garbage on the control stream is reported, and the phone keeps working
        for junk in (b"not json", b"[1, 2]", b'{"event": true, "class": "call", "type": "CALL_CLOSED"}'):
            agent._dispatch(junk)
        assert len(agent.errors) == 3 and all(isinstance(e, ValidationError) for e in agent.errors)
        agent.subscribe(recorder)
        refused = agent.dial("sip:nobody@127.0.0.1:9;transport=tcp")
        assert recorder.wait(ENDED, call_id=refused).record.outcome is CallOutcome.FAILED  # type: ignore[union-attr]
    agent_phone.stop()
    with pytest.raises(PluginError, match="cannot reach"):
        baresip.open_phone(agent_phone.url())


def test_phones_open_by_url_scheme(phones: Phones) -> None:
    agent_phone = phones.start("agent100")
    phone = open_adapter(get_plugin_manager(), "telephony", "crmcore_register_telephony",
                         agent_phone.url(agent="agent100", no_answer="5"))
    try:
        assert isinstance(phone, baresip.BaresipPhone)
        assert (phone.agent, phone.no_answer_after) == ("agent100", 5.0)
    finally:
        phone.close()


def test_desk_survives_a_record_it_cannot_write(phones: Phones, crm: crmcore.CRM) -> None:
    ada = seed(crm)
    agent_phone, customer_phone = phones.start("agent100"), phones.start(CUSTOMER_NUMBER)
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent, \
            baresip.open_phone(customer_phone.url()) as customer:
        desk: CallDesk = crm.operational.calls.desk(agent)
        call_id = customer.dial(agent_phone.sip_uri)
        wait_until(lambda: call_id in desk.customers)
        crm.customers.remove(crm.customers.get(ada.id))  # gone before the call ends
        customer.hangup(call_id)
        wait_until(lambda: bool(desk.unrecorded))
        threading.Event().wait(0.05)
        assert [r.call_id for r, _ in desk.unrecorded] == [call_id]
        assert desk.retry() == 1  # still no customer to put it on; kept, not dropped
        crm.customers.add(attrs.evolve(ada, version=0))
        assert desk.retry() == 0
    assert call_on_timeline(crm, ada.id, call_id).outcome == "no_answer"



def test_when_callers_wait_the_platinum_customer_is_answered_first(
    phones: Phones, crm: crmcore.CRM, recorder: Recorder
) -> None:
    ada = seed(crm)  # platinum, on CUSTOMER_NUMBER
    plain = crm.customers.add(Customer.new("Pat Plain", phones=["+15550001111"]))
    agent_phone = phones.start("agent100", lines=2)  # a hunt group gives each caller a line
    plain_phone, platinum_phone = phones.start("+15550001111"), phones.start(CUSTOMER_NUMBER)
    queue = crm.operational.calls.queue()
    queue.set_agent(AgentState("agent100"))
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent, \
            baresip.open_phone(plain_phone.url()) as first, \
            baresip.open_phone(platinum_phone.url()) as second:
        second.subscribe(recorder)
        crm.operational.calls.desk(agent, queue=queue)
        waiting = first.dial(agent_phone.lines[0])
        wait_until(lambda: waiting in queue.waiting)
        vip = second.dial(agent_phone.lines[1])
        wait_until(lambda: vip in queue.waiting)
        assert (queue.waiting[vip].customer_id, queue.waiting[waiting].customer_id) == (ada.id, plain.id)
        [assignment] = queue.dispatch()
        assert (assignment.call_id, assignment.agent_id) == (vip, "agent100")
        agent.answer(assignment.call_id)
        recorder.wait(ANSWERED, call_id=vip)  # the platinum caller hears the agent
        assert waiting in agent.live_calls()  # the other is still ringing
        first.hangup(waiting)  # ...and gives up
        wait_until(lambda: queue.outcomes[waiting].abandoned_at is not None)
        agent.hangup(vip)
        recorder.wait(ENDED, call_id=vip)
    figures = queue.metrics()
    assert (figures.by_tier["platinum"].answered, figures.by_tier["none"].abandoned) == (1, 1)
    assert figures.overall.abandonment == 0.5
    assert call_on_timeline(crm, ada.id, vip).outcome == "answered"
    assert call_on_timeline(crm, plain.id, waiting).outcome == "no_answer"


def test_one_line_cannot_pick_a_later_caller_and_says_so(phones: Phones, recorder: Recorder) -> None:
    agent_phone = phones.start("agent100")
    one, two = phones.start("+15550001111"), phones.start(CUSTOMER_NUMBER)
    with baresip.open_phone(agent_phone.url(agent="agent100")) as agent, \
            baresip.open_phone(one.url()) as first, baresip.open_phone(two.url()) as second:
        agent.subscribe(recorder)
        early = first.dial(agent_phone.sip_uri)
        late = second.dial(agent_phone.sip_uri)
        recorder.wait(RINGING, call_id=late)
        with pytest.raises(PluginError, match="rings on the same line"):
            agent.answer(late)
        agent.hangup(early)
        agent.answer(late)
        recorder.wait(ANSWERED, call_id=late)
        assert recorder.wait(ENDED, call_id=early).record.outcome is CallOutcome.REJECTED  # type: ignore[union-attr]
