"""Hypothesis strategies for every model type, for crmcore's tests and for plugin authors."""

from __future__ import annotations

import string
from datetime import UTC, date, datetime, timedelta
from typing import Any

import phonenumbers
from hypothesis import strategies as st

from crmcore import model as m
from crmcore.values import Money

_REGIONS = ("FR", "DE", "GB", "US", "ES", "IT", "NL", "BE", "CH", "JP", "BR", "IN")
_EXAMPLES = tuple(
    phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    for example in map(phonenumbers.example_number, _REGIONS)
    if example is not None
)

ids = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)
machine_names = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True)
texts = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40
).filter(str.strip)
instants = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
dates = st.dates(min_value=date(1900, 1, 1), max_value=date(2030, 12, 31))
amounts = st.decimals(min_value=0, max_value=100_000, places=2, allow_nan=False, allow_infinity=False)
currencies = st.sampled_from(("EUR", "USD", "GBP", "JPY"))


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.text(alphabet=string.ascii_letters + string.digits + "._+-", min_size=1,
                         max_size=20).filter(lambda s: not s.startswith(".")))
    domain = draw(st.from_regex(r"[a-z0-9]{1,12}\.(org|com|fr|example)", fullmatch=True))
    return f"{local}@{domain}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    """Valid-length E.164 numbers: a region's example number with its last digits varied."""
    base = draw(st.sampled_from(_EXAMPLES))
    tail = draw(st.integers(min_value=0, max_value=99))
    return f"{base[:-2]}{tail:02d}"


money = st.builds(Money, amounts, currencies)
addresses = st.builds(
    m.PostalAddress, country=st.sampled_from(_REGIONS), lines=st.lists(texts, max_size=2),
    city=texts, postal_code=st.from_regex(r"[0-9]{5}", fullmatch=True),
)
attribute_values: st.SearchStrategy[Any] = st.one_of(
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.decimals(places=3, min_value=-10**6, max_value=10**6, allow_nan=False, allow_infinity=False),
    dates,
    instants,
)


@st.composite
def consents(draw: st.DrawFn) -> tuple[m.Consent, ...]:
    keys = draw(st.lists(st.tuples(st.sampled_from(("marketing", "service", "profiling")),
                                   st.sampled_from(list(m.Channel))),
                         unique=True, max_size=4))
    return tuple(
        m.Consent(purpose, channel, draw(st.sampled_from(list(m.ConsentStatus))), draw(instants),
                  draw(st.sampled_from(("portal", "agent", "import"))))
        for purpose, channel in keys
    )


@st.composite
def customers(draw: st.DrawFn, id: st.SearchStrategy[str] = ids) -> m.Customer:
    """A new (version 0) customer with any mix of optional fields."""
    created = draw(instants)
    return m.Customer(
        id=draw(id),
        name=draw(texts),
        kind=draw(st.sampled_from(list(m.PartyKind))),
        emails=draw(st.lists(emails(), max_size=3, unique_by=str.lower)),
        phones=draw(st.lists(phones(), max_size=2, unique=True)),
        addresses=draw(st.lists(addresses, max_size=2)),
        birth_date=draw(st.none() | dates),
        language=draw(st.none() | st.sampled_from(("fr", "en", "de", "es"))),
        lifecycle=draw(st.sampled_from(list(m.LifecycleStage))),
        tier=draw(st.none() | st.sampled_from(("bronze", "silver", "gold", "platinum"))),
        tags=draw(st.frozensets(machine_names, max_size=3)),
        attributes=draw(st.dictionaries(machine_names, attribute_values, max_size=3)),
        external_ids=draw(st.dictionaries(st.sampled_from(("erp", "web", "pos")),
                                          st.from_regex(r"[A-Z0-9]{1,10}", fullmatch=True),
                                          max_size=2)),
        consents=draw(consents()),
        service_point=draw(st.none() | machine_names),
        created_at=created,
        updated_at=created + draw(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=900))),
    )


def interactions(customer_id: st.SearchStrategy[str] = ids) -> st.SearchStrategy[m.Interaction]:
    return st.builds(
        m.Interaction, id=ids, customer_id=customer_id, channel=st.sampled_from(list(m.Channel)),
        direction=st.sampled_from(list(m.Direction)), occurred_at=instants,
        service_point=st.none() | machine_names, agent=st.none() | machine_names,
        duration=st.none() | st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=5)),
        subject=st.text(max_size=30).filter(lambda s: "\x00" not in s),
        outcome=st.none() | machine_names, satisfaction=st.none() | st.integers(1, 5),
        nps=st.none() | st.integers(0, 10),
    )


@st.composite
def order_lines(draw: st.DrawFn, currency: str = "EUR") -> m.OrderLine:
    return m.OrderLine(
        product=draw(st.sampled_from(("cd", "dvd", "book", "phone", "plan", "case"))),
        unit_price=Money(draw(amounts), currency),
        quantity=draw(st.integers(1, 5)),
        category=draw(st.sampled_from(("music", "video", "print", "mobile", ""))),
    )


@st.composite
def purchases(draw: st.DrawFn, customer_id: st.SearchStrategy[str] = ids) -> m.Purchase:
    currency = draw(currencies)
    return m.Purchase(
        id=draw(ids), customer_id=draw(customer_id), ordered_at=draw(instants),
        lines=draw(st.lists(order_lines(currency), min_size=1, max_size=4)),
        channel=draw(st.none() | st.sampled_from(list(m.Channel))),
        service_point=draw(st.none() | machine_names),
    )


@st.composite
def cases(draw: st.DrawFn, customer_id: st.SearchStrategy[str] = ids) -> m.Case:
    opened = draw(instants)
    status = draw(st.sampled_from(list(m.CaseStatus)))
    resolved = opened + draw(st.timedeltas(timedelta(0), timedelta(days=30)))
    return m.Case(
        id=draw(ids), customer_id=draw(customer_id), kind=draw(st.sampled_from(list(m.CaseKind))),
        subject=draw(texts), opened_at=opened, priority=draw(st.sampled_from(list(m.CasePriority))),
        status=status, sla_due=opened + timedelta(days=3),
        resolved_at=None if status.is_open else resolved,
        channel=draw(st.none() | st.sampled_from(list(m.Channel))),
        contacts=draw(st.integers(1, 5)),
    )


@st.composite
def opportunities(draw: st.DrawFn, customer_id: st.SearchStrategy[str] = ids) -> m.Opportunity:
    at = draw(instants)
    stages = draw(st.lists(st.sampled_from(list(m.Stage)[:4]), max_size=3))
    if draw(st.booleans()):
        stages.append(draw(st.sampled_from((m.Stage.WON, m.Stage.LOST))))
    history = [m.StageChange(m.Stage.QUALIFICATION, at)]
    for step, stage in enumerate(stages, start=1):
        history.append(m.StageChange(stage, at + timedelta(days=step)))
    return m.Opportunity(
        id=draw(ids), customer_id=draw(customer_id), title=draw(texts), stage=history[-1].stage,
        history=tuple(history), amount=draw(st.none() | money),
        kind=draw(st.sampled_from(list(m.OpportunityKind))),
        attributes=draw(st.dictionaries(machine_names, machine_names, max_size=3)),
    )


service_points = st.builds(
    m.ServicePoint, id=machine_names, name=texts, kind=st.sampled_from(list(m.ServicePointKind)),
    location=st.builds(m.Location, latitude=st.none() | st.floats(-90, 90),
                       longitude=st.none() | st.floats(-180, 180)),
)
teams = st.builds(m.Team, id=machine_names, name=texts, skills=st.frozensets(machine_names, max_size=3))
agents = st.builds(
    m.Agent, id=machine_names, name=texts, team=st.none() | machine_names,
    skills=st.frozensets(machine_names, max_size=4), capacity=st.integers(1, 5),
    email=st.none() | emails(),
)
campaigns = st.builds(
    m.Campaign, id=ids, name=texts, channel=st.sampled_from(list(m.Channel)),
    starts_at=st.none() | instants, budget=st.none() | money,
)
campaign_members = st.builds(
    m.CampaignMember, campaign_id=ids, customer_id=ids,
    group=st.sampled_from(list(m.MemberGroup)), status=st.sampled_from(list(m.MemberStatus)),
    at=instants,
)
scores = st.builds(
    m.Score, customer_id=ids, scorer=machine_names, as_of=instants,
    value=st.floats(-1e9, 1e9, allow_nan=False), label=st.none() | texts,
    details=st.dictionaries(machine_names, st.integers(0, 100) | machine_names, max_size=3),
)
segments = st.builds(m.Segment, id=machine_names, name=texts, rule=texts)

MODEL_STRATEGIES: dict[type, st.SearchStrategy[Any]] = {
    m.Customer: customers(), m.Interaction: interactions(), m.Purchase: purchases(),
    m.Case: cases(), m.Opportunity: opportunities(), m.ServicePoint: service_points,
    m.Team: teams, m.Agent: agents, m.Campaign: campaigns, m.CampaignMember: campaign_members,
    m.Score: scores, m.Segment: segments, m.PostalAddress: addresses, m.OrderLine: order_lines(),
    Money: money,
}
"""One strategy per model type; the round-trip property runs over all of them."""
