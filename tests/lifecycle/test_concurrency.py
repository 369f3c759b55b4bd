"""A merge racing with writes to either record loses nothing and commits whole or not at all.

Writers keep changing both records and logging contacts to both while another thread
merges them, retrying on conflicts as an
application would. Afterwards the survivor holds each writer's last successful write,
every contact is on a living customer, and the merge journal agrees with the data.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest

import crmcore
from crmcore.errors import ConflictError, NotFound, StorageError
from crmcore.model import Customer
from tests.lifecycle.conftest import T0, storage_url

ROUNDS = 40


@pytest.fixture(params=["sqlite-file", "postgresql"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened = crmcore.open(storage_url(request))
    yield opened
    opened.close()


def retrying(action: Any) -> Any:
    while True:
        try:
            return action()
        except (ConflictError, StorageError):  # a stale version or busy database: read again
            continue


def test_merge_racing_with_writes_loses_nothing(crm: crmcore.CRM) -> None:
    def bump(who: str, n: int) -> Customer:
        """Read, change and write back in one transaction (a read outside it could be stale)."""
        with crm.transaction():
            current = crm.customers.get(who)
            return crm.customers.update(attrs.evolve(current, attributes={**current.attributes, who: n}))

    crm.customers.add(Customer.new("Ann", id="a", emails=["a@example.org"], created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", emails=["b@example.org"], created_at=T0))
    last: dict[str, int] = {}
    logged: dict[str, list[str]] = {"a": [], "b": []}
    start = threading.Barrier(3)
    errors: list[BaseException] = []

    def writer(who: str) -> None:
        start.wait()
        try:
            for n in range(ROUNDS):
                try:
                    retrying(lambda n=n: bump(who, n))
                    last[who] = n
                    logged[who].append(retrying(
                        lambda: crm.interactions.log(who, channel="phone", direction="inbound").id))
                except NotFound:
                    assert who == "b"  # merged away: later writes to it are refused, not lost
                    return
        except BaseException as exc:
            errors.append(exc)

    journal: list[Any] = []

    def merger() -> None:
        start.wait()
        try:
            journal.append(retrying(lambda: crm.lifecycle.merge("a", "b")))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in ("a", "b")]
    threads.append(threading.Thread(target=merger))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    survivor = crm.customers.get("a")
    assert crm.customers.find("b") is None and len(journal) == 1
    assert survivor.attributes["a"] == last["a"] == ROUNDS - 1
    assert survivor.attributes.get("b") == last.get("b")  # B's last write before the merge survived it
    assert journal[0].merged["attributes"].get("b") == last.get("b")
    with crm.reading() as uow:
        owners = {i.id: i.customer_id for i in uow.interactions.list()}
    assert {*logged["a"], *logged["b"]} == owners.keys() and set(owners.values()) == {"a"}
    assert set(logged["b"]) == set(journal[0].moved["interactions"])  # B's contacts moved, all of them
    # and the merge undoes cleanly after all that
    crm.lifecycle.unmerge(journal[0].id)
    assert crm.customers.get("b").attributes.get("b") == last.get("b")


@pytest.fixture
def postgres_crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened = crmcore.open(request.getfixturevalue("fresh_postgres_url")())
    yield opened
    opened.close()


def test_contact_logged_while_merge_runs_is_moved_not_stranded(postgres_crm: crmcore.CRM) -> None:
    """The race PostgreSQL's READ COMMITTED allowed: a contact for the merged customer,
    inserted by a transaction that commits after the merge moved the rows, stayed on the
    merged id. Now the merge waits for that transaction and then moves the contact too."""
    crm = postgres_crm
    crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", created_at=T0))
    journal: list[Any] = []
    errors: list[BaseException] = []
    inserted = threading.Event()

    def merger() -> None:
        inserted.wait()
        try:
            journal.append(crm.lifecycle.merge("a", "b"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=merger)
    thread.start()
    with crm.transaction():
        contact = crm.interactions.log("b", channel="phone", direction="inbound")
        inserted.set()
        thread.join(timeout=1.0)  # the merge runs meanwhile (and now waits for this commit)
    thread.join(timeout=60)
    assert not errors, errors
    assert crm.customers.find("b") is None
    assert crm.interactions.get(contact.id).customer_id == "a"
    assert journal[0].moved["interactions"] == [contact.id]


def test_contact_logged_after_merge_holds_the_record_is_refused(postgres_crm: crmcore.CRM) -> None:
    """The other order: the merge holds the merged record first; logging for it waits, then
    finds the customer gone (NotFound), and nothing is written for a merged id."""
    crm = postgres_crm
    crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", created_at=T0))
    outcome: list[BaseException | str] = []
    holding = threading.Event()

    def logger() -> None:
        holding.wait()
        try:
            outcome.append(crm.interactions.log("b", channel="phone", direction="inbound").id)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=logger)
    thread.start()
    with crm.transaction():
        crm.lifecycle.merge("a", "b")
        holding.set()
        thread.join(timeout=1.0)  # logging runs meanwhile (and now waits for this commit)
    thread.join(timeout=60)
    assert len(outcome) == 1 and isinstance(outcome[0], NotFound), outcome
    with crm.reading() as uow:
        assert uow.interactions.for_customer("b") == []
