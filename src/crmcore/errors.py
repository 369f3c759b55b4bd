"""The one family of errors crmcore raises.

Callers catch these and nothing else: every adapter translates its driver's
exceptions at the transaction boundary, so a `sqlite3` or `psycopg` error never
reaches application code.
"""

from __future__ import annotations

from typing import Any


class CRMError(Exception):
    """Base of every error crmcore raises on purpose."""


class ValidationError(CRMError, ValueError):
    """Bad input: names the field, the offending value and the reason."""

    def __init__(self, field: str, value: Any, reason: str) -> None:
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {reason} (got {value!r})")

    def within(self, prefix: str) -> ValidationError:
        """The same error with its field qualified by an enclosing path."""
        return ValidationError(f"{prefix}.{self.field}", self.value, self.reason)


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

    def __init__(self, port: str, scheme: str, known: list[str]) -> None:
        self.port = port
        self.scheme = scheme
        self.known = sorted(known)
        listed = ", ".join(f"{k}://" for k in self.known) or "none"
        super().__init__(f"no {port} adapter for scheme {scheme!r}; known schemes: {listed}")


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
        super().__init__("rule", text, reason)
        self.args = (f"rule: {reason}{where}",)


class Unassignable(CRMError):
    """No member of staff fits an assignment's rules (nobody with the skill, the language,
    in the territory, or active); nothing was assigned."""
