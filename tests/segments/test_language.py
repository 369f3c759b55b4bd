"""The rule language: text and JSON forms are fixed points, and faults are located and explained."""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmcore import limits
from crmcore.errors import RuleError, ValidationError
from crmcore.segments import ast as a
from crmcore.segments import from_data, parse, parse_json, to_data, to_text
from crmcore.segments.parse import syntax
from tests.segments.strategies import rules

# ---- a syntactic strategy: any AST the grammar can write, typed or not ----

identifiers = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in a.KEYWORDS and s not in a.AGGREGATES
)
texts = st.text(alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)))
segments = st.one_of(identifiers, st.sampled_from(sorted(a.KEYWORDS)), texts.filter(lambda s: len(s) <= 6))
fields = st.builds(lambda head, rest: a.Field((head, *rest)), identifiers, st.lists(segments, max_size=2))
numbers = st.decimals(min_value=-10**14, max_value=10**14, places=6, allow_nan=False).map(a.Number)
instants = st.datetimes(
    min_value=limits.FIRST_INSTANT.replace(tzinfo=None), max_value=limits.LAST_INSTANT.replace(tzinfo=None),
    timezones=st.just(UTC),
).map(a.Instant)
constants = st.one_of(
    texts.map(a.Text), numbers, st.booleans().map(a.Bool),
    st.dates(limits.FIRST_DAY, limits.LAST_DAY).map(a.Day), instants,
    st.just(a.Now()), st.just(a.Today()), st.builds(a.Ago, st.integers(0, 100_000), st.sampled_from(a.UNITS)),
)
windows = st.none() | st.builds(a.Last, st.integers(0, 100_000), st.sampled_from(a.UNITS)) | st.builds(
    a.Since, constants
)


def terms(predicates: st.SearchStrategy[a.Predicate]) -> st.SearchStrategy[a.Term]:
    simple = st.one_of(fields, constants)
    return st.one_of(
        simple,
        st.builds(a.Call, identifiers, st.lists(simple, max_size=3).map(tuple)),
        st.builds(a.Aggregate, st.sampled_from(a.AGGREGATES), st.sampled_from(a.SOURCES),
                  st.none() | identifiers, st.none() | predicates, windows),
    )


def leaves(inner: st.SearchStrategy[a.Predicate]) -> st.SearchStrategy[a.Predicate]:
    term = terms(inner)
    return st.one_of(
        st.builds(a.Compare, term, st.sampled_from(a.COMPARISONS), term),
        st.builds(a.In, term, st.lists(term, min_size=1, max_size=3).map(tuple)),
        st.builds(a.Contains, term, term),
        st.builds(a.Between, term, term, term),
        st.builds(a.IsNull, term), st.builds(a.IsEmpty, term), st.builds(a.Truth, term),
        st.builds(a.Birthday, st.integers(0, 100_000)),
    )


base_leaves = leaves(st.builds(a.Birthday, st.integers(0, 9)))
any_rules: st.SearchStrategy[a.Predicate] = st.recursive(
    base_leaves,
    lambda inner: st.one_of(
        leaves(inner),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: a.And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=3).map(lambda xs: a.Or(tuple(xs))),
        inner.map(a.Not),
    ),
    max_leaves=8,
)


@settings(max_examples=300)
@given(rule=any_rules)
def test_text_is_a_fixed_point(rule: a.Predicate) -> None:
    text = to_text(rule)
    again = syntax(text)
    assert again == rule
    assert to_text(again) == text


@settings(max_examples=300)
@given(rule=any_rules)
def test_json_is_a_fixed_point(rule: a.Predicate) -> None:
    data = to_data(rule)
    sent = json.loads(json.dumps(data))
    assert from_data(sent) == rule
    assert to_data(from_data(sent)) == data


@settings(max_examples=150)
@given(rule=rules)
def test_checked_rules_round_trip_through_both_forms(rule: a.Predicate) -> None:
    assert parse(to_text(rule)) == rule
    assert parse_json(json.loads(json.dumps(to_data(rule)))) == rule


@settings(max_examples=300)
@given(text=st.text(max_size=80))
def test_any_text_either_parses_or_raises_rule_error(text: str) -> None:
    try:
        rule = parse(text)
    except RuleError as exc:
        assert isinstance(exc, ValidationError)
        assert exc.field == "rule"
    else:
        assert parse(to_text(rule)) == rule


def test_canonical_text() -> None:
    assert error("TIER = 1").suggestions == ("tier",)
    rule = parse('tier == "gold" AND NOT (country <> "FR" or tags contains "vip") and x_1 is not null'
                 .replace("x_1", "language"))
    assert to_text(rule) == (
        'tier = "gold" and not (country != "FR" or tags contains "vip") and not language is null'
    )
    assert to_text(parse("sum(purchases.total where channel = \"portal\", last 1 years) >= 1000.50")) == (
        'sum(purchases.total where channel = "portal", last 1 year) >= 1000.50'
    )
    assert to_text(parse("created_at < 2024-05-01T10:00:00+02:00")) == "created_at < 2024-05-01T08:00:00Z"


def test_the_design_example_reads() -> None:
    rule = parse('tier in ("gold", "platinum") and sum(purchases.total, last 365 days) > 1000')
    assert isinstance(rule, a.And)
    assert rule.items[1] == a.Compare(
        a.Aggregate("sum", "purchases", "total", None, a.Last(365, "days")), ">", a.Number(Decimal(1000))
    )


def test_json_form_is_readable() -> None:
    assert to_data(parse('tier = "gold"')) == {
        "node": "Compare", "left": {"node": "Field", "path": ["tier"]}, "op": "=",
        "right": {"node": "Text", "value": "gold"},
    }


# ---- errors ----

def error(text: str) -> RuleError:
    with pytest.raises(RuleError) as caught:
        parse(text)
    return caught.value


def test_unknown_field_has_position_caret_and_suggestion() -> None:
    fault = error('tier = "gold" and\n  contry = "FR"')
    assert (fault.line, fault.column) == (2, 3)
    assert "country" in fault.suggestions
    assert str(fault).endswith('  contry = "FR"\n    ^')


def test_unknown_function_and_aggregate_field_suggest_names() -> None:
    assert "length" in error("lenght(name) > 3").suggestions
    assert "total" in error("sum(purchases.totl) > 3").suggestions
    assert error("sum(purchases.totl) > 3").column == 1


def test_enumerated_values_are_checked() -> None:
    fault = error('lifecycle = "custmer"')
    assert fault.column == 13 and "customer" in fault.suggestions
    assert "phone" in error("consent.news.phoen").suggestions
    assert error('count(interactions where channel = "fax") > 1').suggestions


@pytest.mark.parametrize(
    ("text", "column", "words"),
    [
        ("tier = 3", 8, "cannot compare"),
        ('tier = "a" and', 15, "expected a field"),
        ('tier = "a" )', 12, "end of the rule"),
        ("tags > 3", 1, "cannot compare"),
        ("name is empty", 1, "is empty"),
        ("attributes.size > tier", 19, "constants only"),
        ("count(purchases.total) > 1", 1, "source alone"),
        ("avg(cases) > 1", 1, "needs a field"),
        ("birthday within 3 months", 1, "counts days"),
        ("consent = true", 1, "consent.PURPOSE.CHANNEL"),
        ('attributes["Bad Key"] = 1', 1, "not an attribute name"),
        ("tier = 'gold'", 8, "unexpected character"),
        ("", 1, "empty"),
        ("created_at > 2024-02-30", 14, "not a date"),
        ("length(name, name) = 1", 1, "takes 1"),
        ("1.1234567 = 1", 1, "decimal places"),
        ("tier < true", 8, "cannot compare"),
        ("consent.news.email < true", 20, "needs values with an order"),
    ],
)
def test_faults_are_located(text: str, column: int, words: str) -> None:
    fault = error(text)
    assert fault.column == column, str(fault)
    assert words in str(fault)


def test_json_errors_point_into_the_canonical_text() -> None:
    data = {"node": "Compare", "left": {"node": "Field", "path": ["teir"]}, "op": "=",
            "right": {"node": "Text", "value": "gold"}}
    with pytest.raises(RuleError) as caught:
        parse_json(data)
    assert caught.value.column == 1 and "tier" in caught.value.suggestions
    bad: object
    for bad in ({"node": "Nope"}, {"node": "Compare"}, [], "tier", {"node": "IsNull", "term": {"node": "Now"},
                                                                   "extra": 1}):
        with pytest.raises(RuleError):
            parse_json(bad)


def test_nesting_is_bounded() -> None:
    assert "nests deeper" in str(error("not " * 100 + 'tier = "a"'))
    assert "nests deeper" in str(error("(" * 100 + 'tier = "a"' + ")" * 100))
    assert "longer than" in str(error('tier = "' + "a" * 20_000 + '"'))


def test_the_documented_examples_parse() -> None:
    """Every rule shown in docs/segments.md reads (kept in step with the reference)."""
    import re
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "segments.md").read_text()
    block = re.search(r"```\n(count\(.*?)```", doc, re.DOTALL)  # the aggregate examples
    assert block is not None
    examples = [line for line in block.group(1).splitlines() if line.strip()]
    examples += [
        'tier = "gold"', "created_at < 2024-01-01", 'country in ("FR", "BE")',
        'tier not in ("bronze")',
        'name contains "SA"', 'tags contains "vip"', "length(name) between 2 and 40", "tier is null",
        "birth_date is not null", "tags is empty", "birthday within 7 days", "consent.newsletter.email",
        "attributes.vip", 'attributes["shoe-size"] > 40', "score.churn > 0.5",
        'score.rfm.label = "champions"',
        "count(purchases, last 90 days) = 0", "last(purchases) > 3 months ago",
    ]
    assert len(examples) > 20
    for example in examples:
        assert parse(to_text(parse(example))) == parse(example), example


def test_every_engine_entry_takes_text_json_or_ast() -> None:
    import crmcore

    crm = crmcore.open("memory://")
    crm.customers.add(crmcore.Customer.new("Ada", tier="gold"))
    text = 'tier = "gold"'
    data = to_data(parse(text))
    for rule in (text, data, parse(text), json.dumps(data)):
        found = crm.customers.matching(parse_json(rule) if isinstance(rule, str) and rule.startswith("{")
                                       else rule)
        assert [c.name for c in found] == ["Ada"]
    with pytest.raises(RuleError):
        crm.customers.matching(42)
