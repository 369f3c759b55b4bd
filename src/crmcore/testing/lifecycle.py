"""The storage contract's lifecycle part: history, moving and purging a customer's rows,
merge journals, tombstones, outbox redaction, and merge/unmerge/erase through the CRM.

Mixed into `StorageContract`, so every adapter that runs the contract runs this too.
It relies on the `storage` and `crm` fixtures the contract defines.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs
import pytest

from crmcore import CRM
from crmcore import model as m
from crmcore.errors import IntegrityError, NotFound
from crmcore.events import Event
from crmcore.model.history import Change, ChangeKind, MergeRecord, Tombstone
from crmcore.ports import Storage
from crmcore.values import Money

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _customer(n: int, **fields: Any) -> m.Customer:
    base: dict[str, Any] = {
        "id": f"c{n:04d}", "name": f"Person {n}", "emails": (f"person{n}@example.org",),
        "created_at": T0, "updated_at": T0,
    }
    return m.Customer(**{**base, **fields})


def _change(id: str, version: int, at: datetime, op: ChangeKind = ChangeKind.UPDATED) -> Change:
    return Change("customer", id, version, op, at, {"name": ["Old", f"New {version}"]}, "user:ann")


class LifecycleContract:
    """What merge, unmerge, erasure and as-of reads need from a storage."""

    def test_history_in_order_and_rolled_back_with_the_write(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.history.append(_change("c0001", 1, T0, ChangeKind.ADDED))
            uow.history.append(_change("c0001", 2, T0 + timedelta(hours=1)))
            uow.history.append(_change("c0002", 1, T0))
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            uow.history.append(_change("c0001", 3, T0 + timedelta(hours=2)))
            raise RuntimeError("roll back")
        with storage.transaction() as uow:
            mine = uow.history.of("customer", "c0001")
            assert [(c.version, c.op, c.actor) for c in mine] == [
                (1, ChangeKind.ADDED, "user:ann"), (2, ChangeKind.UPDATED, "user:ann")]
            assert mine[1].diff == {"name": ["Old", "New 2"]} and mine[1].at == T0 + timedelta(hours=1)
            assert mine[0].seq < mine[1].seq
            assert uow.history.changed_after("customer", T0)
            assert not uow.history.changed_after("customer", T0 + timedelta(hours=1))
            assert not uow.history.changed_after("case", T0 - timedelta(days=1))
            assert [c.version for c in uow.history.after("customer", T0)] == [2]
            assert uow.history.purge("customer", "c0001") == 2
            assert uow.history.of("customer", "c0001") == []
            assert len(uow.history.of("customer", "c0002")) == 1

    def test_history_appended_in_a_batch_is_what_one_by_one_gives(self, storage: Storage) -> None:
        cases = [Change("case", f"k{n}", 2, ChangeKind.UPDATED, T0 + timedelta(minutes=n),
                        {"steps": [[], [n]], "note": ['it "quoted"', None]}, None) for n in range(3)]
        with storage.transaction() as uow:
            uow.history.append_many(cases)
            uow.history.append_many([_change("c0001", 1, T0, ChangeKind.ADDED),
                                     _change("c0001", 2, T0 + timedelta(hours=1))])
            uow.history.append_many([])
        with pytest.raises(RuntimeError), storage.transaction() as uow:
            uow.history.append_many([attrs.evolve(cases[0], version=3)])
            raise RuntimeError("roll back")
        with storage.transaction() as uow:
            for n, change in enumerate(cases):
                (read,) = uow.history.of("case", f"k{n}")
                assert attrs.evolve(read, seq=0) == change
            customer = uow.history.of("customer", "c0001")
            assert [c.version for c in customer] == [1, 2] and customer[0].seq < customer[1].seq
            assert [c.aggregate_id for c in uow.history.after("case", T0 - timedelta(seconds=1))] == [
                "k0", "k1", "k2"]

    def test_data_is_the_plain_record(self, storage: Storage) -> None:
        from crmcore import serialization

        with storage.transaction() as uow:
            stored = uow.customers.add(_customer(1, attributes={"size": Decimal("1.5"), "n": 2}))
            case = uow.cases.add(m.Case("k1", "c0001", "complaint", "Late", T0))
        with storage.transaction() as uow:
            assert uow.customers.data("c0001") == serialization.unstructure(stored)
            assert uow.cases.data("k1") == serialization.unstructure(case)
            assert uow.customers.data("nobody") is None

    def test_owned_rows_move_and_purge(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            for n in (1, 2):
                uow.customers.add(_customer(n))
            for n in range(3):
                uow.interactions.add(m.Interaction(f"i{n}", "c0001", "phone", "inbound", T0))
                uow.purchases.add(m.Purchase(f"p{n}", "c0001", T0, (m.OrderLine("x", Money(Decimal(1))),)))
            uow.cases.add(m.Case("k1", "c0001", "complaint", "Late", T0))
            uow.opportunities.add(m.Opportunity.open("o1", "c0001", "Deal", T0))
        with storage.transaction() as uow:
            assert uow.interactions.reassign("c0001", "c0002", ["i2", "i0", "nope"]) == ["i0", "i2"]
            assert uow.purchases.reassign("c0001", "c0002") == ["p0", "p1", "p2"]
            assert uow.cases.reassign("c0001", "c0002") == ["k1"]
            assert uow.opportunities.reassign("c0001", "c0002") == ["o1"]
        with storage.transaction() as uow:
            assert [i.id for i in uow.interactions.for_customer("c0002")] == ["i2", "i0"]
            assert [i.id for i in uow.interactions.for_customer("c0001")] == ["i1"]
            assert uow.interactions.get("i0").customer_id == "c0002"
            assert len(uow.purchases.for_customer("c0002")) == 3
            moved = uow.cases.get("k1")
            assert (moved.customer_id, moved.version) == ("c0002", 2)
            assert uow.opportunities.for_customer("c0002")[0].version == 2
            assert uow.purchases.purge("c0002") == 3 and uow.purchases.for_customer("c0002") == []
            assert uow.interactions.purge("c0002") == 2 and uow.interactions.count() == 1
            assert uow.cases.purge("c0002") == 1 and uow.cases.find("k1") is None
            assert uow.opportunities.purge("c0002") == 1

    def test_restore_puts_a_customer_back_as_it_was(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            stored = uow.customers.update(uow.customers.add(_customer(1, phones=("+33123456789",))))
            uow.customers.remove(stored)
        with storage.transaction() as uow:
            assert uow.customers.restore(stored) == stored
            with pytest.raises(IntegrityError):
                uow.customers.restore(stored)
        with storage.transaction() as uow:
            assert uow.customers.get("c0001").version == 2
            assert uow.customers.by_email("person1@example.org") == stored
            assert uow.customers.by_phone("+33123456789") == [stored]
            uow.customers.add(_customer(2, emails=("other@example.org",)))
        with pytest.raises(IntegrityError), storage.transaction() as uow:
            uow.customers.restore(_customer(3, emails=("other@example.org",), version=4))

    def test_members_and_scores_by_customer(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.campaign_members.put(m.CampaignMember("spring", "c0001", at=T0))
            uow.campaign_members.put(m.CampaignMember("autumn", "c0001", at=T0))
            uow.campaign_members.put(m.CampaignMember("spring", "c0002", at=T0))
            uow.scores.put([m.Score("c0001", "rfm", T0, 1), m.Score("c0001", "rfm", T0 + timedelta(1), 2),
                            m.Score("c0001", "churn", T0, 0.5), m.Score("c0002", "rfm", T0, 3)])
            uow.segment_members.apply(m.SegmentRun("vip", T0, 1, 2, 2, 0), ["c0001", "c0002"], [])
        with storage.transaction() as uow:
            assert [x.campaign_id for x in uow.campaign_members.for_customer("c0001")] == ["autumn", "spring"]
            # held until commit (merge, unmerge): the same rows as read without holding them
            assert uow.campaign_members.for_customer("c0001", lock=True) == uow.campaign_members.for_customer(
                "c0001")
            assert uow.scores.all_of("c0001", lock=True) == uow.scores.all_of("c0001")
            uow.campaign_members.remove("spring", "c0001")
            uow.campaign_members.remove("spring", "nobody")
            assert [x.customer_id for x in uow.campaign_members.of("spring")] == ["c0002"]
            assert [(s.scorer, s.value) for s in uow.scores.all_of("c0001")] == [
                ("churn", 0.5), ("rfm", 1), ("rfm", 2)]
            assert uow.scores.purge("c0001", [("rfm", T0)]) == 1
            assert [s.value for s in uow.scores.all_of("c0001")] == [0.5, 2]
            assert uow.scores.purge("c0001") == 2 and uow.scores.all_of("c0001") == []
            assert uow.scores.all_of("c0002") != []
            assert uow.segment_members.purge("c0001") == 1
            assert uow.segment_members.current("vip") == {"c0002"}

    def test_merge_journal_and_tombstones(self, storage: Storage) -> None:
        record = MergeRecord("j1", "c0001", "c0002", T0, {"name": "A"}, {"name": "A"}, {"name": "B"},
                             moved={"cases": ["k1"]}, moved_scores=[["rfm", T0.isoformat()]])
        with storage.transaction() as uow:
            uow.merges.add(record)
            uow.merges.add(MergeRecord("j2", "c0003", "c0001", T0 + timedelta(1), {}, {}, {}))
            uow.erasures.add(Tombstone("t1", T0))
        with storage.transaction() as uow:
            assert uow.merges.get("j1") == record
            assert [r.id for r in uow.merges.involving("c0001")] == ["j1", "j2"]
            uow.merges.update(attrs.evolve(uow.merges.get("j1"), undone_at=T0))
            assert uow.merges.get("j1").undone_at == T0
            with pytest.raises(NotFound):
                uow.merges.get("nope")
            assert uow.erasures.list() == [Tombstone("t1", T0)]
            assert uow.merges.purge("c0001") == 2 and uow.merges.involving("c0003") == []

    def test_outbox_events_are_redacted(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.outbox.append(Event("customer.added", "c0001", {"name": "Ann"}, T0))
            uow.outbox.append(Event("segment.entered", "vip", {"customers": ["c0001", "c0002"]}, T0))
            uow.outbox.append(Event("customer.added", "c0002", {"name": "Bob"}, T0))
        with storage.transaction() as uow:
            count = uow.outbox.redact(lambda e: e.aggregate_id == "c0001" or "c0001" in str(e.payload))
            assert count == 2
            assert uow.outbox.pending_count() == 1
            left = uow.outbox.claim(T0 + timedelta(1), timedelta(minutes=1), 10)
            assert [e.event.payload for e in left] == [{"name": "Bob"}]

    def test_merge_then_unmerge_restores_both_and_their_rows(self, crm: CRM) -> None:
        ann = crm.customers.add(_customer(1, tier="gold", tags=["vip"]))
        dup = crm.customers.add(_customer(2, name="Ann Again", phones=("+33123456789",), tags=["web"]))
        crm.interactions.log("c0002", channel="email", direction="inbound", id="i1")
        crm.cases.open("c0002", "complaint", "Late", id="k1")
        with crm.transaction() as uow:
            uow.scores.put([m.Score("c0002", "rfm", T0, 4)])
            uow.campaign_members.put(m.CampaignMember("spring", "c0002", at=T0))
        journal = crm.lifecycle.merge("c0001", "c0002")
        survivor = crm.customers.get("c0001")
        assert survivor.tags == {"vip", "web"} and survivor.phones == ("+33123456789",)
        assert set(survivor.emails) == {"person1@example.org", "person2@example.org"}
        assert crm.customers.find("c0002") is None
        assert [i.id for i in crm.interactions.timeline("c0001")] == ["i1"]
        assert [c.id for c in crm.cases.for_customer("c0001")] == ["k1"]
        with crm.transaction() as uow:
            assert uow.scores.latest("c0001", "rfm") is not None
            assert [x.customer_id for x in uow.campaign_members.of("spring")] == ["c0001"]
        back, restored = crm.lifecycle.unmerge(journal.id)
        assert restored == dup
        assert (back.tags, back.emails, back.phones, back.tier) == (ann.tags, ann.emails, (), "gold")
        assert [i.id for i in crm.interactions.timeline("c0002")] == ["i1"]
        assert [c.id for c in crm.cases.for_customer("c0002")] == ["k1"]
        with crm.transaction() as uow:
            assert uow.scores.latest("c0002", "rfm") is not None and uow.scores.all_of("c0001") == []
            assert [x.customer_id for x in uow.campaign_members.of("spring")] == ["c0002"]
            assert uow.merges.get(journal.id).undone_at is not None

    def test_lock_reads_the_customer_and_holds_it(self, storage: Storage) -> None:
        with storage.transaction() as uow:
            uow.customers.add(_customer(1))
        with storage.transaction() as uow:
            assert uow.customers.lock("c0001").name == "Person 1"
            with pytest.raises(NotFound):
                uow.customers.lock("c0404")

    def test_as_of_rule_reads_each_customer_as_they_were(self, storage: Storage) -> None:
        """Added, imported without history, changed, removed: an as-of rule (in SQL where the
        storage has it) sees each as they were, and agrees with the Python engine."""
        from crmcore.plugins import make_plugin_manager
        from crmcore.segments import select_ids

        now = [T0]
        crm = CRM(storage, plugins=make_plugin_manager(load_entry_points=False), clock=lambda: now[0])
        hour = timedelta(hours=1)
        crm.customers.add(_customer(1, tier="silver"))
        storage.bulk_import([_customer(2, tier="silver")])           # no history
        crm.customers.add(_customer(4, tier="gold"))
        now[0] = T0 + hour
        crm.customers.change("c0001", tier="gold")
        now[0] = T0 + 2 * hour
        crm.customers.change("c0002", tier="gold")
        now[0] = T0 + 3 * hour
        crm.customers.add(_customer(3, tier="gold", created_at=T0 + 3 * hour))
        now[0] = T0 + 4 * hour
        crm.customers.remove(crm.customers.get("c0004"))
        now[0] = T0 + 5 * hour
        crm.customers.change("c0001", tier="bronze")
        expected = {
            T0: ["c0004"], T0 + hour: ["c0001", "c0004"], T0 + 2 * hour: ["c0001", "c0002", "c0004"],
            T0 + 3 * hour: ["c0001", "c0002", "c0003", "c0004"],
            T0 + 4 * hour: ["c0001", "c0002", "c0003"], T0 + 5 * hour: ["c0002", "c0003"],
        }
        for instant, members in expected.items():
            with storage.transaction() as uow:
                for engine in ("auto", "python"):
                    assert select_ids(uow, 'tier = "gold"', as_of=instant, engine=engine) == members, \
                        (instant, engine)

    def test_erasure_leaves_only_a_tombstone(self, crm: CRM) -> None:
        crm.customers.add(_customer(1, name="Zelda Quist"))
        crm.customers.add(_customer(2))
        crm.interactions.log("c0001", channel="phone", direction="inbound")
        crm.cases.open("c0001", "complaint", "Late")
        tombstone = crm.lifecycle.erase_person("c0001")
        assert crm.customers.find("c0001") is None
        with crm.transaction() as uow:
            assert uow.interactions.for_customer("c0001") == [] and uow.cases.for_customer("c0001") == []
            assert uow.history.of("customer", "c0001") == []
            assert uow.erasures.list() == [tombstone]
            assert len(uow.history.of("customer", "c0002")) == 1
        assert crm.customers.get("c0002").name == "Person 2"
