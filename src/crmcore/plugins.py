"""The plugin manager: entry-point loading, adapters picked by URL scheme, and the
management around them (who failed to load, misspelled hooks, enabling, disabling,
per-plugin settings).

Plugins are the entry points of group `crmcore`. crmcore's own adapters are entry
points of the `crmcore` distribution: they load even when autoload is off, so
`sqlite://` always opens. Environment:

- `CRMCORE_DISABLE_PLUGIN_AUTOLOAD=1`: load the built-ins only, plus the plugins named
  in `CRMCORE_PLUGINS` (comma-separated entry-point names);
- `CRMCORE_DISABLE_PLUGINS=a,b`: never load these (built-ins included);
- `CRMCORE_CONFIG=path.toml`: settings in tables `[plugins.NAME]`;
- `CRMCORE_PLUGIN_<NAME>_<KEY>=value`: one setting (NAME upper-cased, `-` as `_`);
- a URL option `NAME.key=value` on `crmcore.open(url)`: one setting, removed from the URL.
"""

from __future__ import annotations

import difflib
import functools
import os
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import metadata
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pluggy

from crmcore import hookspecs
from crmcore.errors import CRMError, PluginError, UnknownScheme, ValidationError
from crmcore.urls import redact

ENTRY_POINT_GROUP = "crmcore"
BUILTIN_DISTRIBUTION = "crmcore"
AUTOLOAD_OFF = "CRMCORE_DISABLE_PLUGIN_AUTOLOAD"
ENABLED = "CRMCORE_PLUGINS"
DISABLED = "CRMCORE_DISABLE_PLUGINS"
CONFIG = "CRMCORE_CONFIG"
SETTING_PREFIX = "CRMCORE_PLUGIN_"


class PluginManager(pluggy.PluginManager):
    """pluggy's manager, knowing where each plugin came from, which were disabled, and
    every plugin's settings."""

    def __init__(self) -> None:
        super().__init__("crmcore")
        self.add_hookspecs(hookspecs)
        self.origins: dict[str, str] = {}
        """Plugin name -> "distribution NAME VERSION" (or "registered by hand")."""
        self.disabled: set[str] = set()
        self._settings: dict[str, dict[str, str]] = {}

    def origin(self, name: str) -> str:
        return self.origins.get(name, "registered by hand")

    def settings(self, name: str) -> Mapping[str, str]:
        """The settings of one plugin (config file, then environment, then URL options)."""
        return MappingProxyType(self._settings.get(name, {}))

    def configure(self, name: str, values: Mapping[str, str]) -> None:
        """Add settings for a plugin; later values win."""
        self._settings.setdefault(name, {}).update({str(k): str(v) for k, v in values.items()})


def _names(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _entry_points() -> Iterator[tuple[metadata.EntryPoint, str, bool]]:
    """(entry point, "distribution NAME VERSION", is built in) for every `crmcore` entry point."""
    seen: set[str] = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP or ep.name in seen:
                continue
            seen.add(ep.name)
            yield ep, f"distribution {name} {dist.version}", name.lower() == BUILTIN_DISTRIBUTION


def make_plugin_manager(
    *,
    load_entry_points: bool = True,
    autoload: bool | None = None,
    enable: Iterable[str] = (),
    disable: Iterable[str] = (),
) -> PluginManager:
    """A fresh plugin manager with every hookspec and (by default) the installed plugins.

    `autoload=False` (or `CRMCORE_DISABLE_PLUGIN_AUTOLOAD`) loads the built-in adapters
    and only the third-party plugins named in `enable` (or `CRMCORE_PLUGINS`); plugins
    named in `disable` (or `CRMCORE_DISABLE_PLUGINS`) are never loaded. A plugin that
    fails to load, or implements a hook that does not exist, raises `PluginError`
    naming it and its distribution. `load_entry_points=False` gives an empty manager.
    """
    pm = PluginManager()
    if not load_entry_points:
        return pm
    auto = not _truthy(os.environ.get(AUTOLOAD_OFF)) if autoload is None else autoload
    wanted = set(enable) | _names(os.environ.get(ENABLED))
    pm.disabled = set(disable) | _names(os.environ.get(DISABLED))
    for ep, origin, builtin in _entry_points():
        if ep.name in pm.disabled:
            pm.set_blocked(ep.name)
            continue
        if not (auto or builtin or ep.name in wanted):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            raise PluginError(
                f"crmcore plugin {ep.name!r} ({origin}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
        register(pm, plugin, ep.name, origin)
    _load_settings(pm)
    check_pending(pm)
    return pm


def register(pm: PluginManager, plugin: object, name: str, origin: str = "registered by hand") -> None:
    """Register a plugin, turning pluggy's complaint about a wrong signature into a PluginError."""
    try:
        pm.register(plugin, name)
    except (pluggy.PluginValidationError, ValueError) as exc:  # a wrong signature, a name taken twice
        raise PluginError(f"crmcore plugin {name!r} ({origin}) was refused: {exc}") from exc
    pm.origins[name] = origin


def check_pending(pm: pluggy.PluginManager) -> None:
    """Every hook a plugin implements exists: a misspelled hook name is an error, not a
    function that is silently never called."""
    known = [name for name in dir(hookspecs) if name.startswith("crmcore_")]
    for hook_name, caller in sorted(vars(pm.hook).items()):
        if not isinstance(caller, pluggy.HookCaller) or caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            origin = pm.origin(impl.plugin_name) if isinstance(pm, PluginManager) else "registered by hand"
            close = difflib.get_close_matches(hook_name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PluginError(
                f"crmcore plugin {impl.plugin_name!r} ({origin}) implements {hook_name!r}, "
                f"which is not a crmcore hook{hint}"
            )


def _load_settings(pm: PluginManager) -> None:
    path = os.environ.get(CONFIG)
    if path:
        try:
            with open(path, "rb") as file:
                tables = tomllib.load(file).get("plugins", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise PluginError(f"cannot read the plugin settings in {CONFIG}={path}: {exc}") from exc
        if not isinstance(tables, dict):
            raise PluginError(f"{path}: [plugins] must hold one table per plugin")
        for name, values in tables.items():
            if not isinstance(values, dict):
                raise PluginError(f"{path}: [plugins.{name}] must be a table of settings")
            pm.configure(name, values)
    for name, _ in pm.list_name_plugin():
        prefix = SETTING_PREFIX + name.upper().replace("-", "_") + "_"
        pm.configure(name, {key[len(prefix):].lower(): value for key, value in os.environ.items()
                            if key.startswith(prefix)})


def url_settings(pm: pluggy.PluginManager, url: str) -> str:
    """Take `NAME.key=value` options for registered plugins out of a URL, into their settings;
    the rest of the URL is left as it was."""
    if not isinstance(pm, PluginManager) or not isinstance(url, str) or "?" not in url:
        return url
    parts = urlsplit(url)
    names = {name for name, _ in pm.list_name_plugin()}
    options = parse_qsl(parts.query, keep_blank_values=True)
    kept = []
    for key, value in options:
        plugin, dot, setting = key.partition(".")
        if dot and plugin in names and setting:
            pm.configure(plugin, {setting: value})
        else:
            kept.append((key, value))
    return url if len(kept) == len(options) else urlunsplit(parts._replace(query=urlencode(kept)))


@functools.cache
def get_plugin_manager() -> PluginManager:
    """The process-wide plugin manager, built on first call."""
    return make_plugin_manager()


def scheme_of(url: str) -> str:
    if not isinstance(url, str) or "://" not in url:
        raise ValidationError("url", redact(url), "must look like scheme://..., e.g. sqlite:///crm.db")
    try:
        return urlsplit(url).scheme.lower()
    except ValueError as exc:
        raise ValidationError("url", redact(url), f"is not a URL: {exc}") from None


def adapters(pm: pluggy.PluginManager, hook: str) -> dict[str, Callable[[str], Any]]:
    """Scheme -> factory, for the `crmcore_register_*` hook named."""
    found: dict[str, Callable[[str], Any]] = {}
    for contributed in getattr(pm.hook, hook)():
        for adapter in contributed:
            found.setdefault(adapter.scheme.lower(), adapter.open)
    return found


def open_adapter(pm: pluggy.PluginManager, port: str, hook: str, url: str) -> Any:
    """Open `url` with the adapter registered for its scheme, or say which schemes exist
    (and which plugins are disabled, in case one of them provides it)."""
    scheme = scheme_of(url)
    known = adapters(pm, hook)
    if scheme not in known:
        disabled = sorted(pm.disabled) if isinstance(pm, PluginManager) else []
        raise UnknownScheme(port, scheme, list(known), disabled)
    try:
        return known[scheme](url)
    except CRMError:
        raise
    except ValueError as exc:  # a malformed URL (bad port, bracket, ...): name it, password hidden
        reason = f"is not a usable {scheme} URL: {redact(str(exc))}"
        raise ValidationError("url", redact(url), reason) from None
