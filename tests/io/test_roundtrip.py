"""Export then import gives the same base: a hypothesis law, and a whole synthetic base
(customers, purchases, interactions, cases) on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import crmcore
from crmcore.io import export_file, import_file
from crmcore.model import Account, AccountKind, AccountMember, Customer
from crmcore.synthetic import SyntheticBase
from crmcore.testing import strategies as s
from tests.analytics.conftest import open_backend

KINDS = ("customers", "purchases", "interactions", "cases")


def plain_text(value: str) -> str:
    """What a cell keeps: cells are trimmed, and `|` separates several values in one cell."""
    return value.replace("|", "/").strip() or "x"


def storable(c: Customer) -> Customer:
    """A generated customer as a file can hold it: trimmed text; an empty text attribute is no value."""
    first = [attrs.evolve(a, city=plain_text(a.city), lines=tuple(plain_text(line) for line in a.lines))
             for a in c.addresses[:1]]
    attributes = {k: (plain_text(x) if isinstance(x, str) else x) for k, x in c.attributes.items()}
    return attrs.evolve(c, name=plain_text(c.name), addresses=(*first, *c.addresses[1:]),
                        attributes=attributes)


def comparable(c: Customer) -> Customer:
    return attrs.evolve(c, version=0, updated_at=c.created_at)


def bases() -> st.SearchStrategy[list[Customer]]:
    def distinct(cs: list[Customer]) -> bool:
        """E-mails and external ids belong to one customer each."""
        emails = [e.lower() for c in cs for e in c.emails]
        externals = [item for c in cs for item in c.external_ids.items()]
        return len(set(emails)) == len(emails) and len(set(externals)) == len(externals)

    return st.lists(s.customers().map(storable), max_size=6, unique_by=lambda c: c.id).filter(distinct)


@settings(max_examples=40)
@given(customers=bases(), format=st.sampled_from(("csv", "jsonl")))
def test_export_then_import_gives_the_same_customers(customers: list[Customer], format: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        before = crmcore.open("memory://")
        for c in customers:
            before.customers.add(c)
        path = Path(folder) / f"customers.{format}"
        assert export_file(before, "customers", path) == len(customers)
        after = crmcore.open(f"sqlite:///{folder}/after.db")
        result = import_file(after, "customers", path)
        assert (result.inserted, result.refused) == (len(customers), 0), result.refusals
        assert sorted(map(comparable, after.customers.list()), key=lambda c: c.id) == \
            sorted(map(comparable, before.customers.list()), key=lambda c: c.id)
        after.close()


def records(crm: crmcore.CRM, kind: str) -> list[Any]:
    with crm.reading() as uow:
        found = getattr(uow, kind).list()
    return sorted((comparable(x) if isinstance(x, Customer) else attrs.evolve(x, version=0)
                   if hasattr(x, "version") else x for x in found), key=lambda x: x.id)


@pytest.mark.parametrize("format", ["csv", "jsonl"])
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_whole_base_round_trips(backend: str, format: str, tmp_path: Path) -> None:
    base = SyntheticBase(size=40, seed=3)
    with crmcore.open(f"sqlite:///{tmp_path / 'before.db'}", clock=lambda: base.as_of) as before:
        base.load(before)
        for kind in KINDS:
            export_file(before, kind, tmp_path / f"{kind}.{format}")
        expected = {kind: records(before, kind) for kind in KINDS}
    target = tmp_path / "after"
    target.mkdir()
    for after in open_backend(backend, target, clock=lambda: base.as_of):
        for kind in KINDS:
            result = import_file(after, kind, tmp_path / f"{kind}.{format}")
            assert result.refused == 0, result.refusals
        for kind in KINDS:
            assert records(after, kind) == expected[kind], kind


def test_a_segments_members_and_a_timeline(tmp_path: Path) -> None:
    base = SyntheticBase(size=60, seed=5)
    with crmcore.open("memory://", clock=lambda: base.as_of) as crm:
        base.load(crm)
        crm.segments.save("gold", "Gold", 'tier = "gold"')
        crm.segments.run("gold")
        out = io.StringIO()
        count = export_file(crm, "customers", out, format="jsonl", segment="gold")
        members = crm.segments.members("gold")
        assert count == len(members) > 0 and out.getvalue().count("\n") == count
        assert all(f'"id":"{m}"' in out.getvalue().replace(" ", "") for m in members)
        busiest = max((c.id for c in crm.customers.list()), key=lambda i: len(crm.interactions.timeline(i)))
        timeline = tmp_path / "timeline.csv"
        count = export_file(crm, "interactions", timeline, customer=busiest)
        rows = timeline.read_text().splitlines()
        assert count == len(crm.interactions.timeline(busiest, limit=None)) == len(rows) - 1
        assert all(busiest in row for row in rows[1:])
        with timeline.open(newline="") as f:
            dates = [row["occurred_at"] for row in csv.DictReader(f)]
        assert dates == sorted(dates)  # oldest first, as a timeline is read


# ---- accounts: organisations and households, their hierarchy and members ----

ROLES = st.sampled_from(("member", "buyer", "billing", "head"))


@st.composite
def account_trees(draw: st.DrawFn, customers: list[str]) -> list[Account]:
    """Accounts whose parents come from earlier in the list (a forest, never a loop),
    members drawn from the given customers, at most one primary contact each."""
    count = draw(st.integers(0, 5))
    accounts: list[Account] = []
    for index in range(count):
        chosen = draw(st.lists(st.sampled_from(customers), unique=True, max_size=3)) if customers else []
        primary = draw(st.integers(-1, len(chosen) - 1)) if chosen else -1
        members = tuple(AccountMember(c, draw(ROLES), i == primary) for i, c in enumerate(chosen))
        parent = draw(st.sampled_from([None, *(a.id for a in accounts)]))
        accounts.append(Account(
            f"acc-{index}-{draw(st.integers(0, 99))}", plain_text(draw(st.text(
                st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20))),
            kind=draw(st.sampled_from(list(AccountKind))), parent_id=parent, members=members,
            tier=draw(st.sampled_from((None, "gold", "key-account"))),
            service_point=draw(st.sampled_from((None, "paris"))),
        ))
    return accounts


@settings(max_examples=25, deadline=None)
@given(data=st.data(), format=st.sampled_from(("csv", "jsonl")))
def test_export_then_import_gives_the_same_accounts(data: st.DataObject, format: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        before = crmcore.open("memory://")
        people = [before.customers.add(Customer.new(f"C{i}", id=f"c{i}")).id for i in range(4)]
        for account in data.draw(account_trees(people)):
            before.operational.accounts.add(account)
        for kind in ("customers", "accounts"):
            export_file(before, kind, Path(folder) / f"{kind}.{format}")
        after = crmcore.open(f"sqlite:///{folder}/after.db")
        for kind in ("customers", "accounts"):
            result = import_file(after, kind, Path(folder) / f"{kind}.{format}")
            assert result.refused == 0, result.refusals
        assert records(after, "accounts") == records(before, "accounts")
        again = import_file(after, "accounts", Path(folder) / f"accounts.{format}")
        assert again.unchanged == again.read and again.inserted == again.updated == 0
        after.close()
