"""IMAP mailbox: `imap://user:pass@host:143/INBOX?starttls=true`, `imaps://host:993/Support`.

The folder is opened read-only (EXAMINE) and bodies are fetched with BODY.PEEK,
so polling never changes a flag a person reading the same mailbox relies on.
A message above the size limit is fetched header only (and at most the limit
of that): a huge attachment costs neither memory nor time, and the message is
still seen.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from crmcore.errors import ValidationError
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.ports.email import Batch, Cursor, MailboxError, Received
from crmcore_adapters.email import ServerURL

T = TypeVar("T")

_META = re.compile(
    rb"UID (?P<uid>\d+)|RFC822\.SIZE (?P<size>\d+)|INTERNALDATE \"(?P<date>[^\"]+)\""
)


class ImapMailbox:
    """A `Mailbox` over one IMAP folder; the connection is kept and reopened when it drops."""

    def __init__(self, url: str) -> None:
        self.server = ServerURL(url, default_port=143, tls_port=993, tls_schemes={"imaps"})
        self.folder = self.server.path or "INBOX"
        if not self.folder.isascii() or any(ch in self.folder for ch in "\r\n\0"):
            raise ValidationError("url", self.server.safe, "folder must be plain ASCII")
        if self.server.user is None:
            raise ValidationError("url", self.server.safe, "names no user (imap://user:password@host)")
        self._imap: imaplib.IMAP4 | None = None

    def __repr__(self) -> str:
        return f"<ImapMailbox {self.server.safe}>"

    def fetch(self, after: Cursor | None, *, limit: int, max_bytes: int) -> Batch:
        return self._retrying(lambda imap: self._fetch(imap, after, limit, max_bytes))

    def _fetch(self, imap: imaplib.IMAP4, after: Cursor | None, limit: int, max_bytes: int) -> Batch:
        _ok(imap.select(_quoted(self.folder), readonly=True), f"open folder {self.folder!r}")
        _, answer = imap.response("UIDVALIDITY")
        if not answer or answer[0] is None:
            raise MailboxError(f"{self.server.safe}: the server sent no UIDVALIDITY")
        uidvalidity = int(answer[-1])
        start = after.uid if after is not None and after.uidvalidity == uidvalidity else 0
        found = _ok(imap.uid("SEARCH", f"UID {start + 1}:*"), "search")
        uids = sorted(u for u in map(int, b" ".join(d for d in found if d).split()) if u > start)
        uids = uids[:limit]
        if not uids:
            return Batch(uidvalidity)
        meta = _ok(
            imap.uid("FETCH", ",".join(map(str, uids)), "(UID RFC822.SIZE INTERNALDATE)"), "fetch sizes"
        )
        messages = []
        for uid, size, received_at in sorted(_metadata(meta)):
            truncated = size > max_bytes
            part = f"BODY.PEEK[HEADER]<0.{max_bytes}>" if truncated else "BODY.PEEK[]"
            data = _ok(imap.uid("FETCH", str(uid), f"({part})"), f"fetch message {uid}")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if raw is None:  # expunged between SEARCH and FETCH: nothing left to read
                continue
            messages.append(Received(uid, raw, size, received_at, truncated))
        return Batch(uidvalidity, tuple(messages))

    def _retrying(self, work: Callable[[imaplib.IMAP4], T]) -> T:
        for attempt in (1, 2):
            try:
                return work(self._connection())
            except (imaplib.IMAP4.abort, OSError) as exc:  # dropped connection: one fresh try
                self._drop()
                if attempt == 2:
                    raise MailboxError(f"{self.server.safe}: {type(exc).__name__}: {exc}") from exc
            except imaplib.IMAP4.error as exc:
                self._drop()
                raise MailboxError(f"{self.server.safe}: {exc}") from exc
        raise AssertionError("unreachable")

    def _connection(self) -> imaplib.IMAP4:
        if self._imap is not None:
            return self._imap
        s = self.server
        imap: imaplib.IMAP4
        if s.tls:
            imap = imaplib.IMAP4_SSL(s.host, s.port, ssl_context=s.ssl_context(), timeout=s.timeout)
        else:
            imap = imaplib.IMAP4(s.host, s.port, timeout=s.timeout)
        try:
            if s.starttls:
                imap.starttls(ssl_context=s.ssl_context())
            imap.login(s.user or "", s.password or "")
        except ssl.SSLCertVerificationError as exc:
            _shut(imap)
            raise MailboxError(f"{s.safe}: server certificate refused: {exc.verify_message}") from exc
        except BaseException:
            _shut(imap)
            raise
        self._imap = imap
        return imap

    def _drop(self) -> None:
        if self._imap is not None:
            _shut(self._imap)
            self._imap = None

    def close(self) -> None:
        if self._imap is not None:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                self._imap.logout()
            self._imap = None


def _shut(imap: imaplib.IMAP4) -> None:
    with contextlib.suppress(OSError):
        imap.shutdown()


def _ok(reply: tuple[str, list[Any]], what: str) -> list[Any]:
    status, data = reply
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode(errors="replace")
        raise imaplib.IMAP4.error(f"{what} failed: {status} {detail}")
    return data


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _metadata(data: list[Any]) -> list[tuple[int, int, datetime]]:
    """(uid, size, internal date) from the untagged FETCH replies."""
    found = []
    for item in data:
        line = item[0] if isinstance(item, tuple) else item
        if not isinstance(line, bytes):
            continue
        fields: dict[str, bytes] = {}
        for match in _META.finditer(line):
            fields.update({k: val for k, val in match.groupdict().items() if val is not None})
        if {"uid", "size", "date"} <= fields.keys():
            received = datetime.strptime(fields["date"].decode().strip(), "%d-%b-%Y %H:%M:%S %z")
            found.append((int(fields["uid"]), int(fields["size"]), received.astimezone(UTC)))
    return found


def open_mailbox(url: str) -> ImapMailbox:
    return ImapMailbox(url)


@hookimpl
def crmcore_register_mailboxes() -> list[Adapter]:
    return [Adapter(scheme, open_mailbox) for scheme in ("imap", "imaps", "imap+starttls")]
