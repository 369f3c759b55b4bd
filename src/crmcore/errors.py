"""The one family of errors crmcore raises.

Callers catch these and nothing else: every adapter translates its driver's
exceptions at the transaction boundary, so a `sqlite3` or `psycopg` error never
reaches application code.
"""

from __future__ import annotations

import reprlib
from typing import Any


class CRMError(Exception):
    """Base of every error crmcore raises on purpose."""


SHOWN = 200
"""Characters of a refused value an error message shows: bad input may be megabytes long."""


def _bounded_repr() -> reprlib.Repr:
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxdict, bounded.maxlist, bounded.maxtuple = 4, 8, 8, 8
    bounded.maxstring = bounded.maxother = 10 * SHOWN
    return bounded


_REPR = _bounded_repr()


def shown(value: Any) -> str:
    """`repr(value)`, elided in the middle beyond SHOWN characters (and never recursing deeply)."""
    text = repr(value) if isinstance(value, str | int | float) else _REPR.repr(value)
    if len(text) <= SHOWN:
        return text
    half = SHOWN // 2
    return f"{text[:half]}...<{len(text) - SHOWN} characters>...{text[-half:]}"


class ValidationError(CRMError, ValueError):
    """Bad input: names the field, the offending value and the reason."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        said = reason if len(reason) <= 10 * SHOWN else reason[: 10 * SHOWN] + "..."  # it may quote input
        super().__init__(f"{field}: {said} (got {shown(value)})")

    def within(self, prefix: str) -> ValidationError:
        """The same error with its field qualified by an enclosing path."""
        return ValidationError(f"{prefix}.{self.field}", self.value, self.reason)


class LimitExceeded(ValidationError):
    """Input beyond one of the documented limits (`crmcore.limits`, docs/limits.md).

    `limit` names it ("in_values", "rule_depth", "instant", ...); `maximum` is its value.
    """

    def __init__(self, limit: str, field: str, value: Any, maximum: Any, reason: str | None = None) -> None:
        self.limit = limit
        self.maximum = maximum
        super().__init__(field, value, reason or f"exceeds the {limit} limit ({maximum})")


class StorageError(CRMError):
    """The storage backend failed (retry later; HTTP 503); the transaction was rolled back.

    Outcomes of a request (`NotFound`, `ConflictError`, `IntegrityError`,
    `ValidationError`) are not backend failures and do not derive from this.
    """


class ConflictError(CRMError):
    """An update was based on a stale version (optimistic concurrency)."""

    def __init__(self, kind: str, id: str, expected: int, actual: int | None) -> None:
        self.kind = kind
        self.id = id
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{kind} {id}: written at version {expected}, but the stored version is {actual}"
        )


class IntegrityError(CRMError):
    """A uniqueness or reference rule of the data would be broken."""


class NotFound(CRMError, LookupError):
    """No record with that key."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"no {kind} {key!r}")


class PluginError(CRMError):
    """A plugin is missing, misconfigured or misbehaved."""


class UnknownScheme(PluginError, LookupError):
    """No adapter is registered for a URL's scheme."""

    def __init__(self, port: str, scheme: str, known: list[str], disabled: list[str] | None = None) -> None:
        self.port = port
        self.scheme = scheme
        self.known = sorted(known)
        self.disabled = sorted(disabled or ())
        listed = ", ".join(f"{k}://" for k in self.known) or "none"
        off = f"; disabled plugins: {', '.join(self.disabled)}" if self.disabled else ""
        super().__init__(f"no {port} adapter for scheme {scheme!r}; known schemes: {listed}{off}")


class ConsentError(CRMError):
    """The customer has not consented to this purpose on this channel."""


class MissingExtra(CRMError, ImportError):
    """An optional part was asked for but its extra is not installed."""

    def __init__(self, feature: str, extra: str) -> None:
        self.feature = feature
        self.extra = extra
        super().__init__(f"{feature} needs the {extra!r} extra: pip install 'crmcore[{extra}]'")


class RuleError(ValidationError):
    """A segment rule that cannot be read or run: where (line, column, a caret) and why.

    `suggestions` holds the closest known names when a field or function is unknown.
    """

    def __init__(
        self, text: str, reason: str, *, offset: int | None = None,
        suggestions: tuple[str, ...] = (),
    ) -> None:
        self.text = text
        self.offset = offset
        self.suggestions = suggestions
        self.line: int | None = None
        self.column: int | None = None
        where = ""
        if offset is not None:
            offset = max(0, min(offset, len(text)))
            before = text[:offset]
            self.line = before.count("\n") + 1
            self.column = offset - (before.rfind("\n") + 1) + 1
            source = text.splitlines()[self.line - 1] if text.strip() else ""
            where = f"\n  {source}\n  {' ' * (self.column - 1)}^"
            reason = f"line {self.line}, column {self.column}: {reason}"
        if suggestions:
            reason += f" (did you mean {', '.join(suggestions)}?)"
        ValidationError.__init__(self, "rule", text, reason)  # not super(): RuleLimit mixes in LimitExceeded
        self.args = (f"rule: {reason}{where}",)


class RuleLimit(RuleError, LimitExceeded):
    """A rule beyond one of the documented limits: located like any RuleError, named like any limit."""

    def __init__(
        self, text: str, limit: str, maximum: Any, reason: str | None = None, *, offset: int | None = None,
    ) -> None:
        self.limit = limit
        self.maximum = maximum
        RuleError.__init__(self, text, reason or f"exceeds the {limit} limit ({maximum})", offset=offset)


class Unassignable(CRMError):
    """No member of staff fits an assignment's rules (nobody with the skill, the language,
    in the territory, or active); nothing was assigned."""


HTTP_STATUS: dict[type[CRMError], int] = {
    ValidationError: 422,
    NotFound: 404,
    ConflictError: 409,
    IntegrityError: 409,
    ConsentError: 403,
    Unassignable: 409,
    StorageError: 503,
    MissingExtra: 501,
    PluginError: 500,
    CRMError: 500,
}
"""The HTTP status a web application answers for each error (see docs/applications.md):
outcomes of the request are 4xx; only `StorageError` (the backend failed: retry later)
is 503."""


def http_status(error: CRMError) -> int:
    """The status for `error`: its nearest class in `HTTP_STATUS`."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
