"""Fixtures for the e-mail tests: a CRM on real SQLite, aiosmtpd and a private dovecot."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.plugins import make_plugin_manager
from crmcore.testing.pytest_plugin import EventLog
from tests.email.servers import Dovecot, Recorder, self_signed, smtp_server


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture
def crm(tmp_path: Path, events: EventLog) -> Iterator[crmcore.CRM]:
    plugins = make_plugin_manager()
    plugins.register(events, name="test-events")
    with crmcore.open(f"sqlite:///{tmp_path / 'crm.db'}", plugins=plugins) as opened:
        yield opened


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def smtp_port(recorder: Recorder) -> Iterator[int]:
    with smtp_server(recorder) as port:
        yield port


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="crmcore-dovecot-"))
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


_folders = itertools.count(1)


@pytest.fixture
def folder(dovecot: Dovecot) -> str:
    """A fresh IMAP folder of its own for one test (its own UIDs and UIDVALIDITY)."""
    name = f"Test{next(_folders)}"
    dovecot.create(name)
    return name


def customer(crm: crmcore.CRM, name: str, email: str, *consents: str, **fields: Any) -> crmcore.Customer:
    """A stored customer who granted e-mail consent for each purpose named."""
    stored = crm.customers.add(crmcore.Customer.new(name=name, emails=[email], **fields))
    for purpose in consents:
        stored = crm.customers.set_consent(
            stored.id, purpose, crmcore.Channel.EMAIL, crmcore.ConsentStatus.GRANTED, source="test"
        )
    return stored
