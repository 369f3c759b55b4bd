"""Test kit for crmcore and its plugins (needs the `testing` extra): hypothesis strategies
for the model, a conformance suite for every port, and a pytest plugin (`pytest_plugin`,
loaded by pytest on its own) with `crm`, `crm_clock` and `crm_events` fixtures.

A plugin proves itself by subclassing the suite of what it provides:

| provides | suite | implement |
|---|---|---|
| storage | `StorageContract`, `AnalyticsContract` | `open_storage()` |
| mail transport | `TransportContract` | `open_transport()`, `received()`, `open_unreachable()` |
| mailbox | `MailboxContract` | `make_mailbox(messages)` |
| telephony | `TelephonyContract` | `open_pair()` |
| rule functions | `RuleFunctionContract` (or `check_rule_function`) | `functions`, `open_storage()` |
| scorers | `ScorerContract` | `scorer()` |
"""

from crmcore.testing.analytics import AnalyticsContract
from crmcore.testing.contract import StorageContract
from crmcore.testing.mail import MailboxContract, TransportContract
from crmcore.testing.pytest_plugin import EventLog, FrozenClock
from crmcore.testing.rules import RuleFunctionContract, ScorerContract, check_rule_function
from crmcore.testing.telephony import CallLog, TelephonyContract

__all__ = [
    "AnalyticsContract", "CallLog", "EventLog", "FrozenClock", "MailboxContract",
    "RuleFunctionContract", "ScorerContract", "StorageContract", "TelephonyContract",
    "TransportContract", "check_rule_function",
]
