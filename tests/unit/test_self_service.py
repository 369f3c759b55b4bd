"""Collaborative CRM: a customer alone, on a self-service channel, with only their own data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

import crmcore
from crmcore import CaseKind, Channel, ChannelFamily, Customer, Money, OrderLine, PostalAddress
from crmcore.plugins import make_plugin_manager

T0 = datetime(2025, 6, 1, 9, tzinfo=UTC)


class Codes:
    """A crmcore_send_verification plugin that keeps the tokens it was asked to send."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}

    @crmcore.hookimpl
    def crmcore_send_verification(self, crm: object, customer_id: str, kind: str, address: str,
                                  token: str) -> bool:
        self.sent[address] = token
        return True


@pytest.fixture
def codes() -> Codes:
    return Codes()


@pytest.fixture(params=["memory://", "sqlite:///:memory:"])
def crm(request: pytest.FixtureRequest, codes: Codes) -> Iterator[crmcore.CRM]:
    plugins = make_plugin_manager()
    plugins.register(codes, name="test-codes")
    base = crmcore.open(request.param, clock=lambda: T0, plugins=plugins)
    yield base
    base.close()


def test_a_customer_orders_and_sees_it_on_their_account(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada", addresses=[PostalAddress("FR")]))
    catalogue = {"sim-card": OrderLine("sim-card", Money("10.00"), category="mobile")}
    kiosk = crm.collaborative.session(
        ada.id, channel=Channel.KIOSK, service_point="lyon-kiosk", catalogue=catalogue
    )
    bought = kiosk.order({"sim-card": 2})
    assert bought.total == Money("20.00") and bought.lines[0].category == "mobile"
    with pytest.raises(crmcore.ValidationError) as caught:
        kiosk.order({"phone": 1})
    assert (caught.value.field, caught.value.value) == ("product", "phone")
    kiosk.request("Please send a paper invoice")
    account = kiosk.account()
    assert [p.id for p in account.purchases] == [bought.id]
    assert [c.kind for c in account.open_cases] == [CaseKind.REQUEST]
    assert {i.channel.family for i in account.timeline} == {ChannelFamily.COLLABORATIVE}
    assert {i.service_point for i in account.timeline} == {"lyon-kiosk"}
    assert account.customer.lifecycle == "customer"


def test_details_and_consent_change_without_staff(crm: crmcore.CRM, codes: Codes) -> None:
    ada = crm.customers.add(Customer.new("Ada", addresses=[PostalAddress("FR")], tier="gold"))
    portal = crm.collaborative.session(ada.id)
    updated = portal.update_details(emails=["Ada@Example.org"], phones=["06 12 34 56 78"])
    assert updated.emails == () and updated.phones == ()  # pending until verified
    pending = {(p.kind, p.value) for p in updated.pending}
    assert pending == {("email", "Ada@example.org"), ("phone", "+33612345678")}
    portal.verify(codes.sent["Ada@example.org"])
    updated = portal.verify(codes.sent["+33612345678"])
    assert updated.emails == ("Ada@example.org",) and updated.phones == ("+33612345678",)
    assert updated.tier == "gold" and updated.pending == ()
    consented = portal.set_consent("marketing", Channel.EMAIL, granted=True)
    assert consented.has_consent("marketing", Channel.EMAIL)
    assert consented.consent("marketing", Channel.EMAIL).source == "self-service:portal"  # type: ignore[union-attr]


def test_a_clash_changes_nothing_and_names_nobody(crm: crmcore.CRM, codes: Codes) -> None:
    bob = crm.customers.add(Customer.new("Bob", emails=["bob@example.org"]))
    ada = crm.customers.add(Customer.new("Ada", emails=["ada@example.org"]))
    portal = crm.collaborative.session(ada.id)
    portal.update_details(name="Ada L.", emails=["ada@example.org", "bob@example.org"])
    before = crm.customers.get(ada.id)
    with pytest.raises(crmcore.IntegrityError) as raised:
        portal.verify(codes.sent["bob@example.org"])
    assert bob.id not in str(raised.value)
    assert crm.customers.get(ada.id) == before
    assert crm.customers.by_email("bob@example.org") == bob


def test_only_self_service_channels_and_known_customers(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada"))
    with pytest.raises(crmcore.ValidationError) as caught:
        crm.collaborative.session(ada.id, channel=Channel.PHONE)
    assert caught.value.field == "channel"
    with pytest.raises(crmcore.NotFound):
        crm.collaborative.session("someone-else")
