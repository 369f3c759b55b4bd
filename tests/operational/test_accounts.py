"""Accounts, hierarchies, households and roll-ups; SQL roll-ups against the Python walk."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crmcore import CRM, Customer, Money, OrderLine, Purchase, ValidationError
from crmcore.model import Account, AccountKind, AccountMember
from crmcore.operational.accounts import _python_rollup
from crmcore.plugins import make_plugin_manager
from crmcore_adapters.storage.sqlite import SQLiteStorage

from .conftest import MONDAY, Clock


def _world(crm: CRM) -> None:
    for n in range(1, 6):
        crm.customers.add(Customer(id=f"c{n}", name=f"Person {n}"))
    accounts = crm.operational.accounts
    accounts.add(Account("group", "Group", tier="platinum", members=(AccountMember("c1", "ceo"),)))
    accounts.add(Account("north", "North", parent_id="group",
                         members=(AccountMember("c2", "buyer", primary=True), AccountMember("c3"))))
    accounts.add(Account("north-site", "North site", parent_id="north", members=(AccountMember("c3"),)))
    accounts.add(Account("home", "The Smiths", kind=AccountKind.HOUSEHOLD,
                         members=(AccountMember("c4", "head"), AccountMember("c5", "partner"))))


def _buy(crm: CRM, n: int, customer: str, amount: str, currency: str, days: int) -> None:
    crm.purchases.record(Purchase(f"p{n}", customer, MONDAY - timedelta(days=days),
                                  (OrderLine("x", Money(Decimal(amount), currency)),)))


def test_hierarchy_members_and_households(crm: CRM) -> None:
    _world(crm)
    accounts = crm.operational.accounts
    assert accounts.tree("group") == ["group", "north", "north-site"]
    assert [a.id for a in accounts.ancestors("north-site")] == ["north", "group"]
    assert [a.id for a in accounts.of_customer("c3")] == ["north", "north-site"]
    accounts.add_member("home", "c1", "child")
    assert {m.customer_id: m.role for m in accounts.get("home").members} == {
        "c4": "head", "c5": "partner", "c1": "child"}
    accounts.remove_member("home", "c1")
    assert [a.id for a in accounts.of_customer("c1")] == ["group"]


def test_loops_unknown_parents_and_members_are_refused(crm: CRM) -> None:
    _world(crm)
    accounts = crm.operational.accounts
    before = accounts.get("group")
    with pytest.raises(ValidationError):
        accounts.move("group", "north-site")  # would make a loop
    with pytest.raises(ValidationError):
        accounts.move("group", "group")
    with pytest.raises(ValidationError):
        accounts.add(Account("x", "X", parent_id="nowhere"))
    with pytest.raises(ValidationError):
        accounts.add_member("group", "ghost")
    with pytest.raises(ValidationError):
        Account("y", "Y", members=(AccountMember("c1"), AccountMember("c1")))
    assert accounts.get("group") == before and accounts.children("group")[0].id == "north"


def test_rollup_adds_the_tree_per_currency(crm: CRM, clock: Clock) -> None:
    _world(crm)
    _buy(crm, 1, "c1", "100.00", "EUR", 10)
    _buy(crm, 2, "c2", "50.50", "EUR", 400)
    _buy(crm, 3, "c3", "20.00", "USD", 5)
    _buy(crm, 4, "c4", "999.00", "EUR", 1)  # the household, not the group
    crm.operational.cases.open("c2", "complaint", "late")
    resolved = crm.operational.cases.open("c3", "request", "copy")
    crm.operational.cases.resolve(resolved.id, "sent")
    crm.interactions.log("c3", channel="phone", direction="inbound", at=MONDAY - timedelta(days=2))
    crm.interactions.log("c1", channel="email", direction="outbound", at=MONDAY - timedelta(days=500))
    whole = crm.operational.accounts.rollup("group")
    assert (whole.accounts, whole.members, whole.purchases) == (3, 3, 3)
    assert whole.spend == {"EUR": Decimal("150.50"), "USD": Decimal("20.00")}
    assert (whole.cases, whole.open_cases, whole.interactions) == (2, 1, 2)
    assert whole.last_interaction == MONDAY - timedelta(days=2)
    year = crm.operational.accounts.rollup("group", since=MONDAY - timedelta(days=365))
    assert year.spend == {"EUR": Decimal("100.00"), "USD": Decimal("20.00")} and year.interactions == 1
    alone = crm.operational.accounts.rollup("group", descendants=False)
    assert (alone.members, alone.purchases, alone.spend) == (1, 1, {"EUR": Decimal("100.00")})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_sql_rollup_equals_the_python_walk(tmp_path: Path, data: st.DataObject) -> None:
    store = SQLiteStorage(f"sqlite:///{tmp_path}/r{uuid.uuid4().hex}.db")
    crm = CRM(store, plugins=make_plugin_manager(load_entry_points=False), clock=Clock())
    try:
        _world(crm)
        for n in range(data.draw(st.integers(0, 12))):
            _buy(crm, n, data.draw(st.sampled_from(["c1", "c2", "c3", "c4", "c5"])),
                 str(data.draw(st.decimals(0, 1000, places=2))), data.draw(st.sampled_from(["EUR", "JPY"])),
                 data.draw(st.integers(0, 800)))
        for n in range(data.draw(st.integers(0, 6))):
            who = data.draw(st.sampled_from(["c1", "c2", "c3", "c5"]))
            crm.interactions.log(who, channel="chat", direction="inbound",
                                 at=MONDAY - timedelta(days=data.draw(st.integers(0, 800)), seconds=n))
        since = data.draw(st.none() | st.integers(0, 800).map(lambda d: MONDAY - timedelta(days=d)))
        root = data.draw(st.sampled_from(["group", "north", "home"]))
        in_sql = crm.operational.accounts.rollup(root, since=since)
        with crm.reading() as uow:
            walked = _python_rollup(uow, root, crm.operational.accounts.tree(root), since)
        assert in_sql == walked
    finally:
        store.close()
