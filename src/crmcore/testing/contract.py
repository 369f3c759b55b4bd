"""The storage contract: one suite every storage adapter must pass, unchanged.

Subclass `StorageContract` in a test module and implement `open_storage()` to
return a fresh, empty storage; pytest collects every test below for it:

    class TestMyAdapter(StorageContract):
        def open_storage(self) -> Storage:
            return MyStorage("mydb://...")
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from crmcore import CRM, hookimpl
from crmcore import model as m
from crmcore.errors import ConflictError, IntegrityError, NotFound, StorageError, ValidationError
from crmcore.events import Event
from crmcore.plugins import make_plugin_manager
from crmcore.ports import Storage
from crmcore.testing import strategies as s
from crmcore.testing.lifecycle import LifecycleContract
from crmcore.testing.operational import OperationalStorageContract
from crmcore.values import Money

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def customer(n: int = 1, **fields: Any) -> m.Customer:
    base: dict[str, Any] = {
        "id": f"c{n:04d}", "name": f"Customer {n}", "emails": (f"user{n}@example.org",),
        "phones": (f"+3312345{n:04d}",), "created_at": T0, "updated_at": T0,
    }
    return m.Customer(**{**base, **fields})


def purchase(n: int, customer_id: str, at: datetime, amount: str = "10.00") -> m.Purchase:
    return m.Purchase(f"p{n:06d}", customer_id, at, (m.OrderLine("cd", Money(Decimal(amount))),))


def interaction(n: int, customer_id: str, at: datetime) -> m.Interaction:
    return m.Interaction(f"i{n:06d}", customer_id, m.Channel.PHONE, m.Direction.INBOUND, at)


def case(id: str, customer_id: str) -> m.Case:
    return m.Case(id, customer_id, m.CaseKind.COMPLAINT, "Late delivery", T0)


class StorageContract(OperationalStorageContract, LifecycleContract):
    """Behaviour, errors, concurrency and a stateful model check for one storage adapter."""

    one_transaction_at_a_time = False
    """True for a storage whose transactions take turns (a fake, an in-memory base)."""

    def open_storage(self) -> Storage:
        raise NotImplementedError("return a fresh, empty storage")

    @pytest.fixture
    def storage(self) -> Iterator[Storage]:
        store = self.open_storage()
        yield store
        store.close()

    @pytest.fixture
    def crm(self, storage: Storage) -> CRM:
        return CRM(storage, plugins=make_plugin_manager(load_entry_points=False), clock=lambda: T0)

    # ---- versioned aggregates ----

    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def test_every_aggregate_round_trips(self, data: st.DataObject) -> None:
        store = self.open_storage()
        try:
            items: dict[str, Any] = {
                "customers": data.draw(s.customers()), "cases": data.draw(s.cases()),
                "opportunities": data.draw(s.opportunities()),
                "service_points": data.draw(s.service_points), "agents": data.draw(s.agents),
                "teams": data.draw(s.teams), "campaigns": data.draw(s.campaigns),
                "segments": data.draw(s.segments),
            }
            with store.transaction() as uow:
                for name, item in items.items():
                    stored = getattr(uow, name).add(item)
                    assert stored == attrs.evolve(item, version=1)
            with store.transaction() as uow:
                for name, item in items.items():
                    assert getattr(uow, name).get(item.id) == attrs.evolve(item, version=1)
            logs: dict[str, Any] = {
                "interactions": data.draw(s.interactions()), "purchases": data.draw(s.purchases()),
            }
            with store.transaction() as uow:
                for name, item in logs.items():
                    getattr(uow, name).add(item)
            with store.transaction() as uow:
                for name, item in logs.items():
                    assert getattr(uow, name).get(item.id) == item
        finally:
            store.close()

    def test_missing_record_is_not_found(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            assert uow.customers.find("nope") is None
            with pytest.raises(NotFound) as caught:
                uow.customers.get("nope")
            assert caught.value.key == "nope"
            with pytest.raises(NotFound):
                uow.cases.update(attrs.evolve(case("k1", "c1"), version=1))

    def test_duplicate_id_is_refused_and_rolls_back(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.customers.add(customer(1))
        with pytest.raises(IntegrityError), storage.transaction() as uow:
            uow.customers.add(customer(2))
            uow.customers.add(customer(1, emails=()))
        with storage.transaction() as uow:
            assert uow.customers.find("c0002") is None
            assert uow.customers.count() == 1

    def test_new_record_must_have_version_zero(self, storage: Storage) -> None:
        with pytest.raises(ValidationError) as caught, storage.transaction() as uow:
            uow.customers.add(customer(1, version=3))
        assert caught.value.field == "version"

    def test_stale_version_is_a_conflict(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            first = uow.customers.add(customer(1))
        with storage.transaction() as uow:
            second = uow.customers.update(attrs.evolve(first, name="Renamed"))
        assert second.version == 2
        with pytest.raises(ConflictError) as caught, storage.transaction() as uow:
            uow.customers.update(attrs.evolve(first, name="Stale"))
        assert (caught.value.expected, caught.value.actual) == (1, 2)
        with pytest.raises(ConflictError), storage.transaction() as uow:
            uow.customers.remove(first)
        with storage.transaction() as uow:
            assert uow.customers.get(first.id).name == "Renamed"
            uow.customers.remove(second)
            assert uow.customers.find(first.id) is None

    def test_rollback_leaves_nothing(self, storage: Storage) -> None:
        class Boom(Exception):
            pass

        with pytest.raises(Boom), storage.transaction() as uow:
            stored = uow.customers.add(customer(1))
            uow.interactions.add(interaction(1, stored.id, T0))
            uow.outbox.append(Event("customer.added", stored.id, {}, T0))
            raise Boom
        with storage.transaction() as uow:
            assert uow.customers.count() == 0
            assert uow.interactions.count() == 0
            assert uow.customers.by_email("user1@example.org") is None
            assert uow.outbox.pending_count() == 0

    def test_paging_in_id_order(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n in (3, 1, 2, 5, 4):
                uow.customers.add(customer(n))
        with storage.transaction() as uow:
            assert [c.id for c in uow.customers.list(limit=2)] == ["c0001", "c0002"]
            assert [c.id for c in uow.customers.list(after="c0002")] == ["c0003", "c0004", "c0005"]
            assert uow.customers.count() == 5

    # ---- customer lookups ----

    def test_lookup_by_email_phone_and_external_id(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            ada = uow.customers.add(customer(1, emails=("Ada@example.org",), external_ids={"erp": "A1"}))
            uow.customers.add(customer(2, phones=ada.phones))
        with storage.transaction() as uow:
            assert uow.customers.by_email("ada@example.org") == ada
            assert uow.customers.by_email("ADA@EXAMPLE.ORG") == ada
            assert [c.id for c in uow.customers.by_phone(ada.phones[0])] == ["c0001", "c0002"]
            assert uow.customers.by_external_id("erp", "A1") == ada
            assert uow.customers.by_external_id("web", "A1") is None
            moved = uow.customers.update(
                attrs.evolve(ada, emails=("ada@new.example",), phones=(), external_ids={})
            )
        with storage.transaction() as uow:
            assert uow.customers.by_email("ada@example.org") is None
            assert uow.customers.by_email("ada@new.example") == moved
            assert [c.id for c in uow.customers.by_phone(ada.phones[0])] == ["c0002"]
            assert uow.customers.by_external_id("erp", "A1") is None

    def test_email_and_external_id_are_unique(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.customers.add(customer(1, external_ids={"erp": "A1"}))
        for clash in (customer(2, emails=("USER1@example.org",)), customer(3, external_ids={"erp": "A1"})):
            with pytest.raises(IntegrityError), storage.transaction() as uow:
                uow.customers.add(clash)
        with storage.transaction() as uow:
            assert uow.customers.count() == 1

    def test_add_many_stores_like_add_and_refuses_a_clash(self, storage: Storage) -> None:
        """An import's batch path: the same rows and lookups as one `add` each; a taken id or
        e-mail is an IntegrityError and the transaction keeps nothing of the batch."""
        people = [customer(n, external_ids={"erp": f"E{n}"}) for n in range(1, 6)]
        with storage.transaction() as uow:
            assert uow.customers.add_many(people) == 5
            bought = [purchase(n, "c0001", T0 + timedelta(days=n)) for n in range(3)]
            assert uow.purchases.add_many(bought) == 3
        with storage.transaction() as uow:
            assert uow.customers.get("c0003") == attrs.evolve(people[2], version=1)
            assert uow.customers.by_email("USER4@example.org") == attrs.evolve(people[3], version=1)
            assert uow.customers.by_external_id("erp", "E5") == attrs.evolve(people[4], version=1)
            assert len(uow.purchases.for_customer("c0001")) == 3
        for clash in ([customer(6), customer(2)], [customer(7), customer(8, emails=("user1@example.org",))]):
            with pytest.raises(IntegrityError), storage.transaction() as uow:
                uow.customers.add_many(clash)
        with storage.transaction() as uow:
            assert uow.customers.count() == 5 and uow.customers.find("c0006") is None

    # ---- customer logs ----

    def test_timeline_is_newest_first(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.customers.add(customer(1))
            for n in range(5):
                uow.interactions.add(interaction(n, "c0001", T0 + timedelta(hours=n)))
            uow.interactions.add(interaction(9, "other", T0))
            for n in range(3):
                uow.purchases.add(purchase(n, "c0001", T0 + timedelta(days=n)))
        with storage.transaction() as uow:
            timeline = uow.interactions.for_customer("c0001")
            assert [i.id for i in timeline] == [f"i{n:06d}" for n in (4, 3, 2, 1, 0)]
            recent = uow.interactions.for_customer("c0001", since=T0 + timedelta(hours=3), limit=5)
            assert [i.id for i in recent] == ["i000004", "i000003"]
            assert [p.id for p in uow.purchases.for_customer("c0001", limit=2)] == ["p000002", "p000001"]

    def test_interactions_by_channel_reference(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            pairs = [("c1", "<a@x>"), ("c1", "<b@x>"), ("c2", "<a@x>"), ("c1", "<a@x>")]
            for n, (who, ref) in enumerate(pairs):
                entry = interaction(n, who, T0 + timedelta(minutes=n))
                uow.interactions.add(attrs.evolve(entry, reference=ref))
        with storage.transaction() as uow:
            assert [i.id for i in uow.interactions.by_reference("c1", "<a@x>")] == ["i000003", "i000000"]
            assert uow.interactions.by_reference("c1", "<zz@x>") == []

    def test_cases_and_opportunities_by_customer(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n in range(3):
                uow.cases.add(case(f"k{n}", "c1"))
            uow.opportunities.add(m.Opportunity.open("o1", "c1", "Upgrade", T0))
        with storage.transaction() as uow:
            assert [c.id for c in uow.cases.for_customer("c1")] == ["k0", "k1", "k2"]
            assert [o.id for o in uow.opportunities.for_customer("c1")] == ["o1"]
            assert uow.cases.for_customer("c2") == []

    def test_campaign_members_are_replaced_not_duplicated(self, storage: Storage) -> None:
        member = m.CampaignMember("camp", "c1", at=T0)
        with storage.transaction() as uow:
            uow.campaign_members.put(member)
            uow.campaign_members.put(attrs.evolve(member, status=m.MemberStatus.RESPONDED))
            uow.campaign_members.put(attrs.evolve(member, customer_id="c2"))
        with storage.transaction() as uow:
            found = uow.campaign_members.of("camp")
        assert [(x.customer_id, x.status) for x in found] == [
            ("c1", m.MemberStatus.RESPONDED), ("c2", m.MemberStatus.SELECTED)]

    def test_campaign_members_stream_in_pages_by_customer_and_status(self, storage: Storage) -> None:
        members = [m.CampaignMember("camp", f"c{n:02d}", at=T0, stratum="gold") for n in range(25)]
        with storage.transaction() as uow:
            assert uow.campaign_members.put_many(iter(members)) == 25
            uow.campaign_members.put(m.CampaignMember("other", "c00", at=T0))
            uow.campaign_members.put(attrs.evolve(members[3], status=m.MemberStatus.SENT, reference="<r@x>"))
        with storage.transaction() as uow:
            pages, after = [], None
            while page := uow.campaign_members.page("camp", after=after, limit=10):
                pages.append([x.customer_id for x in page])
                after = page[-1].customer_id
            sent = uow.campaign_members.page("camp", status=m.MemberStatus.SENT)
            assert uow.campaign_members.find("camp", "c03") == sent[0]
            assert uow.campaign_members.find("camp", "zz") is None
            counts = uow.campaign_members.counts("camp")
        assert [len(p) for p in pages] == [10, 10, 5]
        assert [c for p in pages for c in p] == [x.customer_id for x in members]
        assert [(x.customer_id, x.reference, x.stratum) for x in sent] == [("c03", "<r@x>", "gold")]
        assert counts == {("target", "selected"): 24, ("target", "sent"): 1}

    # ---- scores and segment membership ----

    def test_scores_are_read_as_of_an_instant(self, storage: Storage) -> None:
        t1, t2 = T0, T0 + timedelta(days=30)
        with storage.transaction() as uow:
            uow.scores.put([m.Score("c1", "rfm", t1, 3, "loyal"), m.Score("c1", "rfm", t2, 5, "champion"),
                            m.Score("c1", "churn", t1, 0.25, details={"p_alive": 0.75})])
            uow.scores.put([m.Score("c1", "rfm", t2, 4, "loyal")])
        with storage.transaction() as uow:
            day_after = t1 + timedelta(days=1)
            assert uow.scores.latest("c1", "rfm", day_after) == m.Score("c1", "rfm", t1, 3, "loyal")
            assert uow.scores.latest("c1", "rfm") == m.Score("c1", "rfm", t2, 4, "loyal")
            assert uow.scores.latest("c1", "rfm", t1 - timedelta(seconds=1)) is None
            assert [x.scorer for x in uow.scores.for_customer("c1")] == ["churn", "rfm"]
            assert [x.value for x in uow.scores.of("rfm", t2)] == [4.0]

    def test_segment_membership_moves_by_difference(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.segment_members.apply(m.SegmentRun("vip", T0, 1, 2, 2, 0), ["a", "b"], [])
            uow.segment_members.apply(m.SegmentRun("vip", T0 + timedelta(days=1), 1, 2, 1, 1), ["c"], ["a"])
        with storage.transaction() as uow:
            assert uow.segment_members.current("vip") == {"b", "c"}
            assert [r.entered for r in uow.segment_members.runs("vip")] == [2, 1]
            assert uow.segment_members.current("other") == set()

    # ---- plugin kit: what the core compiles for this storage ----

    def test_compiled_queries_mean_what_python_computes(self, crm: CRM) -> None:
        """Segments and the purchase summary, through the CRM on this storage, give what the
        Python engines give on the same records (`AnalyticsContract` checks every analysis)."""
        from crmcore.scoring.summary import MixedCurrencies, currencies, every, summarize, summary_of
        from crmcore.segments import select_ids
        from crmcore.synthetic import AS_OF, SyntheticBase
        from crmcore.testing.analytics import RULES

        SyntheticBase(size=40, seed=5).load(crm)
        with crm.transaction() as uow:
            for rule in RULES:
                expected = select_ids(uow, rule, as_of=AS_OF, engine="python")
                assert select_ids(uow, rule, as_of=AS_OF) == expected, rule
            purchases = list(every(uow, "purchases"))
            codes = currencies(uow, AS_OF)
            assert codes == sorted({p.currency for p in purchases}) and len(codes) > 1
            with pytest.raises(MixedCurrencies):
                summarize(uow, AS_OF)  # amounts of two currencies are never added
            pairs = [(summarize(uow, AS_OF, currency=code), summary_of(purchases, AS_OF, currency=code))
                     for code in codes]
        for got, reference in pairs:
            assert got.customer_ids == reference.customer_ids and len(got) > 0
            assert got.currency == reference.currency
            for column in ("frequency", "recency", "T", "monetary", "total"):
                assert list(getattr(got, column)) == pytest.approx(list(getattr(reference, column))), column

    # ---- outbox ----

    def test_outbox_leases_settles_and_retries(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n in range(3):
                uow.outbox.append(Event("customer.added", f"c{n}", {"n": n}, T0))
        lease = timedelta(minutes=1)
        with storage.transaction() as uow:
            claimed = uow.outbox.claim(T0, lease, 2)
        assert [e.event.payload["n"] for e in claimed] == [0, 1]
        with storage.transaction() as uow:
            assert [e.event.payload["n"] for e in uow.outbox.claim(T0, lease, 10)] == [2]
            assert uow.outbox.claim(T0, lease, 10) == []
        with storage.transaction() as uow:
            uow.outbox.settle(claimed[0].seq, frozenset({"a"}), True, None, None)
            uow.outbox.settle(claimed[1].seq, frozenset({"a"}), False, "b: boom", T0 + timedelta(seconds=5))
            assert uow.outbox.pending_count() == 2
        with storage.transaction() as uow:
            retried = uow.outbox.claim(T0 + timedelta(seconds=5), lease, 10)
        assert [(e.event.payload["n"], e.attempts, e.delivered_to, e.last_error) for e in retried] == [
            (1, 1, frozenset({"a"}), "b: boom")]
        assert retried[0].event == claimed[1].event

    def test_subscriber_failure_loses_nothing(self, storage: Storage) -> None:
        seen: dict[str, list[str]] = {"steady": [], "flaky": []}

        class Steady:
            @hookimpl
            def crmcore_on_event(self, event: Event) -> None:
                seen["steady"].append(event.id)

        class Flaky:
            failures = 1

            @hookimpl
            def crmcore_on_event(self, event: Event) -> None:
                if self.failures:
                    self.failures -= 1
                    raise RuntimeError("subscriber down")
                seen["flaky"].append(event.id)

        now = [T0]
        pm = make_plugin_manager(load_entry_points=False)
        pm.register(Steady(), "steady")
        pm.register(Flaky(), "flaky")
        crm = CRM(storage, plugins=pm, clock=lambda: now[0])
        added = crm.customers.add(customer(1))
        assert added.version == 1 and crm.customers.get("c0001") == added
        assert len(seen["steady"]) == 1 and seen["flaky"] == []
        now[0] += timedelta(hours=1)
        assert crm.dispatch_events() == 1
        assert seen["flaky"] == seen["steady"] and len(seen["steady"]) == 1
        with storage.transaction() as uow:
            assert uow.outbox.pending_count() == 0

    # ---- bulk import ----

    def test_bulk_import_is_all_or_nothing(self, storage: Storage) -> None:
        people = [customer(n) for n in range(1, 51)]
        bought = [purchase(n, f"c{n % 50 + 1:04d}", T0 + timedelta(days=n)) for n in range(120)]
        assert storage.bulk_import([*people, *bought]) == 170
        with storage.transaction() as uow:
            assert uow.customers.count() == 50
            assert uow.purchases.count() == 120
            assert uow.customers.by_email("user7@example.org") == attrs.evolve(people[6], version=1)
        clash = [customer(100), customer(101, emails=("user3@example.org",))]
        with pytest.raises(IntegrityError):
            storage.bulk_import(clash)
        with pytest.raises(ValidationError):
            storage.bulk_import([customer(102), "not a record"])  # type: ignore[list-item]
        with pytest.raises(IntegrityError, match="ghost"):
            storage.bulk_import([customer(103), purchase(999, "ghost", T0), interaction(999, "c0001", T0)])
        assert storage.bulk_import([purchase(998, "c0001", T0)]) == 1
        with storage.transaction() as uow:
            assert uow.customers.count() == 50
            assert uow.customers.find("c0100") is None and uow.customers.find("c0102") is None
            assert uow.customers.find("c0103") is None and uow.purchases.count() == 121

    def test_purchase_totals_follow_every_purchase_write(self, storage: Storage) -> None:
        """`uow.purchase_totals` equals a recount of the purchases after each kind of write:
        in order, the same day, earlier, another currency, a bulk import, a move, an
        erasure, and a transaction rolled back."""
        from crmcore.scoring.totals import recount

        def dollars(n: int, customer_id: str, at: datetime) -> m.Purchase:
            return m.Purchase(f"u{n:04d}", customer_id, at,
                              (m.OrderLine("sku", Money(Decimal("4.50"), "USD")),))

        def agree() -> None:
            with storage.transaction(readonly=True) as uow:
                everything = [p for c in ("c0001", "c0002") for p in uow.purchases.for_customer(c)]
                assert uow.purchase_totals.all() == recount(everything)
                dollar_rows = [t for t in recount(everything) if t.currency == "USD"]
                assert uow.purchase_totals.all("USD") == dollar_rows
                assert uow.purchase_totals.latest() == max((p.ordered_at for p in everything), default=None)

        storage.bulk_import([customer(1), customer(2)])
        agree()
        day = timedelta(days=1)
        writes = [purchase(1, "c0001", T0 + 3 * day), purchase(2, "c0001", T0 + 3 * day + timedelta(hours=2)),
                  purchase(3, "c0001", T0 + day), dollars(4, "c0001", T0 + 2 * day),
                  purchase(5, "c0002", T0 + 9 * day)]
        for item in writes:
            with storage.transaction() as uow:
                uow.purchases.add(item)
            agree()
        storage.bulk_import([purchase(6, "c0002", T0), dollars(7, "c0002", T0 + timedelta(days=4))])
        agree()
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            uow.purchases.add(purchase(8, "c0001", T0 - timedelta(days=5)))
            raise RuntimeError("rolled back")
        agree()
        with storage.transaction() as uow:
            uow.purchases.reassign("c0002", "c0001", ["p000006"])
        agree()
        with storage.transaction() as uow:
            uow.purchases.purge("c0002")
        agree()

    # ---- concurrency ----

    def test_concurrent_writers_lose_no_update(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.customers.add(customer(1, attributes={"visits": 0}))
        successes = []
        errors: list[BaseException] = []

        def bump() -> None:
            for _ in range(15):
                try:
                    with storage.transaction() as uow:
                        current = uow.customers.get("c0001")
                    visits = current.attributes["visits"]
                    assert isinstance(visits, int)
                    with storage.transaction() as uow:
                        uow.customers.update(attrs.evolve(current, attributes={"visits": visits + 1}))
                    successes.append(1)
                except ConflictError:
                    pass
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

        threads = [threading.Thread(target=bump) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, [repr(e) for e in errors]
        with storage.transaction() as uow:
            final = uow.customers.get("c0001")
        assert final.attributes["visits"] == len(successes)
        assert final.version == len(successes) + 1

    def test_nested_transaction_on_one_thread_is_refused(self, storage: Storage) -> None:
        with storage.transaction(), pytest.raises(StorageError), storage.transaction():
            pass
        with storage.transaction(readonly=True), pytest.raises(StorageError), storage.transaction():
            pass

    def test_readers_run_beside_writers_and_see_whole_transactions(self, storage: Storage) -> None:
        """Readers never fail or see half a transaction while writers commit: each writer
        moves one unit between two customers, so every snapshot sums to the same total."""
        with storage.transaction() as uow:
            uow.customers.add(customer(1, attributes={"units": 100}))
            uow.customers.add(customer(2, attributes={"units": 100}))
        errors: list[BaseException] = []
        sums: list[int] = []
        done = threading.Event()

        def units(c: m.Customer) -> int:
            value = c.attributes["units"]
            assert isinstance(value, int)
            return value

        def move() -> None:
            for n in range(20):
                step = 1 if n % 2 else -1
                try:  # rows are written in id order, so two writers never deadlock
                    with storage.transaction() as uow:
                        a, b = uow.customers.get("c0001"), uow.customers.get("c0002")
                        uow.customers.update(attrs.evolve(a, attributes={"units": units(a) - step}))
                        uow.customers.update(attrs.evolve(b, attributes={"units": units(b) + step}))
                except ConflictError:
                    pass
                except BaseException as exc:
                    errors.append(exc)

        def read() -> None:
            while not done.is_set():
                try:
                    with storage.transaction(readonly=True) as uow:
                        sums.append(units(uow.customers.get("c0001")) + units(uow.customers.get("c0002")))
                except BaseException as exc:
                    errors.append(exc)
                    return

        readers = [threading.Thread(target=read) for _ in range(3)]
        writers = [threading.Thread(target=move) for _ in range(2)]
        for t in (*readers, *writers):
            t.start()
        for t in writers:
            t.join()
        done.set()
        for t in readers:
            t.join()
        assert not errors, [repr(e) for e in errors]
        assert sums and set(sums) == {200}

    def test_a_read_only_transaction_writes_nothing(self, storage: Storage) -> None:
        with pytest.raises(StorageError), storage.transaction(readonly=True) as uow:
            uow.customers.add(customer(1))
        with storage.transaction(readonly=True) as uow:
            assert uow.customers.count() == 0

    def test_asyncio_tasks_each_have_their_own_transaction(self, storage: Storage) -> None:
        """Transactions belong to the context, not the thread: tasks that await inside a
        read transaction on one event loop thread interleave without refusing each other."""
        import asyncio

        with storage.transaction() as uow:
            uow.customers.add(customer(1))

        async def reader(n: int) -> str:
            with storage.transaction(readonly=True) as uow:
                await asyncio.sleep(0.001 * (n % 3))
                return uow.customers.get("c0001").id

        async def main() -> list[str]:
            return list(await asyncio.gather(*(reader(n) for n in range(4))))

        if self.one_transaction_at_a_time:
            pytest.skip("this storage runs one transaction at a time, by design")
        assert asyncio.run(main()) == ["c0001"] * 4

    def test_delivered_outbox_entries_are_pruned_after_retention(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n in range(5):
                uow.outbox.append(Event("customer.added", f"c{n}", {"n": n}, T0))
        with storage.transaction() as uow:
            claimed = uow.outbox.claim(T0, timedelta(minutes=1), 10)
            for entry in claimed[:3]:
                uow.outbox.settle(entry.seq, frozenset({"a"}), True, None, T0 + timedelta(days=entry.seq))
        with storage.transaction() as uow:
            assert uow.outbox.prune(T0 + timedelta(days=100), 2) == 2
            assert uow.outbox.prune(T0 + timedelta(days=100), 10) == 1
            assert uow.outbox.prune(T0 + timedelta(days=100), 10) == 0
            assert uow.outbox.pending_count() == 2

    # ---- the stateful model check ----

    def test_behaves_like_the_model(self) -> None:
        open_storage = self.open_storage

        class Machine(StorageMachine):
            def __init__(self) -> None:
                super().__init__(open_storage)

        run_state_machine_as_test(
            Machine,
            settings=settings(max_examples=25, stateful_step_count=25, deadline=None,
                              suppress_health_check=list(HealthCheck)),
        )


class StorageMachine(RuleBasedStateMachine):
    """Drives a storage adapter and a plain dict model side by side; they must agree."""

    ids = Bundle("ids")

    def __init__(self, open_storage: Any) -> None:
        super().__init__()
        self.storage: Storage = open_storage()
        self.model: dict[str, m.Customer] = {}
        self.seen: dict[str, m.Customer] = {}
        """Every version ever returned, to replay stale writes."""
        self.timeline: dict[str, list[m.Interaction]] = {}

    def teardown(self) -> None:
        self.storage.close()

    def _email_owner(self, email: str) -> str | None:
        owners = (c.id for c in self.model.values() if email.lower() in {e.lower() for e in c.emails})
        return next(owners, None)

    def _ext_owner(self, pair: tuple[str, str]) -> str | None:
        return next((c.id for c in self.model.values() if pair in c.external_ids.items()), None)

    def _clashes(self, item: m.Customer) -> bool:
        owners = {self._email_owner(e) for e in item.emails} | {
            self._ext_owner(p) for p in item.external_ids.items()}
        return bool(owners - {None, item.id})

    @initialize()
    def empty(self) -> None:
        with self.storage.transaction() as uow:
            assert uow.customers.count() == 0

    @rule(target=ids, item=s.customers(id=st.sampled_from([f"id{n}" for n in range(8)])))
    def add(self, item: m.Customer) -> str:
        expect_error = item.id in self.model or self._clashes(item)
        try:
            with self.storage.transaction() as uow:
                stored = uow.customers.add(item)
        except IntegrityError:
            assert expect_error
        else:
            assert not expect_error
            assert stored == attrs.evolve(item, version=1)
            self.model[item.id] = self.seen[item.id] = stored
        return item.id

    @rule(id=ids, name=s.texts, emails=st.lists(s.emails(), max_size=2, unique_by=str.lower),
          stale=st.booleans())
    def update(self, id: str, name: str, emails: list[str], stale: bool) -> None:
        base = self.seen.get(id)
        if base is None:
            return
        current = self.model.get(id)
        if not stale and current is not None:
            base = current
        item = attrs.evolve(base, name=name, emails=tuple(emails))
        if current is None:
            outcome: type[Exception] | None = NotFound
        elif base.version != current.version:
            outcome = ConflictError
        elif self._clashes(item):
            outcome = IntegrityError
        else:
            outcome = None
        try:
            with self.storage.transaction() as uow:
                stored = uow.customers.update(item)
        except (NotFound, ConflictError, IntegrityError) as exc:
            assert outcome is not None and isinstance(exc, outcome), (exc, outcome)
        else:
            assert outcome is None, outcome
            assert stored.version == base.version + 1
            self.model[id] = self.seen[id] = stored

    @rule(id=ids)
    def remove(self, id: str) -> None:
        current = self.model.get(id)
        if current is None:
            return
        with self.storage.transaction() as uow:
            uow.customers.remove(current)
        del self.model[id]

    @rule(id=ids, item=s.interactions())
    def log(self, id: str, item: m.Interaction) -> None:
        entry = attrs.evolve(item, customer_id=id, id=f"{id}-{len(self.timeline.get(id, []))}")
        with self.storage.transaction() as uow:
            uow.interactions.add(entry)
        self.timeline.setdefault(id, []).append(entry)

    @rule(id=ids)
    def read_back(self, id: str) -> None:
        with self.storage.transaction() as uow:
            assert uow.customers.find(id) == self.model.get(id)
            expected = sorted(self.timeline.get(id, []), key=lambda i: (i.occurred_at, i.id), reverse=True)
            assert uow.interactions.for_customer(id) == expected
            for email in (self.model[id].emails if id in self.model else ()):
                assert uow.customers.by_email(email) == self.model[id]

    @invariant()
    def same_customers(self) -> None:
        with self.storage.transaction() as uow:
            assert uow.customers.count() == len(self.model)
            assert uow.customers.list() == [self.model[k] for k in sorted(self.model)]
