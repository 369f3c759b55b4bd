"""Call-centre routing: which waiting call goes to which agent, as a pure function.

`route(waiting, agents, now)` reads nothing but its arguments, so a decision can be
replayed and tested with any clock. Priority is the customer's status (tier,
value, open complaint, churn risk) plus ageing: every second waited adds the
same points, so any caller eventually outranks any newcomer and nobody waits
forever. Because ageing is the same for everyone, the order of two waiting calls
never changes with time; only skill relaxation does.

Skills a call needs are listed most important first. When no free agent has them
all, the least important is dropped, one more every `relax_every` seconds waited,
or at once when no agent present has them at all (waiting would be pointless).
`CallQueue` holds the state around `route` and keeps the figures (`metrics`).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from crmcore import values as v
from crmcore.errors import PluginError, ValidationError
from crmcore.model import Agent


def _skills(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value))


@attrs.frozen
class WaitingCall:
    """A caller in the queue, with what routing needs to know of them."""

    call_id: str = attrs.field(validator=v.is_text(998))
    enqueued_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    customer_id: str | None = None
    tier: str | None = None
    value: float = attrs.field(default=0.0, converter=float, validator=v.in_range(0, math.inf))
    open_complaint: bool = False
    churn_risk: float = attrs.field(default=0.0, converter=float, validator=v.in_range(0, 1))
    skills: tuple[str, ...] = attrs.field(default=(), converter=_skills, validator=v.each(v.name))
    """Needed skills, most important first; relaxation drops them from the end."""


@attrs.frozen
class AgentState:
    """An agent as routing sees them: skills, how many calls they can hold, how many they hold."""

    id: str
    skills: frozenset[str] = attrs.field(default=frozenset(), converter=v.as_frozenset)
    capacity: int = attrs.field(default=1, validator=v.in_range(1, 100))
    busy: int = attrs.field(default=0, validator=v.in_range(0, 100))
    available: bool = True
    """Logged in and ready; an agent on a break gets no calls but still counts as present."""

    @property
    def free(self) -> int:
        return max(self.capacity - self.busy, 0) if self.available else 0

    @classmethod
    def of(cls, agent: Agent, *, busy: int = 0, available: bool = True) -> AgentState:
        return cls(agent.id, agent.skills, agent.capacity, busy, available)


@attrs.frozen
class Assignment:
    call_id: str
    agent_id: str
    relaxed: int = 0
    """How many of the call's skills were dropped to find this agent."""
    by: str = "default"
    """"default", or "plugin" when a `crmcore_route_call` hook chose."""


@attrs.frozen
class RoutingPolicy:
    """Points a call is worth; the defaults put a platinum caller ahead of a plain one
    for about 100 seconds of waiting."""

    tiers: Mapping[str, float] = attrs.field(
        factory=lambda: {"platinum": 1000.0, "gold": 600.0, "silver": 300.0}
    )
    value_per_unit: float = 0.05
    value_cap: float = 10_000.0
    complaint: float = 400.0
    churn: float = 500.0
    """Points at churn risk 1.0."""
    ageing: float = 10.0
    """Points per second waited."""
    relax_every: float = 30.0
    """Seconds of waiting before each further skill may be dropped."""

    def __attrs_post_init__(self) -> None:
        if not self.ageing > 0:
            raise ValidationError("ageing", self.ageing, "must be positive, or some callers wait forever")
        if not self.relax_every > 0:
            raise ValidationError("relax_every", self.relax_every, "must be positive")

    def status_points(self, call: WaitingCall) -> float:
        return (
            self.tiers.get(call.tier or "", 0.0)
            + min(call.value, self.value_cap) * self.value_per_unit
            + (self.complaint if call.open_complaint else 0.0)
            + call.churn_risk * self.churn
        )

    def priority(self, call: WaitingCall, now: datetime) -> float:
        return self.status_points(call) + self.ageing * max((now - call.enqueued_at).total_seconds(), 0.0)

    def rank(self, call: WaitingCall) -> tuple[float, datetime, str]:
        """Sort key, smallest first: `priority` less the part every caller shares, `ageing * now`."""
        return (self.ageing * call.enqueued_at.timestamp() - self.status_points(call),
                call.enqueued_at, call.call_id)


DEFAULT_POLICY = RoutingPolicy()

Override = Callable[..., Any]
"""`crmcore_route_call(call=, waiting=, agents=, now=)`: an Assignment, an agent id, or None."""


def ordered(waiting: Iterable[WaitingCall], policy: RoutingPolicy = DEFAULT_POLICY) -> list[WaitingCall]:
    """Waiting calls, first to be served first; the order holds at every instant."""
    return sorted(waiting, key=policy.rank)


def route(
    waiting: Iterable[WaitingCall],
    agents: Iterable[AgentState],
    now: datetime,
    policy: RoutingPolicy = DEFAULT_POLICY,
    override: Override | None = None,
    *,
    presorted: bool = False,
) -> list[Assignment]:
    """Assign waiting calls to agents with spare capacity, most urgent call first.

    `presorted`: `waiting` is already in `ordered` order (as `CallQueue` keeps it),
    so it is read lazily and only as far as there are seats to fill.
    """
    roster = list(agents)
    free = {a.id: a.free for a in roster if a.free > 0}
    if not free:
        return []
    queue: Iterable[WaitingCall] = waiting if presorted else ordered(waiting, policy)
    whole = list(queue) if override is not None else []  # a routing hook sees the whole queue
    queue = whole or queue
    # specialists first, so generalists stay free for calls only they can take
    preference = sorted((a for a in roster if a.id in free), key=lambda a: (len(a.skills), -a.free, a.id))
    present = [a for a in roster if a.available]
    candidates: dict[frozenset[str], list[str]] = {}
    staffed: dict[frozenset[str], bool] = {}

    def qualified(needed: frozenset[str]) -> list[str]:
        found = candidates.get(needed)
        if found is None:
            found = candidates[needed] = [a.id for a in preference if needed <= a.skills]
        while found and free.get(found[0], 0) <= 0:
            found.pop(0)
        return found

    def anyone(needed: frozenset[str]) -> bool:
        if needed not in staffed:
            staffed[needed] = any(needed <= a.skills for a in present)
        return staffed[needed]

    assignments: list[Assignment] = []
    remaining = sum(free.values())
    for call in queue:
        if remaining <= 0:
            break
        chosen = _by_plugin(override, call, whole, roster, now, free) if override else None
        if chosen is None:
            chosen = _by_skills(call, now, policy, qualified, anyone)
        if chosen is None:
            continue
        free[chosen.agent_id] -= 1
        remaining -= 1
        assignments.append(chosen)
    return assignments


def _by_skills(
    call: WaitingCall,
    now: datetime,
    policy: RoutingPolicy,
    qualified: Callable[[frozenset[str]], list[str]],
    anyone: Callable[[frozenset[str]], bool],
) -> Assignment | None:
    waited = (now - call.enqueued_at).total_seconds()
    needed = call.skills
    for dropped in range(len(needed) + 1):
        skills = frozenset(needed[: len(needed) - dropped])
        if dropped and waited < dropped * policy.relax_every and anyone(
            frozenset(needed[: len(needed) - dropped + 1])
        ):
            return None
        agents = qualified(skills)
        if agents:
            return Assignment(call.call_id, agents[0], dropped)
    return None


def _by_plugin(
    override: Override,
    call: WaitingCall,
    queue: Sequence[WaitingCall],
    roster: Sequence[AgentState],
    now: datetime,
    free: Mapping[str, int],
) -> Assignment | None:
    answer = override(call=call, waiting=queue, agents=roster, now=now)
    if answer is None:
        return None
    if isinstance(answer, str):
        answer = Assignment(call.call_id, answer, by="plugin")
    if not isinstance(answer, Assignment) or answer.call_id != call.call_id:
        raise PluginError(f"crmcore_route_call returned {answer!r} for call {call.call_id!r}")
    if free.get(answer.agent_id, 0) <= 0:
        raise PluginError(
            f"crmcore_route_call sent call {call.call_id!r} to agent {answer.agent_id!r}, "
            "who is unknown, unavailable or full"
        )
    return attrs.evolve(answer, by="plugin")


# ---- the figures ----


@attrs.frozen
class QueueOutcome:
    """What became of one offered call: answered, abandoned, or still waiting (neither)."""

    call_id: str
    tier: str | None
    enqueued_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    answered_at: datetime | None = None
    abandoned_at: datetime | None = None

    @property
    def wait(self) -> timedelta | None:
        end = self.answered_at or self.abandoned_at
        return end - self.enqueued_at if end else None


@attrs.frozen
class QueueFigures:
    offered: int
    answered: int
    abandoned: int
    mean_wait: timedelta
    """Average time to answer (answered calls only)."""
    max_wait: timedelta
    """Longest wait of any settled call, answered or abandoned."""
    service_level: float | None
    """Share of settled calls answered within the threshold; None before any settled."""

    @property
    def abandonment(self) -> float | None:
        settled = self.answered + self.abandoned
        return self.abandoned / settled if settled else None


@attrs.frozen
class QueueMetrics:
    threshold: timedelta
    overall: QueueFigures
    by_tier: dict[str, QueueFigures]
    """Keyed by tier; callers with no tier under "none"."""


def metrics(outcomes: Iterable[QueueOutcome], threshold: timedelta = timedelta(seconds=20)) -> QueueMetrics:
    """Waiting time per tier, abandonment and service level (answered within `threshold`)."""
    groups: dict[str, list[QueueOutcome]] = {}
    every: list[QueueOutcome] = []
    for outcome in outcomes:
        groups.setdefault(outcome.tier or "none", []).append(outcome)
        every.append(outcome)
    return QueueMetrics(
        threshold, _figures(every, threshold),
        {tier: _figures(items, threshold) for tier, items in sorted(groups.items())},
    )


def _figures(outcomes: Sequence[QueueOutcome], threshold: timedelta) -> QueueFigures:
    answered = [o.wait for o in outcomes if o.answered_at is not None and o.wait is not None]
    abandoned = [o.wait for o in outcomes if o.answered_at is None and o.wait is not None]
    settled = len(answered) + len(abandoned)
    quick = sum(1 for w in answered if w <= threshold)
    return QueueFigures(
        offered=len(outcomes), answered=len(answered), abandoned=len(abandoned),
        mean_wait=sum(answered, timedelta(0)) / len(answered) if answered else timedelta(0),
        max_wait=max([*answered, *abandoned], default=timedelta(0)),
        service_level=quick / settled if settled else None,
    )


# ---- the queue around route() ----


class CallQueue:
    """The live state of one queue: waiting callers, agents, and what became of each call.

    Every decision goes through `route`; the clock is injected, so a day can be replayed.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] = v.now,
        policy: RoutingPolicy = DEFAULT_POLICY,
        override: Override | None = None,
    ) -> None:
        self.clock = clock
        self.policy = policy
        self.override = override
        self.waiting: dict[str, WaitingCall] = {}
        self.agents: dict[str, AgentState] = {}
        self.outcomes: dict[str, QueueOutcome] = {}
        self._order: list[tuple[float, datetime, str]] = []
        """Ranks of the waiting calls, kept sorted: the order never changes with time."""
        self._lock = threading.RLock()

    def enqueue(self, call: WaitingCall) -> None:
        with self._lock:
            if call.call_id in self.outcomes:
                raise ValidationError("call_id", call.call_id, "was already queued")
            self.waiting[call.call_id] = call
            bisect.insort(self._order, self.policy.rank(call))
            self.outcomes[call.call_id] = QueueOutcome(call.call_id, call.tier, call.enqueued_at)

    def _leave(self, call_id: str) -> WaitingCall | None:
        call = self.waiting.pop(call_id, None)
        if call is not None:
            rank = self.policy.rank(call)
            del self._order[bisect.bisect_left(self._order, rank)]
        return call

    def in_order(self) -> Iterator[WaitingCall]:
        """Waiting calls, the next to be served first."""
        return (self.waiting[rank[2]] for rank in self._order)

    def abandon(self, call_id: str) -> None:
        """The caller hung up while waiting (a call no longer waiting is left alone)."""
        with self._lock:
            if self._leave(call_id) is not None:
                self.outcomes[call_id] = attrs.evolve(self.outcomes[call_id], abandoned_at=self.clock())

    def answered(self, call_id: str) -> None:
        """Someone picked the call up without waiting for `dispatch`."""
        with self._lock:
            if self._leave(call_id) is not None:
                self.outcomes[call_id] = attrs.evolve(self.outcomes[call_id], answered_at=self.clock())

    def set_agent(self, agent: AgentState) -> None:
        with self._lock:
            self.agents[agent.id] = agent

    def finished(self, agent_id: str) -> None:
        """An agent ended a call and has room for another."""
        with self._lock:
            agent = self.agents[agent_id]
            self.agents[agent_id] = attrs.evolve(agent, busy=max(agent.busy - 1, 0))

    def dispatch(self) -> list[Assignment]:
        """Route now and apply the result: calls leave the queue, agents get busier."""
        with self._lock:
            now = self.clock()
            chosen = route(self.in_order(), self.agents.values(), now, self.policy, self.override,
                           presorted=True)
            for item in chosen:
                self._leave(item.call_id)
                agent = self.agents[item.agent_id]
                self.agents[item.agent_id] = attrs.evolve(agent, busy=agent.busy + 1)
                self.outcomes[item.call_id] = attrs.evolve(self.outcomes[item.call_id], answered_at=now)
            return chosen

    def metrics(self, threshold: timedelta = timedelta(seconds=20)) -> QueueMetrics:
        with self._lock:
            return metrics(list(self.outcomes.values()), threshold)
