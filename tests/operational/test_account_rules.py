"""Segment rules that reach a customer's account and household, on every backend.

The meaning is fixed in `crmcore.segments.schema.GROUP_KINDS`: of several organisations the
rule reaches the one the customer is the primary contact of, else the smallest id; roll-ups
add up every member's records of that account; a customer with none has unknown fields.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import attrs
import pytest

from crmcore import CRM, Customer, Money, OrderLine, Purchase, RuleError
from crmcore.model import Account, AccountKind, AccountMember
from crmcore.segments import explain, parse, select, select_ids, to_text

from .conftest import MONDAY, Clock


def _world(crm: CRM) -> None:
    for n in range(1, 6):
        crm.customers.add(Customer(id=f"c{n}", name=f"Person {n}", created_at=MONDAY - timedelta(days=900)))
    accounts = crm.operational.accounts
    accounts.add(Account("b-acme", "Acme", tier="gold", attributes={"employees": 1200},
                         members=(AccountMember("c1", "buyer"), AccountMember("c2", "ceo", primary=True))))
    accounts.add(Account("a-zeta", "Zeta", tier="silver",
                         members=(AccountMember("c1", "billing"), AccountMember("c3", "buyer"))))
    accounts.add(Account("home", "The Smiths", kind=AccountKind.HOUSEHOLD,
                         members=(AccountMember("c4", "head"), AccountMember("c3", "partner"))))
    for n, (customer, amount, days) in enumerate((("c2", "900", 10), ("c3", "150", 20),
                                                   ("c4", "40", 30), ("c2", "5000", 500))):
        crm.purchases.record(Purchase(f"p{n}", customer, MONDAY - timedelta(days=days),
                                      (OrderLine("x", Money(Decimal(amount), "EUR")),)))


RULES = {
    # c1 is in Acme and Zeta, primary contact of neither: the smaller id, a-zeta
    'account.tier = "gold"': ["c2"],
    'account.tier = "silver"': ["c1", "c3"],
    'account.role = "billing"': ["c1"],
    'account.attributes.employees >= 1000': ["c2"],
    "account.id is null": ["c4", "c5"],
    'household.name = "The Smiths"': ["c3", "c4"],
    # Zeta's members (c1, c3) bought 150 in the last year; Acme's (c1, c2) 900 (5000 is older)
    "sum(account.purchases.total, last 365 days) > 500": ["c2"],
    "sum(account.purchases.total) > 5000": ["c2"],
    "count(household.purchases) = 2": ["c3", "c4"],
    "count(account.purchases) = 0": ["c4", "c5"],
    'account.tier = "silver" and count(household.purchases, last 90 days) > 0': ["c3"],
}


@pytest.mark.parametrize("rule", RULES)
def test_account_rules_mean_one_thing_in_python_and_sql(crm: CRM, rule: str) -> None:
    _world(crm)
    with crm.reading() as uow:
        assert select_ids(uow, rule, as_of=MONDAY) == RULES[rule]
        assert select_ids(uow, rule, as_of=MONDAY, engine="python") == RULES[rule]


def test_a_rule_as_of_an_instant_reads_the_accounts_as_they_were_then(
    crm: CRM, clock: Clock, backend: str
) -> None:
    """A day later Acme is bronze with ten people, c1 has left Zeta, Zeta hangs under Acme
    and a gold account was opened: every rule as of Monday still answers as on Monday, in
    SQL and in Python alike, and as of today it sees the changes."""
    _world(crm)
    accounts = crm.operational.accounts
    clock.advance(timedelta(days=1))
    accounts.update(attrs.evolve(accounts.get("b-acme"), tier="bronze", attributes={"employees": 10}))
    accounts.remove_member("a-zeta", "c1")
    accounts.move("a-zeta", "b-acme")
    accounts.add(Account("new", "New", tier="gold", members=(AccountMember("c5", "owner", primary=True),)))
    with crm.reading() as uow:
        for rule, expected in RULES.items():
            assert select_ids(uow, rule, as_of=MONDAY) == expected, rule
            assert select_ids(uow, rule, as_of=MONDAY, engine="python") == expected, rule
            assert [c.id for c in select(uow, rule, as_of=MONDAY)] == expected, rule
        today = {'account.tier = "gold"': ["c5"], 'account.tier = "bronze"': ["c1", "c2"],
                 "account.attributes.employees >= 1000": [],
                 # Acme's tree now holds Zeta: c1, c2 and c3 bought 900 + 150 this year
                 "sum(account.purchases.total, last 365 days) = 1050": ["c1", "c2"]}
        for rule, expected in today.items():
            assert select_ids(uow, rule, as_of=clock.now) == expected, rule
            assert select_ids(uow, rule, as_of=clock.now, engine="python") == expected, rule
        if backend != "memory":
            shown = explain(uow, 'account.tier = "gold"', as_of=MONDAY)
            assert shown.engine == "sql+python" and "accounts changed after as_of" in shown.reasons[-1]
            assert explain(uow, 'account.tier = "gold"', as_of=clock.now).engine == "sql"
            assert explain(uow, 'tier = "gold"', as_of=MONDAY).engine == "sql"  # no account in it


def test_a_parent_organisations_roll_ups_include_its_sub_accounts(crm: CRM) -> None:
    """Acme moves under a group, with a site of its own below it: the group's roll-up adds
    up the purchases of all three accounts' members (each member once), Acme's its own and
    its site's, as `accounts.rollup` (descendants included) does."""
    _world(crm)
    accounts = crm.operational.accounts
    accounts.add(Account("group", "Acme Group", members=(AccountMember("c5", "ceo", primary=True),)))
    accounts.move("b-acme", "group")
    accounts.add(Account("site", "Acme Lyon", parent_id="b-acme",
                         members=(AccountMember("c3", "buyer"), AccountMember("c2", "visitor"))))
    # the tree under the group: c5, c1, c2, c3 bought 900 + 5000 (c2) + 150 (c3) = 6050
    rules = {"sum(account.purchases.total) > 6000": ["c2", "c5"],
             "sum(account.purchases.total, last 365 days) = 1050": ["c2", "c5"],
             "count(account.purchases) = 3": ["c2", "c5"],
             "sum(account.purchases.total) = 150": ["c1", "c3"]}  # Zeta: no account below it
    with crm.reading() as uow:
        for rule, expected in rules.items():
            assert select_ids(uow, rule, as_of=MONDAY) == expected, rule
            assert select_ids(uow, rule, as_of=MONDAY, engine="python") == expected, rule
    assert accounts.rollup("group").spend == {"EUR": Decimal("6050")}


def test_the_primary_contact_decides_which_account_a_rule_reaches(crm: CRM) -> None:
    _world(crm)
    crm.operational.accounts.add_member("b-acme", "c1", "buyer", primary=True)
    with crm.reading() as uow:  # c1 now reaches Acme, not the smaller Zeta; c2 is in Acme alone
        assert select_ids(uow, 'account.tier = "gold"', as_of=MONDAY) == ["c1", "c2"]
        assert select_ids(uow, 'account.tier = "gold"', as_of=MONDAY, engine="python") == ["c1", "c2"]


def test_explain_shows_the_member_index_in_the_sql(crm: CRM, backend: str) -> None:
    _world(crm)
    with crm.reading() as uow:
        shown = explain(uow, "sum(account.purchases.total, last 365 days) > 500", as_of=MONDAY)
    if backend == "memory":
        assert shown.engine == "python"
    else:
        assert shown.engine == "sql"
        assert shown.sql is not None and "account_members" in shown.sql
        assert "organisation" in shown.params


def test_account_rules_print_and_parse_back() -> None:
    text = ('sum(account.purchases.total where channel = "portal", last 365 days) > 1000 '
            'and household.tier = "gold"')
    rule = parse(text)
    assert to_text(rule) == text
    assert parse(to_text(rule)) == rule


@pytest.mark.parametrize(("text", "says"), [
    ("account.purchases > 3", "count(account.purchases)"),
    ('account.colour = "red"', "account has no field 'colour'"),
    ("account.attributes.Bad-Name = 1", "expected"),
    ("sum(account.total) > 1", "expected what to sum"),
])
def test_account_mistakes_are_rule_errors(text: str, says: str) -> None:
    with pytest.raises(RuleError) as caught:
        parse(text)
    assert says in str(caught.value)
