"""SLA policies, automation rules and mail templates kept in storage, on every backend:
checked when saved (a typed error and nothing written), every version kept, and read by
case opening, the escalation sweep and the automation engine."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmcore import CRM, Customer, ServicePoint, Team
from crmcore.errors import ConflictError, CRMError, NotFound, RuleError, ValidationError
from crmcore.model import Agent, CasePriority, RunOutcome
from crmcore.operational.automation import ActionCall, Rule
from crmcore.operational.mail import Template
from crmcore.operational.sla import DEFAULT_POLICY, SlaPolicy, SlaTarget, policy_data, policy_from_data

from .conftest import MONDAY, Clock, drain

HOUR = 3600.0


def _desk(crm: CRM) -> None:
    crm.teams.add(Team("care", "Care", lead="lea"))
    crm.teams.add(Team("night", "Night desk", lead="nia"))
    for agent in ("lea", "nia", "bo"):
        crm.agents.add(Agent(agent, agent.title(), team="care"))
    crm.service_points.add(ServicePoint("paris-cc", "Paris call centre", "call_centre"))
    since = MONDAY - timedelta(days=30)
    crm.customers.add(Customer(id="vip", name="Pia", tier="platinum", created_at=since, updated_at=since))


def _fast(hours: float = 1, **extra: Any) -> dict[str, Any]:
    """The JSON form of a policy promising every priority within `hours` (resolution 2x)."""
    table = {p.name.lower(): {"first_response": hours * HOUR, "resolution": 2 * hours * HOUR}
             for p in CasePriority}
    return {"targets": table, **extra}


def test_a_stored_policy_sets_the_promise_of_new_cases(crm: CRM) -> None:
    _desk(crm)
    policies = crm.operational.cases.policies
    policies.save("default", _fast(5), actor="ana")
    policies.save("paris-cc", _fast(1, warn_at=0.5))
    elsewhere = crm.operational.cases.open("vip", "complaint", "x")
    in_paris = crm.operational.cases.open("vip", "complaint", "y", service_point="paris-cc")
    assert elsewhere.sla_due == MONDAY + timedelta(hours=10)
    assert in_paris.sla_due == MONDAY + timedelta(hours=2)
    assert in_paris.deadlines[0].warn_at == MONDAY + timedelta(minutes=30)
    policies.retire("default")
    platinum = DEFAULT_POLICY.target(CasePriority.NORMAL, "platinum").resolution
    assert crm.operational.cases.open("vip", "complaint", "z").sla_due == MONDAY + platinum  # code's again


def test_every_version_is_kept_and_a_stale_writer_conflicts(crm: CRM, clock: Clock) -> None:
    _desk(crm)
    policies = crm.operational.cases.policies
    first = policies.save("default", DEFAULT_POLICY, actor="ana")
    clock.advance(timedelta(minutes=5))
    second = policies.save("default", _fast(2), actor="bo")
    assert (first.version, second.version) == (1, 2)
    history = policies.history("default")
    assert [(e.version, e.actor, e.at) for e in history] == [
        (1, "ana", MONDAY), (2, "bo", MONDAY + timedelta(minutes=5))]
    assert history[0].doc == policy_data(DEFAULT_POLICY)
    assert policies.get("default") == policies.parse(_fast(2))
    assert list(policies.all()) == ["default"]
    with crm.transaction() as uow, pytest.raises(ConflictError):
        uow.configurations.add(history[-1])  # version 2 again: someone else saved it first


def test_the_sweep_hands_a_teamless_breach_to_the_stored_escalation_team(crm: CRM, clock: Clock) -> None:
    _desk(crm)
    crm.operational.cases.policies.save("default", _fast(1, escalation_team="night"))
    case = crm.operational.cases.open("vip", "complaint", "no team")
    clock.advance(timedelta(hours=3))
    report = crm.operational.cases.sweep()
    assert report.escalated == 1
    swept = crm.cases.get(case.id)
    assert swept.agent == "nia" and swept.assignment is not None and swept.assignment.team == "night"


def test_stored_rules_run_and_replace_code_rules_of_the_same_name(crm: CRM, clock: Clock) -> None:
    _desk(crm)
    automation = crm.operational.automation
    automation.add(Rule("greet", "case.opened", (ActionCall("add_tag", {"tag": "from_code"}),)))
    stored = Rule("greet", "case.opened", (ActionCall("add_tag", {"tag": "from_storage"}),
                                            ActionCall("assign", {"team": "care"})),
                  condition='tier = "platinum"')
    assert automation.stored.save("greet", stored).version == 1
    automation.enable()
    crm.operational.cases.open("vip", "complaint", "x")
    drain(crm)
    assert crm.customers.get("vip").tags == {"from_storage"}
    assert [r.outcome for r in automation.runs("greet")] == [RunOutcome.DONE]
    automation.stored.retire("greet")
    crm.operational.cases.open("vip", "complaint", "y")
    drain(crm)
    assert crm.customers.get("vip").tags == {"from_storage", "from_code"}
    with pytest.raises(NotFound):
        automation.stored.retire("greet")


def _rule(action: str, **params: str) -> Rule:
    return Rule("r", "case.opened", (ActionCall(action, params),))


BAD: dict[str, Callable[[CRM], object]] = {
    "service level shorter than zero": lambda crm: crm.operational.cases.policies.save(
        "default", _fast(-1)),
    "service level of zero": lambda crm: crm.operational.cases.policies.save("default", _fast(0)),
    "resolution before first response": lambda crm: crm.operational.cases.policies.save("default", {
        "targets": {**_fast(1)["targets"], "low": {"first_response": 2 * HOUR, "resolution": HOUR}}}),
    "a priority that does not exist": lambda crm: crm.operational.cases.policies.save("default", {
        "targets": {**_fast(1)["targets"], "critical": {"first_response": HOUR, "resolution": HOUR}}}),
    "a duration that is not a number": lambda crm: crm.operational.cases.policies.save("default", {
        "targets": {**_fast(1)["targets"], "low": {"first_response": "1h", "resolution": HOUR}}}),
    "a policy for an unknown service point": lambda crm: crm.operational.cases.policies.save(
        "lyon-cc", _fast(1)),
    "escalation to an unknown team": lambda crm: crm.operational.cases.policies.save(
        "default", _fast(1, escalation_team="nope")),
    "an unknown action": lambda crm: crm.operational.automation.stored.save("r", _rule("teleport")),
    "assignment to an unknown team": lambda crm: crm.operational.automation.stored.save(
        "r", _rule("assign", team="nope")),
    "a task for an unknown agent": lambda crm: crm.operational.automation.stored.save(
        "r", _rule("create_task", owner="ghost")),
    "a parameter no action knows": lambda crm: crm.operational.automation.stored.save(
        "r", _rule("add_tag", tag="x", colour="red")),
    "an unknown stored template": lambda crm: crm.operational.automation.stored.save(
        "r", _rule("send_template", template="nope", purpose="service")),
    "a template without a purpose": lambda crm: crm.operational.automation.stored.save(
        "r", _rule("send_template", subject="Hi", text="Hello")),
    "a condition that does not parse": lambda crm: crm.operational.automation.stored.save(
        "r", Rule("r", "case.opened", (ActionCall("add_tag", {"tag": "x"}),), condition="tier = ")),
    "a name that is not the rule's": lambda crm: crm.operational.automation.stored.save(
        "other", _rule("add_tag", tag="x")),
    "a rule in a form that is not one": lambda crm: crm.operational.automation.stored.save(
        "r", {"name": "r", "on": "case.opened", "steps": []}),
    "a template with a broken placeholder": lambda crm: crm.operational.mail.templates.save(
        "t", {"subject": "Hi ${name", "text": "x"}),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_bad_configuration_is_a_typed_error_and_writes_nothing(crm: CRM, what: str) -> None:
    _desk(crm)
    with pytest.raises(CRMError) as caught:
        BAD[what](crm)
    assert isinstance(caught.value, ValidationError | RuleError)
    with crm.reading() as uow:
        for kind in ("sla_policy", "automation_rule", "mail_template"):
            assert uow.configurations.in_force(kind) == []


def test_a_stored_template_is_kept_with_its_translations(crm: CRM) -> None:
    template = Template("Hello $name", "Text", name="welcome",
                        translations={"fr": Template("Bonjour $name", "Texte", name="welcome")})
    crm.operational.mail.templates.save("welcome", template)
    assert crm.operational.mail.templates.get("welcome") == template


_durations = st.integers(1, 10 * 86400).map(float) | st.floats(0.5, 86400.0 * 30)


@st.composite
def _policies(draw: st.DrawFn) -> SlaPolicy:
    def table() -> dict[CasePriority, SlaTarget]:
        found = {}
        for priority in CasePriority:
            first = draw(_durations)
            found[priority] = SlaTarget(timedelta(seconds=first), timedelta(seconds=first + draw(_durations)))
        return found

    tiers = draw(st.lists(st.sampled_from(("gold", "platinum", "b2b")), unique=True, max_size=2))
    return SlaPolicy(table(), {t: table() for t in tiers}, warn_at=draw(st.floats(0.01, 1.0)),
                     escalation_team=draw(st.none() | st.just("care")))


@given(policy=_policies())
def test_a_policy_reads_back_from_its_stored_form(policy: SlaPolicy) -> None:
    """The law the store relies on: the JSON form (through a JSON text) gives the same policy."""
    assert policy_from_data(json.loads(json.dumps(policy_data(policy)))) == policy


def test_rules_stored_elsewhere_apply_once_the_cached_read_expires(
    crm: CRM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stored rules are not read per event: a save through this CRM applies at once, one
    written by another process (here: straight into storage) after STORED_RULES_TTL."""
    from crmcore import serialization
    from crmcore.model import ConfigVersion
    from crmcore.operational import automation as module

    _desk(crm)
    automation = crm.operational.automation
    assert automation.in_force() == {}
    elsewhere = _rule("add_tag", tag="x")
    with crm.transaction() as uow:
        uow.configurations.add(
            ConfigVersion("automation_rule", "r", 1, MONDAY, serialization.unstructure(elsewhere)))
    assert automation.in_force() == {}  # still the read of a moment ago
    monkeypatch.setattr(module, "STORED_RULES_TTL", -1.0)
    assert automation.in_force() == {"r": elsewhere}
    monkeypatch.setattr(module, "STORED_RULES_TTL", 3600.0)
    mine = _rule("add_tag", tag="y")
    automation.stored.save("r", mine)
    assert automation.in_force() == {"r": mine}
