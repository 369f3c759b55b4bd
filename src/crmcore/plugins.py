"""The plugin manager: entry-point loading and adapters picked by URL scheme."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pluggy

from crmcore import hookspecs
from crmcore.errors import CRMError, PluginError, UnknownScheme, ValidationError
from crmcore.urls import redact

ENTRY_POINT_GROUP = "crmcore"


def make_plugin_manager(*, load_entry_points: bool = True) -> pluggy.PluginManager:
    """A fresh plugin manager with every hookspec, and (by default) every installed plugin."""
    pm = pluggy.PluginManager("crmcore")
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as exc:
            raise PluginError(f"a crmcore plugin failed to load: {exc!r}") from exc
    return pm


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
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
    """Open `url` with the adapter registered for its scheme, or say which schemes exist."""
    scheme = scheme_of(url)
    known = adapters(pm, hook)
    if scheme not in known:
        raise UnknownScheme(port, scheme, list(known))
    try:
        return known[scheme](url)
    except CRMError:
        raise
    except ValueError as exc:  # a malformed URL (bad port, bracket, ...): name it, password hidden
        reason = f"is not a usable {scheme} URL: {redact(str(exc))}"
        raise ValidationError("url", redact(url), reason) from None
