"""crmcore's pytest plugin (entry point `pytest11`, with the `testing` extra): fixtures a
plugin author's tests need, nothing they must subclass.

- `crm`: a fresh CRM on each storage URL (`--crm-url URL`, repeatable, or the ini
  option `crm_urls`; default `memory://` and `sqlite://`), the test running once per URL.
  A `postgresql://` URL gets a schema of its own, dropped afterwards.
- `crm_clock`: the CRM's frozen clock (`crm_clock.advance(days=1)`, `crm_clock.set(...)`).
- `crm_events`: every event the CRM's subscribers were given; `crm_events.drain()`
  delivers what waits in the outbox and returns what arrived.
- `crm_plugins`: the CRM's plugin manager, to register the plugin under test by hand.

The conformance suites and the hypothesis strategies are in `crmcore.testing`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

import crmcore
from crmcore.events import Event
from crmcore.hookspecs import hookimpl
from crmcore.plugins import PluginManager, make_plugin_manager

DEFAULT_URLS = ("memory://", "sqlite://")
START = datetime(2026, 1, 1, tzinfo=UTC)


class FrozenClock:
    """A clock that moves only when told to; call it for the current instant."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **parts: float) -> datetime:
        """Move forward by a timedelta or by `days=`, `hours=`, ... ; returns the new instant."""
        self.now += (delta or timedelta()) + timedelta(**parts)
        return self.now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("the clock holds aware instants only")
        self.now = moment.astimezone(UTC)


class EventLog:
    """A `crmcore_on_event` subscriber that keeps what it is given, in order."""

    def __init__(self) -> None:
        self.seen: list[Event] = []
        self.crm: crmcore.CRM | None = None
        self._drained = 0

    @hookimpl
    def crmcore_on_event(self, event: Event) -> None:
        self.seen.append(event)

    def topics(self) -> list[str]:
        return [event.topic for event in self.seen]

    def of(self, topic: str) -> list[Event]:
        return [event for event in self.seen if event.topic == topic]

    def drain(self) -> list[Event]:
        """Deliver every pending outbox event, then return the events seen since the last drain."""
        if self.crm is not None:
            while self.crm.dispatch_events():
                pass
        fresh = self.seen[self._drained:]
        self._drained = len(self.seen)
        return fresh


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crmcore")
    group.addoption("--crm-url", action="append", dest="crm_urls", metavar="URL",
                    help="storage URL the `crm` fixture opens (repeat for several)")
    parser.addini("crm_urls", "storage URLs the `crm` fixture opens", type="linelist", default=[])


def _urls(config: pytest.Config) -> list[str]:
    return list(config.getoption("crm_urls") or config.getini("crm_urls") or DEFAULT_URLS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "crm_url" in metafunc.fixturenames:
        urls = _urls(metafunc.config)
        metafunc.parametrize("crm_url", urls, ids=[urlsplit(u).scheme for u in urls], scope="function")


def _own_schema(url: str) -> tuple[str, str | None]:
    """A PostgreSQL URL with a fresh schema (and its name); other URLs as they are."""
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        return url, None
    schema = f"crm_test_{uuid.uuid4().hex[:16]}"
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"] + [("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query))), schema


def _drop_schema(url: str, schema: str) -> None:
    import psycopg

    parts = urlsplit(url)
    server = urlunsplit(parts._replace(query=urlencode(
        [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"])))
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def crm_clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def crm_plugins() -> PluginManager:
    return make_plugin_manager()


@pytest.fixture
def crm_events(crm_plugins: PluginManager) -> EventLog:
    log = EventLog()
    crm_plugins.register(log, name="crmcore-pytest-events")
    return log


@pytest.fixture
def crm(crm_url: str, crm_clock: FrozenClock, crm_plugins: PluginManager,
        crm_events: EventLog) -> Iterator[crmcore.CRM]:
    url, schema = _own_schema(crm_url)
    opened = crmcore.open(url, plugins=crm_plugins, clock=crm_clock)
    crm_events.crm = opened
    try:
        yield opened
    finally:
        opened.close()
        if schema is not None:
            _drop_schema(crm_url, schema)
