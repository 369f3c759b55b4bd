"""Call events from a hosted telephony provider's webhooks (Twilio-style), signatures checked.

    twilio://127.0.0.1:8080/calls?token_env=TWILIO_AUTH_TOKEN&public_url=https://crm.example.org

The provider POSTs a form (`CallSid`, `From`, `To`, `Direction`, `CallStatus`, ...)
to a URL of ours and signs it: HMAC-SHA1, keyed with the account's auth token,
over the full URL followed by every parameter name and value sorted by name,
base64-encoded in `X-Twilio-Signature`. A request whose signature does not
match is refused (403) before anything is read from it, so a forged call event
never reaches the CRM. `public_url` is the address the provider calls when it
differs from ours (a proxy in front); it is part of what is signed.

The server is exposed to the Internet, so its cost is bounded whatever comes in:
at most `max_clients` requests are served at once (more are closed at once), a
client that stalls is dropped after `request_timeout` seconds, and refused
requests leave only the newest faults behind. A replay of a genuine request is
refused when its signed `Timestamp` lies outside `replay_window`, and a call that
ended within that window cannot be brought back by a replayed event.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from crmcore import values as v
from crmcore.errors import ValidationError
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.model import Direction
from crmcore.ports.telephony import CallOutcome
from crmcore_adapters.telephony.tracker import CallTracker, Tracked

SIGNATURE_HEADER = "X-Twilio-Signature"
MAX_BODY = 64 * 1024
MAX_CLIENTS = 32
"""Requests served at once; one more is closed unanswered, so stalled clients cannot pile up threads."""
REQUEST_TIMEOUT = 10.0
"""Seconds a client may take to send its request before it is dropped."""
CLOCK_SKEW = timedelta(minutes=5)
"""How far in the future a signed Timestamp may be (the provider's clock may run ahead)."""

Params = Mapping[str, str | Sequence[str]]

ENDINGS = {
    "busy": CallOutcome.BUSY,
    "no-answer": CallOutcome.NO_ANSWER,
    "canceled": CallOutcome.NO_ANSWER,
    "failed": CallOutcome.FAILED,
}
RINGING = {"queued", "initiated", "ringing"}


class ForgedRequest(ValidationError):
    """A webhook request whose signature does not match: it did not come from the provider."""


class ReplayedRequest(ForgedRequest):
    """A genuine request sent again outside the replay window."""


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves at most `limit` requests at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], limit: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(limit)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):  # full: close now rather than queue a thread
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that stalled or vanished is dropped quietly (not a traceback on stderr per client)."""


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def signature(token: str, url: str, params: Params) -> str:
    """The provider's signature of a request: base64(HMAC-SHA1(token, url + sorted name/values))."""
    data = url + "".join(
        name + value for name in sorted(params) for value in sorted(set(_values(params[name])))
    )
    digest = hmac.new(token.encode(), data.encode("utf-8", "surrogatepass"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> set[str]:
    """The URL as signed with and without its default port: providers are not consistent."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    default = 443 if parts.scheme == "https" else 80
    bare = urlunsplit(parts._replace(netloc=host if parts.port in (None, default) else parts.netloc))
    ported = urlunsplit(parts._replace(netloc=f"{host}:{parts.port or default}"))
    return {url, bare, ported}


def verify(token: str, url: str, params: Params, given: str) -> bool:
    """True when `given` is the signature of this URL and these parameters (constant time)."""
    return any(
        hmac.compare_digest(signature(token, variant, params).encode(), given.encode())
        for variant in _url_variants(url)
    )


class WebhookTelephony(Tracked):
    """Call events from signed webhooks; `listen()` serves them on loopback (or any address)."""

    def __init__(
        self,
        token: str,
        *,
        public_url: str | None = None,
        agent: str | None = None,
        clock: Callable[[], datetime] = v.now,
        replay_window: timedelta = timedelta(hours=24),
        max_clients: int = MAX_CLIENTS,
        request_timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        if not token:
            raise ValidationError("token", "", "the provider's auth token is needed to check signatures")
        if not 1 <= max_clients <= 10_000:
            raise ValidationError("max_clients", max_clients, "must be between 1 and 10000")
        if not 0 < request_timeout <= 3600:
            raise ValidationError("request_timeout", request_timeout, "must be between 0 and 3600 seconds")
        self._token = token
        self.public_url = public_url.rstrip("/") if public_url else None
        self.replay_window = replay_window
        self.max_clients = max_clients
        self.request_timeout = request_timeout
        self.tracker = CallTracker(agent=agent, clock=clock, remember=replay_window)
        self.url = "twilio://unbound"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, url: str, params: Mapping[str, Sequence[str]], given: str | None) -> None:
        """Check one request and apply it; ForgedRequest or ValidationError, nothing applied."""
        if not given or not verify(self._token, url, params, given):
            raise ForgedRequest(SIGNATURE_HEADER, (given or "")[:12], "does not match the request")
        field = _fields(params)
        self._fresh(field("Timestamp", ""))
        call_id = field("CallSid")
        status = field("CallStatus").lower()
        outbound = field("Direction", "inbound").lower().startswith("outbound")
        peer = field("To" if outbound else "From", "")
        if status not in RINGING | {"in-progress", "completed"} | set(ENDINGS):
            raise ValidationError("CallStatus", status, "is not a call status this adapter knows")
        direction = Direction.OUTBOUND if outbound else Direction.INBOUND
        self.tracker.ringing(call_id, direction, peer, field("CallerName", ""))
        if status == "in-progress":
            self.tracker.answer(call_id)
        elif status == "completed":
            self.tracker.end(call_id, _completed, "completed")
        elif status in ENDINGS:
            self.tracker.end(call_id, ENDINGS[status], status)

    def _fresh(self, stamp: str) -> None:
        """Refuse a signed request whose Timestamp is outside the replay window (a replay)."""
        if not stamp:
            return
        try:
            at = parsedate_to_datetime(stamp)
        except (TypeError, ValueError, IndexError, OverflowError):
            raise ValidationError("Timestamp", stamp, "is not an RFC 2822 date") from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        now = self.tracker.clock()
        if not now - self.replay_window <= at <= now + CLOCK_SKEW:
            raise ReplayedRequest("Timestamp", stamp, "is outside the replay window: a replayed request")

    # -- the HTTP side --

    def listen(self, host: str = "127.0.0.1", port: int = 0, path: str = "/calls") -> str:
        """Serve webhooks in a background thread; returns the local URL to give the provider."""
        handler = _handler(self, path)
        handler.timeout = self.request_timeout  # applied to each client's socket
        self._server = _BoundedServer((host, port), handler, self.max_clients)
        self._server.daemon_threads = True
        bound = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="webhook", daemon=True
        )
        self._thread.start()
        self.url = f"twilio://{host}:{bound}{path}"
        return f"http://{host}:{bound}{path}"

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.tracker.drain()

    def __enter__(self) -> WebhookTelephony:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _completed(answered: bool) -> CallOutcome:
    return CallOutcome.ANSWERED if answered else CallOutcome.NO_ANSWER


def _fields(params: Mapping[str, Sequence[str]]) -> Callable[..., str]:
    missing = object()

    def field(name: str, default: Any = missing) -> str:
        values = params.get(name)
        if not values:
            if default is missing:
                raise ValidationError(name, None, "is missing from the webhook request")
            return str(default)
        value = values[-1] if not isinstance(values, str) else values
        return v.text(value, name, max_length=998, empty=default is not missing)

    return field


def _handler(telephony: WebhookTelephony, path: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if urlsplit(self.path).path != path:
                self._reply(404, "not found")
                return
            try:
                size = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                size = -1
            if not 0 <= size <= MAX_BODY:
                self._reply(413, "request body missing or too large")
                return
            body = self.rfile.read(size).decode("utf-8", errors="replace")
            base = telephony.public_url or f"http://{self.headers.get('Host', '')}"
            try:
                params = parse_qs(body, keep_blank_values=True, strict_parsing=bool(body))
                telephony.handle(base + self.path, params, self.headers.get(SIGNATURE_HEADER))
            except ForgedRequest as exc:  # anyone may send these: kept, but not one log line each
                telephony.tracker.fault(exc, level=logging.DEBUG)
                self._reply(403, "signature does not match")
            except ValueError as exc:  # malformed form or event (ValidationError included)
                telephony.tracker.fault(exc)
                self._reply(400, str(exc)[:200])
            except Exception as exc:
                telephony.tracker.fault(exc)
                self._reply(500, "internal error")
            else:
                self._reply(204, "")

        def _reply(self, code: int, text: str) -> None:
            body = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: faults are kept in `telephony.errors`."""

    return Handler


def open_webhook(url: str) -> WebhookTelephony:
    parts = urlsplit(url)
    query = {k: vals[-1] for k, vals in parse_qs(parts.query).items()}
    token = query.get("token") or os.environ.get(query.get("token_env", ""), "")
    if not token:
        raise ValidationError("url", url, "needs token_env=NAME (an environment variable) or token=")
    phone = WebhookTelephony(token, public_url=query.get("public_url"), agent=query.get("agent"))
    phone.listen(parts.hostname or "127.0.0.1", parts.port or 0, parts.path or "/calls")
    return phone


@hookimpl
def crmcore_register_telephony() -> list[Adapter]:
    return [Adapter("twilio", open_webhook)]
