"""The shipped telephony contract (`crmcore.testing.telephony`) against two real baresip
phones on loopback, opened by URL like any backend."""

from __future__ import annotations

import pytest

from crmcore.plugins import get_plugin_manager, open_adapter
from crmcore.ports.telephony import Telephony
from crmcore.testing.telephony import TelephonyContract
from tests.telephony.conftest import Phones


class TestBaresipPhones(TelephonyContract):
    @pytest.fixture(autouse=True)
    def _phones(self, phones: Phones) -> None:
        self.phones = phones

    def open_pair(self) -> tuple[Telephony, Telephony, str]:
        caller, callee = self.phones.start("agent100"), self.phones.start("agent200")

        def phone(url: str) -> Telephony:
            opened: Telephony = open_adapter(get_plugin_manager(), "telephony",
                                             "crmcore_register_telephony", url)
            return opened

        return phone(caller.url(agent="agent100")), phone(callee.url(agent="agent200")), callee.sip_uri
