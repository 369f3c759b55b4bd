"""The web-app scenario: the FastAPI example on uvicorn (127.0.0.1), N concurrent clients.

    python benchmarks/bench_web.py [--seconds 3] [--clients 1,2,4,8,16] [--url sqlite:///...]

Each client loops over: a point read (sync endpoint), a point read (async endpoint),
a customer added, a visit counted (read-modify-write with conflict retries). Prints
requests/s and p50/p99 latency per client count, and how throughput grows from 1
client to the most. Every request must succeed (the run stops on the first error).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.applications.servers import asgi_server, import_example, mixed_request  # noqa: E402

import crmcore  # noqa: E402
from crmcore import Customer  # noqa: E402


def run(base: str, clients: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[str] = []

    def client(n: int) -> None:
        mine: list[float] = []
        with httpx.Client(base_url=base, timeout=60) as http:
            i = 0
            while not stop.is_set():
                i += 1
                started = time.perf_counter()
                r = mixed_request(http, f"{clients}-{n}", i)
                mine.append(time.perf_counter() - started)
                if r.status_code >= 300:
                    failures.append(r.text)
                    stop.set()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"request failed: {failures[0][:300]}")
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", default="1,2,4,8,16")
    parser.add_argument("--url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        url = args.url or f"sqlite:///{directory}/web.db"
        crm = crmcore.open(url)
        crm.customers.add(Customer.new("Counter", id="counter"))
        crm.close()
        app = import_example("fastapi_app").create_app(url)
        rows = []
        with asgi_server(app) as base:
            for clients in (int(c) for c in args.clients.split(",")):
                rows.append((clients, *run(base, clients, args.seconds)))
    print(f"{'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for clients, rate, p50, p99 in rows:
        print(f"{clients:>7} {rate:>9,.0f} {p50:>8.2f} {p99:>8.2f}")
    print(f"throughput {rows[-1][0]} clients / 1 client: {rows[-1][1] / rows[0][1]:.2f}x")


if __name__ == "__main__":
    main()
