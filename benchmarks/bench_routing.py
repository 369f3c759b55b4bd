"""Routing decisions per second for a big queue.

    python benchmarks/bench_routing.py                 # 10,000 waiting calls, 500 agents
    python benchmarks/bench_routing.py --calls 1000 --agents 50 --steps 50

Three figures:
- a full dispatch: every agent with room takes a call, from a queue of --calls;
- steady state, pure: everyone is busy, one agent at a time frees up and `route`
  picks their next call from the whole unsorted queue (it sorts every time);
- steady state, queue: the same through `CallQueue`, which keeps the queue in
  order as calls arrive (the order never changes with time), so a decision
  reads only the head of the queue.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from crmcore.operational.routing import AgentState, CallQueue, WaitingCall, route

SKILLS = ["billing", "cards", "mortgages", "insurance", "french", "german", "spanish", "business"]
TIERS = [None] * 6 + ["silver"] * 2 + ["gold", "platinum"]
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def make_queue(size: int, rng: random.Random) -> list[WaitingCall]:
    return [
        WaitingCall(
            f"call{i}", T0 + timedelta(seconds=rng.uniform(0, 600)), tier=rng.choice(TIERS),
            value=rng.expovariate(1 / 2000), open_complaint=rng.random() < 0.05,
            churn_risk=rng.random() * 0.5, skills=tuple(rng.sample(SKILLS, rng.choice([0, 1, 1, 2]))),
        )
        for i in range(size)
    ]


def make_agents(size: int, rng: random.Random) -> list[AgentState]:
    return [
        AgentState(f"agent{i}", frozenset(rng.sample(SKILLS, rng.randint(1, 4))),
                   capacity=rng.choice([1, 1, 2]))
        for i in range(size)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=500)
    parser.add_argument("--steps", type=int, default=200, help="steady-state decisions to time")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    queue, agents = make_queue(args.calls, rng), make_agents(args.agents, rng)
    now = T0 + timedelta(seconds=660)

    started = time.perf_counter()
    assigned = route(queue, agents, now)
    spent = time.perf_counter() - started
    print(f"full dispatch: {len(queue)} waiting, {len(agents)} agents "
          f"({sum(a.capacity for a in agents)} seats): {len(assigned)} assignments in {spent * 1000:.1f} ms "
          f"= {len(assigned) / spent:,.0f} decisions/s")

    busy = [AgentState(a.id, a.skills, a.capacity, busy=a.capacity) for a in agents]
    waiting = list(queue)
    latencies = []
    for step in range(min(args.steps, len(waiting))):
        index = step % len(busy)
        freed = AgentState(busy[index].id, busy[index].skills, busy[index].capacity,
                           busy=busy[index].capacity - 1)
        roster = [*busy[:index], freed, *busy[index + 1:]]
        started = time.perf_counter()
        decision = route(waiting, roster, now + timedelta(seconds=step))
        latencies.append(time.perf_counter() - started)
        taken = {d.call_id for d in decision}
        waiting = [c for c in waiting if c.call_id not in taken]
    report("steady state, pure route()", len(waiting), latencies)

    clock = [now]
    desk = CallQueue(clock=lambda: clock[0])
    for call in queue:
        desk.enqueue(call)
    for agent in busy:
        desk.set_agent(agent)
    latencies = []
    for step in range(args.steps * 10):
        clock[0] = now + timedelta(seconds=step)
        desk.finished(busy[step % len(busy)].id)
        started = time.perf_counter()
        desk.dispatch()
        latencies.append(time.perf_counter() - started)
    report("steady state, CallQueue", len(desk.waiting), latencies)


def report(label: str, waiting: int, latencies: list[float]) -> None:
    latencies.sort()
    mean = statistics.fmean(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"{label}: one agent frees up, queue of ~{waiting}: "
          f"p50 {statistics.median(latencies) * 1000:.3f} ms, p95 {p95 * 1000:.3f} ms "
          f"per decision = {1 / mean:,.0f} decisions/s")


if __name__ == "__main__":
    main()
