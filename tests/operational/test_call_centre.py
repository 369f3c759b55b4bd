"""docs/operational.md runs as written: its reference examples alone, and the call-centre
scenario against real SIP phones (baresip), a real SMTP relay and mail exchanger (aiosmtpd)
and a real IMAP server (dovecot), all on loopback."""

from __future__ import annotations

import re
import shutil
import smtplib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore_adapters.telephony import baresip
from tests.email.servers import Dovecot, MaildirDelivery, smtp_server
from tests.email.servers import Recorder as SmtpRecorder
from tests.telephony.conftest import CUSTOMER_NUMBER, Phones

from .conftest import Clock

DOC = Path(__file__).parents[2] / "docs" / "operational.md"
SCENARIO = "## The call-centre scenario"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_reference_examples_run() -> None:
    text = DOC.read_text()
    namespace: dict[str, Any] = {"__name__": "operational_doc"}
    for block in _blocks(text.split(SCENARIO)[0]):
        exec(compile(block, str(DOC), "exec"), namespace)
    assert "vip_breach" in namespace and "hours" in namespace


def _wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the scenario waited in vain")
        time.sleep(0.02)


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A private dovecot for this scenario (outside pytest's 0700 tmp_path, which dovecot's
    unprivileged processes could not enter)."""
    root = Path(tempfile.mkdtemp(prefix="crmcore-callcentre-"))
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_the_call_centre_scenario(
    tmp_path: Path, dovecot: Dovecot, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = Clock(crmcore.values.now())
    phones = Phones(tmp_path / "phones")
    (tmp_path / "phones").mkdir()
    outbound = SmtpRecorder()
    try:
        agent_phone = phones.start("agent100")
        customer_phone = phones.start(CUSTOMER_NUMBER)
        with smtp_server(outbound) as relay, smtp_server(MaildirDelivery(dovecot.maildir)) as exchanger, \
                crmcore.open(f"sqlite:///{tmp_path / 'crm.db'}", clock=clock) as crm, \
                baresip.open_phone(agent_phone.url(agent="agent100")) as agent, \
                baresip.open_phone(customer_phone.url()) as customer_mobile:

            def customer_mail(raw: bytes) -> None:
                with smtplib.SMTP("127.0.0.1", exchanger, timeout=10) as client:
                    client.sendmail("ada@example.org", ["support@shop.example"], raw)

            namespace: dict[str, Any] = {
                "__name__": "call_centre", "crm": crm, "clock": clock, "agent": agent,
                "agent_uri": agent_phone.sip_uri, "customer_mobile": customer_mobile,
                "smtp_url": f"smtp://127.0.0.1:{relay}", "customer_mail": customer_mail,
                "imap_url": dovecot.url(), "state_file": tmp_path / "cursor",
                "wait_until": _wait_until,
            }
            exec(compile("from datetime import timedelta", str(DOC), "exec"), namespace)
            for block in _blocks(DOC.read_text().split(SCENARIO)[1]):
                exec(compile(block, str(DOC), "exec"), namespace)
            case = namespace["case"]
            assert len(outbound.messages) == 2 and b"Your complaint" in outbound.messages[0][2]
            assert b"We are sorry, Ada" in outbound.messages[1][2]  # the stored rule's apology
            assert crm.cases.get(case.id).contacts == 3  # the call, the reply, the merged duplicate
    finally:
        phones.stop()
    printed = capsys.readouterr().out
    assert "resolution breached" in printed and "assigned to lea" in printed
