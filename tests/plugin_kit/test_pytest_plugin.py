"""The pytest plugin as a plugin author meets it: a test file of theirs, run by pytest."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from crmcore.testing import FrozenClock

pytest_plugins = ["pytester"]

AUTHOR_TESTS = '''
from datetime import timedelta

import crmcore


@crmcore.hookimpl
def crmcore_validate_customer(customer):
    if customer.name == "Mallory":
        raise crmcore.ValidationError("name", customer.name, "is blocked")


def test_crm_on_each_url(crm, crm_url, crm_clock, crm_events, crm_plugins):
    crm_plugins.register(__import__(__name__), "blocker")
    ada = crm.customers.add(crmcore.Customer.new("Ada", created_at=crm_clock(), updated_at=crm_clock()))
    assert crm_clock() == crm_clock.now
    crm_clock.advance(days=2)
    crm.customers.change(ada.id, tier="gold")
    assert crm.customers.get(ada.id).updated_at == crm_clock.now == ada.created_at + timedelta(days=2)
    assert crm_events.topics() == ["customer.added", "customer.updated"]
    assert [e.topic for e in crm_events.drain()] == ["customer.added", "customer.updated"]
    assert crm_events.drain() == []
    try:
        crm.customers.add(crmcore.Customer.new("Mallory"))
    except crmcore.ValidationError:
        pass
    assert crm.customers.count() == 1
    print("URL", crm.storage.url.split("?")[0])
'''


def test_the_crm_fixture_runs_once_per_storage_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*URL memory://*", "*URL sqlite://*"])


def test_urls_come_from_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", "--crm-url", "memory://",
                                "--crm-url", f"sqlite:///{pytester.path / 'crm.db'}", "--crm-url", "memory://")
    result.assert_outcomes(passed=3)


def test_urls_come_from_the_ini_file(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ncrm_urls =\n    memory://\n")
    pytester.makepyfile(test_author=AUTHOR_TESTS)
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_shipped_suites_run_from_an_authors_test_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite='''
from crmcore.segments.functions import BUILTINS
from crmcore.testing import RuleFunctionContract
import crmcore


class TestMine(RuleFunctionContract):
    functions = BUILTINS

    def open_storage(self):
        return crmcore.open("sqlite://").storage
''')
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_frozen_clock_moves_only_when_told() -> None:
    clock = FrozenClock()
    start = clock()
    assert clock() == start
    assert clock.advance(hours=1, minutes=30) - start == timedelta(hours=1.5)
    with pytest.raises(ValueError, match="aware"):
        clock.set(datetime(2026, 1, 1))
