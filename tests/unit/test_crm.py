"""The CRM facade: transactions, events after commit, and the operational basics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

import crmcore
from crmcore import (
    CaseKind,
    CasePriority,
    Channel,
    ConsentStatus,
    Customer,
    Event,
    LifecycleStage,
    Money,
    OrderLine,
    Purchase,
    Stage,
    hookimpl,
)
from crmcore.plugins import make_plugin_manager

T0 = datetime(2025, 6, 1, 9, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def crmcore_on_event(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture(params=["memory://", "sqlite:///:memory:"])
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    pm = make_plugin_manager()
    recorder = Recorder()
    pm.register(recorder, "recorder")
    base = crmcore.open(request.param, plugins=pm, clock=lambda: T0)
    base.recorder = recorder  # type: ignore[attr-defined]
    yield base
    base.close()


def topics(crm: crmcore.CRM) -> list[str]:
    return [e.topic for e in crm.recorder.events]  # type: ignore[attr-defined]


def test_events_are_delivered_only_after_commit(crm: crmcore.CRM) -> None:
    with crm.transaction():
        ada = crm.customers.add(Customer.new("Ada", emails=["ada@example.org"]))
        crm.interactions.log(ada.id, channel=Channel.CHAT, direction="inbound", subject="Hello")
        assert topics(crm) == []
    assert topics(crm) == ["customer.added", "interaction.logged"]
    with pytest.raises(RuntimeError), crm.transaction():
        crm.customers.add(Customer.new("Bob"))
        raise RuntimeError("abort")
    assert topics(crm) == ["customer.added", "interaction.logged"]
    assert crm.customers.count() == 1


def test_a_purchase_makes_a_lead_a_customer(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada"))
    assert ada.lifecycle is LifecycleStage.LEAD
    crm.purchases.record(Purchase("p1", ada.id, T0, (OrderLine("cd", Money("12.50"), 2),)))
    assert crm.customers.get(ada.id).lifecycle is LifecycleStage.CUSTOMER
    assert [p.total for p in crm.purchases.for_customer(ada.id)] == [Money("25.00")]
    assert "purchase.recorded" in topics(crm)


def test_purchase_for_unknown_customer_writes_nothing(crm: crmcore.CRM) -> None:
    with pytest.raises(crmcore.NotFound):
        crm.purchases.record(Purchase("p1", "ghost", T0, (OrderLine("cd", Money("1")),)))
    with crm.transaction() as uow:
        assert uow.purchases.count() == 0


def test_cases_get_an_sla_by_priority(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada"))
    urgent = crm.cases.open(ada.id, CaseKind.COMPLAINT, "No service", priority=CasePriority.URGENT)
    assert urgent.sla_due == T0 + timedelta(hours=4)
    assert [c.id for c in crm.cases.for_customer(ada.id, open_only=True)] == [urgent.id]
    resolved = crm.cases.resolve(urgent.id, "Line repaired")
    assert resolved.version == 2 and resolved.within_sla
    assert crm.cases.for_customer(ada.id, open_only=True) == []


def test_sales_cycle_is_traced(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada"))
    opp = crm.opportunities.open(ada.id, "Fibre", amount=Money("499"))
    crm.opportunities.move(opp.id, Stage.PROPOSAL, by="agent7")
    won = crm.opportunities.move(opp.id, Stage.WON)
    assert [h.stage for h in won.history] == [Stage.QUALIFICATION, Stage.PROPOSAL, Stage.WON]
    assert won.history[1].by == "agent7"
    assert topics(crm).count("opportunity.stage_changed") == 2


def test_consent_change_is_recorded(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada"))
    crm.customers.set_consent(ada.id, "marketing", Channel.EMAIL, ConsentStatus.GRANTED, source="portal")
    stored = crm.customers.get(ada.id)
    assert stored.has_consent("marketing", Channel.EMAIL)
    assert stored.consent("marketing", Channel.EMAIL).source == "portal"  # type: ignore[union-attr]
    assert stored.updated_at == T0
    assert "consent.changed" in topics(crm)


def test_lookup_by_phone_in_any_format(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada", phones=["+44 20 7946 0958"]))
    for written in ("+442079460958", "020 7946 0958", "(020) 7946-0958"):
        assert crm.customers.by_phone(written, region="GB") == [ada]
    assert crm.customers.by_phone("+33 1 23 45 67 89") == []


def test_change_reads_and_writes_in_one_transaction(crm: crmcore.CRM) -> None:
    ada = crm.customers.add(Customer.new("Ada"))
    renamed = crm.customers.change(ada.id, tier="gold")
    assert (renamed.tier, renamed.version) == ("gold", 2)
    with pytest.raises(crmcore.ConflictError):
        crm.customers.update(ada)


def test_a_committed_write_does_not_fail_when_dispatch_does(crm: crmcore.CRM) -> None:
    storage = crm.storage

    class Broken:
        def __init__(self) -> None:
            self.calls = 0

        def __getattr__(self, name: str) -> object:
            return getattr(storage, name)

        def transaction(self):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls > 1:  # the write commits; the dispatcher's claim fails
                raise crmcore.StorageError("database is locked")
            return storage.transaction()

    crm.storage = Broken()  # type: ignore[assignment]
    ada = crm.customers.add(Customer.new("Ada"))
    crm.storage = storage
    assert crm.customers.get(ada.id) == ada
    with crm.transaction() as uow:
        assert uow.outbox.pending_count() == 1
    assert crm.dispatch_events() == 1
    assert topics(crm) == ["customer.added"]
