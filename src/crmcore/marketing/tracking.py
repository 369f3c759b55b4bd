"""Tracked links: HMAC-signed click URLs and the small WSGI app that follows them.

A URL is `<base>/c/<payload>.<signature>`: the payload (base64url of
`[campaign, customer, link, expiry]` as JSON) is signed with HMAC-SHA256 under a secret only
the company holds, so a forged or altered link is refused (403), an expired one
too (410), and the app redirects only to the destinations the campaign names:
it is never an open redirect. Serve it with any WSGI server:

    server = serve(crm.marketing.click_app(links), "127.0.0.1", 8080)   # a threaded wsgiref server
    server.serve_forever()

(or hand the app to gunicorn/uwsgi for production traffic).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import socketserver
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import attrs

from crmcore import values as v
from crmcore.errors import CRMError, NotFound, StorageError, ValidationError

if TYPE_CHECKING:
    from crmcore.crm import CRM

log = logging.getLogger(__name__)

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class LinkRefused(CRMError):
    """A click URL that is forged, altered, malformed or expired."""

    def __init__(self, reason: str, *, expired: bool = False) -> None:
        self.reason = reason
        self.expired = expired
        super().__init__(reason)


@attrs.frozen
class Click:
    campaign_id: str
    customer_id: str
    link: str
    expires: datetime


def _secret(_instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) < 16:
        raise ValidationError(attribute.name, "...", "must be at least 16 bytes")


def _base(value: str) -> str:
    text = v.text(value, "base_url", max_length=500)
    if not text.startswith(("http://", "https://")) or any(ch.isspace() for ch in text):
        raise ValidationError("base_url", value, "must be an http(s) URL")
    return text.rstrip("/")


@attrs.frozen(repr=False)
class Links:
    """Signs and checks click URLs; `ttl` is how long a link stays valid after it is made."""

    secret: bytes = attrs.field(validator=_secret)
    base_url: str = attrs.field(converter=_base)
    ttl: timedelta = timedelta(days=90)

    def __repr__(self) -> str:
        return f"Links({self.base_url!r}, ttl={self.ttl})"

    def url(self, campaign_id: str, customer_id: str, link: str, *, now: datetime) -> str:
        expires = int((now + self.ttl).timestamp())
        payload = _b64(json.dumps([campaign_id, customer_id, link, expires], separators=(",", ":")).encode())
        return f"{self.base_url}/c/{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode("ascii"), hashlib.sha256).digest())

    def verify(self, token: str, *, now: datetime) -> Click:
        """The click a token stands for; LinkRefused if it is not one this company made or is expired."""
        payload, _, signature = token.partition(".")
        if not payload or not signature or not hmac.compare_digest(self._sign(payload), signature):
            raise LinkRefused("the link's signature does not match")
        try:
            campaign_id, customer_id, link, expires = json.loads(_unb64(payload))
            expiry = datetime.fromtimestamp(int(expires), tz=now.tzinfo)
            texts = all(isinstance(item, str) for item in (campaign_id, customer_id, link))
        except (ValueError, TypeError, UnicodeDecodeError, binascii.Error, OverflowError, OSError):
            raise LinkRefused("the link is malformed") from None
        if not texts:
            raise LinkRefused("the link is malformed") from None
        if now >= expiry:
            raise LinkRefused(f"the link expired at {expiry.isoformat()}", expired=True)
        return Click(campaign_id, customer_id, link, expiry)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ClickApp:
    """WSGI app: `GET /c/<token>` records the click and redirects (302) to the campaign's link."""

    def __init__(self, crm: CRM, links: Links) -> None:
        self.crm = crm
        self.links = links

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = str(environ.get("PATH_INFO", ""))
        if not path.startswith("/c/") or "/" in path[3:]:
            return _reply(start_response, "404 Not Found", "no such page")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", "GET only", [("Allow", "GET, HEAD")])
        try:
            click = self.links.verify(path[3:], now=self.crm.clock())
            destination = self.crm.marketing.record_click(
                click.campaign_id, click.customer_id, click.link, record=method == "GET"
            )
        except LinkRefused as refused:
            status = "410 Gone" if refused.expired else "403 Forbidden"
            return _reply(start_response, status, refused.reason)
        except NotFound:
            return _reply(start_response, "404 Not Found", "this link leads nowhere any more")
        except StorageError:
            log.exception("recording a click failed")
            return _reply(
                start_response, "503 Service Unavailable", "try again shortly", [("Retry-After", "5")]
            )
        except CRMError as error:
            return _reply(start_response, "400 Bad Request", str(error))
        return _reply(start_response, "302 Found", "redirecting", [("Location", destination)])


def _reply(
    start_response: StartResponse, status: str, text: str, headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    body = text.encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(headers or []),
        ],
    )
    return [body]


class _ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s - %s", self.address_string(), format % args)


def serve(app: ClickApp, host: str = "127.0.0.1", port: int = 8080) -> WSGIServer:
    """A threaded wsgiref server for the click app (bound, not yet serving: call `serve_forever`)."""
    return make_server(host, port, app, server_class=_ThreadedServer, handler_class=_QuietHandler)
