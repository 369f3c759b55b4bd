"""Export everything about a person; erase it everywhere, leaving only a tombstone.

After an erasure, every column of every table (SQLite and PostgreSQL: read from the
database's own catalogue, so a table added later is searched too) and every
structure of the memory storage is searched for each of the person's values.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

import crmcore
from crmcore.errors import NotFound, ValidationError
from crmcore.model import (
    Account,
    AccountKind,
    AccountMember,
    CampaignMember,
    Channel,
    ConsentStatus,
    Customer,
    OrderLine,
    PostalAddress,
    Purchase,
    Score,
)
from crmcore.plugins import make_plugin_manager
from crmcore.values import Money
from tests.lifecycle.conftest import T0, Clock, storage_url

NAME, EMAIL, PHONE, LINE = "Zacharie Quennevat", "zacharie.q@example.org", "+33611223344", "7 impasse Vermeil"
TWIN_EMAIL = "zq.other@example.net"


class Loyalty:
    """A plugin holding its own data about people."""

    def __init__(self) -> None:
        self.points: dict[str, int] = {}

    @crmcore.hookimpl
    def crmcore_export_person(self, crm: crmcore.CRM, customer_id: str) -> dict[str, Any] | None:
        return {"loyalty": {"points": self.points[customer_id]}} if customer_id in self.points else None

    @crmcore.hookimpl
    def crmcore_erase_person(self, crm: crmcore.CRM, customer_id: str, values: list[str]) -> None:
        self.points.pop(customer_id, None)


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def setup(request: pytest.FixtureRequest) -> Any:
    plugin = Loyalty()
    pm = make_plugin_manager()
    pm.register(plugin)
    clock = Clock()
    crm = crmcore.open(storage_url(request), plugins=pm, clock=clock)
    yield crm, plugin, clock
    crm.close()


def populate(crm: crmcore.CRM, plugin: Loyalty, clock: Clock) -> None:
    with crm.acting_as("user:ann"):
        crm.customers.add(Customer.new(NAME, id="zq", emails=[EMAIL], phones=[PHONE], created_at=T0,
                                       addresses=[PostalAddress("FR", (LINE,), "Lyon", "69003")]))
        crm.customers.add(Customer.new("Zach Quennevat", id="twin", emails=[TWIN_EMAIL], created_at=T0))
        crm.customers.add(Customer.new("Other Person", id="other", emails=["o@example.org"], created_at=T0))
    clock.tick(hours=1)
    crm.customers.set_consent("zq", "news", Channel.EMAIL, ConsentStatus.GRANTED, source="form")
    crm.interactions.log("zq", channel="email", direction="inbound", subject=f"From {NAME}")
    crm.interactions.log("twin", channel="phone", direction="inbound")
    crm.purchases.record(Purchase("p1", "zq", T0, (OrderLine("cd", Money("12.50")),)))
    crm.cases.open("zq", "complaint", f"{NAME} complains", id="k1")
    crm.opportunities.open("zq", "Upsell", id="o1")
    with crm.transaction() as uow:
        uow.scores.put([Score("zq", "rfm", T0, 3.0), Score("twin", "rfm", T0, 1.0)])
        uow.campaign_members.put(CampaignMember("spring", "zq", at=T0))
    crm.segments.save("all", "Everyone", 'name != ""')
    crm.segments.run("all")
    with crm.transaction():
        crm.emit("note.added", "other", text=f"call {NAME} back at {PHONE}")
    crm.operational.accounts.add(Account("acme", "Acme", members=(
        AccountMember("zq", "buyer", primary=True), AccountMember("other"))))
    crm.operational.accounts.add(Account("home", "Home", kind=AccountKind.HOUSEHOLD,
                                         members=(AccountMember("twin", "head"),)))
    crm.lifecycle.merge("zq", "twin")  # zq takes twin's place at home
    plugin.points["zq"] = 120


def test_export_holds_everything_as_json(setup: Any) -> None:
    crm, plugin, clock = setup
    populate(crm, plugin, clock)
    document = crm.lifecycle.export_person("zq")
    text = json.dumps(document)
    assert document["customer"]["emails"] == [EMAIL, TWIN_EMAIL]
    assert len(document["interactions"]) == 2 and len(document["purchases"]) == 1
    assert [c["id"] for c in document["cases"]] == ["k1"]
    assert [o["id"] for o in document["opportunities"]] == ["o1"]
    assert document["campaign_memberships"][0]["campaign_id"] == "spring"
    assert [s["value"] for s in document["scores"]] == [3.0]  # the survivor's snapshot won the clash
    assert [c["op"] for c in document["history"]][:2] == ["added", "updated"]
    assert document["history"][0]["actor"] == "user:ann"
    assert document["merges"][0]["merged_id"] == "twin"
    assert document["plugins"] == {"loyalty": {"points": 120}}
    assert [(a["account_id"], a["member"]["role"]) for a in document["accounts"]] == [
        ("acme", "buyer"), ("home", "head")]
    assert LINE in text
    with pytest.raises(NotFound):
        crm.lifecycle.export_person("nobody")


def values_in_sql(crm: crmcore.CRM, needles: list[str]) -> list[tuple[str, str, str]]:
    """(table, column, needle) for every text or JSON cell holding a needle, in any table."""
    found = []
    with crm.reading() as uow:
        cur = uow.cur  # type: ignore[attr-defined]
        if uow.dialect.name == "sqlite":  # type: ignore[attr-defined]
            tables = [r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            columns = {t: [r[1] for r in cur.execute(f'PRAGMA table_info("{t}")').fetchall()] for t in tables}
        else:
            cur.execute("SELECT table_name, column_name FROM information_schema.columns "
                        "WHERE table_schema = current_schema()")
            columns = {}
            for table, column in cur.fetchall():
                columns.setdefault(table, []).append(column)
        for table, names in columns.items():
            for column in names:
                cur.execute(f'SELECT CAST("{column}" AS TEXT) FROM "{table}"')
                cells = [str(r[0]).lower() for r in cur.fetchall() if r[0] is not None]
                for needle in needles:
                    if any(needle.lower() in cell for cell in cells):
                        found.append((table, column, needle))
    return found


def values_in_memory(crm: crmcore.CRM, needles: list[str]) -> list[tuple[str, str]]:
    found = []
    for name, value in vars(crm.storage).items():
        text = repr(value).lower()
        found.extend((name, n) for n in needles if n.lower() in text)
    return found


def test_erase_leaves_no_value_anywhere(setup: Any) -> None:
    crm, plugin, clock = setup
    populate(crm, plugin, clock)
    clock.tick(days=1)
    tombstone = crm.lifecycle.erase_person("zq")
    needles = ["zq", "twin", NAME, EMAIL, TWIN_EMAIL, PHONE, LINE, "Quennevat", "Zacharie"]
    if crm.storage.url.startswith("memory"):
        assert values_in_memory(crm, needles) == []
    else:
        assert values_in_sql(crm, needles) == []
    assert plugin.points == {}
    assert crm.lifecycle.erasures() == [tombstone] and tombstone.at == clock.now
    assert crm.customers.get("other").name == "Other Person"  # others untouched
    assert [m.customer_id for m in crm.operational.accounts.get("acme").members] == ["other"]
    assert crm.operational.accounts.get("home").members == ()  # no orphan left in an account
    assert [c.op for c in crm.lifecycle.history("account", "acme")] == ["added", "updated"]
    with crm.reading() as uow:
        assert uow.segment_members.current("all") == {"other"}
        assert uow.segment_members.runs("all")[0].size == 3  # runs keep counts only
    with pytest.raises(NotFound):
        crm.lifecycle.erase_person("zq")


def test_retention_erases_inactive_leads_only(setup: Any) -> None:
    crm, _, clock = setup
    crm.customers.add(Customer.new("Old Lead", id="old", created_at=T0, updated_at=T0))
    crm.customers.add(Customer.new("Old Buyer", id="buyer", lifecycle="customer", created_at=T0))
    crm.customers.add(Customer.new("Talking Lead", id="talk", created_at=T0))
    clock.tick(days=300)
    crm.interactions.log("talk", channel="phone", direction="inbound")
    clock.tick(days=200)
    assert crm.lifecycle.inactive_leads(12) == ["old"]
    assert crm.lifecycle.inactive_leads(6, now=clock.now + timedelta(days=200)) == ["old", "talk"]
    tombstones = crm.lifecycle.erase_inactive_leads(12)
    assert len(tombstones) == 1 and crm.customers.find("old") is None
    assert {c.id for c in crm.customers.list()} == {"buyer", "talk"}
    with pytest.raises(ValidationError):
        crm.lifecycle.inactive_leads(0)
