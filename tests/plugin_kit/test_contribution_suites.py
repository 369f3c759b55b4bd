"""The shipped suites for contributions, against crmcore's own: the built-in rule functions
on SQLite and PostgreSQL, and the built-in scorers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmcore.ports import Storage
from crmcore.scoring.registry import BUILT_IN, Scorer
from crmcore.segments.functions import BUILTINS
from crmcore.testing.rules import RuleFunctionContract, ScorerContract
from crmcore_adapters.storage.postgres import PostgresStorage
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.postgres.conftest import Schemas
from tests.support import postgres_url


class TestBuiltinFunctionsOnSQLite(RuleFunctionContract):
    functions = BUILTINS

    def open_storage(self) -> Storage:
        return SQLiteStorage("sqlite://")


@pytest.mark.postgres
class TestBuiltinFunctionsOnPostgres(RuleFunctionContract):
    functions = BUILTINS
    schemas: Schemas

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def _schemas(cls) -> Iterator[None]:
        cls.schemas = Schemas(postgres_url())
        yield
        cls.schemas.drop_all()

    def open_storage(self) -> Storage:
        return PostgresStorage(self.schemas.url())


@pytest.mark.parametrize("name", [s.name for s in BUILT_IN])
def test_every_builtin_scorer_is_checked(name: str) -> None:
    assert name in {cls.name for cls in (TestRfm, TestLifetimeValue, TestRepurchase, TestNextOffer)}


def _scorer(name: str) -> Scorer:
    return next(s for s in BUILT_IN if s.name == name)


class TestRfm(ScorerContract):
    name = "rfm"

    def scorer(self) -> Scorer:
        return _scorer(self.name)


class TestLifetimeValue(ScorerContract):
    name = "clv"

    def scorer(self) -> Scorer:
        return _scorer(self.name)


class TestRepurchase(ScorerContract):
    name = "next_purchase"

    def scorer(self) -> Scorer:
        return _scorer(self.name)


class TestNextOffer(ScorerContract):
    name = "next_offer"

    def scorer(self) -> Scorer:
        return _scorer(self.name)
