"""Saved segments: versions, runs, who entered and who left, and the events that say so."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

import crmcore
from crmcore import Customer, OrderLine, Purchase, hookimpl
from crmcore.errors import RuleError, ValidationError
from crmcore.events import Event
from crmcore.plugins import make_plugin_manager
from crmcore.values import Money
from tests.segments.conftest import open_url

T0 = datetime(2025, 1, 1, tzinfo=UTC)


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    @hookimpl
    def crmcore_on_event(self, event: Event, crm: Any) -> None:
        self.events.append(event)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(params=["memory://", "sqlite://", "postgresql"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[crmcore.CRM, Recorder, Clock]]:
    recorder, clock = Recorder(), Clock()
    pm = make_plugin_manager()
    pm.register(recorder)
    crm = crmcore.open(open_url(request), plugins=pm, clock=clock)
    crm.bulk_import([
        Customer(str(n), f"C{n}", tier="gold" if n % 2 else "silver", created_at=T0 - timedelta(days=9),
                 updated_at=T0)
        for n in range(1, 6)
    ])
    yield crm, recorder, clock
    crm.close()


def buy(crm: crmcore.CRM, customer: str, amount: str, at: datetime) -> None:
    crm.purchases.record(Purchase(f"{customer}-{at.timestamp()}", customer, at,
                                  [OrderLine("x", Money(Decimal(amount)))]))


def test_runs_record_who_entered_and_left(setup: tuple[crmcore.CRM, Recorder, Clock]) -> None:
    crm, recorder, clock = setup
    segment = crm.segments.save("big-spenders", "Big spenders",
                                'tier = "gold" and sum(purchases.total, last 30 days) > 100')
    assert segment.version == 1
    buy(crm, "1", "150", T0 - timedelta(days=1))
    buy(crm, "3", "50", T0 - timedelta(days=1))

    first = crm.segments.run("big-spenders")
    assert (first.entered, first.left, first.members) == (frozenset("1"), frozenset(), frozenset("1"))

    clock.now = T0 + timedelta(days=40)  # customer 1's purchase leaves the window
    buy(crm, "3", "120", clock.now - timedelta(days=2))
    buy(crm, "2", "999", clock.now - timedelta(days=2))  # silver: not in the segment
    second = crm.segments.run("big-spenders")
    assert (second.entered, second.left, second.members) == (frozenset("3"), frozenset("1"), frozenset("3"))
    assert crm.segments.members("big-spenders") == {"3"}
    assert [(r.size, r.entered, r.left) for r in crm.segments.runs("big-spenders")] == [(1, 1, 0), (1, 1, 1)]

    moves = [(e.topic, e.payload["customers"]) for e in recorder.events if e.topic in ("segment.entered",
                                                                                        "segment.left")]
    assert moves == [("segment.entered", ["1"]), ("segment.entered", ["3"]), ("segment.left", ["1"])]
    ran = [e for e in recorder.events if e.topic == "segment.ran"]
    counts = [(e.payload["size"], e.payload["entered"], e.payload["left"]) for e in ran]
    assert counts == [(1, 1, 0), (1, 1, 1)]


def test_big_moves_are_sent_in_chunks(setup: tuple[crmcore.CRM, Recorder, Clock]) -> None:
    crm, recorder, _ = setup
    crm.bulk_import([Customer(f"x{n:04d}", "X", created_at=T0, updated_at=T0) for n in range(1203)])
    crm.segments.save("all", "Everyone", 'name = "X"')
    assert len(crm.segments.run("all").entered) == 1203
    sizes = [len(e.payload["customers"]) for e in recorder.events if e.topic == "segment.entered"]
    assert sizes == [500, 500, 203]


def test_yesterdays_run_is_recomputed_exactly(setup: tuple[crmcore.CRM, Recorder, Clock]) -> None:
    crm, _, clock = setup
    rule = "sum(purchases.total, last 7 days) >= 100"
    buy(crm, "2", "100", T0 - timedelta(days=3))
    yesterday = crm.customers.ids_matching(rule)
    clock.now = T0 + timedelta(days=1)
    buy(crm, "4", "500", clock.now - timedelta(hours=1))
    assert crm.customers.ids_matching(rule, as_of=T0) == yesterday == ["2"]
    assert crm.customers.ids_matching(rule) == ["2", "4"]


def test_versions_and_canonical_rules(setup: tuple[crmcore.CRM, Recorder, Clock]) -> None:
    crm, _, _ = setup
    saved = crm.segments.save("gold", "Gold", 'TIER = "gold"'.lower())
    assert saved.rule == 'tier = "gold"'
    assert crm.segments.save("gold", "Gold", 'tier  ==  "gold"').version == 1  # same rule, same version
    changed = crm.segments.save("gold", "Gold", 'tier in ("gold", "platinum")')
    assert changed.version == 2 and crm.segments.get("gold").rule == 'tier in ("gold", "platinum")'
    with pytest.raises(RuleError):
        crm.segments.save("gold", "Gold", "teir = 1")
    assert crm.segments.get("gold").version == 2  # nothing half-written
    assert [s.id for s in crm.segments.list()] == ["gold"]
    crm.segments.run("gold")
    with pytest.raises(ValidationError):
        crm.segments.run("gold", as_of=T0 - timedelta(days=1))  # runs move forward only
