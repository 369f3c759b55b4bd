"""A customer's places in accounts follow the customer through merge, unmerge and removal:
no account ever lists a customer who does not exist, and an unmerge gives places back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import crmcore
from crmcore.model import Account, AccountKind, AccountMember, Customer
from tests.lifecycle.conftest import T0, storage_url


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened = crmcore.open(storage_url(request))
    for id in ("a", "b", "c"):
        opened.customers.add(Customer.new(f"Person {id}", id=id, created_at=T0))
    accounts = opened.operational.accounts
    accounts.add(Account("acme", "Acme", members=(  # b without a: a takes b's place there
        AccountMember("c"), AccountMember("b", "billing", primary=True))))
    accounts.add(Account("home", "Home", kind=AccountKind.HOUSEHOLD, members=(  # both: b just leaves
        AccountMember("a", "head", primary=True), AccountMember("b", "child"))))
    yield opened
    opened.close()


def places(crm: crmcore.CRM, account_id: str) -> list[tuple[str, str, bool]]:
    return [(m.customer_id, m.role, m.primary) for m in crm.operational.accounts.get(account_id).members]


def test_merge_hands_places_to_the_survivor_and_unmerge_gives_them_back(crm: crmcore.CRM) -> None:
    journal = crm.lifecycle.merge("a", "b")
    assert places(crm, "acme") == [("c", "member", False), ("a", "billing", True)]  # b's place, kept in order
    assert places(crm, "home") == [("a", "head", True)]
    assert journal.moved_accounts == ["acme"]
    assert [c.op for c in crm.lifecycle.history("account", "acme")] == ["added", "updated"]

    crm.operational.accounts.add_member("acme", "a", "buyer", primary=True)  # a later change goes back too
    crm.lifecycle.unmerge(journal.id)
    assert places(crm, "acme") == [("c", "member", False), ("b", "buyer", True)]
    assert places(crm, "home") == [("a", "head", True), ("b", "child", False)]
    assert [a.id for a in crm.operational.accounts.of_customer("a")] == ["home"]


def test_a_place_left_after_the_merge_stays_empty_on_unmerge(crm: crmcore.CRM) -> None:
    journal = crm.lifecycle.merge("a", "b")
    crm.operational.accounts.remove_member("acme", "a")
    crm.lifecycle.unmerge(journal.id)
    assert places(crm, "acme") == [("c", "member", False)]
    assert places(crm, "home") == [("a", "head", True), ("b", "child", False)]


def test_removing_a_customer_takes_them_out_of_every_account(crm: crmcore.CRM) -> None:
    crm.customers.remove(crm.customers.get("b"))
    assert places(crm, "acme") == [("c", "member", False)]
    assert places(crm, "home") == [("a", "head", True)]
    assert crm.operational.accounts.of_customer("b") == []
    # the account's history says when b left; the change is the account's own
    assert crm.lifecycle.history("account", "home")[-1].diff["members"][1] == [
        {"customer_id": "a", "role": "head", "primary": True}]
