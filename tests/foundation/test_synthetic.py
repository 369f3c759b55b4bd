"""The synthetic base: deterministic, valid, consistent, streaming, and true to its story."""

from __future__ import annotations

import statistics
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import serialization, values
from crmcore.crm import Cases
from crmcore.errors import ValidationError
from crmcore.model import Channel, ChannelFamily, Customer, Interaction, Purchase, ServicePointKind
from crmcore.synthetic import SyntheticBase

STREAMS = ("customers", "purchases", "interactions", "cases", "opportunities")


def dumped(base: SyntheticBase) -> dict[str, list[str]]:
    return {name: [serialization.dumps(x) for x in getattr(base, name)()] for name in STREAMS}


def test_same_seed_same_base_and_other_seed_other_base() -> None:
    first = dumped(SyntheticBase(size=40, seed=7))
    assert first == dumped(SyntheticBase(size=40, seed=7))
    assert all(first[name] for name in STREAMS if name != "opportunities")
    other = dumped(SyntheticBase(size=40, seed=8))
    assert all(first[name] != other[name] for name in ("customers", "purchases", "interactions"))


def test_staff_and_places_are_deterministic() -> None:
    a, b = SyntheticBase(seed=3), SyntheticBase(seed=3)
    assert a.agents() == b.agents() and a.service_points() == b.service_points()
    assert a.teams() == b.teams()
    assert {p.kind for p in a.service_points()} == set(ServicePointKind)
    assert SyntheticBase(seed=4).agents() != a.agents()  # names depend on the seed


def test_a_small_base_is_the_prefix_of_a_bigger_one() -> None:
    small, big = SyntheticBase(size=15, seed=2), SyntheticBase(size=45, seed=2)
    assert list(small.customers()) == list(big.customers())[:15]
    ids = {c.id for c in small.customers()}
    assert list(small.purchases()) == [p for p in big.purchases() if p.customer_id in ids]


def check_base(base: SyntheticBase) -> None:
    """Every record survives a trip through the converter and points at things that exist."""
    places = {p.id for p in base.service_points()}
    agents = {a.id for a in base.agents()}
    customers = {c.id: c for c in base.customers()}
    assert len(customers) == base.size
    emails = [e.lower() for c in customers.values() for e in c.emails]
    assert len(emails) == len(set(emails)), "e-mail addresses are unique across the base"
    cases = {c.id: c for c in base.cases()}
    records = [*customers.values(), *base.purchases(), *base.interactions(), *cases.values(),
               *base.opportunities()]
    for item in records:
        assert serialization.loads(serialization.dumps(item), type(item)) == item
        assert attrs.evolve(item) == item  # validators accept it as it is
    for c in customers.values():
        assert all(values.phone(p) == p for p in c.phones)
        assert all(values.email(e) == e for e in c.emails)
        assert c.created_at <= c.updated_at <= base.as_of
        assert c.service_point in places
    for item in records:
        owner = getattr(item, "customer_id", None)
        assert owner is None or owner in customers
        if getattr(item, "service_point", None) is not None:
            assert item.service_point in places  # type: ignore[attr-defined]
        if getattr(item, "agent", None) is not None:
            assert item.agent in agents  # type: ignore[attr-defined]
    for p in base.purchases():
        assert customers[p.customer_id].created_at <= p.ordered_at <= base.as_of
    for i in base.interactions():
        assert i.occurred_at <= base.as_of
        assert i.case_id is None or i.case_id in cases
    for case in cases.values():
        assert case.sla_due == case.opened_at + Cases.SLA[case.priority]
        assert (case.resolved_at is None) == case.status.is_open
        assert case.resolved_at is None or case.opened_at <= case.resolved_at <= base.as_of
    for o in base.opportunities():
        assert o.history[-1].at <= base.as_of


def test_everything_validates_and_hangs_together() -> None:
    check_base(SyntheticBase(size=120, seed=11))


@settings(max_examples=8)
@given(
    seed=st.integers(0, 2**40),
    size=st.integers(0, 12),
    as_of=st.datetimes(datetime(2000, 1, 1), datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_any_seed_size_and_end_of_history(seed: int, size: int, as_of: datetime) -> None:
    base = SyntheticBase(size=size, seed=seed, as_of=as_of)
    check_base(base)
    assert all(c.created_at >= as_of - base.history for c in base.customers())


def test_as_of_is_injected_and_must_be_aware() -> None:
    late = SyntheticBase(size=20, seed=1, as_of=datetime(2030, 6, 1, tzinfo=UTC))
    early = SyntheticBase(size=20, seed=1)
    assert [c.id for c in late.customers()] == [c.id for c in early.customers()]
    shift = late.as_of - early.as_of
    assert [c.created_at - shift for c in late.customers()] == [c.created_at for c in early.customers()]
    with pytest.raises(ValidationError, match="as_of"):
        SyntheticBase(as_of=datetime(2026, 1, 1))  # naive


def test_purchases_per_customer_is_the_mean_and_buying_varies() -> None:
    base = SyntheticBase(size=4_000, seed=5, purchases_per_customer=6)
    profiles = list(base.profiles())
    counts = [len(p.purchases) for p in profiles]
    assert statistics.mean(counts) == pytest.approx(6, rel=0.1)
    assert max(counts) > 5 * statistics.mean(counts), "a few customers buy very often"
    gaps = [b - a for p in profiles for a, b in zip(p.purchases, p.purchases[1:], strict=False)]
    assert statistics.stdev(gaps) > 0.5 * statistics.mean(gaps), "purchase intervals vary"
    churned = [p for p in profiles if p.death is not None]
    assert 0.2 < len(churned) / len(profiles) < 0.7
    assert all(p.at(p.purchases[-1]) <= p.death for p in churned if p.purchases)  # type: ignore[operator]


def test_churners_complain_and_go_quiet() -> None:
    """The signal churn models learn from: complaints before leaving, silence after."""
    base = SyntheticBase(size=600, seed=9)
    died = {p.id: p.death for p in base.profiles() if p.death is not None}
    complaints = {c.customer_id for c in base.cases() if c.kind == "complaint"}
    alive = base.size - len(died)
    churner_rate = len(complaints & set(died)) / len(died)
    stayer_rate = len(complaints - set(died)) / alive
    assert churner_rate > 1.5 * stayer_rate
    for i in base.interactions():
        death = died.get(i.customer_id)
        if death is not None and i.channel.family is ChannelFamily.COLLABORATIVE:
            assert i.occurred_at <= death


def test_channels_of_both_families_appear() -> None:
    interactions = list(SyntheticBase(size=300, seed=4).interactions())
    assert {i.channel for i in interactions} == set(Channel)
    assert any(i.reference and i.channel is Channel.EMAIL for i in interactions)
    assert any(i.satisfaction is not None for i in interactions)


PEAK = """
import sys, tracemalloc
from crmcore.synthetic import SyntheticBase
base = SyntheticBase(size=int(sys.argv[1]), seed=1, purchases_per_customer=3)
next(base.records())  # warm the caches
tracemalloc.start()
for _ in base.records():
    pass
print(tracemalloc.get_traced_memory()[1])
"""


def test_streams_hold_one_customer_at_a_time() -> None:
    def peak(size: int) -> int:
        """In a process of its own: threads other tests left behind allocate too."""
        done = subprocess.run([sys.executable, "-c", PEAK, str(size)], capture_output=True,
                              text=True, check=True)
        return int(done.stdout)

    small, large = peak(100), peak(800)
    assert large < 1.5 * small + 200_000, (small, large)


def test_load_through_the_public_api(tmp_path: object) -> None:
    base = SyntheticBase(size=50, seed=6)
    seen: list[object] = []
    with crmcore.open(f"sqlite:///{tmp_path}/base.db", clock=lambda: base.as_of) as crm:
        base.load(crm, watch=seen.append)
        assert crm.customers.count() == 50
        assert crm.service_points.count() == len(base.service_points())
        assert crm.agents.count() == len(base.agents())
        assert crm.cases.count() == len(list(base.cases()))
        assert crm.opportunities.count() == len(list(base.opportunities()))
        with crm.transaction() as uow:
            assert uow.purchases.count() == sum(isinstance(x, Purchase) for x in seen)
            assert uow.interactions.count() == sum(isinstance(x, Interaction) for x in seen)
        first = next(base.customers())
        assert crm.customers.get(first.id) == attrs.evolve(first, version=1)
        if first.emails:
            assert crm.customers.by_email(first.emails[0]) == crm.customers.get(first.id)
        stored = crm.interactions.timeline(first.id, limit=None)
        assert sorted(stored, key=lambda i: i.id) == sorted(
            (i for i in base.interactions() if i.customer_id == first.id), key=lambda i: i.id
        )
    assert sum(isinstance(x, Customer) for x in seen) == 50


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValidationError, match="size"):
        SyntheticBase(size=-1)
    with pytest.raises(ValidationError, match="seed"):
        SyntheticBase(seed=-3)
    with pytest.raises(ValidationError, match="as_of"):
        SyntheticBase(as_of="2026-01-01T00:00")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="history"):
        SyntheticBase(history=timedelta(0))
    assert list(SyntheticBase(size=0).records()) == []
