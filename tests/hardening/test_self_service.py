"""Issue 13 (2): what a customer does in self-service reaches only their own data, provably theirs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest

import crmcore
from crmcore import Channel, Customer, IntegrityError, PluginError, PostalAddress, ValidationError
from tests.email.servers import Recorder, smtp_server
from tests.hardening.conftest import BACKENDS, NOW, drop, open_backend


class Texts:
    """A crmcore_send_verification plugin standing in for an SMS gateway: keeps what it sent."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}

    @crmcore.hookimpl
    def crmcore_send_verification(
        self, crm: object, customer_id: str, kind: str, address: str, token: str
    ) -> bool | None:
        if kind != "phone":
            return None
        self.sent[address] = token
        return True


@pytest.fixture(params=BACKENDS)
def crm(request: pytest.FixtureRequest) -> Iterator[crmcore.CRM]:
    opened, schema = open_backend(request.param)
    try:
        yield opened
    finally:
        opened.close()
        drop(schema)


@pytest.fixture
def texts(crm: crmcore.CRM) -> Texts:
    found = Texts()
    crm.plugins.register(found, name="test-texts")
    return found


@pytest.fixture
def wire() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    with smtp_server(recorder) as port:
        yield recorder, port


def test_an_added_address_identifies_nobody_until_its_token_comes_back(
    crm: crmcore.CRM, wire: tuple[Recorder, int]
) -> None:
    recorder, port = wire
    bob = crm.customers.add(Customer.new("Bob", emails=["bob@example.org"]))
    eve = crm.customers.add(Customer.new("Eve", emails=["eve@example.org"]))
    mailer = crm.operational.mail.mailer(f"smtp://127.0.0.1:{port}", sender="crm@shop.example", marketing=())
    portal = crm.collaborative.session(eve.id, mailer=mailer)

    portal.update_details(emails=["eve@example.org", "new@example.org"])

    [(_, rcpt, raw)] = recorder.messages  # the token went to the new address, and only there
    assert rcpt == ["new@example.org"]
    token = re.search(r"code: (\S+)", message_from_bytes(raw, policy=policy.default).get_content())
    assert token is not None
    assert crm.customers.by_email("new@example.org") is None  # pending: identifies nobody
    with pytest.raises(ValidationError):  # nor is anything meant for Eve written to it
        mailer.compose(
            crm.customers.get(eve.id),
            crmcore.operational.mail.VERIFICATION,
            purpose="service",
            to="new@example.org",
            context={"token": "x"},
        )
    with pytest.raises(ValidationError):
        portal.verify("not-the-token")
    proven = portal.verify(token.group(1))
    assert proven.emails == ("eve@example.org", "new@example.org") and proven.pending == ()
    assert crm.customers.by_email("new@example.org") == proven
    assert crm.customers.by_email("bob@example.org") == bob


def test_someone_elses_phone_stays_pending_and_their_calls_stay_theirs(
    crm: crmcore.CRM, texts: Texts
) -> None:
    bob = crm.customers.add(Customer.new("Bob", phones=["+33612345678"]))
    eve = crm.customers.add(Customer.new("Eve"))
    portal = crm.collaborative.session(eve.id)

    portal.update_details(phones=["06 12 34 56 78"], addresses=[PostalAddress("FR")])

    assert texts.sent.keys() == {"+33612345678"}
    assert crm.customers.by_phone("+33612345678") == [bob]  # the real owner is still the only one found
    proven = portal.verify(texts.sent["+33612345678"])  # whoever reads the SMS shares the line
    assert {c.id for c in crm.customers.by_phone("+33612345678")} == {bob.id, eve.id}
    assert proven.phones == ("+33612345678",)


def test_verifying_an_address_taken_meanwhile_names_nobody(
    crm: crmcore.CRM, wire: tuple[Recorder, int]
) -> None:
    recorder, port = wire
    eve = crm.customers.add(Customer.new("Eve"))
    mailer = crm.operational.mail.mailer(f"smtp://127.0.0.1:{port}", sender="crm@shop.example", marketing=())
    portal = crm.collaborative.session(eve.id, mailer=mailer)
    portal.update_details(emails=["shared@example.org"])
    token = re.search(
        r"code: (\S+)", message_from_bytes(recorder.messages[-1][2], policy=policy.default).get_content()
    )
    assert token is not None
    bob = crm.customers.add(Customer.new("Bob", emails=["shared@example.org"]))
    before = crm.customers.get(eve.id)

    with pytest.raises(IntegrityError) as clash:
        portal.verify(token.group(1))

    assert bob.id not in str(clash.value)  # an error never tells a customer another one's id
    assert crm.customers.get(eve.id) == before


def test_without_a_way_to_send_the_token_nothing_changes(crm: crmcore.CRM) -> None:
    eve = crm.customers.add(Customer.new("Eve"))
    with pytest.raises(PluginError):
        crm.collaborative.session(eve.id).update_details(name="Eve L.", emails=["new@example.org"])
    assert crm.customers.get(eve.id) == eve


def test_expired_tokens_are_refused(crm: crmcore.CRM, texts: Texts) -> None:
    eve = crm.customers.add(Customer.new("Eve"))
    portal = crm.collaborative.session(eve.id)
    portal.update_details(phones=["+33612345678"])
    crm.clock = lambda: NOW.replace(year=NOW.year + 1)
    with pytest.raises(ValidationError):
        portal.verify(texts.sent["+33612345678"])


@pytest.mark.parametrize("granted", ["false", "no", 0, None])
def test_consent_must_be_said_with_a_bool(crm: crmcore.CRM, granted: object) -> None:
    eve = crm.customers.add(Customer.new("Eve"))
    with pytest.raises(ValidationError):
        crm.collaborative.session(eve.id).set_consent("marketing", Channel.EMAIL, granted)  # type: ignore[arg-type]
    assert not crm.customers.get(eve.id).has_consent("marketing", Channel.EMAIL)


@pytest.mark.parametrize(
    "details",
    [{"addresses": ["x"]}, {"emails": "eve@example.org"}, {"phones": 33612345678}, {"addresses": "FR"}],
)
def test_malformed_details_are_a_validation_error(crm: crmcore.CRM, details: dict[str, object]) -> None:
    eve = crm.customers.add(Customer.new("Eve"))
    with pytest.raises(ValidationError):
        crm.collaborative.session(eve.id).update_details(**details)  # type: ignore[arg-type]
    assert crm.customers.get(eve.id) == eve


def test_a_subject_at_the_length_limit_opens_a_case(crm: crmcore.CRM) -> None:
    eve = crm.customers.add(Customer.new("Eve"))
    case = crm.collaborative.session(eve.id).request("x" * 1000)
    assert case.subject == "x" * 1000
    [logged] = crm.interactions.timeline(eve.id)
    assert logged.case_id == case.id and len(logged.subject) == 1000
