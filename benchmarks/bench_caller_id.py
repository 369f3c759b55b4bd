"""Latency from an inbound SIP call to the customer identified, over real SIP on loopback.

    python benchmarks/bench_caller_id.py                       # 100,000 customers, 200 calls
    python benchmarks/bench_caller_id.py --customers 1000 --calls 20

A customer's baresip phone dials the agent's baresip phone; crmcore's call desk
on the agent's side reads the caller ID, finds the customer among --customers
(SQLite, phone index) and builds the screen pop. Timed from the moment the
customer's phone is told to dial to the moment the desk has the customer and
the complete screen pop. Needs baresip (Debian package baresip-core).
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

import crmcore
from crmcore import Customer
from crmcore.operational.calls import Identification, ScreenPop
from crmcore.ports.telephony import CallEvent
from crmcore_adapters.telephony import baresip

CALLER = "+15551234567"


def customers(count: int, rng: random.Random) -> list[Customer]:
    numbers = {CALLER}
    while len(numbers) < count:
        numbers.add(f"+1555{rng.randrange(10**6, 10**7)}")
    return [Customer.new(f"Customer {i}", phones=[n], tier=rng.choice([None, "gold", "platinum"]))
            for i, n in enumerate(sorted(numbers))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--port", type=int, default=31060, help="first of 40 free loopback ports")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="crmcore-bench-"))
    crm = crmcore.open(f"sqlite:///{root / 'crm.db'}")
    started = time.perf_counter()
    crm.bulk_import(customers(args.customers, random.Random(3)))
    print(f"{args.customers:,} customers imported in {time.perf_counter() - started:.1f} s")

    base = args.port
    agent_process = baresip.launch(root / "agent", user="agent100", sip_port=base, ctrl_port=base + 2,
                                   rtp_port=base + 4)
    customer_process = baresip.launch(root / "customer", user=CALLER, sip_port=base + 20,
                                      ctrl_port=base + 22, rtp_port=base + 24)
    identified: dict[str, float] = {}
    done = threading.Condition()

    def popped(event: CallEvent, who: Identification, pop: ScreenPop | None) -> None:
        assert pop is not None and who.number == CALLER, who
        with done:
            identified[event.call_id] = time.perf_counter()
            done.notify_all()
        agent.hangup(event.call_id)

    try:
        with baresip.open_phone(agent_process.url(agent="agent100")) as agent, \
                baresip.open_phone(customer_process.url()) as customer:
            crm.operational.calls.desk(agent, on_pop=popped)
            latencies = []
            for _ in range(args.calls):
                dialled = time.perf_counter()
                call_id = customer.dial(agent_process.sip_uri)
                with done:
                    if not done.wait_for(lambda c=call_id: c in identified, timeout=5):
                        raise SystemExit(f"call {call_id} was not identified in 5 s")
                latencies.append(identified[call_id] - dialled)
                while customer.live_calls() or agent.live_calls():
                    time.sleep(0.001)
    finally:
        agent_process.stop()
        customer_process.stop()
        crm.close()
    latencies.sort()
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(f"inbound SIP call -> customer identified + screen pop, {len(latencies)} calls, "
          f"{args.customers:,} customers: p50 {statistics.median(latencies) * 1000:.2f} ms, "
          f"p95 {p95 * 1000:.2f} ms")


if __name__ == "__main__":
    main()
