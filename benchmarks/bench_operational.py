"""The SLA sweep over many open cases, and assignment decisions among 1,000 agents.

    python benchmarks/bench_operational.py                      # 5,000 cases, SQLite (+ PostgreSQL)
    python benchmarks/bench_operational.py --cases 1000000      # the full figure
    python benchmarks/bench_operational.py --cases 1000000 --due-every 100  # 1% due per run
    CRMCORE_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1/test python benchmarks/bench_operational.py

Sweep: N open cases whose resolution promise is past due are written straight into the
table; `crm.operational.cases.sweep(now)` then warns, breaches and escalates each one
(three events, one write per case). Printed per backend: cases/s; the sweep's peak
Python memory (tracemalloc) at N/10 and at N, which should be about the same (the
candidates are chosen in SQL and streamed in pages of ids); the same peak for the naive
baseline that loads every open case into one list; and a second sweep that finds nothing
to do (the cost of running it often). Time is measured on its own run, without tracemalloc.

Assignment: `Decider.choose` (least loaded) over the indexed `Staff` of --agents agents
against the baseline of scanning every agent with the same filters, decisions per second;
then, per backend, the whole call (`crm.operational.assignment.decide`, which keeps the
staff index while the storage's staff generation stands and reads the candidates' load)
against the baseline that reads every agent and everybody's load for each decision,
alternated in blocks among --open-cases open cases (--cases 0 skips the sweep).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import crmcore
from crmcore.model import Agent, Case, Deadline, Target, Task
from crmcore.operational.assignment import Decider, Staff, WorkItem
from crmcore.plugins import make_plugin_manager
from crmcore_adapters.storage import sql

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
LATE = T0 + timedelta(days=30)
SKILLS = ["billing", "cards", "mortgages", "insurance", "complaints", "business", "fraud", "loans"]
LANGUAGES = ["en", "fr", "de", "es", "it", "pt"]
PLACES = [f"site{n}" for n in range(20)]


def due_cases(count: int, prefix: str, due_every: int) -> Iterator[Case]:
    """Open cases; one in `due_every` has its resolution promise broken by LATE."""
    broken = (Deadline(Target.RESOLUTION, T0 + timedelta(hours=3), T0 + timedelta(hours=4)),)
    kept = (Deadline(Target.RESOLUTION, LATE + timedelta(days=3), LATE + timedelta(days=4)),)
    for n in range(count):
        deadlines = broken if n % due_every == 0 else kept
        yield Case(f"{prefix}{n:08d}", f"cust{n % 50_000:06d}", "complaint", "x", T0,
                   sla_due=deadlines[0].due_at, deadlines=deadlines, team="care", agent=f"a{n % 97}",
                   version=1)


@contextmanager
def backend(kind: str) -> Iterator[crmcore.CRM]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            crm = crmcore.open(f"sqlite:///{directory}/bench.db", clock=lambda: LATE,
                               plugins=make_plugin_manager())
            try:
                yield crm
            finally:
                crm.close()
        return
    import psycopg

    server = os.environ["CRMCORE_TEST_POSTGRES_URL"]
    schema = f"crmcore_bench_{uuid.uuid4().hex[:12]}"
    joiner = "&" if "?" in server else "?"
    crm = crmcore.open(f"{server}{joiner}schema={schema}", clock=lambda: LATE,
                       plugins=make_plugin_manager())
    try:
        yield crm
    finally:
        crm.close()
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def seed(crm: crmcore.CRM, count: int, prefix: str, due_every: int) -> None:
    """Cases straight into their table (not what is measured)."""
    crm.teams.add(crmcore.Team("care", "Care", lead="lead"))
    insert(crm, sql.CASES, due_cases(count, prefix, due_every))


def insert(crm: crmcore.CRM, table: Any, records: Iterable[Any]) -> None:
    """Rows straight into a table in transactions of 10,000 (not what is measured)."""
    batch: list[Any] = []

    def flush() -> None:
        with crm.storage.transaction() as uow:
            dialect = _dialect(uow)
            cursor: Any = getattr(uow, "cur")  # noqa: B009 - the SQL adapters' cursor
            cursor.executemany(dialect.sql(sql.insert_sql(table, dialect)),
                               [table.row(dialect, r) for r in batch])
        batch.clear()

    for record in records:
        batch.append(record)
        if len(batch) >= 10_000:
            flush()
    if batch:
        flush()


def bench_reminders(kind: str, count: int) -> None:
    """`crm.operational.tasks.remind` over `count` tasks whose reminder has come."""
    with backend(kind) as crm:
        insert(crm, sql.TASKS, (Task(f"task{n:08d}", f"Call back {n}", T0, owner=f"a{n % 1000:04d}",
                                     remind_at=T0 + timedelta(minutes=n % 600), version=1)
                                for n in range(count)))
        sent, spent, cpu, again, idle = twice(lambda: crm.operational.tasks.remind(LATE))
    print(f"{kind}: reminders for {count:,} tasks: {sent:,} sent in {spent:.1f} s = {sent / spent:,.0f}/s, "
          f"{cpu:.1f} s of this process's CPU; again: {again} sent in {idle * 1e3:.0f} ms; "
          f"{os.getloadavg()[0]:.1f} load", flush=True)


def _dialect(uow: Any) -> sql.Dialect:
    """The storage's own dialect object (the SQL adapters hand it to the core)."""
    found: sql.Dialect = uow.dialect
    return found


def timed(work: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = work()
    return result, time.perf_counter() - started


def twice(work: Callable[[], Any]) -> tuple[Any, float, float, Any, float]:
    """(result, wall s, this process's CPU s) of `work`, then (result, wall s) of a second
    run with nothing left to do."""
    cpu = time.process_time()
    result, spent = timed(work)
    cpu = time.process_time() - cpu
    again, idle = timed(work)
    return result, spent, cpu, again, idle


def peak(work: Callable[[], Any]) -> tuple[Any, float]:
    """(result, peak MiB of Python allocations while it ran)."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def naive(crm: crmcore.CRM) -> int:
    """The baseline: every case into one list, the due ones found in Python."""
    with crm.reading() as uow:
        every = uow.cases.list()
    return sum(1 for c in every if c.next_check is not None and c.next_check <= LATE)


def bench_sweep(kind: str, count: int, due_every: int) -> None:
    """Each figure is printed as soon as it is measured: the time first, then the memory."""
    small = max(count // 10, 1)
    with backend(kind) as crm:  # time, without tracemalloc
        seed(crm, count, "t", due_every)
        report, spent, cpu, _, again = twice(lambda: crm.operational.cases.sweep(LATE))
    print(f"{kind}: sweep of {count:,} open cases, {report.examined:,} of them due: {spent:.1f} s = "
          f"{report.examined / spent:,.0f} due cases/s ({report.steps:,} steps, {report.escalated:,} "
          f"escalations, 3 events a due case); {cpu:.1f} s of this process's CPU (the database "
          f"server's not counted); {os.getloadavg()[0]:.1f} load", flush=True)
    print(f"{kind}:   a second sweep, nothing left to do: {again * 1e6:,.0f} µs", flush=True)
    with backend(kind) as crm:  # memory at N/10, and the naive baseline there (it grows with N)
        seed(crm, small, "m", due_every)
        (_, naive_peak), = [peak(lambda: naive(crm))]
        _, naive_time = timed(lambda: naive(crm))
        _, small_peak = peak(lambda: crm.operational.cases.sweep(LATE))
    print(f"{kind}:   at {small:,} cases: sweep peak {small_peak:.1f} MiB; the naive baseline (every "
          f"case in one list) {naive_peak:.1f} MiB, {naive_time:.1f} s", flush=True)
    with backend(kind) as crm:  # memory at N
        seed(crm, count, "m", due_every)
        _, big_peak = peak(lambda: crm.operational.cases.sweep(LATE))
    print(f"{kind}:   peak Python memory of the sweep: {big_peak:.1f} MiB at {count:,} cases vs "
          f"{small_peak:.1f} MiB at {small:,} (ratio {big_peak / small_peak:.2f}; flat is ~1); the naive "
          f"load of the {small:,}: {naive_peak:.1f} MiB (sweep at N / naive at N/10: "
          f"{big_peak / naive_peak:.3f}); {os.getloadavg()[0]:.1f} load", flush=True)


def agents(count: int, rng: random.Random) -> list[Agent]:
    return [Agent(
        f"a{n}", f"Agent {n}", team=rng.choice(["care", "sales", "back"]),
        skills=frozenset(rng.sample(SKILLS, rng.randint(1, 4))),
        languages=frozenset(rng.sample(LANGUAGES, rng.randint(1, 3))),
        service_point=rng.choice(PLACES), capacity=rng.randint(1, 8),
    ) for n in range(count)]


def items(count: int, rng: random.Random) -> list[WorkItem]:
    return [WorkItem(
        "case", f"k{n}", frozenset(rng.sample(SKILLS, rng.choice([0, 1, 1, 2]))),
        rng.choice([None, *LANGUAGES]), rng.choice([None, "care", "sales"]),
        territory=rng.choice([None, None, *PLACES]),
    ) for n in range(count)]


def scan(staff: list[Agent], item: WorkItem) -> list[Agent]:
    place = item.territory
    return [a for a in staff if a.active and (item.team is None or a.team == item.team)
            and item.skills <= a.skills and (item.language is None or item.language in a.languages)
            and (place is None or place == a.service_point or place in a.territories)]


def bench_assignment(agent_count: int, decisions: int) -> None:
    rng = random.Random(11)
    staff, work = agents(agent_count, rng), items(decisions, rng)
    loads: dict[str, int] = {}
    decider, indexed = Decider(), Staff(staff)

    def run(find: Callable[[WorkItem], list[Agent]]) -> tuple[int, float]:
        made = 0
        started = time.perf_counter()
        for item in work:
            candidates = find(item)
            if candidates:
                chosen = decider.choose("least_loaded", item, candidates, loads, [], T0)
                loads[chosen.agent] = loads.get(chosen.agent, 0) + 1
                made += 1
        return made, time.perf_counter() - started

    made, spent = run(lambda item: indexed.candidates(item)[0])
    loads.clear()
    base_made, base_spent = run(lambda item: sorted(scan(staff, item), key=lambda a: a.id))
    assert made == base_made
    rate, base_rate = decisions / spent, decisions / base_spent
    print(f"assignment among {agent_count:,} agents: {rate:,.0f} decisions/s indexed vs "
          f"{base_rate:,.0f}/s scanning every agent (ratio {rate / base_rate:.1f}); "
          f"{made:,} of {decisions:,} requests found someone; {os.getloadavg()[0]:.1f} load", flush=True)


def reread_decide(crm: crmcore.CRM, decider: Decider, item: WorkItem) -> Any:
    """The baseline, as `decide` was before the kept index: every agent read and decoded,
    the team looked up, and the open load of every agent counted, for each decision."""
    with crm.reading() as uow:
        if item.team is not None and uow.teams.find(item.team) is None:
            raise crmcore.ValidationError("team", item.team, "no such team")
        staff = Staff(_every(uow.agents))
        candidates, filters = staff.candidates(item)
        loads = uow.cases.open_load()
        return decider.choose("least_loaded", item, candidates, loads, filters, LATE)


def bench_assignment_stored(kind: str, agent_count: int, decisions: int, open_cases: int) -> None:
    """The whole call, `crm.operational.assignment.decide`, against the baseline that reads
    every agent and the load of all of them per decision: blocks of each, alternated in one
    run (so both see the same load on the machine); medians of the blocks' rates."""
    rng = random.Random(11)
    staff, work = agents(agent_count, rng), items(decisions, rng)
    with backend(kind) as crm:
        for team in ("care", "sales", "back"):
            crm.teams.add(crmcore.Team(team, team.title()))
        with crm.storage.transaction() as uow:
            uow.agents.add_many(staff)
            uow.cases.add_many([Case(f"open{n:07d}", f"cust{n % 5_000:05d}", "complaint", "x", T0,
                                     team="care", agent=staff[n % agent_count].id)
                                for n in range(open_cases)])
        decider, assigner = Decider(), crm.operational.assignment
        for item in work[:20]:  # warm both paths (connections, the kept index)
            _attempt(lambda item=item: reread_decide(crm, decider, item))
            _attempt(lambda item=item: assigner.decide(item))
        block = max(decisions // 10, 1)
        rates: dict[str, list[float]] = {"baseline": [], "kept index": []}
        cpu = dict.fromkeys(rates, 0.0)
        chosen: dict[str, list[str | None]] = {name: [] for name in rates}
        ways = {"baseline": lambda item: reread_decide(crm, decider, item),
                "kept index": lambda item: assigner.decide(item)}
        for start in range(0, decisions, block):
            chunk = work[start:start + block]
            for name, way in ways.items():
                started, cpu_started = time.perf_counter(), time.process_time()
                chosen[name] += [_attempt(lambda item=item, way=way: way(item)) for item in chunk]
                cpu[name] += time.process_time() - cpu_started
                rates[name].append(len(chunk) / (time.perf_counter() - started))
        assert chosen["baseline"] == chosen["kept index"], "both must choose the same agents"
    base, kept = statistics.median(rates["baseline"]), statistics.median(rates["kept index"])
    found = sum(1 for agent in chosen["kept index"] if agent is not None)
    print(f"{kind}: assignment through crm.operational.assignment.decide, {agent_count:,} agents, "
          f"{open_cases:,} open cases: {kept:,.0f} decisions/s with the kept index vs {base:,.0f}/s "
          f"re-reading the staff (ratio {kept / base:.1f}; medians of {len(rates['baseline'])} "
          f"alternated blocks of {block}); client CPU {cpu['kept index']:.2f} s vs "
          f"{cpu['baseline']:.2f} s for {decisions:,} decisions each; {found:,} found someone; "
          f"{os.getloadavg()[0]:.1f} load", flush=True)


def _attempt(decide: Callable[[], Any]) -> str | None:
    """The agent chosen, or None when nobody qualified (a decision too)."""
    try:
        return str(decide().agent)
    except crmcore.CRMError:
        return None


def _every(repository: Any, page: int = 1000) -> Iterator[Any]:
    after: str | None = None
    while True:
        batch = repository.list(after=after, limit=page)
        yield from batch
        if len(batch) < page:
            return
        after = batch[-1].id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5_000)
    parser.add_argument("--agents", type=int, default=1_000)
    parser.add_argument("--decisions", type=int, default=20_000)
    parser.add_argument("--stored-decisions", type=int, default=500,
                        help="decisions made through the CRM, and as many by the baseline")
    parser.add_argument("--open-cases", type=int, default=10_000,
                        help="open cases spread over the agents for the decisions through the CRM")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--reminders", type=int, default=0,
                        help="also time task reminders over this many tasks (0: not)")
    parser.add_argument("--due-every", type=int, default=1,
                        help="one open case in this many is due (1: all of them)")
    args = parser.parse_args()
    bench_assignment(args.agents, args.decisions)
    kinds = [kind for kind in filter(None, args.backends.split(","))  # "": the Decider alone
             if kind != "postgresql" or os.environ.get("CRMCORE_TEST_POSTGRES_URL")]
    if "postgresql" in args.backends and "postgresql" not in kinds:
        print("postgresql: skipped (set CRMCORE_TEST_POSTGRES_URL)")
    for kind in kinds:
        bench_assignment_stored(kind, args.agents, args.stored_decisions, args.open_cases)
    for kind in kinds if args.reminders else ():
        bench_reminders(kind, args.reminders)
    for kind in kinds if args.cases else ():  # --cases 0: assignment only
        bench_sweep(kind, args.cases, max(args.due_every, 1))


if __name__ == "__main__":
    main()
