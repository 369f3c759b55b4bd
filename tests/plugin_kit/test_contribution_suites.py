"""The shipped suites for contributions, against crmcore's own: the built-in rule functions
on SQLite and PostgreSQL, and the built-in scorers."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

import crmcore
from crmcore import CRM
from crmcore.exchange import Rate, RateTable
from crmcore.ports import Storage
from crmcore.scoring.registry import BUILT_IN, Scorer
from crmcore.scoring.summary import MixedCurrencies
from crmcore.segments.functions import BUILTINS
from crmcore.synthetic import AS_OF, SyntheticBase
from crmcore.testing.rules import RuleFunctionContract, ScorerContract
from crmcore_adapters.storage.sqlite import SQLiteStorage
from tests.postgres.conftest import OnPostgres


class TestBuiltinFunctionsOnSQLite(RuleFunctionContract):
    functions = BUILTINS

    def open_storage(self) -> Storage:
        return SQLiteStorage("sqlite://")


@pytest.mark.postgres
class TestBuiltinFunctionsOnPostgres(OnPostgres, RuleFunctionContract):
    functions = BUILTINS


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
    """Lifetime values never add currencies: on the mixed base, in EUR at each day's rate."""

    name = "clv"

    def scorer(self) -> Scorer:
        return _scorer(self.name)

    def prepare(self, crm: CRM) -> None:
        on = date(1970, 1, 1)
        crm.analytical.reporting("EUR", RateTable([Rate("EUR", "USD", on, Decimal("1.1")),
                                                   Rate("EUR", "GBP", on, Decimal("0.85"))]))


def test_lifetime_values_of_a_mixed_base_need_a_currency() -> None:
    with crmcore.open("memory://", clock=lambda: AS_OF) as crm:
        SyntheticBase(size=60, seed=11).load(crm)
        assert len(crm.analytical.currencies()) > 1
        with pytest.raises(MixedCurrencies):
            list(_scorer("clv").score(crm, AS_OF))


class TestRepurchase(ScorerContract):
    name = "next_purchase"

    def scorer(self) -> Scorer:
        return _scorer(self.name)


class TestNextOffer(ScorerContract):
    name = "next_offer"

    def scorer(self) -> Scorer:
        return _scorer(self.name)
