"""Plugins load through the `crmcore` entry points, built-in adapters included."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import crmcore
from crmcore import hookspecs
from crmcore.errors import UnknownScheme, ValidationError
from crmcore.plugins import make_plugin_manager

THIRD_PARTY = '''
import crmcore
from crmcore_adapters.storage.memory import MemoryStorage

@crmcore.hookimpl
def crmcore_register_storage():
    return [crmcore.Adapter("hello", MemoryStorage)]

@crmcore.hookimpl
def crmcore_validate_customer(customer):
    if customer.name == "Mallory":
        raise crmcore.ValidationError("name", customer.name, "is on the company's block list")
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution `crmcore-hello` declaring an entry point in group `crmcore`."""
    (tmp_path / "crmcore_hello.py").write_text(THIRD_PARTY)
    info = tmp_path / "crmcore_hello-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: crmcore-hello\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[crmcore]\nhello = crmcore_hello\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("crmcore_hello", None)


def test_third_party_plugin_is_loaded_through_its_entry_point(third_party: Path) -> None:
    pm = make_plugin_manager()
    assert pm.get_plugin("hello") is not None
    assert {"memory", "sqlite", "hello"} <= {name for name, _ in pm.list_name_plugin()}
    pm.check_pending()
    crm = crmcore.open("hello://anything", plugins=pm)
    crm.customers.add(crmcore.Customer.new("Ada"))
    with pytest.raises(ValidationError, match="block list"):
        crm.customers.add(crmcore.Customer.new("Mallory"))
    assert [c.name for c in crm.customers.list()] == ["Ada"]


def test_builtin_adapters_come_from_entry_points() -> None:
    pm = make_plugin_manager()
    import crmcore_adapters.storage.memory as memory
    import crmcore_adapters.storage.sqlite as sqlite

    assert pm.is_registered(memory) and pm.is_registered(sqlite)
    pm.check_pending()
    assert make_plugin_manager(load_entry_points=False).get_plugins() == set()


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(UnknownScheme) as caught:
        crmcore.open("nosuch://db")
    assert caught.value.scheme == "nosuch"
    assert {"memory", "sqlite"} <= set(caught.value.known)
    assert "sqlite://" in str(caught.value)
    with pytest.raises(ValidationError) as bad:
        crmcore.open("crm.db")
    assert bad.value.field == "url"


def test_every_hook_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "plugins.md").read_text()
    hooks = [name for name in dir(hookspecs) if name.startswith("crmcore_")]
    assert hooks
    for name in hooks:
        assert f"`{name}`" in docs, f"{name} is missing from docs/plugins.md"
        assert getattr(hookspecs, name).__doc__, f"{name} has no docstring"


def test_core_never_imports_adapters() -> None:
    core = Path(crmcore.__file__).parent
    offenders = [
        str(path.relative_to(core)) for path in core.rglob("*.py")
        if "crmcore_adapters" in path.read_text() and path.parent.name != "testing"
    ]
    assert offenders == []


def test_importing_crmcore_does_no_work() -> None:
    code = textwrap.dedent("""
        import sys, crmcore
        loaded = [m for m in ("crmcore_adapters", "sqlite3", "psycopg", "numpy") if m in sys.modules]
        print(",".join(loaded))
    """)
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_what_one_crm_registers_stays_with_it() -> None:
    class Subscriber:
        @crmcore.hookimpl
        def crmcore_on_event(self, event: crmcore.Event) -> None:
            raise AssertionError("must not be called for another CRM")

    first = crmcore.open("memory://")
    first.plugins.register(Subscriber(), "local")
    second = crmcore.open("memory://")
    assert second.plugins.get_plugin("local") is None
    second.customers.add(crmcore.Customer.new("Ada"))
    with pytest.raises(ValidationError) as caught:
        crmcore.open("memory://", plugins="all of them")  # type: ignore[arg-type]
    assert caught.value.field == "plugins"
