"""Hosted-telephony webhooks over real HTTP on loopback: signed events in, forged ones out."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import Channel, Customer
from crmcore.plugins import get_plugin_manager, open_adapter
from crmcore.ports.telephony import CallEventKind, CallOutcome
from crmcore_adapters.telephony.webhook import SIGNATURE_HEADER, WebhookTelephony, signature, verify
from tests.support import unavailable
from tests.telephony.conftest import Recorder, wait_until

TOKEN = "12345678901234567890123456789012"
PUBLIC = "https://crm.example.org"

try:
    from twilio.request_validator import RequestValidator
except ImportError:  # pragma: no cover - the cross-check needs the reference implementation
    RequestValidator = None

names = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)
urls = st.sampled_from([
    "https://crm.example.org/calls", "https://crm.example.org:8443/calls?x=1",
    "http://127.0.0.1:8080/voice/status", "https://crm.example.org/calls?account=a%20b",
])


@settings(max_examples=80, deadline=None)
@given(urls, st.dictionaries(names, values, max_size=8))
def test_signatures_match_the_reference_validator(url: str, params: dict[str, str]) -> None:
    if RequestValidator is None:
        unavailable("the twilio package (reference validator) is not installed")
    reference = RequestValidator(TOKEN)
    mine = signature(TOKEN, url, params)
    assert mine == reference.compute_signature(url, params)
    assert verify(TOKEN, url, params, mine) and reference.validate(url, params, mine)
    tampered = {**params, "CallStatus": params.get("CallStatus", "") + "x"}
    assert not verify(TOKEN, url, tampered, mine) and not reference.validate(url, tampered, mine)
    assert not verify("another-token", url, params, mine)


def test_a_signature_with_or_without_the_default_port_is_accepted() -> None:
    params = {"CallSid": "CA1", "CallStatus": "ringing"}
    signed = signature(TOKEN, "https://crm.example.org:443/calls", params)
    assert verify(TOKEN, "https://crm.example.org/calls", params, signed)
    assert not verify(TOKEN, "https://crm.example.org:8443/calls", params, signed)


@pytest.fixture
def provider() -> Iterator[tuple[WebhookTelephony, str]]:
    telephony = WebhookTelephony(TOKEN, public_url=PUBLIC, agent="hosted")
    local = telephony.listen("127.0.0.1", 0, "/voice")
    yield telephony, local
    telephony.close()


def post(local: str, params: dict[str, str], *, sign: bool = True, key: str = TOKEN,
         signed_params: dict[str, str] | None = None, body: bytes | None = None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if sign:
        path = local.split("/", 3)[3]
        headers[SIGNATURE_HEADER] = signature(key, f"{PUBLIC}/{path}", signed_params or params)
    data = body if body is not None else urlencode(params).encode()
    request = urllib.request.Request(local, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def event(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": "AC1", "From": "+33612345678", "To": "+18005550100",
            "Direction": "inbound", "CallStatus": status, **extra}


def test_signed_call_events_reach_the_timeline(provider: tuple[WebhookTelephony, str],
                                               crm: crmcore.CRM, recorder: Recorder) -> None:
    telephony, local = provider
    ada = crm.customers.add(Customer.new("Ada", phones=["06 12 34 56 78"], region="FR", tier="gold"))
    telephony.subscribe(recorder)
    pops: list[object] = []
    crm.operational.calls.desk(telephony, service_point="hosted-cc", on_pop=lambda *seen: pops.append(seen))
    assert post(local, event("CA1", "ringing", CallerName="Ada")) == 204
    assert post(local, event("CA1", "in-progress")) == 204
    assert post(local, event("CA1", "completed", CallDuration="42")) == 204
    assert post(local, event("CA1", "completed")) == 204  # a provider retry changes nothing
    ended = recorder.wait(CallEventKind.ENDED, call_id="CA1")
    assert ended.record is not None and ended.record.outcome is CallOutcome.ANSWERED
    assert ended.display_name == "Ada" and ended.agent == "hosted"
    wait_until(lambda: bool(crm.interactions.timeline(ada.id)))
    [call] = crm.interactions.timeline(ada.id)
    assert (call.channel, call.reference, call.outcome, call.service_point) == (
        Channel.PHONE, "CA1", "answered", "hosted-cc")
    assert len(pops) == 1


@pytest.mark.parametrize(("status", "outcome"), [
    ("busy", CallOutcome.BUSY), ("no-answer", CallOutcome.NO_ANSWER),
    ("canceled", CallOutcome.NO_ANSWER), ("failed", CallOutcome.FAILED),
])
def test_calls_that_never_connect(provider: tuple[WebhookTelephony, str], recorder: Recorder,
                                  status: str, outcome: CallOutcome) -> None:
    telephony, local = provider
    telephony.subscribe(recorder)
    assert post(local, event("CA2", "ringing", Direction="outbound-api")) == 204
    assert post(local, event("CA2", status, Direction="outbound-api")) == 204
    record = recorder.wait(CallEventKind.ENDED, call_id="CA2").record
    assert record is not None and record.outcome is outcome
    assert record.direction == "outbound" and record.peer == "+18005550100"


def test_forged_and_malformed_requests_are_refused(provider: tuple[WebhookTelephony, str],
                                                   recorder: Recorder) -> None:
    telephony, local = provider
    telephony.subscribe(recorder)
    genuine = event("CA3", "ringing")
    assert post(local, genuine, sign=False) == 403
    assert post(local, genuine, key="not-the-token") == 403
    assert post(local, {**genuine, "From": "+15550000000"}, signed_params=genuine) == 403
    assert post(local, event("CA3", "exploded")) == 400
    assert post(local, {"CallStatus": "ringing"}) == 400
    assert post(local, {}, body=b"x" * 70_000, sign=False) == 413
    assert telephony.live_calls() == [] and recorder.events == []
    assert len(telephony.errors) == 5
    # the listener is still up and takes the genuine event
    assert post(local, genuine) == 204
    assert recorder.wait(CallEventKind.RINGING, call_id="CA3").peer == "+33612345678"


def test_opened_by_url_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRM_TEST_TWILIO_TOKEN", TOKEN)
    telephony = open_adapter(get_plugin_manager(), "telephony", "crmcore_register_telephony",
                             "twilio://127.0.0.1:0/voice?token_env=CRM_TEST_TWILIO_TOKEN")
    try:
        assert isinstance(telephony, WebhookTelephony) and telephony.url.startswith("twilio://127.0.0.1:")
    finally:
        telephony.close()
    with pytest.raises(crmcore.ValidationError, match="token"):
        open_adapter(get_plugin_manager(), "telephony", "crmcore_register_telephony",
                     "twilio://127.0.0.1:0/voice?token_env=CRM_TEST_NO_SUCH_VARIABLE")
