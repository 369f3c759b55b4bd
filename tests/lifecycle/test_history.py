"""Every write through the CRM leaves a change in the history, in the same transaction,
signed by the actor; `as_of` reads a record as it was."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import crmcore
from crmcore.errors import ConflictError, ValidationError
from crmcore.lifecycle import history
from crmcore.model import Channel, ConsentStatus, Customer, PostalAddress
from crmcore.model.history import Change, ChangeKind
from tests.lifecycle.conftest import T0, Clock


def test_add_update_consent_and_remove_are_recorded(crm: crmcore.CRM, clock: Clock) -> None:
    with crm.acting_as("user:ann"):
        ann = crm.customers.add(Customer.new("Ann", id="ann", emails=["ann@example.org"]))
    clock.tick(hours=1)
    crm.customers.change("ann", tier="gold", tags={"vip"})
    clock.tick(hours=1)
    with crm.acting_as("portal"):
        crm.customers.set_consent("ann", "news", Channel.EMAIL, ConsentStatus.GRANTED, source="form")
    changes = crm.customers.history("ann")
    assert [(c.op, c.version, c.actor) for c in changes] == [
        (ChangeKind.ADDED, 1, "user:ann"), (ChangeKind.UPDATED, 2, None), (ChangeKind.UPDATED, 3, "portal")]
    assert changes[0].diff["name"] == [None, "Ann"] and changes[0].at == T0
    assert changes[1].diff["tier"] == [None, "gold"] and changes[1].diff["tags"] == [[], ["vip"]]
    assert set(changes[1].diff) == {"tier", "tags", "updated_at"}
    assert list(changes[2].diff) == ["consents", "updated_at"]
    crm.customers.remove(crm.customers.get("ann"))
    assert crm.customers.history("ann")[-1].op is ChangeKind.REMOVED
    assert crm.customers.as_of("ann", T0) == ann
    assert crm.customers.as_of("ann", T0 + timedelta(hours=1, minutes=30)).tier == "gold"  # type: ignore[union-attr]
    assert crm.customers.as_of("ann", T0 - timedelta(seconds=1)) is None
    assert crm.customers.as_of("ann", clock.now) is None


def test_as_of_now_is_the_record(crm: crmcore.CRM, clock: Clock) -> None:
    crm.customers.add(Customer.new("Bo", id="bo", addresses=[PostalAddress("FR")], attributes={"size": 3}))
    for n in range(4):
        clock.tick(minutes=5)
        crm.customers.change("bo", attributes={"size": n}, addresses=[PostalAddress(("DE", "ES")[n % 2])])
    assert crm.customers.as_of("bo", clock.now) == crm.customers.get("bo")
    assert crm.customers.as_of("bo", T0 + timedelta(minutes=11)).attributes == {"size": 1}  # type: ignore[union-attr]
    assert crm.customers.as_of("bo", T0).country == "FR"  # type: ignore[union-attr]


def test_a_failed_write_leaves_no_history(crm: crmcore.CRM) -> None:
    stale = crm.customers.add(Customer.new("Cy", id="cy"))
    crm.customers.change("cy", tier="gold")
    with pytest.raises(ConflictError):
        crm.customers.update(stale)
    with pytest.raises(RuntimeError), crm.transaction():
        crm.customers.change("cy", tier="silver")
        raise RuntimeError("abandon")
    assert [c.version for c in crm.customers.history("cy")] == [1, 2]


def test_cases_and_opportunities_have_history_too(crm: crmcore.CRM, clock: Clock) -> None:
    crm.customers.add(Customer.new("Di", id="di"))
    with crm.acting_as("agent:7"):
        crm.cases.open("di", "complaint", "Broken", id="k1")
        clock.tick(hours=2)
        crm.cases.resolve("k1", "replaced")
        crm.opportunities.open("di", "Upsell", id="o1")
        crm.opportunities.move("o1", "proposal")
    cases = crm.lifecycle.history("case", "k1")
    assert [c.op for c in cases] == [ChangeKind.ADDED, ChangeKind.UPDATED]
    assert cases[1].diff["status"] == ["open", "resolved"] and cases[1].actor == "agent:7"
    assert crm.lifecycle.history("opportunity", "o1")[1].diff["stage"][1] == "proposal"


def test_bulk_imported_records_read_as_they_are(crm: crmcore.CRM) -> None:
    """Records that came in without history are taken as unchanged."""
    crm.bulk_import([Customer.new("Ed", id="ed", created_at=T0, updated_at=T0)])
    assert crm.customers.history("ed") == []
    assert crm.customers.as_of("ed", T0 - timedelta(days=1)) == crm.customers.get("ed")


def test_actor_and_instant_are_checked(crm: crmcore.CRM) -> None:
    with pytest.raises(ValidationError):
        crm.acting_as("").__enter__()
    with pytest.raises(ValidationError):
        crm.customers.as_of("x", T0.replace(tzinfo=None))


def test_removing_a_customer_leaves_no_orphans(crm: crmcore.CRM) -> None:
    from crmcore.model import CampaignMember, OrderLine, Purchase, Score
    from crmcore.values import Money

    crm.customers.add(Customer.new("Fay", id="fay", created_at=T0))
    crm.interactions.log("fay", channel="phone", direction="inbound")
    crm.purchases.record(Purchase("p1", "fay", T0, (OrderLine("cd", Money("1")),)))
    crm.cases.open("fay", "request", "Info", id="k1")
    crm.opportunities.open("fay", "Deal", id="o1")
    with crm.transaction() as uow:
        uow.scores.put([Score("fay", "rfm", T0, 1.0)])
        uow.campaign_members.put(CampaignMember("spring", "fay", at=T0))
    crm.customers.remove(crm.customers.get("fay"))
    with crm.reading() as uow:
        assert uow.interactions.count() == uow.purchases.count() == uow.cases.count() == 0
        assert uow.opportunities.count() == 0 and uow.scores.all_of("fay") == []
        assert uow.campaign_members.of("spring") == []
    assert crm.customers.history("fay")[-1].op is ChangeKind.REMOVED


_values = st.one_of(st.none(), st.integers(-2, 2), st.sampled_from(["", "a", "b"]),
                    st.lists(st.integers(0, 2), max_size=2))
_records = st.dictionaries(st.sampled_from(["id", "version", "name", "tier", "tags", "x"]),
                           _values, max_size=6)


@given(before=st.none() | _records, after=st.none() | _records)
def test_diff_lists_exactly_the_fields_that_differ(before: dict[str, Any] | None,
                                                   after: dict[str, Any] | None) -> None:
    """The law the diff keeps: a field is listed, in name order, with [old, new] exactly
    when its value differs (a missing field reads as None), or on every field of an
    addition or removal; the version never (it is the change's own column)."""
    old, new = before or {}, after or {}
    everything = before is None or after is None
    expected = sorted(name for name in old.keys() | new.keys() if name != "version"
                      and (everything or old.get(name) != new.get(name)))
    changed = history.diff(before, after)
    assert list(changed) == expected
    assert all(changed[name] == [old.get(name), new.get(name)] for name in expected)


def test_a_recorded_change_equals_one_built_with_its_checks(crm: crmcore.CRM) -> None:
    """`record` builds the change without running its validators again: it must be the very
    change they would have built (every field set, the instant in UTC)."""
    with crm.acting_as("user:ann"):
        crm.customers.add(Customer.new("Ann", id="ann"))
        crm.customers.change("ann", tier="gold")
    with crm.transaction() as uow:
        written = history.record(uow, "customer", {"id": "ann", "version": 2},
                                 crm.customers.get("ann"), T0.astimezone(timezone(timedelta(hours=2))))
    assert written == Change(**attrs.asdict(written, recurse=False))
    assert written.at.utcoffset() == timedelta(0) and written.at == T0 and written.seq == 0
