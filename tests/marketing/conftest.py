"""Fixtures for the marketing tests: a CRM on every backend with a clock the test moves,
customers with consent, and an event recorder."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore import values as v
from crmcore.plugins import make_plugin_manager
from crmcore.testing.pytest_plugin import EventLog
from tests.support import open_crm as open_backend

BACKENDS = ("memory", "sqlite", "postgresql")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The CRM's clock, moved by the test."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at


def open_crm(name: str, tmp: Path, clock: Clock, events: EventLog | None = None) -> Iterator[crmcore.CRM]:
    plugins = make_plugin_manager()
    if events is not None:
        plugins.register(events, name="test-events")
    with open_backend(name, tmp, plugins=plugins, clock=clock) as crm:
        yield crm


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def events() -> EventLog:
    return EventLog()


@pytest.fixture(params=BACKENDS)
def crm(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock, events: EventLog
) -> Iterator[crmcore.CRM]:
    yield from open_crm(request.param, tmp_path, clock, events)


def populate(
    crm: crmcore.CRM,
    count: int,
    *,
    seed: int = 1,
    consent_every: int = 1,
    first: int = 0,
    created: datetime | None = None,
    **fields: Any,
) -> list[crmcore.Customer]:
    """`count` customers created a day before the clock, tiers gold/silver, e-mail consent for
    "marketing" for all but every `consent_every`-th one (1: everyone consents)."""
    rnd = random.Random(seed)
    made = []
    created = created or crm.clock() - timedelta(days=1)
    for i in range(first, first + count):
        customer = crm.customers.add(
            crmcore.Customer.new(
                name=f"Customer {i}",
                emails=[f"c{i}@example.org"],
                tier=rnd.choice(["gold", "silver"]),
                created_at=created,
                **fields,
            )
        )
        if consent_every == 1 or i % consent_every:
            customer = crm.customers.set_consent(
                customer.id, "marketing", crmcore.Channel.EMAIL, crmcore.ConsentStatus.GRANTED, source="test"
            )
        made.append(customer)
    return made


def purchase(customer_id: str, amount: Decimal, at: datetime, currency: str = "EUR") -> crmcore.Purchase:
    return crmcore.Purchase(
        v.new_id(), customer_id, at, [crmcore.OrderLine("item", crmcore.Money(amount, currency))]
    )


from tests.email.conftest import dovecot, folder  # noqa: E402, F401  (the private IMAP server, shared)
