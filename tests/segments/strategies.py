"""Hypothesis strategies for segment rules and small customer bases to run them on.

Rules are drawn type-directed (every rule drawn passes the checker) over the
same small pools of values the bases are drawn from, so rules often match.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from hypothesis import strategies as st

from crmcore.model import (
    Account,
    AccountMember,
    Case,
    Channel,
    Consent,
    Customer,
    Interaction,
    OrderLine,
    PostalAddress,
    Purchase,
    Score,
)
from crmcore.segments import ast as a
from crmcore.values import Money

AS_OF = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
TIERS = ("gold", "silver", "platinum")
COUNTRIES = ("FR", "DE", "ES")
NAMES = ("Ada", "ada", "Bob", "Zoé", "Ærø", "")
TAGS = ("vip", "b2b", "late")
KEYS = ("size", "flag", "note", "since", "seen")
PURPOSES = ("news", "offers")
CHANNELS = ("email", "phone", "portal", "app")
SCORERS = ("churn", "rfm")
LABELS = ("champions", "at_risk")

instants = st.integers(min_value=-800, max_value=30).map(
    lambda days: AS_OF + timedelta(days=days, hours=days % 7)
)
dates = st.dates(min_value=date(1950, 1, 1), max_value=date(2026, 12, 31))
amounts = st.sampled_from(["0", "10", "99.99", "250.5", "1000", "0.0001", "333.3333"]).map(Decimal)
shared_decimals = st.sampled_from([
    "-634379.877622", "418367.345061", "817467.106753", "-0.096831", "0.1", "2.675", "1e-6",
]).map(Decimal) | st.decimals(min_value=-10**6, max_value=10**6, places=6, allow_nan=False)
"""Drawn for attributes and for rule numbers alike, so equal values meet; the first few are
decimals SQLite's CAST does not round correctly to the nearest double."""
attribute_values: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-5, max_value=50),
    st.sampled_from([0.5, 1.5, 42.0, -0.1, 1e-7, 2.5e10]),
    st.sampled_from(["1.5", "42", "0.1", "7"]).map(Decimal),
    shared_decimals, shared_decimals.map(float),
    st.booleans(),
    st.sampled_from(["x", "xl", "XL", "", "é"]),
    dates,
    instants,
)


@st.composite
def customers(draw: st.DrawFn, index: int) -> Customer:
    country = draw(st.sampled_from((*COUNTRIES, None)))
    name = draw(st.sampled_from(NAMES)) or f"n{index}"
    consents = []
    for purpose in draw(st.lists(st.sampled_from(PURPOSES), unique=True, max_size=2)):
        consents.append(Consent(
            purpose, Channel(draw(st.sampled_from(("email", "phone")))),
            draw(st.sampled_from(("granted", "withdrawn"))), draw(instants), "test",
        ))
    return Customer(
        id=f"c{index:03d}",
        name=name,
        tier=draw(st.sampled_from((*TIERS, None))),
        lifecycle=draw(st.sampled_from(("lead", "customer", "former_customer"))),
        addresses=() if country is None else (PostalAddress(country),),
        birth_date=draw(st.none() | dates),
        language=draw(st.sampled_from((None, "fr", "en"))),
        service_point=draw(st.sampled_from((None, "paris", "lyon"))),
        tags=draw(st.frozensets(st.sampled_from(TAGS))),
        emails=("a@b.org",) if index == 0 and draw(st.booleans()) else (f"p{index}@b.org",),
        phones=draw(st.sampled_from(((), ("+33123456789",)))),
        attributes=draw(st.dictionaries(st.sampled_from(KEYS), attribute_values, max_size=3)),
        consents=tuple(consents),
        created_at=draw(instants),
        updated_at=AS_OF,
    )


def _days_after(start: datetime, days: int) -> datetime:
    return start + timedelta(days=days)


@st.composite
def bases(draw: st.DrawFn) -> dict[str, list[Any]]:
    people = [draw(customers(i)) for i in range(draw(st.integers(0, 7)))]
    purchases, interactions, cases, scores = [], [], [], []
    for person in people:
        for n in range(draw(st.integers(0, 3))):
            lines = [OrderLine("sku", Money(draw(amounts)), draw(st.integers(1, 3)))]
            purchases.append(Purchase(
                f"{person.id}p{n}", person.id, draw(instants), lines,
                channel=draw(st.sampled_from((None, "portal", "visit"))),
            ))
        for n in range(draw(st.integers(0, 3))):
            interactions.append(Interaction(
                f"{person.id}i{n}", person.id, draw(st.sampled_from(CHANNELS)),
                draw(st.sampled_from(("inbound", "outbound"))), draw(instants),
                satisfaction=draw(st.none() | st.integers(1, 5)),
            ))
        for n in range(draw(st.integers(0, 2))):
            opened = draw(instants)
            resolved = draw(st.none() | st.integers(0, 60).map(partial(_days_after, opened)))
            cases.append(Case(
                f"{person.id}k{n}", person.id, draw(st.sampled_from(("complaint", "request"))), "s",
                opened, priority=draw(st.integers(1, 4)),
                status="resolved" if resolved is not None else draw(st.sampled_from(("open", "closed"))),
                resolved_at=resolved,
            ))
        for scorer in draw(st.lists(st.sampled_from(SCORERS), unique=True)):
            for _ in range(draw(st.integers(1, 2))):
                scores.append(Score(person.id, scorer, draw(instants),
                                    draw(st.sampled_from((0.1, 0.5, 0.75, 3.0))),
                                    draw(st.none() | st.sampled_from(LABELS))))
    return {"customers": people, "purchases": purchases, "interactions": interactions,
            "cases": cases, "scores": scores, "accounts": draw(accounts(people))}


ACCOUNT_NAMES = ("Acme", "acme", "Ærø AS", "Zeta")
ROLES = ("buyer", "billing", "head")


@st.composite
def accounts(draw: st.DrawFn, people: list[Customer]) -> list[Account]:
    """Organisations and households sharing members, so a customer often has several
    (and a rule has to pick one) and sometimes is their primary contact; an account often
    hangs under an earlier one, so roll-ups add up sub-accounts two or three levels down."""
    found: list[Account] = []
    ids = [p.id for p in people]
    for n in range(draw(st.integers(0, 5 if ids else 0))):
        members = draw(st.lists(st.sampled_from(ids), unique=True, max_size=4))
        primary = draw(st.none() | st.sampled_from(members)) if members else None
        found.append(Account(
            # ids drawn out of order, so "the smallest id" is not the first added
            id=draw(st.sampled_from(("b", "a", "B", "é", "a0"))) + str(n),
            name=draw(st.sampled_from(ACCOUNT_NAMES)),
            kind=draw(st.sampled_from(("organisation", "household"))),
            tier=draw(st.sampled_from((*TIERS, None))),
            members=tuple(AccountMember(m, draw(st.sampled_from(ROLES)), m == primary) for m in members),
            attributes=draw(st.dictionaries(st.sampled_from(KEYS), attribute_values, max_size=2)),
            parent_id=draw(st.none() | st.sampled_from([a.id for a in found])) if found else None,
        ))
    return found


# ---- rules ----

def text(values: tuple[str, ...]) -> st.SearchStrategy[a.Text]:
    return st.sampled_from(values).map(a.Text)


numbers = st.sampled_from(["0", "1", "2", "3", "10", "100", "250.5", "999.99", "1000", "0.5", "1.5", "-1",
                           "42", "333.3333", "2.5", "0.1"]).map(lambda s: a.Number(Decimal(s))) | \
    shared_decimals.map(a.Number)
units = st.sampled_from(a.UNITS)
ago = st.builds(a.Ago, st.integers(0, 40), units)
instant_constants = st.one_of(
    ago, st.just(a.Now()), instants.map(a.Instant), dates.map(a.Day), st.just(a.Today())
)
date_constants = st.one_of(dates.map(a.Day), st.just(a.Today()), ago)
windows = st.none() | st.builds(a.Last, st.integers(0, 400), st.sampled_from(("days", "months", "years"))) | \
    st.builds(a.Since, st.one_of(dates.map(a.Day), ago, instants.map(a.Instant), st.just(a.Today())))
ops = st.sampled_from(a.COMPARISONS)


def f(*path: str) -> a.Field:
    return a.Field(path)


RECORD_TESTS: dict[str, Any] = {
    "purchases": st.one_of(
        st.builds(a.Compare, st.just(f("channel")), st.sampled_from(("=", "!=")), text(("portal", "visit"))),
        st.builds(a.Compare, st.just(f("total")), ops, numbers),
        st.builds(a.IsNull, st.just(f("channel"))),
    ),
    "interactions": st.one_of(
        st.builds(a.In, st.just(f("channel")),
                  st.lists(text(CHANNELS), min_size=1, max_size=2).map(tuple)),
        st.builds(a.Compare, st.just(f("family")), st.just("="), text(("operational", "collaborative"))),
        st.builds(a.Compare, st.just(f("satisfaction")), ops, numbers),
    ),
    "cases": st.one_of(
        st.just(a.Truth(f("open"))),
        st.builds(a.Compare, st.just(f("priority")), ops, numbers),
        st.builds(a.Compare, st.just(f("resolved_at")), ops, instant_constants),
    ),
}
NUMERIC_FIELDS = {"purchases": "total", "interactions": "satisfaction", "cases": "priority"}
ORDERED_FIELDS = {
    "purchases": ("total", "ordered_at", "channel"),
    "interactions": ("satisfaction", "occurred_at"),
    "cases": ("priority", "resolved_at", "opened_at"),
}


@st.composite
def aggregates(draw: st.DrawFn) -> a.Aggregate:
    source = draw(st.sampled_from(a.SOURCES))
    of = draw(st.sampled_from((None, None, *a.GROUPS)))
    func = draw(st.sampled_from(a.AGGREGATES))
    field = None
    if func in ("sum", "avg"):
        field = NUMERIC_FIELDS[source]
    elif func in ("min", "max"):
        field = draw(st.sampled_from(ORDERED_FIELDS[source]))
    where = draw(st.none() | RECORD_TESTS[source])
    return a.Aggregate(func, source, field, where, draw(windows), of)


def compared_with(aggregate: a.Aggregate) -> st.SearchStrategy[a.Term]:
    if aggregate.func in ("first", "last") or (aggregate.field or "").endswith(("_at",)):
        return instant_constants
    if aggregate.field == "channel":
        return text(("portal", "visit"))
    return numbers


@st.composite
def aggregate_tests(draw: st.DrawFn) -> a.Predicate:
    aggregate = draw(aggregates())
    shape = draw(st.sampled_from(("compare", "between", "null", "in", "versus")))
    if shape == "null":
        return a.IsNull(aggregate)
    if shape == "between":
        return a.Between(aggregate, draw(compared_with(aggregate)), draw(compared_with(aggregate)))
    if shape == "in" and compared_with(aggregate) is numbers:
        return a.In(aggregate, tuple(draw(st.lists(numbers, min_size=1, max_size=3))))
    if shape == "versus" and aggregate.source == "purchases" and aggregate.field == "total":
        other = a.Aggregate(draw(st.sampled_from(("sum", "avg", "min", "max"))), "purchases", "total",
                            None, draw(windows))
        return a.Compare(aggregate, draw(ops), other)
    return a.Compare(aggregate, draw(ops), draw(compared_with(aggregate)))


@st.composite
def attribute_tests(draw: st.DrawFn) -> a.Predicate:
    owner = draw(st.sampled_from(((), (), *((g,) for g in a.GROUPS))))
    key = f(*owner, "attributes", draw(st.sampled_from(KEYS)))
    constant = draw(st.one_of(
        numbers, st.booleans().map(a.Bool), text(("x", "xl", "XL", "", "é")), dates.map(a.Day),
        instants.map(a.Instant),
    ))
    shape = draw(st.sampled_from(("compare", "null", "truth", "contains")))
    if shape == "null":
        return a.IsNull(key)
    if shape == "truth":
        return a.Truth(key)
    if shape == "contains":
        return a.Contains(key, draw(text(("x", "l", ""))))
    op = "=" if isinstance(constant, a.Bool) else draw(ops)
    return a.Compare(key, op, constant)


groups = st.sampled_from(a.GROUPS)


@st.composite
def account_tests(draw: st.DrawFn) -> a.Predicate:
    group = draw(groups)
    name = draw(st.sampled_from(("id", "name", "tier", "owner", "parent_id", "role")))
    field = f(group, name)
    values = {"id": ("a0", "b1", "é2", "B0"), "name": ACCOUNT_NAMES, "tier": TIERS, "owner": ("x",),
              "parent_id": ("a0",), "role": ROLES}[name]
    shape = draw(st.sampled_from(("compare", "in", "null", "contains")))
    if shape == "null":
        return a.IsNull(field)
    if shape == "in":
        return a.In(field, tuple(draw(st.lists(text(values), min_size=1, max_size=3))))
    if shape == "contains":
        return a.Contains(field, draw(text(("a", "A", "ø", ""))))
    return a.Compare(field, draw(ops), draw(text(values)))


leaves = st.one_of(
    st.builds(a.Compare, st.just(f("tier")), ops, text(TIERS)),
    st.builds(a.In, st.just(f("tier")), st.lists(text(TIERS), min_size=1, max_size=3).map(tuple)),
    st.builds(a.In, st.just(f("country")), st.lists(text(COUNTRIES), min_size=1, max_size=3).map(tuple)),
    st.builds(a.In, st.just(f("lifecycle")), st.lists(text(("lead", "customer")), min_size=1).map(tuple)),
    st.builds(a.Compare, st.just(f("name")), ops, text(NAMES)),
    st.builds(a.Compare, st.sampled_from([f("language"), f("service_point"), f("id"), f("country")]), ops,
              text(("fr", "en", "paris", "lyon", "c001", "c003", "FR", "ES"))),
    st.builds(a.Compare, st.just(f("kind")), st.sampled_from(("=", "!=")), text(("person", "organisation"))),
    st.builds(a.Contains, st.sampled_from([f("emails"), f("phones")]), text(("a@b.org", "+33123456789"))),
    st.builds(a.In, st.sampled_from([f("score", "churn"), f("attributes", "size")]),
              st.lists(numbers, min_size=1, max_size=3).map(tuple)),
    st.builds(a.Contains, st.just(f("name")), text(("a", "d", "é", "A", ""))),
    st.builds(a.Contains, st.just(f("tags")), text(TAGS)),
    st.builds(a.IsEmpty, st.just(f("tags"))),
    st.builds(a.IsNull, st.sampled_from([f("tier"), f("country"), f("language"), f("birth_date"),
                                         f("service_point"), f("score", "churn")])),
    st.builds(a.Compare, st.just(f("birth_date")), ops, date_constants),
    st.builds(a.Compare, st.sampled_from([f("created_at"), f("updated_at")]), ops, instant_constants),
    st.builds(a.Compare, st.just(f("created_at")), ops, st.just(f("updated_at"))),
    st.builds(a.Birthday, st.integers(0, 40)),
    st.builds(lambda p, c: a.Truth(f("consent", p, c)), st.sampled_from(PURPOSES),
              st.sampled_from(("email", "phone"))),
    st.builds(lambda p, op, b: a.Compare(f("consent", p, "email"), op, a.Bool(b)), st.sampled_from(PURPOSES),
              st.sampled_from(("=", "!=")), st.booleans()),
    st.builds(a.Compare, st.sampled_from([f("score", s) for s in SCORERS]), ops, numbers),
    st.builds(a.Compare, st.just(f("score", "rfm", "label")), st.sampled_from(("=", "!=")), text(LABELS)),
    st.builds(a.Compare, st.just(a.Call("length", (f("name"),))), ops, numbers),
    st.builds(a.Compare, st.builds(a.Call, st.sampled_from(("lower", "upper")), st.just((f("name"),))), ops,
              text((*NAMES, "ADA", "zoé", "ZOé", "ærø"))),
    attribute_tests(),
    aggregate_tests(),
    account_tests(),
)

rules: st.SearchStrategy[a.Predicate] = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=3).map(lambda items: a.And(tuple(items))),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: a.Or(tuple(items))),
        inner.map(a.Not),
    ),
    max_leaves=6,
)
