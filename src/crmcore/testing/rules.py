"""Conformance suites for what plugins contribute to analytics: rule functions (their SQL
means their Python, on random arguments) and scorers (dated, deterministic snapshots
of known customers, written nowhere else).

    class TestMyFunctions(RuleFunctionContract):
        functions = (my_function,)
        def open_storage(self) -> Storage:
            return crmcore.open("sqlite://").storage

    class TestMyScorer(ScorerContract):
        def scorer(self) -> Scorer:
            return MyScorer()
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import crmcore
from crmcore import CRM
from crmcore.model import Score
from crmcore.ports import Storage
from crmcore.scoring.registry import Scorer
from crmcore.segments import RuleFunction, Type
from crmcore.sql import Dialect, dialect_of
from crmcore.sql.dialect import Parameters
from crmcore.synthetic import AS_OF, SyntheticBase

_TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=24)
VALUES: dict[Type, st.SearchStrategy[Any]] = {
    Type.TEXT: _TEXT,
    Type.INT: st.integers(-(2**53), 2**53),
    Type.MONEY: st.decimals(-(10**9), 10**9, places=4, allow_nan=False, allow_infinity=False),
    Type.REAL: st.floats(-1e12, 1e12, allow_nan=False),
    Type.INSTANT: st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=st.just(UTC)),
    Type.DATE: st.dates(date(1900, 1, 1), date(2200, 1, 1)),
    Type.BOOL: st.booleans(),
}
"""Random arguments of each declared type (or None: unknown), as the Python body receives them."""


def _stored(dialect: Dialect, kind: Type, value: Any) -> Any:
    """A Python value as the dialect stores it (what a column would hold)."""
    if value is None:
        return None
    encoders: dict[Type, Callable[[Any], Any]] = {
        Type.MONEY: dialect.money, Type.INSTANT: dialect.instant, Type.DATE: dialect.day,
        Type.BOOL: dialect.boolean,
    }
    encode = encoders.get(kind)
    return value if encode is None else encode(value)


def _read(dialect: Dialect, kind: Type, value: Any) -> Any:
    """A SQL result back as the Python body would return it."""
    if value is None:
        return None
    if kind is Type.INSTANT:
        return dialect.from_instant(value)
    if kind is Type.DATE:
        return value if isinstance(value, date) else date.fromisoformat(value)
    if kind is Type.BOOL:
        return bool(value)
    if kind is Type.MONEY:
        return Decimal(str(dialect.from_money(value)))
    if kind is Type.REAL:
        return float(value)
    return value


def _same(kind: Type, python: Any, sql: Any) -> bool:
    if python is None or sql is None:
        return python is None and sql is None
    if kind is Type.REAL:
        return math.isclose(float(python), sql, rel_tol=1e-12, abs_tol=1e-12)
    if kind is Type.MONEY:
        return float(python) == float(sql)
    return bool(python == sql)


def check_rule_function(function: RuleFunction, storage: Storage, *, examples: int = 60) -> None:
    """Assert that `function`'s SQL for the storage's dialect gives what its Python gives, on
    random arguments (None included). Fails if the storage speaks no SQL or the function
    has no translation for it."""
    with storage.transaction() as uow:
        dialect = dialect_of(uow)
    assert dialect is not None, f"{storage!r} speaks no SQL: nothing to compare"
    translation = dialect.translation(function.sql)
    assert translation is not None, f"rule function {function.name}() has no {dialect.name} SQL"

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.tuples(*(st.none() | VALUES[kind] for kind in function.params)))
    def agrees(arguments: tuple[Any, ...]) -> None:
        expected = function.python(*arguments)
        binder = Parameters(dialect)
        parts = [dialect.cast(binder.bind(_stored(dialect, kind, value)), kind)
                 for kind, value in zip(function.params, arguments, strict=True)]
        sql, params = binder.finish(f"SELECT ({translation(*parts)})")
        with storage.transaction() as uow:
            [(value,)] = uow.select(sql, params)  # type: ignore[attr-defined]
        got = _read(dialect, function.returns, value)
        assert _same(function.returns, expected, got), (
            f"{function.name}{arguments!r}: Python gives {expected!r}, {dialect.name} SQL gives {got!r}"
        )

    agrees()


class RuleFunctionContract:
    """Every function in `functions` means the same in SQL (on the storage under test) as in
    Python."""

    functions: ClassVar[Sequence[RuleFunction]] = ()

    def open_storage(self) -> Storage:
        raise NotImplementedError("return a fresh storage that speaks SQL")

    @pytest.fixture(scope="class")
    @classmethod
    def storage(cls) -> Iterator[Storage]:
        opened = cls().open_storage()
        yield opened
        opened.close()

    def test_sql_means_the_python_body(self, storage: Storage) -> None:
        assert self.functions, "name the functions to check in `functions`"
        for function in self.functions:
            check_rule_function(function, storage)


class ScorerContract:
    """A scorer gives dated snapshots of known customers, the same twice, and writes nothing
    itself (storing them is `Analytical.score`'s job), then reads back through segment rules."""

    customers = 120
    storage_url = "memory://"

    def scorer(self) -> Scorer:
        raise NotImplementedError("return the scorer under test")

    def prepare(self, crm: CRM) -> None:
        """Set the loaded CRM up as the scorer needs (the base mixes currencies: a scorer of
        money may need `crm.analytical.reporting(currency, rates)`)."""

    @pytest.fixture(scope="class")
    @classmethod
    def crm(cls) -> Iterator[CRM]:
        opened = crmcore.open(cls.storage_url, clock=lambda: AS_OF)
        SyntheticBase(size=cls.customers, seed=11).load(opened)
        cls().prepare(opened)
        yield opened
        opened.close()

    def test_is_a_scorer(self) -> None:
        scorer = self.scorer()
        assert isinstance(scorer, Scorer)
        assert isinstance(scorer.name, str) and scorer.name

    def test_snapshots_are_dated_finite_and_of_known_customers(self, crm: CRM) -> None:
        scores = list(self.scorer().score(crm, AS_OF))
        assert scores, "the scorer rated nobody on a base of buyers"
        known = {c.id for c in crm.customers.iterate()}
        for score in scores:
            assert isinstance(score, Score)
            assert score.as_of == AS_OF
            assert score.customer_id in known
            assert math.isfinite(score.value)
        own = [s for s in scores if s.scorer == self.scorer().name]
        assert own, "no snapshot carries the scorer's own name"
        assert len({s.customer_id for s in own}) == len(own), "two snapshots of one customer"

    def test_same_answers_twice_and_no_writes(self, crm: CRM) -> None:
        first = sorted(map(repr, self.scorer().score(crm, AS_OF)))
        second = sorted(map(repr, self.scorer().score(crm, AS_OF)))
        assert first == second
        with crm.reading() as uow:
            assert uow.scores.of(self.scorer().name, AS_OF) == [], "the scorer stored snapshots itself"

    def test_stored_scores_are_read_by_segment_rules(self, crm: CRM) -> None:
        name = self.scorer().name
        own = [s for s in self.scorer().score(crm, AS_OF) if s.scorer == name]
        with crm.transaction() as uow:
            uow.scores.put(own)
        middle = sorted(s.value for s in own)[len(own) // 2]
        threshold = f"{math.floor(middle * 1000) / 1000:.3f}"
        expected = sorted(s.customer_id for s in own if Decimal(threshold) <= s.value)
        assert crm.customers.ids_matching(f"score.{name} >= {threshold}", as_of=AS_OF) == expected
