"""SMTP transport: `smtp://user:pass@host:587?starttls=true`, `smtps://host:465`.

One connection is kept open and reused (a campaign sends thousands of messages);
a dropped connection is reopened once per message. Every smtplib error becomes a
`DeliveryError` that says whether a retry may help (4xx and network trouble) or
not (5xx, a refused login).
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import threading
from email.message import EmailMessage

from crmcore.hookspecs import Adapter, hookimpl
from crmcore.ports.email import DeliveryError
from crmcore_adapters.email import ServerURL


class SmtpTransport:
    """An `EmailTransport` over one reusable SMTP connection (thread-safe)."""

    def __init__(self, url: str) -> None:
        self.server = ServerURL(url, default_port=25, tls_port=465, tls_schemes={"smtps"})
        self._smtp: smtplib.SMTP | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<SmtpTransport {self.server.safe}>"

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            reused = self._smtp is not None
            try:
                self._send(message)
                return
            except (smtplib.SMTPServerDisconnected, ConnectionError) as exc:
                self._drop()
                if not reused:
                    raise _translated(exc) from exc
            except (smtplib.SMTPException, OSError) as exc:
                raise self._failure(exc) from exc
            try:  # the server had closed the idle connection we kept: one fresh try
                self._send(message)
            except (smtplib.SMTPException, OSError) as exc:
                raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> DeliveryError:
        """The error to raise; the connection is dropped unless the server merely said no."""
        if not isinstance(exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused):
            self._drop()
        return _translated(exc)

    def _send(self, message: EmailMessage) -> None:
        refused = self._connection().send_message(message)
        if refused:  # some recipients refused, the rest accepted: report, do not retry the lot
            code, reason = next(iter(refused.values()))
            raise DeliveryError(
                f"recipients refused: {', '.join(refused)}: {reason.decode(errors='replace')}",
                temporary=400 <= code < 500, code=code,
            )

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        s = self.server
        smtp: smtplib.SMTP
        if s.tls:
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=s.ssl_context())
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            if s.starttls:
                smtp.starttls(context=s.ssl_context())
            if s.user is not None:
                _login(smtp, s.user, s.password or "")
        except BaseException:
            smtp.close()
            raise
        self._smtp = smtp
        return smtp

    def _drop(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.close()
            finally:
                self._smtp = None

    def close(self) -> None:
        with self._lock:
            if self._smtp is not None:
                with contextlib.suppress(smtplib.SMTPException, OSError):
                    self._smtp.quit()
                self._drop()


def _login(smtp: smtplib.SMTP, user: str, password: str) -> None:
    """Log in with one mechanism: the same credentials refused by PLAIN would be by LOGIN too."""
    smtp.ehlo_or_helo_if_needed()
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    mechanism = next((m for m in ("PLAIN", "LOGIN") if m in offered), None)
    if mechanism is None:
        smtp.login(user, password)
        return
    smtp.user, smtp.password = user, password
    smtp.auth(mechanism, smtp.auth_plain if mechanism == "PLAIN" else smtp.auth_login)


def _translated(exc: Exception) -> DeliveryError:
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return DeliveryError(
            f"every recipient refused: {', '.join(exc.recipients)}",
            temporary=all(400 <= c < 500 for c in codes), code=codes[0] if codes else None,
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(
            exc.smtp_error
        )
        temporary = 400 <= exc.smtp_code < 500 and not isinstance(exc, smtplib.SMTPAuthenticationError)
        return DeliveryError(text, temporary=temporary, code=exc.smtp_code)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(f"server certificate refused: {exc.verify_message}", temporary=False)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(f"server does not support it: {exc}", temporary=False)
    return DeliveryError(f"{type(exc).__name__}: {exc}", temporary=True)


def open_transport(url: str) -> SmtpTransport:
    return SmtpTransport(url)


@hookimpl
def crmcore_register_email_transports() -> list[Adapter]:
    return [Adapter(scheme, open_transport) for scheme in ("smtp", "smtps", "smtp+starttls")]
