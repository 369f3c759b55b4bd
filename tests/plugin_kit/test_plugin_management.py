"""Plugin management as a user meets it: the exact messages for a broken plugin, a
misspelled hook and a disabled plugin; autoload off; settings per plugin."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import crmcore
from crmcore.errors import PluginError, UnknownScheme
from crmcore.plugins import PluginManager, adapters, make_plugin_manager, register

Install = Callable[[str, str], None]

HELLO = '''
import crmcore
from crmcore_adapters.storage.memory import MemoryStorage

@crmcore.hookimpl
def crmcore_register_storage():
    return [crmcore.Adapter("hello", MemoryStorage)]
'''


@pytest.fixture
def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Install]:
    """Installs a distribution `crmcore-NAME 0.1` whose entry point NAME (group `crmcore`)
    is a module with the given source."""
    for variable in ("CRMCORE_DISABLE_PLUGIN_AUTOLOAD", "CRMCORE_PLUGINS", "CRMCORE_DISABLE_PLUGINS",
                     "CRMCORE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    modules: list[str] = []

    def make(name: str, source: str) -> None:
        module = f"crmcore_{name}_plugin"
        (tmp_path / f"{module}.py").write_text(source)
        info = tmp_path / f"crmcore_{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: crmcore-{name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[crmcore]\n{name} = {module}\n")
        modules.append(module)

    yield make
    for module in modules:
        sys.modules.pop(module, None)


def test_a_plugin_that_fails_to_load_is_named_with_its_distribution(install: Install) -> None:
    install("broken", "import crmcore_no_such_dependency\n")
    with pytest.raises(PluginError) as caught:
        crmcore.open("memory://")
    assert str(caught.value) == (
        "crmcore plugin 'broken' (distribution crmcore-broken 0.1) failed to load: "
        "ModuleNotFoundError: No module named 'crmcore_no_such_dependency'"
    )


def test_a_misspelled_hook_is_refused_on_open(install: Install) -> None:
    install("typo", "import crmcore\n\n@crmcore.hookimpl\ndef crmcore_on_evnt(event, crm):\n    pass\n")
    with pytest.raises(PluginError) as caught:
        crmcore.open("memory://")
    assert str(caught.value) == (
        "crmcore plugin 'typo' (distribution crmcore-typo 0.1) implements 'crmcore_on_evnt', "
        "which is not a crmcore hook; did you mean 'crmcore_on_event'?"
    )


def test_a_misspelled_hook_registered_by_hand_is_refused_too() -> None:
    class Audit:
        @crmcore.hookimpl
        def crmcore_validate_custmer(self, customer: crmcore.Customer) -> None:
            pass

    pm = make_plugin_manager(load_entry_points=False)
    register(pm, Audit(), "audit")
    with pytest.raises(PluginError) as caught:
        crmcore.open("memory://", plugins=pm)
    assert str(caught.value) == (
        "crmcore plugin 'audit' (registered by hand) implements 'crmcore_validate_custmer', "
        "which is not a crmcore hook; did you mean 'crmcore_validate_customer'?"
    )


def test_a_hook_with_a_wrong_argument_is_refused_by_name(install: Install) -> None:
    install("args", "import crmcore\n\n@crmcore.hookimpl\ndef crmcore_on_event(evnt):\n    pass\n")
    with pytest.raises(PluginError) as caught:
        make_plugin_manager()
    message = str(caught.value)
    assert message.startswith("crmcore plugin 'args' (distribution crmcore-args 0.1) was refused: ")
    assert "evnt" in message


def test_a_disabled_plugin_is_not_loaded_and_the_message_says_so(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("hello", HELLO)
    assert crmcore.open("hello://x").storage is not None
    monkeypatch.setenv("CRMCORE_DISABLE_PLUGINS", "hello")
    pm = make_plugin_manager()
    assert pm.get_plugin("hello") is None and "hello" in pm.disabled
    known = ", ".join(f"{scheme}://" for scheme in sorted(adapters(pm, "crmcore_register_storage")))
    with pytest.raises(UnknownScheme) as caught:
        crmcore.open("hello://x", plugins=pm)
    assert str(caught.value) == (
        f"no storage adapter for scheme 'hello'; known schemes: {known}; disabled plugins: hello"
    )
    assert make_plugin_manager(disable=["hello"]).get_plugin("hello") is None


def test_autoload_off_keeps_the_builtins_and_loads_only_what_is_enabled(
    install: Install, monkeypatch: pytest.MonkeyPatch
) -> None:
    install("hello", HELLO)
    monkeypatch.setenv("CRMCORE_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = make_plugin_manager()
    schemes = adapters(pm, "crmcore_register_storage")
    assert {"memory", "sqlite", "postgresql"} <= set(schemes) and "hello" not in schemes
    with crmcore.open("sqlite://", plugins=pm) as crm:
        assert crm.customers.count() == 0
    assert "hello" in adapters(make_plugin_manager(enable=["hello"]), "crmcore_register_storage")
    monkeypatch.setenv("CRMCORE_PLUGINS", "hello")
    assert make_plugin_manager().origin("hello") == "distribution crmcore-hello 0.1"


def test_settings_from_file_environment_and_url(
    install: Install, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    install("hello", HELLO)
    config = tmp_path / "crmcore.toml"
    config.write_text('[plugins.hello]\ngreeting = "bonjour"\nlevel = 1\ncolour = "blue"\n')
    monkeypatch.setenv("CRMCORE_CONFIG", str(config))
    monkeypatch.setenv("CRMCORE_PLUGIN_HELLO_LEVEL", "2")
    crm = crmcore.open("hello://base?hello.colour=red&other=kept")
    assert isinstance(crm.plugins, PluginManager)
    assert dict(crm.plugins.settings("hello")) == {"greeting": "bonjour", "level": "2", "colour": "red"}
    assert crm.storage.url == "hello://base?other=kept"
    assert dict(crm.plugins.settings("nobody")) == {}


def test_unreadable_settings_file_names_the_variable(
    install: Install, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[plugins.hello\n")
    monkeypatch.setenv("CRMCORE_CONFIG", str(bad))
    with pytest.raises(PluginError, match=f"CRMCORE_CONFIG={bad}"):
        make_plugin_manager()
