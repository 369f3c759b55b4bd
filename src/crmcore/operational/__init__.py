"""Operational CRM: staff in contact with the customer (calls, e-mail, visits, cases, sales)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crmcore.crm import CRM
    from crmcore.operational.accounts import Accounts
    from crmcore.operational.assignment import Assigner
    from crmcore.operational.automation import Automation
    from crmcore.operational.calls import Calls
    from crmcore.operational.cases import ServiceCases
    from crmcore.operational.mail import Mail
    from crmcore.operational.tasks import Tasks


class Operational:
    """The operational family of a CRM; each part is built on first use."""

    def __init__(self, crm: CRM) -> None:
        self.crm = crm

    @functools.cached_property
    def mail(self) -> Mail:
        """E-mail: consent-checked sending and an inbox read onto the timeline."""
        from crmcore.operational.mail import Mail

        return Mail(self.crm)

    @functools.cached_property
    def calls(self) -> Calls:
        """Telephony: caller identification, screen pops, call records on the timeline."""
        from crmcore.operational.calls import Calls

        return Calls(self.crm)

    @functools.cached_property
    def cases(self) -> ServiceCases:
        """Cases with service levels in business time, an escalation ladder and its sweep."""
        from crmcore.operational.cases import ServiceCases

        return ServiceCases(self.crm)

    @functools.cached_property
    def assignment(self) -> Assigner:
        """Owners for cases, customers, accounts and opportunities, by rule, with the reason."""
        from crmcore.operational.assignment import Assigner

        return Assigner(self.crm)

    @functools.cached_property
    def tasks(self) -> Tasks:
        """Tasks with due dates, reminders and outcomes; "my open tasks" and "overdue"."""
        from crmcore.operational.tasks import Tasks

        return Tasks(self.crm)

    @functools.cached_property
    def accounts(self) -> Accounts:
        """Organisations with their contacts, hierarchies, households, and their roll-ups."""
        from crmcore.operational.accounts import Accounts

        return Accounts(self.crm)

    @functools.cached_property
    def automation(self) -> Automation:
        """Rules "when event E and condition R hold for the customer, do action A"."""
        from crmcore.operational.automation import Automation

        return Automation(self.crm)
