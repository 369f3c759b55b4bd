"""A merge or an unmerge racing with writes to either record loses nothing and commits
whole or not at all.

Writers keep changing both records and logging contacts to both while another thread
merges them, retrying on conflicts as an
application would. Afterwards the survivor holds each writer's last successful write,
every contact is on a living customer, and the merge journal agrees with the data.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import attrs
import pytest

import crmcore
from crmcore.errors import ConflictError, NotFound, StorageError
from crmcore.model import CampaignMember, Customer, MemberStatus, Score
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


def bump(crm: crmcore.CRM, who: str, n: int) -> Customer:
    """Read, change and write back in one transaction (a read outside it could be stale)."""
    with crm.transaction():
        current = crm.customers.get(who)
        return crm.customers.update(attrs.evolve(current, attributes={**current.attributes, who: n}))


def write_rounds(crm: crmcore.CRM, who: str, channel: str, last: dict[str, int],
                 logged: dict[str, list[str]], *, gone_for_good: bool) -> None:
    """ROUNDS of: change the record, log a contact for it, as an application would. Only
    "b" may be missing (merged away): refused, nothing written; with `gone_for_good` its
    writer stops there, else it goes on (an unmerge brings the record back)."""
    for n in range(ROUNDS):
        try:
            retrying(lambda n=n: bump(crm, who, n))
            last[who] = n
            logged[who].append(retrying(
                lambda: crm.interactions.log(who, channel=channel, direction="inbound").id))
        except NotFound:
            assert who == "b"
            if gone_for_good:
                return


def race(*calls: Callable[[], Any]) -> None:
    """Start every call at once, each in a thread of its own, and fail with whatever any raised."""
    start = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        start.wait()
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def test_merge_racing_with_writes_loses_nothing(crm: crmcore.CRM) -> None:
    crm.customers.add(Customer.new("Ann", id="a", emails=["a@example.org"], created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", emails=["b@example.org"], created_at=T0))
    last: dict[str, int] = {}
    logged: dict[str, list[str]] = {"a": [], "b": []}
    journal: list[Any] = []
    writers = (partial(write_rounds, crm, who, "phone", last, logged, gone_for_good=True) for who in "ab")
    race(*writers,
         lambda: journal.append(retrying(lambda: crm.lifecycle.merge("a", "b"))))
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


def meanwhile(crm: crmcore.CRM, hold: Callable[[Any], Any], other: Callable[[], Any]) -> tuple[Any, Any]:
    """Run `other` in a thread while `hold(uow)` keeps a transaction open: `other` starts
    once `hold` has written and runs (or waits on its locks) until `hold` commits. What
    `hold` returned, and what `other` returned or raised."""
    outcome: list[Any] = []
    held = threading.Event()

    def run() -> None:
        held.wait()
        try:
            outcome.append(other())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    with crm.transaction() as uow:
        try:
            kept = hold(uow)
        finally:
            held.set()
        thread.join(timeout=1.0)  # the other call runs meanwhile (and may wait for this commit)
    thread.join(timeout=60)
    assert len(outcome) == 1, "the call in the thread did not end"
    return kept, outcome[0]


def test_contact_logged_while_merge_runs_is_moved_not_stranded(postgres_crm: crmcore.CRM) -> None:
    """The race PostgreSQL's READ COMMITTED allowed: a contact for the merged customer,
    inserted by a transaction that commits after the merge moved the rows, stayed on the
    merged id. Now the merge waits for that transaction and then moves the contact too."""
    crm = postgres_crm
    crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", created_at=T0))
    contact, journal = meanwhile(
        crm, lambda _: crm.interactions.log("b", channel="phone", direction="inbound"),
        lambda: crm.lifecycle.merge("a", "b"))  # the merge now waits for the contact's commit
    assert not isinstance(journal, BaseException), journal
    assert crm.customers.find("b") is None
    assert crm.interactions.get(contact.id).customer_id == "a"
    assert journal.moved["interactions"] == [contact.id]


def test_contact_logged_after_merge_holds_the_record_is_refused(postgres_crm: crmcore.CRM) -> None:
    """The other order: the merge holds the merged record first; logging for it waits, then
    finds the customer gone (NotFound), and nothing is written for a merged id."""
    crm = postgres_crm
    crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", created_at=T0))
    _, outcome = meanwhile(
        crm, lambda _: crm.lifecycle.merge("a", "b"),
        lambda: crm.interactions.log("b", channel="phone", direction="inbound").id)
    assert isinstance(outcome, NotFound), outcome  # logging waited for the merge's commit
    with crm.reading() as uow:
        assert uow.interactions.for_customer("b") == []


def merged_pair(crm: crmcore.CRM) -> tuple[Any, list[str], str]:
    """Customers a and b (b with two contacts and a case), b merged into a: the journal,
    b's contacts and b's case id."""
    crm.customers.add(Customer.new("Ann", id="a", emails=["a@example.org"], created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", emails=["b@example.org"],
                                   attributes={"b": -1}, created_at=T0))
    contacts = [crm.interactions.log("b", channel="phone", direction="inbound").id for _ in range(2)]
    case = crm.cases.open("b", "complaint", "Broken", id="k1")
    return crm.lifecycle.merge("a", "b"), contacts, case.id


def counted(crm: crmcore.CRM, case_id: str) -> int:
    """One more contact on the case, read and written in one transaction; the new count."""
    with crm.transaction():
        case = crm.cases.get(case_id)
        return crm.cases.update(attrs.evolve(case, contacts=case.contacts + 1)).contacts


def test_unmerge_racing_with_writes_loses_nothing(crm: crmcore.CRM) -> None:
    """Writers change both records, log contacts for both and count contacts on a case the
    merge moved, while another thread undoes the merge. Afterwards each record holds its
    writer's last successful write, every contact is on the customer it was logged for
    (b's own back on b), the case counted every increment and went back to b."""
    journal, contacts, case_id = merged_pair(crm)
    last: dict[str, int] = {}
    logged: dict[str, list[str]] = {"a": [], "b": []}
    counts: list[int] = []

    def case_writer() -> None:
        for _ in range(ROUNDS):
            counts.append(retrying(lambda: counted(crm, case_id)))

    writers = (partial(write_rounds, crm, who, "email", last, logged, gone_for_good=False) for who in "ab")
    race(*writers, case_writer, lambda: retrying(lambda: crm.lifecycle.unmerge(journal.id)))
    assert crm.lifecycle.merges("b")[0].undone_at is not None
    survivor, restored = crm.customers.get("a"), crm.customers.get("b")
    assert survivor.attributes == {"a": ROUNDS - 1} and last["a"] == ROUNDS - 1
    assert restored.attributes == {"b": last.get("b", -1)}  # before the merge, or its last write since
    assert restored.emails == ("b@example.org",) and survivor.emails == ("a@example.org",)
    with crm.reading() as uow:
        owners = {i.id: i.customer_id for i in uow.interactions.list()}
    assert owners == {**{i: "a" for i in logged["a"]}, **{i: "b" for i in [*contacts, *logged["b"]]}}
    case = crm.cases.get(case_id)
    assert case.customer_id == "b" and case.contacts == 1 + ROUNDS == counts[-1]


def test_survivor_written_while_unmerge_runs_is_kept(postgres_crm: crmcore.CRM) -> None:
    """An unmerge that meets a write to the survivor in flight waits for it and separates
    the record as that write left it (it used to read the record before and then fail on
    the version, or worse, undo a write it never saw)."""
    crm = postgres_crm
    journal, _, _ = merged_pair(crm)

    def write(_: Any) -> None:
        current = crm.customers.get("a")
        crm.customers.update(attrs.evolve(current, tier="gold", attributes={**current.attributes, "x": 1}))

    _, outcome = meanwhile(crm, write, lambda: crm.lifecycle.unmerge(journal.id))
    assert not isinstance(outcome, BaseException), outcome
    survivor = crm.customers.get("a")
    assert (survivor.tier, survivor.attributes) == ("gold", {"x": 1})
    assert crm.customers.get("b").attributes == {"b": -1}


def moved_while_writing(crm: crmcore.CRM, journal_id: str, undo: bool,
                        write: Callable[[Any], None]) -> None:
    """Merge a and b (or undo the merge `journal_id`) while `write` holds an open
    transaction; the move runs meanwhile and must wait for that commit."""
    _, outcome = meanwhile(crm, write, lambda: crm.lifecycle.unmerge(journal_id) if undo
                           else crm.lifecycle.merge("a", "b"))
    assert not isinstance(outcome, BaseException), outcome


@pytest.mark.parametrize("undo", [False, True], ids=["merge", "unmerge"])
def test_moved_case_written_meanwhile_is_kept(postgres_crm: crmcore.CRM, undo: bool) -> None:
    """A case written by a transaction that commits while a merge moves it (or an unmerge
    moves it back): the move waits for that write and carries it along (it used to
    overwrite it with the case as it had read it before)."""
    crm = postgres_crm
    journal, _, case_id = merged_pair(crm)
    if not undo:
        crm.lifecycle.unmerge(journal.id)  # the case is b's again: the merge below moves it
    moved_while_writing(crm, journal.id, undo, lambda _: counted(crm, case_id))
    case = crm.cases.get(case_id)
    assert (case.customer_id, case.contacts) == ("b" if undo else "a", 2)


def member_and_snapshot_of_b(crm: crmcore.CRM) -> Any:
    """Customers a and b, b in campaign "spring" and with an rfm snapshot; b merged into a:
    the journal (the membership and the snapshot are a's now)."""
    crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", created_at=T0))
    with crm.transaction() as uow:
        uow.campaign_members.put(CampaignMember("spring", "b", at=T0))
        uow.scores.put([Score("b", "rfm", T0, 1)])
    return crm.lifecycle.merge("a", "b")


def change_status(crm: crmcore.CRM, owner: str, status: MemberStatus) -> None:
    """A status change as the sending and response paths write one: the membership read
    and written back, the customer not held."""
    with crm.transaction() as uow:
        member = uow.campaign_members.find("spring", owner)
        assert member is not None
        uow.campaign_members.put(attrs.evolve(member, status=status))


@pytest.mark.parametrize("undo", [False, True], ids=["merge", "unmerge"])
def test_membership_and_snapshot_written_meanwhile_are_moved(postgres_crm: crmcore.CRM, undo: bool) -> None:
    """A membership status change (and, for a merge, a snapshot rewritten) by a transaction
    that commits while a merge moves them, or an unmerge moves them back: the move waits for
    that write and carries it along (it used to delete the row after the write and put back
    the copy it had read before it: the change was lost)."""
    crm = postgres_crm
    journal = member_and_snapshot_of_b(crm)
    if not undo:
        crm.lifecycle.unmerge(journal.id)  # b's again: the merge below moves them
    owner, to = ("a", "b") if undo else ("b", "a")

    def write(uow: Any) -> None:
        change_status(crm, owner, MemberStatus.RESPONDED)
        if not undo:
            uow.scores.put([Score("b", "rfm", T0, 7)])

    moved_while_writing(crm, journal.id, undo, write)
    with crm.reading() as uow:
        assert uow.campaign_members.for_customer(owner) == []
        assert [m.status for m in uow.campaign_members.for_customer(to)] == [MemberStatus.RESPONDED]
        assert [s.value for s in uow.scores.all_of(to)] == [1 if undo else 7]
        assert uow.scores.all_of(owner) == []


def test_joining_after_merge_holds_the_record_is_refused(postgres_crm: crmcore.CRM) -> None:
    """`marketing.join` for the merged customer while the merge holds it: the join waits,
    then finds the customer gone (NotFound); no membership is written for a merged id (it
    used to be, read before the merge committed)."""
    crm = postgres_crm
    crm.customers.add(Customer.new("Ann", id="a", created_at=T0))
    crm.customers.add(Customer.new("Ann B", id="b", created_at=T0))
    crm.customers.add(Customer.new("Cy", id="c", tier="gold", created_at=T0))
    crm.marketing.create("spring", "Spring", channel="email", subject="Hi", text="Hello",
                         rule='tier = "gold"')  # c alone: a and b may join
    crm.marketing.launch("spring")
    _, outcome = meanwhile(crm, lambda _: crm.lifecycle.merge("a", "b"),
                           lambda: crm.marketing.join("spring", "b"))
    assert isinstance(outcome, NotFound), outcome  # the join waited for the merge's commit
    with crm.reading() as uow:
        assert uow.campaign_members.for_customer("b") == []


def test_unmerge_racing_with_status_changes_loses_nothing(crm: crmcore.CRM) -> None:
    """A writer keeps changing the status of a membership the merge moved, wherever it is
    (held as `join` and `record_click` hold the customer), while another thread undoes the
    merge: afterwards the membership is b's alone and carries the writer's last change."""
    journal = member_and_snapshot_of_b(crm)
    statuses = (MemberStatus.SENDING, MemberStatus.SENT, MemberStatus.RESPONDED)
    last: list[MemberStatus] = []

    def held_change(status: MemberStatus) -> None:
        with crm.transaction() as uow:
            for owner in ("a", "b"):
                try:
                    uow.customers.lock(owner, shared=True)
                except NotFound:  # b, merged away until the unmerge commits
                    continue
                member = uow.campaign_members.find("spring", owner)
                if member is not None:
                    uow.campaign_members.put(attrs.evolve(member, status=status))
                    return
            raise AssertionError("the membership is nowhere")

    def writer() -> None:
        for n in range(ROUNDS):
            status = statuses[n % len(statuses)]
            retrying(lambda status=status: held_change(status))
            last.append(status)

    race(writer, lambda: retrying(lambda: crm.lifecycle.unmerge(journal.id)))
    assert len(last) == ROUNDS and crm.lifecycle.merges("b")[0].undone_at is not None
    with crm.reading() as uow:
        assert uow.campaign_members.for_customer("a") == []
        assert [m.status for m in uow.campaign_members.for_customer("b")] == [last[-1]]
        assert [s.customer_id for s in uow.scores.all_of("b")] == ["b"]
