"""The `send_template` automation action end to end, on every backend, against a real SMTP
server (aiosmtpd): rendered with the customer's fields, consent respected, hostile values
never reaching a header, nothing sent for a run that is undone."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy

import pytest

from crmcore import CRM, Customer, Team
from crmcore.errors import ValidationError
from crmcore.model import Agent, Consent, RunOutcome
from crmcore.operational.automation import ActionCall, Rule
from crmcore.operational.mail import Template
from crmcore.testing.hostile import INJECTIONS, LINE_BREAKS
from crmcore_adapters.email.smtp import SmtpTransport
from tests.email.servers import Recorder as SmtpRecorder
from tests.email.servers import smtp_server

from .conftest import MONDAY, Recorder, drain

SINCE = MONDAY - timedelta(days=30)


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpRecorder, int]]:
    received = SmtpRecorder()
    with smtp_server(received) as port:
        yield received, port


def _customer(crm: CRM, id: str, name: str, *, consent: bool = True, **fields: object) -> None:
    consents = (Consent("service", "email", "granted", SINCE, "signup"),) if consent else ()
    crm.customers.add(Customer(id=id, name=name, emails=(f"{id}@example.org",), consents=consents,
                               created_at=SINCE, updated_at=SINCE, **fields))  # type: ignore[arg-type]


def _automate(crm: CRM, port: int, step: ActionCall) -> None:
    crm.teams.add(Team("care", "Care"))
    crm.agents.add(Agent("bo", "Bo", team="care"))
    automation = crm.operational.automation
    automation.use_mailer(crm.operational.mail.mailer(SmtpTransport(f"smtp://127.0.0.1:{port}"),
                                                      sender="care@shop.example", marketing=()))
    automation.stored.save("ack", Rule("ack", "case.opened", (step,)))
    automation.enable()


def _headers(raw: bytes) -> dict[str, str]:
    message = message_from_bytes(raw, policy=policy.default)
    return {name: str(value) for name, value in message.items()}


def test_a_stored_template_goes_to_the_customer_and_onto_the_timeline(
    crm: CRM, smtp: tuple[SmtpRecorder, int]
) -> None:
    received, port = smtp
    _customer(crm, "ada", "Ada Lovelace", tier="gold", attributes={"plan": "premium"})
    crm.operational.mail.templates.save("case_ack", Template(
        "We have your request, $first_name", "Dear $name ($tier, $plan): we are on it.", name="case_ack"))
    _automate(crm, port, ActionCall("send_template", {"template": "case_ack", "purpose": "service"}))
    case = crm.operational.cases.open("ada", "request", "Billing question")
    drain(crm)
    [(sender, to, raw)] = received.messages
    assert (sender, to) == ("care@shop.example", ["ada@example.org"])
    headers = _headers(raw)
    assert headers["Subject"] == "We have your request, Ada"
    body = message_from_bytes(raw, policy=policy.default).get_content()  # type: ignore[attr-defined]
    assert "Dear Ada Lovelace (gold, premium): we are on it." in body
    [run] = crm.operational.automation.runs("ack")
    assert run.outcome is RunOutcome.DONE and "case_ack" in run.detail
    with crm.reading() as uow:
        timeline = uow.interactions.for_customer("ada", limit=None)
    sent = [i for i in timeline if i.reference == headers["Message-ID"]]
    assert len(sent) == 1 and sent[0].case_id == case.id


def test_no_consent_no_message_and_the_refusal_on_record(
    crm: CRM, smtp: tuple[SmtpRecorder, int], recorder: Recorder
) -> None:
    received, port = smtp
    _customer(crm, "ben", "Ben", consent=False)
    _automate(crm, port, ActionCall("send_template", {"subject": "Hi", "text": "Hello $name",
                                                      "purpose": "service"}))
    crm.operational.cases.open("ben", "request", "x")
    drain(crm)
    assert received.messages == []
    [refused] = [e for e in recorder.events if e.topic == "email.refused"]
    assert refused.aggregate_id == "ben" and refused.payload["caused_by"] == ["ack"]
    assert [r.outcome for r in crm.operational.automation.runs("ack")] == [RunOutcome.DONE]


HOSTILE_NAMES = [f"Eve{brk}Bcc: all@victims.example" for brk in LINE_BREAKS] + [
    text for text in INJECTIONS if text.startswith("=?") or any(brk in text for brk in LINE_BREAKS)]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_hostile_values_never_reach_a_header(crm: CRM, smtp: tuple[SmtpRecorder, int], hostile: str) -> None:
    """The customer's name goes into To, an attribute into the Subject: a value that would
    bend either fails the run (logged), and nothing goes out. A name with a raw line break
    is refused before it is stored; an encoded word is stored, and checked at the header."""
    received, port = smtp
    _customer(crm, "eve", "Eve", attributes={"note": hostile})
    customers = {"eve": "subject"}
    if any(brk in hostile for brk in LINE_BREAKS):
        with pytest.raises(ValidationError, match="name"):
            _customer(crm, "mal", hostile, attributes={"note": "your case"})
    else:
        _customer(crm, "mal", hostile, attributes={"note": "your case"})
        customers["mal"] = "to name"
    _automate(crm, port, ActionCall("send_template", {"subject": "About $note", "text": "Hello",
                                                      "purpose": "service"}))
    for id in customers:
        crm.operational.cases.open(id, "request", "x")
    drain(crm)
    runs = {r.customer_id: r for r in crm.operational.automation.runs("ack")}
    assert {c: r.outcome for c, r in runs.items()} == dict.fromkeys(customers, RunOutcome.FAILED)
    assert all(field in runs[c].detail for c, field in customers.items())
    assert received.messages == []


def test_a_run_undone_sends_nothing(crm: CRM, smtp: tuple[SmtpRecorder, int]) -> None:
    """The message goes after the run commits: a later action failing takes it back."""
    received, port = smtp
    _customer(crm, "ada", "Ada")
    crm.teams.add(Team("care", "Care"))
    automation = crm.operational.automation
    automation.use_mailer(crm.operational.mail.mailer(SmtpTransport(f"smtp://127.0.0.1:{port}"),
                                                      sender="care@shop.example", marketing=()))
    automation.add(Rule("ack", "case.opened", (
        ActionCall("send_template", {"subject": "Hi", "text": "Hello", "purpose": "service"}),
        ActionCall("create_task", {"title": "x", "due_in_hours": "soon"}),
    )))
    automation.enable()
    crm.operational.cases.open("ada", "request", "x")
    drain(crm)
    assert [r.outcome for r in automation.runs("ack")] == [RunOutcome.FAILED]
    assert received.messages == []
