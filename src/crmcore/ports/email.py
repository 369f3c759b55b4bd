"""The e-mail ports: a transport that sends, a mailbox that is read by UID.

Messages leave as `email.message.EmailMessage` (never raw strings, so a header
cannot be smuggled in) and arrive as raw bytes with their IMAP UID: parsing is
the core's job, so a hostile message is judged in one place whatever the adapter.
"""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage
from typing import Protocol

import attrs

from crmcore import values as v
from crmcore.errors import CRMError


class DeliveryError(CRMError):
    """A message could not be handed to the mail server.

    `temporary` says whether trying again later may succeed (a 4xx reply, a
    dropped connection) or not (a 5xx reply, a refused login).
    """

    def __init__(self, reason: str, *, temporary: bool, code: int | None = None) -> None:
        self.reason = reason
        self.temporary = temporary
        self.code = code
        kind = "temporary" if temporary else "permanent"
        super().__init__(f"{kind} delivery failure{f' ({code})' if code else ''}: {reason}")


class MailboxError(CRMError):
    """The mailbox could not be read (connection, login, missing folder)."""


class EmailTransport(Protocol):
    """Outbound mail: an SMTP server or anything that accepts a message."""

    def send(self, message: EmailMessage) -> None:
        """Hand one message over for delivery, or raise `DeliveryError`."""
        ...

    def close(self) -> None: ...


@attrs.frozen
class Cursor:
    """How far a mailbox has been read: UIDs mean something only within one UIDVALIDITY."""

    uidvalidity: int = attrs.field(validator=v.in_range(1, 2**32 - 1))
    uid: int = attrs.field(default=0, validator=v.in_range(0, 2**32 - 1))
    """The highest UID already handled; 0 when nothing was."""


@attrs.frozen
class Received:
    """One message as the mailbox holds it."""

    uid: int
    raw: bytes
    """The whole message, or only its header when `truncated` (it was too large)."""
    size: int
    received_at: datetime = attrs.field(converter=v.as_utc, validator=v.is_utc)
    """When the server took the message (IMAP INTERNALDATE): unlike `Date:`, not the sender's word."""
    truncated: bool = False


@attrs.frozen
class Batch:
    """Messages after a cursor, oldest first, with the UIDVALIDITY they were read under."""

    uidvalidity: int
    messages: tuple[Received, ...] = ()


class Mailbox(Protocol):
    """Inbound mail read incrementally by UID; reading changes nothing on the server."""

    def fetch(self, after: Cursor | None, *, limit: int, max_bytes: int) -> Batch:
        """Up to `limit` messages with a UID above `after.uid`, oldest first.

        When `after` is None or its UIDVALIDITY is no longer the mailbox's, every
        message is returned from the start. A message larger than `max_bytes` comes
        with its header only, cut at `max_bytes`. Raises `MailboxError`.
        """
        ...

    def close(self) -> None: ...


class CursorStore(Protocol):
    """Where a poller keeps its cursor between runs; `save` must be durable when it returns."""

    def load(self) -> Cursor | None: ...

    def save(self, cursor: Cursor) -> None: ...
