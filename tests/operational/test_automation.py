"""Automation rules on every backend: conditions, built-in and plugin actions, loops,
failures undone, one run per event, each run logged with its outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crmcore import CRM, Customer, Team, ValidationError, hookimpl
from crmcore.events import Event
from crmcore.model import Agent, RunOutcome
from crmcore.operational.automation import ActionCall, Rule

from .conftest import Clock, Recorder, drain


def _desk(crm: CRM) -> None:
    crm.teams.add(Team("care", "Care", lead="lea"))
    crm.agents.add(Agent("lea", "Léa", team="care", skills={"complaints"}))
    crm.agents.add(Agent("bo", "Bo", team="care", skills={"complaints"}))
    since = datetime(2024, 1, 1, tzinfo=UTC)  # customers exist before the rules look at them
    crm.customers.add(Customer(id="vip", name="Pia", tier="platinum", owner="bo", created_at=since,
                               updated_at=since))
    crm.customers.add(Customer(id="std", name="Sam", created_at=since, updated_at=since))


def test_a_breach_for_a_platinum_customer_creates_a_task_and_tags_them(
    crm: CRM, clock: Clock
) -> None:
    _desk(crm)
    automation = crm.operational.automation
    automation.add(Rule("vip-breach", "case.sla_breached", (
        ActionCall("create_task", {"title": "Call the customer back", "owner": "case_agent",
                                   "due_in_hours": "2"}),
        ActionCall("add_tag", {"tag": "breached"}),
    ), condition='tier = "platinum"'))
    automation.enable()
    vip = crm.operational.cases.open("vip", "complaint", "x", priority="urgent", team="care")
    std = crm.operational.cases.open("std", "complaint", "y", priority="urgent", team="care")
    crm.cases.change(vip.id, agent="bo")
    clock.advance(timedelta(days=1))
    crm.operational.cases.sweep()
    drain(crm)
    runs = automation.runs("vip-breach")
    by_customer = {(r.customer_id, r.outcome) for r in runs}
    assert by_customer == {("vip", RunOutcome.DONE), ("std", RunOutcome.SKIPPED)}
    assert len(runs) == 4  # two breaches (first response, resolution) per case
    assert "breached" in crm.customers.get("vip").tags and not crm.customers.get("std").tags
    tasks = crm.operational.tasks.open_for("lea")  # escalated to the lead before the action ran
    assert {t.case_id for t in tasks} == {vip.id} and all(t.customer_id == "vip" for t in tasks)
    assert std.id != vip.id


def test_a_rule_that_triggers_itself_is_stopped_and_logged_as_a_loop(crm: CRM) -> None:
    _desk(crm)
    automation = crm.operational.automation
    automation.add(Rule("retag", "customer.updated", (ActionCall("add_tag", {"tag": "seen"}),)))
    automation.enable()
    crm.customers.change("std", name="Samuel")
    drain(crm)
    runs = {r.outcome: r for r in automation.runs("retag")}  # same instant: any order
    assert sorted(runs) == [RunOutcome.DONE, RunOutcome.LOOP] and len(automation.runs("retag")) == 2
    assert "retag > retag" in runs[RunOutcome.LOOP].detail


class Exploding:
    name = "explode"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        raise RuntimeError("the CRM of the partner is down")


class Stamp:
    name = "stamp"

    def run(self, crm: CRM, event: Event, customer: Customer, params: dict[str, str]) -> str:
        crm.customers.change(customer.id, attributes={**customer.attributes, "stamp": params["value"]})
        return "stamped"


class Actions:
    @hookimpl
    def crmcore_register_actions(self) -> list[object]:
        return [Exploding(), Stamp()]


def test_plugin_actions_run_and_a_failure_undoes_the_whole_run(crm: CRM) -> None:
    _desk(crm)
    crm.plugins.register(Actions())
    automation = crm.operational.automation
    automation.add(Rule("stamp", "case.opened", (ActionCall("stamp", {"value": "yes"}),)))
    automation.add(Rule("half", "case.opened", (
        ActionCall("create_task", {"title": "never kept"}), ActionCall("explode"))))
    automation.enable()
    crm.operational.cases.open("std", "request", "z")
    drain(crm)
    assert crm.customers.get("std").attributes["stamp"] == "yes"
    (failed,) = automation.runs("half")
    assert failed.outcome is RunOutcome.FAILED and "partner is down" in failed.detail
    with crm.reading() as uow:
        assert uow.tasks.count() == 0


def test_a_redelivered_event_runs_a_rule_once(crm: CRM, recorder: Recorder) -> None:
    _desk(crm)
    automation = crm.operational.automation
    automation.add(Rule("tag", "case.opened", (ActionCall("add_tag", {"tag": "has_case"}),)))
    crm.operational.cases.open("std", "request", "z")
    drain(crm)
    (opened,) = [e for e in recorder.events if e.topic == "case.opened"]
    assert len(automation.handle(opened)) == 1
    assert automation.handle(opened) == []
    assert len(automation.runs("tag")) == 1


def test_bad_rules_are_refused(crm: CRM) -> None:
    automation = crm.operational.automation
    with pytest.raises(ValidationError):
        automation.add(Rule("r", "case.opened", (ActionCall("teleport"),)))
    with pytest.raises(ValidationError):
        automation.add(Rule("r", "case.opened", (ActionCall("add_tag"),), condition="tier = = 1"))
    with pytest.raises(ValidationError):
        Rule("r", "case.opened", ())
    assert automation.rules == {}


def test_a_rule_makes_the_customer_a_campaign_member_drawn_alone(crm: CRM, recorder: Recorder) -> None:
    _desk(crm)
    crm.marketing.create("winback", "Win back", channel="email", subject="Hello", text="Hi",
                         rule='tier = "platinum"', control_fraction=0.5)
    crm.marketing.launch("winback")
    automation = crm.operational.automation
    automation.add(Rule("join-on-gold", "customer.updated", (
        ActionCall("join_campaign", {"campaign": "winback"}),), condition='tier = "gold"'))
    automation.enable()
    crm.customers.change("std", tier="gold")
    drain(crm)
    [run] = automation.runs("join-on-gold")
    assert run.outcome is RunOutcome.DONE
    members = {m.customer_id: m for m in crm.marketing.members("winback")}
    assert set(members) == {"vip", "std"}  # the launch's audience, then the joiner
    assert members["std"].joined and not members["vip"].joined
    assert crm.marketing.audit("winback") == []  # the launch's blocks and the joiner, both redrawn
    assert "campaign.joined" in recorder.topics("winback")
    with pytest.raises(ValidationError, match="no such campaign"):
        automation.stored.save("join-nowhere", Rule("join-nowhere", "customer.updated", (
            ActionCall("join_campaign", {"campaign": "nope"}),)))
