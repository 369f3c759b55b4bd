"""E-mail adapters: SMTP out (`smtp://`, `smtps://`), IMAP in (`imap://`, `imaps://`)."""

from __future__ import annotations

import ssl
from urllib.parse import parse_qs, unquote, urlsplit

from crmcore.errors import ValidationError

TRUE = {"1", "true", "yes", "on"}


class ServerURL:
    """The parts of a mail server URL both adapters read: host, port, login, TLS options.

    Query options: `starttls=true`, `cafile=/path.pem` (trust this CA, e.g. a
    self-signed certificate), `verify=false` (no certificate check; loopback
    tests only), `timeout=seconds`.
    """

    def __init__(self, url: str, *, default_port: int, tls_port: int, tls_schemes: set[str]) -> None:
        parts = urlsplit(url)
        self.scheme = parts.scheme.lower()
        if not parts.hostname:
            raise ValidationError("url", _redacted(url), "names no host")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        self.host = parts.hostname
        self.tls = self.scheme in tls_schemes
        try:
            self.port = parts.port or (tls_port if self.tls else default_port)
            self.timeout = float(options.get("timeout", "30"))
        except ValueError as exc:
            raise ValidationError("url", _redacted(url), str(exc)) from None
        self.user = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.path = unquote(parts.path.lstrip("/"))
        self.starttls = options.get("starttls", "").lower() in TRUE or self.scheme.endswith("+starttls")
        if self.tls and self.starttls:
            raise ValidationError("url", _redacted(url), "asks for both implicit TLS and STARTTLS")
        self.cafile = options.get("cafile")
        self.verify = options.get("verify", "true").lower() in TRUE
        self.safe = _redacted(url)

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def _redacted(url: str) -> str:
    """The URL without its password, fit for an error message or a log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
