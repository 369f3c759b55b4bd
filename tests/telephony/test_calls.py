"""Caller identification, screen pops and call records, on real SQLite storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Channel, Customer
from crmcore.errors import ValidationError
from crmcore.model import Score
from crmcore.operational.calls import number_of
from crmcore.operational.routing import AgentState, Assignment, WaitingCall
from crmcore.plugins import make_plugin_manager
from crmcore.ports.telephony import CallOutcome, CallRecord

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

FORMATS = [
    phonenumbers.PhoneNumberFormat.E164,
    phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    phonenumbers.PhoneNumberFormat.RFC3966,
]
NUMBERS = ["+33612345678", "+442079460018", "+15551234567", "+4930123456", "+819012345678"]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(NUMBERS), st.sampled_from(FORMATS), st.sampled_from(["sip", "tel", "bare", "named"]))
def test_a_caller_id_in_any_format_is_read_as_e164(number: str, style: int, wrapper: str) -> None:
    written = phonenumbers.format_number(phonenumbers.parse(number), style)
    if wrapper == "sip":
        written = f"sip:{written.replace('tel:', '').replace(' ', '')}@10.0.0.1:5060;user=phone"
    elif wrapper == "tel":
        written = "tel:" + written.replace("tel:", "").replace(" ", "-")
    elif wrapper == "named":
        written = f'"Someone" <sip:{written.replace("tel:", "").replace(" ", "")}@pbx.example.org>'
    assert number_of(written) == number


def test_national_numbers_need_a_region() -> None:
    assert number_of("sip:0612345678@pbx;user=phone", "FR") == "+33612345678"
    with pytest.raises(ValidationError, match="region"):
        number_of("sip:0612345678@pbx")
    for withheld in ("sip:anonymous@anonymous.invalid", "", "Anonymous", "tel:"):
        with pytest.raises(ValidationError, match="no phone number"):
            number_of(withheld)


def customer(crm: crmcore.CRM, name: str, phone: str, **fields: Any) -> Customer:
    return crm.customers.add(Customer.new(name, phones=[phone], **fields))


def test_identify_finds_one_customer_or_says_why_not(crm: crmcore.CRM) -> None:
    ada = customer(crm, "Ada", "06 12 34 56 78", region="FR", tier="platinum")
    customer(crm, "Bob", "+44 20 7946 0018")
    customer(crm, "Bea", "+44 20 7946 0018")
    calls = crm.operational.calls
    assert calls.identify("sip:+33612345678@127.0.0.1").customer == ada
    assert calls.identify("0612345678", region="FR").customer == ada
    shared = calls.identify("tel:+44-20-7946-0018")
    assert shared.customer is None and len(shared.customers) == 2 and "2 customers" in shared.reason
    stranger = calls.identify("sip:+15550000000@127.0.0.1")
    assert (stranger.number, stranger.customers, stranger.reason) == (
        "+15550000000", (), "no customer has this number")
    junk = calls.identify("sip:'; DROP TABLE customers; --@x")
    assert junk.customer is None and junk.number is None and junk.reason


def test_screen_pop_gathers_everything_and_degrades_without_analytics(crm: crmcore.CRM) -> None:
    ada = customer(crm, "Ada", "+33612345678", tier="gold")
    crm.cases.open(ada.id, "complaint", "Wrong invoice")
    closed = crm.cases.open(ada.id, "request", "New card")
    crm.cases.resolve(closed.id, "sent")
    for i, (channel, point) in enumerate([(Channel.EMAIL, "web"), (Channel.VISIT, "lyon"),
                                          (Channel.PORTAL, "portal"), (Channel.PHONE, "paris-cc")]):
        crm.interactions.log(ada.id, channel=channel, direction="inbound", service_point=point,
                             at=T0 + timedelta(hours=i))
    pop = crm.operational.calls.screen_pop(ada.id, call_id="c1", recent=3)
    assert [c.subject for c in pop.open_cases] == ["Wrong invoice"] and pop.open_complaint
    assert [i.service_point for i in pop.recent] == ["paris-cc", "portal", "lyon"]
    assert pop.scores == {} and pop.score("churn") is None and pop.next_offer is None
    queued = crm.operational.calls.waiting_call("c1", pop, enqueued_at=T0, skills=("billing",))
    assert (queued.tier, queued.open_complaint, queued.churn_risk, queued.value) == ("gold", True, 0.0, 0.0)


def test_screen_pop_takes_scores_and_the_next_offer_from_analytics(crm: crmcore.CRM) -> None:
    ada = customer(crm, "Ada", "+33612345678", tier="platinum")
    with crm.transaction() as uow:
        uow.scores.put([Score(ada.id, "churn", T0, 0.7), Score(ada.id, "clv", T0, 12_000.0),
                        Score(ada.id, "next_offer", T0, 0.6, label="travel-insurance")])
    pop = crm.operational.calls.screen_pop(ada.id)
    offer = crm.analytical.next_offer(ada.id)
    assert pop.next_offer == offer and offer is not None and offer.label == "travel-insurance"
    queued = crm.operational.calls.waiting_call("c9", pop, enqueued_at=T0)
    assert (queued.churn_risk, queued.value, queued.tier) == (0.7, 12_000.0, "platinum")
    stranger = crm.operational.calls.waiting_call("c10", None, enqueued_at=T0)
    assert (stranger.tier, stranger.customer_id) == (None, None)


def record(call_id: str = "abc@host", **fields: Any) -> CallRecord:
    values: dict[str, Any] = {
        "call_id": call_id, "direction": "inbound", "peer": "sip:+33612345678@127.0.0.1",
        "started_at": T0, "answered_at": T0 + timedelta(seconds=4), "ended_at": T0 + timedelta(seconds=64),
        "outcome": CallOutcome.ANSWERED, "reason": "Connection reset by peer", "agent": "agent7",
    }
    values.update(fields)
    return CallRecord(**values)


def test_a_call_is_recorded_once_however_often_it_is_retried(crm: crmcore.CRM) -> None:
    ada = customer(crm, "Ada", "+33612345678")
    calls = crm.operational.calls
    first = calls.record(record(), service_point="paris-cc")
    again = calls.record(record(), service_point="paris-cc")
    assert first == again and first is not None
    assert (first.channel, first.duration, first.outcome, first.reference) == (
        Channel.PHONE, timedelta(seconds=60), "answered", "abc@host")
    assert [i.id for i in crm.interactions.timeline(ada.id)] == [first.id]
    assert (first.subject, first.agent, first.service_point) == (
        "Inbound call, answered", "agent7", "paris-cc")
    missed = calls.record(record("abd@host", answered_at=None, outcome="no_answer"))
    assert missed is not None and missed.duration == timedelta(0)
    assert missed.subject == "Inbound call, no answer"


def test_records_no_customer_can_take_are_kept_as_events(crm: crmcore.CRM) -> None:
    events: list[crmcore.Event] = []

    class Subscriber:
        @crmcore.hookimpl
        def crmcore_on_event(self, event: crmcore.Event, crm: crmcore.CRM) -> None:
            events.append(event)

    crm.plugins.register(subscriber := Subscriber())
    try:
        kept = crm.operational.calls.record(record("x1", peer="sip:anonymous@anonymous.invalid",
                                                   answered_at=None, outcome="no_answer"))
    finally:
        crm.plugins.unregister(subscriber)
    assert kept is None
    [event] = [e for e in events if e.topic == "call.unidentified"]
    assert event.aggregate_id == "x1"
    assert (event.payload["outcome"], event.payload["answered_at"], event.payload["number"]) == (
        "no_answer", None, None)


def test_call_records_refuse_impossible_times() -> None:
    with pytest.raises(ValidationError, match="ended_at"):
        record(ended_at=T0 - timedelta(seconds=1), answered_at=None)
    with pytest.raises(ValidationError, match="answered_at"):
        record(answered_at=T0 + timedelta(hours=2))
    with pytest.raises(ValidationError, match="outcome"):
        record(answered_at=None)
    assert record(answered_at=None, outcome="busy").duration == timedelta(0)


def test_the_crm_queue_runs_on_its_clock_and_asks_routing_plugins(tmp_path: Path) -> None:
    from tests.telephony.test_routing import VipDesk

    pm = make_plugin_manager()
    pm.register(VipDesk())
    now = [T0]
    with crmcore.open(f"sqlite:///{tmp_path / 'q.db'}", plugins=pm, clock=lambda: now[0]) as crm:
        queue = crm.operational.calls.queue()
        queue.set_agent(AgentState("adam"))
        queue.set_agent(AgentState("zoe"))
        queue.enqueue(WaitingCall("c1", T0, tier="platinum"))
        queue.enqueue(WaitingCall("c2", T0, tier="gold"))
        now[0] = T0 + timedelta(seconds=3)
        assert set(queue.dispatch()) == {Assignment("c1", "adam"), Assignment("c2", "zoe", by="plugin")}
        assert queue.outcomes["c2"].wait == timedelta(seconds=3)
    with crmcore.open(f"sqlite:///{tmp_path / 'p.db'}", plugins=make_plugin_manager()) as plain:
        assert plain.operational.calls.queue().override is None  # no plugin routes: the default does


def test_screen_pop_degrades_when_analytics_fails_or_is_absent(crm: crmcore.CRM) -> None:
    ada = customer(crm, "Ada", "+33612345678")

    def broken(customer_id: str) -> None:
        raise crmcore.StorageError("scores table is being rebuilt")

    crm.analytical.__dict__.update(latest_scores=broken, next_offer=None)  # a failing and a missing part
    try:
        pop = crm.operational.calls.screen_pop(ada.id)
    finally:
        crm.analytical.__dict__.pop("latest_scores")
        crm.analytical.__dict__.pop("next_offer")
    assert (pop.customer.id, pop.scores, pop.next_offer) == (ada.id, {}, None)
