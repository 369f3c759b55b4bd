"""The shipped Mailbox contract (`crmcore.testing.mail`), run against dovecot (IMAP adapter)
and the list fake alike, so the fake cannot drift from the real thing."""

from __future__ import annotations

import itertools

import pytest

from crmcore.ports.email import Mailbox
from crmcore.testing.mail import MailboxContract
from crmcore_adapters.email.imap import ImapMailbox
from tests.email.fakes import ListMailbox
from tests.email.servers import Dovecot

_folders = itertools.count(1)


class TestListMailbox(MailboxContract):
    def make_mailbox(self, messages: list[bytes]) -> Mailbox:
        return ListMailbox(list(messages))


class TestImapMailbox(MailboxContract):
    @pytest.fixture(autouse=True)
    def _server(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot

    def make_mailbox(self, messages: list[bytes]) -> Mailbox:
        folder = f"Contract{next(_folders)}"
        self.dovecot.create(folder)
        if messages:
            self.dovecot.append(folder, *messages)
        return ImapMailbox(self.dovecot.url(folder))
