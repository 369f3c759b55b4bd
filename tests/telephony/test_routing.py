"""Routing laws: a pure function of the queue, the agents and the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pluggy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.errors import PluginError, ValidationError
from crmcore.model import Agent
from crmcore.operational.routing import (
    DEFAULT_POLICY,
    AgentState,
    Assignment,
    CallQueue,
    QueueOutcome,
    RoutingPolicy,
    WaitingCall,
    metrics,
    ordered,
    route,
)
from crmcore.plugins import make_plugin_manager

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SKILLS = ["billing", "french", "german", "mortgages", "cards"]

calls = st.builds(
    WaitingCall,
    call_id=st.uuids().map(str),
    enqueued_at=st.integers(0, 3600).map(lambda s: T0 + timedelta(seconds=s)),
    tier=st.sampled_from([None, "silver", "gold", "platinum"]),
    value=st.floats(0, 50_000),
    open_complaint=st.booleans(),
    churn_risk=st.floats(0, 1),
    skills=st.lists(st.sampled_from(SKILLS), max_size=3, unique=True).map(tuple),
)
agents = st.builds(
    AgentState,
    id=st.uuids().map(lambda u: f"a{u.hex[:8]}"),
    skills=st.frozensets(st.sampled_from(SKILLS), max_size=4),
    capacity=st.integers(1, 3),
    busy=st.integers(0, 3),
    available=st.booleans(),
)
moments = st.integers(3600, 7200).map(lambda s: T0 + timedelta(seconds=s))


@settings(max_examples=60, deadline=None)
@given(st.lists(calls, max_size=40, unique_by=lambda c: c.call_id),
       st.lists(agents, max_size=12, unique_by=lambda a: a.id), moments)
def test_assignments_respect_capacity_skills_and_priority(
    waiting: list[WaitingCall], staff: list[AgentState], now: datetime
) -> None:
    result = route(waiting, staff, now)
    assert result == route(list(reversed(waiting)), staff, now)  # pure and order-independent
    by_call = {c.call_id: c for c in waiting}
    by_agent = {a.id: a for a in staff}
    assert len({a.call_id for a in result}) == len(result)
    for agent in staff:
        assert sum(1 for a in result if a.agent_id == agent.id) <= agent.free
    for item in result:
        call, agent = by_call[item.call_id], by_agent[item.agent_id]
        kept = call.skills[: len(call.skills) - item.relaxed]
        assert set(kept) <= agent.skills
        if item.relaxed:  # dropping skills waits its turn, unless nobody present has them
            waited = (now - call.enqueued_at).total_seconds()
            staffed = any(set(call.skills[: len(kept) + 1]) <= a.skills for a in staff if a.available)
            assert waited >= item.relaxed * DEFAULT_POLICY.relax_every or not staffed
    # with no skills involved, the served calls are exactly the most urgent ones
    plain = [WaitingCall(c.call_id, c.enqueued_at, tier=c.tier, value=c.value,
                         open_complaint=c.open_complaint, churn_risk=c.churn_risk) for c in waiting]
    served = {a.call_id for a in route(plain, staff, now)}
    expected = sum(a.free for a in staff)
    assert served == {c.call_id for c in ordered(plain)[:expected]}


@settings(max_examples=60, deadline=None)
@given(calls, calls, moments)
def test_ageing_means_nobody_waits_forever(old: WaitingCall, new: WaitingCall, now: datetime) -> None:
    policy = DEFAULT_POLICY
    most = (max(policy.tiers.values()) + policy.value_cap * policy.value_per_unit
            + policy.complaint + policy.churn)
    late = old.enqueued_at + timedelta(seconds=most / policy.ageing + 1)
    newcomer = WaitingCall(new.call_id, late, tier=new.tier, value=new.value,
                           open_complaint=new.open_complaint, churn_risk=new.churn_risk)
    if old.call_id != newcomer.call_id:
        assert ordered([newcomer, old])[0] is old
        assert policy.priority(old, max(now, late)) > policy.priority(newcomer, max(now, late))


@settings(max_examples=40, deadline=None)
@given(st.lists(calls, min_size=2, max_size=20, unique_by=lambda c: c.call_id), moments, moments)
def test_the_order_of_waiting_callers_does_not_depend_on_the_clock(
    waiting: list[WaitingCall], first: datetime, second: datetime
) -> None:
    def rank(now: datetime) -> list[str]:
        scored = sorted(waiting, key=lambda c: (-DEFAULT_POLICY.priority(c, now), c.enqueued_at, c.call_id))
        return [c.call_id for c in scored]

    assert rank(first) == rank(second) == [c.call_id for c in ordered(waiting)]


def test_a_platinum_caller_is_answered_first() -> None:
    plain = WaitingCall("plain", T0)
    platinum = WaitingCall("vip", T0 + timedelta(seconds=30), tier="platinum")
    agent = AgentState("ann")
    assert route([plain, platinum], [agent], T0 + timedelta(seconds=40)) == [Assignment("vip", "ann")]
    # ...but not for ever: after long enough the plain caller has aged past them
    late = WaitingCall("late-vip", T0 + timedelta(seconds=150), tier="platinum")
    assert route([plain, late], [agent], T0 + timedelta(seconds=160)) == [Assignment("plain", "ann")]


def test_status_adds_up_complaint_churn_and_value() -> None:
    calm = WaitingCall("calm", T0, tier="gold")
    upset = WaitingCall("upset", T0, tier="silver", open_complaint=True, churn_risk=0.8)
    assert DEFAULT_POLICY.status_points(upset) == 300 + 400 + 400 > DEFAULT_POLICY.status_points(calm)
    rich = WaitingCall("rich", T0, value=1_000_000)
    assert DEFAULT_POLICY.status_points(rich) == DEFAULT_POLICY.value_cap * DEFAULT_POLICY.value_per_unit


def test_skills_are_dropped_in_stages() -> None:
    call = WaitingCall("c1", T0, skills=("mortgages", "french", "german"))
    expert = AgentState("expert", {"mortgages", "french", "german"}, busy=1)
    french = AgentState("fr", {"mortgages", "french"})
    anyone = AgentState("any", set())
    staff = [expert, french, anyone]
    assert route([call], staff, T0 + timedelta(seconds=29)) == []
    assert route([call], staff, T0 + timedelta(seconds=30)) == [Assignment("c1", "fr", relaxed=1)]
    assert route([call], [expert, anyone], T0 + timedelta(seconds=60)) == []
    assert route([call], [expert, anyone], T0 + timedelta(seconds=90)) == [Assignment("c1", "any", 3)]


def test_skills_nobody_has_are_dropped_at_once() -> None:
    call = WaitingCall("c1", T0, skills=("mortgages", "klingon"))
    staff = [AgentState("m", {"mortgages"}), AgentState("g", set())]
    assert route([call], staff, T0) == [Assignment("c1", "m", relaxed=1)]


def test_specialists_take_calls_before_generalists() -> None:
    staff = [AgentState("generalist", {"billing", "french"}), AgentState("biller", {"billing"})]
    french = WaitingCall("fr", T0, skills=("french",))
    billing = WaitingCall("bill", T0, tier="gold", skills=("billing",))
    assert set(route([french, billing], staff, T0)) == {
        Assignment("bill", "biller"), Assignment("fr", "generalist")}


def test_capacity_and_breaks() -> None:
    waiting = [WaitingCall(f"c{i}", T0 + timedelta(seconds=i)) for i in range(5)]
    staff = [AgentState("chat", capacity=3, busy=1), AgentState("away", available=False)]
    assert [a.call_id for a in route(waiting, staff, T0 + timedelta(seconds=9))] == ["c0", "c1"]
    assert AgentState.of(Agent(id="bo", name="Bo", skills=["cards"], capacity=2), busy=1).free == 1


def test_a_bad_policy_is_refused() -> None:
    with pytest.raises(ValidationError, match="ageing"):
        RoutingPolicy(ageing=0)


class VipDesk:
    """A company rule: gold callers go to Zoe, whoever else is waiting."""

    @crmcore.hookimpl
    def crmcore_route_call(self, call: WaitingCall, waiting: list[Any], agents: list[Any],
                           now: datetime) -> Any:
        return "zoe" if call.tier == "gold" else None


class Broken:
    @crmcore.hookimpl
    def crmcore_route_call(self, call: WaitingCall, waiting: list[Any], agents: list[Any],
                           now: datetime) -> Any:
        return "nobody"


def plugins(*objects: object) -> pluggy.PluginManager:
    pm = make_plugin_manager(load_entry_points=False)
    for item in objects:
        pm.register(item)
    pm.check_pending()
    return pm


def test_a_plugin_may_override_routing() -> None:
    pm = plugins(VipDesk())
    staff = [AgentState("adam"), AgentState("zoe")]
    waiting = [WaitingCall("plain", T0, tier="platinum"), WaitingCall("gold", T0, tier="gold")]
    chosen = route(waiting, staff, T0, override=pm.hook.crmcore_route_call)
    assert set(chosen) == {Assignment("plain", "adam"), Assignment("gold", "zoe", by="plugin")}
    with pytest.raises(PluginError, match="nobody"):
        route(waiting, staff, T0, override=plugins(Broken()).hook.crmcore_route_call)


def test_call_queue_replays_a_morning_with_an_injected_clock() -> None:
    now = [T0]
    queue = CallQueue(clock=lambda: now[0])
    queue.set_agent(AgentState("ann"))
    queue.enqueue(WaitingCall("c1", T0))
    queue.enqueue(WaitingCall("c2", T0, tier="platinum"))
    queue.enqueue(WaitingCall("c3", T0 + timedelta(seconds=1)))
    now[0] = T0 + timedelta(seconds=5)
    assert queue.dispatch() == [Assignment("c2", "ann")]
    assert queue.dispatch() == []  # Ann is busy
    now[0] = T0 + timedelta(seconds=40)
    queue.abandon("c3")
    queue.finished("ann")
    assert queue.dispatch() == [Assignment("c1", "ann")]
    with pytest.raises(ValidationError):
        queue.enqueue(WaitingCall("c1", T0))
    figures = queue.metrics(threshold=timedelta(seconds=20))
    assert (figures.overall.offered, figures.overall.answered, figures.overall.abandoned) == (3, 2, 1)
    assert figures.overall.service_level == pytest.approx(1 / 3)
    assert figures.overall.abandonment == pytest.approx(1 / 3)
    assert figures.by_tier["platinum"].mean_wait == timedelta(seconds=5)
    assert figures.by_tier["none"].max_wait == timedelta(seconds=40)
    assert figures.by_tier["platinum"].service_level == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, "gold"]), st.integers(0, 120),
                          st.sampled_from(["answered", "abandoned", "waiting"])), max_size=30))
def test_metrics_are_consistent(rows: list[tuple[str | None, int, str]]) -> None:
    outcomes = [
        QueueOutcome(
            f"c{i}", tier, T0,
            answered_at=T0 + timedelta(seconds=wait) if fate == "answered" else None,
            abandoned_at=T0 + timedelta(seconds=wait) if fate == "abandoned" else None,
        )
        for i, (tier, wait, fate) in enumerate(rows)
    ]
    figures = metrics(outcomes, timedelta(seconds=20))
    overall = figures.overall
    assert overall.offered == len(rows) == sum(f.offered for f in figures.by_tier.values())
    assert overall.answered + overall.abandoned <= overall.offered
    assert overall.answered == sum(1 for r in rows if r[2] == "answered")
    if overall.service_level is not None:
        assert 0 <= overall.service_level <= 1
        quick = sum(1 for _t, w, f in rows if f == "answered" and w <= 20)
        assert overall.service_level == quick / (overall.answered + overall.abandoned)
    else:
        assert overall.answered + overall.abandoned == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(calls, max_size=30, unique_by=lambda c: c.call_id),
       st.lists(agents, max_size=8, unique_by=lambda a: a.id), moments, st.data())
def test_the_queue_keeps_the_order_route_would_compute(
    waiting: list[WaitingCall], staff: list[AgentState], now: datetime, data: st.DataObject
) -> None:
    queue = CallQueue(clock=lambda: now)
    for call in waiting:
        queue.enqueue(call)
    gone = data.draw(st.sets(st.sampled_from([c.call_id for c in waiting]))) if waiting else set()
    for call_id in gone:
        queue.abandon(call_id)
    for agent in staff:
        queue.set_agent(agent)
    left = [c for c in waiting if c.call_id not in gone]
    assert list(queue.in_order()) == ordered(left)
    expected = route(left, staff, now)
    assert queue.dispatch() == expected
    assert set(queue.waiting) == {c.call_id for c in left} - {a.call_id for a in expected}
    assert list(queue.in_order()) == ordered(queue.waiting.values())
