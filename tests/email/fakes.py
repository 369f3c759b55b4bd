"""Fakes that implement the e-mail ports, for fast property tests of the core.

`test_mailbox_contract.py` runs the same contract against them and against
dovecot, so they cannot drift from the real thing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from crmcore.ports.email import Batch, Cursor, Received

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


class ListMailbox:
    """A `Mailbox` over a list: message i has UID i + 1."""

    def __init__(self, messages: list[bytes], uidvalidity: int = 7) -> None:
        self.messages = messages
        self.uidvalidity = uidvalidity

    def fetch(self, after: Cursor | None, *, limit: int, max_bytes: int) -> Batch:
        start = after.uid if after is not None and after.uidvalidity == self.uidvalidity else 0
        chosen = [
            Received(uid, raw if len(raw) <= max_bytes else _header(raw)[:max_bytes], len(raw), WHEN,
                     truncated=len(raw) > max_bytes)
            for uid, raw in enumerate(self.messages, 1) if uid > start
        ]
        return Batch(self.uidvalidity, tuple(chosen[:limit]))

    def close(self) -> None:
        pass


class MemoryCursor:
    def __init__(self) -> None:
        self.cursor: Cursor | None = None

    def load(self) -> Cursor | None:
        return self.cursor

    def save(self, cursor: Cursor) -> None:
        self.cursor = cursor


def _header(raw: bytes) -> bytes:
    end = raw.find(b"\r\n\r\n")
    return raw if end < 0 else raw[: end + 4]
