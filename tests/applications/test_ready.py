"""What an application needs from crmcore: reads that never wait for writers, transactions
per context, bounded connections, paging, an error family that maps to HTTP, and events
delivered off the request path."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

import crmcore
from crmcore import Customer
from crmcore.errors import (
    ConflictError,
    CRMError,
    IntegrityError,
    NotFound,
    StorageError,
    ValidationError,
    http_status,
)
from crmcore.events import Event


def people(n: int, prefix: str = "c") -> list[Customer]:
    return [Customer.new(f"Person {i}", id=f"{prefix}{i:07d}", emails=[f"{prefix}{i}@example.org"])
            for i in range(n)]


def test_outcomes_of_a_request_are_not_backend_failures() -> None:
    for outcome in (NotFound("customer", "x"), ConflictError("customer", "x", 1, 2),
                    IntegrityError("taken"), ValidationError("name", "", "is empty")):
        assert not isinstance(outcome, StorageError)
    assert [http_status(e) for e in (
        NotFound("customer", "x"), ConflictError("customer", "x", 1, 2), IntegrityError("taken"),
        ValidationError("name", "", "is empty"), StorageError("down"), CRMError("?"),
    )] == [404, 409, 409, 422, 503, 500]


def test_reads_never_wait_for_a_bulk_import(tmp_path: Path) -> None:
    """The issue's case: point reads with a one-second lock timeout while another thread
    holds the write lock for a long import: every read succeeds."""
    crm = crmcore.open(f"sqlite:///{tmp_path}/crm.db?timeout=1")
    crm.customers.add(Customer.new("Ada", id="ada"))
    importing = threading.Event()

    def stream() -> Any:
        for n, person in enumerate(people(60_000)):
            if n == 100:
                importing.set()
            yield person

    importer = threading.Thread(target=crm.bulk_import, args=(stream(),))
    importer.start()
    assert importing.wait(30)
    failures, reads = 0, 0
    while importer.is_alive() and reads < 300:
        try:
            assert crm.customers.get("ada").name == "Ada"
            assert crm.customers.find("c0000001") is None  # the import is not committed yet
        except CRMError:
            failures += 1
        reads += 1
    importer.join()
    assert reads >= 30 and failures == 0
    assert crm.customers.count() == 60_001
    crm.close()


def test_connections_are_pooled_and_bounded(tmp_path: Path) -> None:
    """500 short-lived threads each reading once leave at most `pool_max` connections open,
    and close() releases them all."""
    crm = crmcore.open(f"sqlite:///{tmp_path}/crm.db?pool_max=4")
    crm.customers.add(Customer.new("Ada", id="ada"))
    before = len(os.listdir("/proc/self/fd"))
    errors: list[BaseException] = []

    def read() -> None:
        try:
            crm.customers.get("ada")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(500)]
    for batch in range(0, 500, 50):
        for t in threads[batch:batch + 50]:
            t.start()
        for t in threads[batch:batch + 50]:
            t.join()
    assert not errors
    storage: Any = crm.storage
    assert storage._readers.open_connections <= 4
    assert len(os.listdir("/proc/self/fd")) - before <= 4 * 3  # a WAL connection holds db, -wal, -shm
    crm.close()
    assert storage._readers.open_connections == 0 and storage._writers.open_connections == 0


def test_asyncio_tasks_interleave_transactions_on_one_crm(url: str) -> None:
    """Many tasks on one event loop, awaiting inside read transactions, plus writes sent to
    threads: no "already open" error, every write lands once. A transaction held across
    an await holds a pooled connection, so the pool is sized for the tasks."""
    crm = crmcore.open(url + ("&" if "?" in url else "?") + "pool_max=48")
    crm.customers.add(Customer.new("Ada", id="ada"))

    async def reader(n: int) -> str:
        with crm.reading() as uow:
            await asyncio.sleep(0.0005 * (n % 4))
            return uow.customers.get("ada").name

    async def writer(n: int) -> None:
        await asyncio.to_thread(crm.customers.add, Customer.new(f"W{n}", id=f"w{n:03d}"))

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(reader(n) for n in range(40)),
                                         *(writer(n) for n in range(20))))

    results = asyncio.run(main())
    assert results[:40] == ["Ada"] * 40
    assert crm.customers.count() == 21
    crm.close()


def test_changes_to_one_customer_take_turns(url: str) -> None:
    """Threads incrementing one counter through `customers.edit`: no ConflictError, no
    lost increment; an edit returning another customer is refused with nothing written."""
    crm = crmcore.open(url)
    crm.customers.add(Customer.new("Counter", id="counter"))
    failures: list[BaseException] = []

    def one_more(current: Customer) -> Customer:
        visits = int(current.attributes.get("visits", 0)) + 1
        return attrs.evolve(current, attributes={**current.attributes, "visits": visits})

    def client() -> None:
        try:
            for _ in range(15):
                crm.customers.edit("counter", one_more)
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    counter = crm.customers.get("counter")
    assert counter.attributes["visits"] == 8 * 15 and counter.version == 1 + 8 * 15
    with pytest.raises(ValidationError, match="edit"):
        crm.customers.edit("counter", lambda c: attrs.evolve(c, id="other"))
    with pytest.raises(NotFound):
        crm.customers.edit("nobody", one_more)
    with pytest.raises(ValidationError, match="bogus"):
        crm.customers.change("counter", bogus=1)
    with pytest.raises(ValidationError, match="edit"):
        crm.customers.edit("counter", 5)  # type: ignore[arg-type]
    assert crm.customers.get("counter").version == counter.version
    crm.close()


def test_every_list_pages_and_streams(url: str) -> None:
    crm = crmcore.open(url)
    crm.bulk_import(people(250))
    first = crm.customers.list()
    assert len(first) == 100 and [c.id for c in first] == sorted(c.id for c in first)
    second = crm.customers.list(after=first[-1].id)
    assert second[0].id > first[-1].id
    assert [c.id for c in crm.customers.iterate(batch=60)] == [f"c{i:07d}" for i in range(250)]
    rule = 'name != "Person 3"'
    page = crm.customers.matching(rule, limit=50)
    assert len(page) == 50 and page[0].id == "c0000000"
    nxt = crm.customers.matching(rule, after=page[-1].id, limit=50)
    assert nxt[0].id == "c0000051"  # Person 3 is c0000003, left out of the first page
    assert len(list(crm.customers.iter_matching(rule, batch=70))) == 249
    for bad in (0, -1, 10_001, "10", True):
        with pytest.raises(ValidationError) as caught:
            crm.customers.list(limit=bad)  # type: ignore[arg-type]
        assert caught.value.field == "limit"
    crm.close()


class Slow:
    """A subscriber that takes its time: with a dispatcher it must not slow the writer."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.threads: set[str] = set()

    @crmcore.hookimpl
    def crmcore_on_event(self, event: Event) -> None:
        time.sleep(0.05)
        self.threads.add(threading.current_thread().name)
        self.seen.append(event.aggregate_id)


def test_a_dispatcher_delivers_off_the_request_path(url: str) -> None:
    crm = crmcore.open(url)
    slow = Slow()
    crm.plugins.register(slow, "slow")
    crm.start_dispatcher(interval=0.05)
    started = time.monotonic()
    for n in range(10):
        crm.customers.add(Customer.new(f"P{n}", id=f"p{n}"))
    writing = time.monotonic() - started
    deadline = time.monotonic() + 20
    while len(slow.seen) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sorted(slow.seen) == [f"p{n}" for n in range(10)]
    assert slow.threads == {"crmcore-dispatcher"}
    assert writing < 10 * 0.05  # the subscribers' half second was not the writer's
    crm.close()


def test_the_dispatcher_prunes_delivered_events_after_retention(url: str) -> None:
    now = [crmcore.values.now()]
    crm = crmcore.open(url, clock=lambda: now[0])
    crm.customers.add(Customer.new("Ada", id="ada"))
    crm.dispatch_events()
    with crm.storage.transaction() as uow:
        assert uow.outbox.pending_count() == 0
        assert uow.outbox.prune(now[0] + timedelta(seconds=1), 100) == 1
    dispatcher = crm.start_dispatcher(interval=0.05, retention=timedelta(days=7))
    crm.customers.add(Customer.new("Bob", id="bob"))
    deadline = time.monotonic() + 20
    while dispatcher.delivered < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    dispatcher.stop()
    assert dispatcher.delivered == 1 and dispatcher.pruned == 0  # delivered just now: kept
    now[0] += timedelta(days=8)
    assert dispatcher.prune() == 1
    crm.close()


def test_a_worker_process_delivers_what_the_application_wrote(tmp_path: Path) -> None:
    """The application writes with no dispatcher of its own; `crmcore.dispatcher.work`
    in another process (what `crmcore worker` runs) delivers every event once."""
    url = f"sqlite:///{tmp_path}/crm.db"
    crm = crmcore.open(url)
    with crm.storage.transaction() as uow:  # written straight to storage: no in-process delivery
        for n in range(25):
            uow.outbox.append(Event("customer.added", f"c{n}", {}, crm.clock()))
    log = tmp_path / "delivered.txt"
    script = f"""
import threading, crmcore, crmcore.dispatcher as d
class Log:
    @crmcore.hookimpl
    def crmcore_on_event(self, event):
        with open({str(log)!r}, "a") as f:
            f.write(event.aggregate_id + "\\n")
import crmcore.plugins as p
original = p.make_plugin_manager
def with_log(*a, **k):
    pm = original(*a, **k)
    pm.register(Log(), "log")
    return pm
p.make_plugin_manager = with_log
stop = threading.Event()
threading.Timer(3.0, stop.set).start()
d.work({url!r}, stop, interval=0.1)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(log.read_text().split()) == sorted(f"c{n}" for n in range(25))
    with crm.storage.transaction(readonly=True) as uow:
        assert uow.outbox.pending_count() == 0
    crm.close()
