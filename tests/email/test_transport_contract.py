"""The shipped EmailTransport contract (`crmcore.testing.mail`) against the SMTP adapter
and a real aiosmtpd server on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crmcore.ports.email import EmailTransport
from crmcore.testing.mail import TransportContract
from crmcore_adapters.email.smtp import SmtpTransport
from tests.email.servers import Recorder, free_port, smtp_server


class TestSmtpTransport(TransportContract):
    @pytest.fixture(autouse=True)
    def _server(self) -> Iterator[None]:
        self.recorder = Recorder()
        with smtp_server(self.recorder) as port:
            self.port = port
            yield

    def open_transport(self) -> EmailTransport:
        return SmtpTransport(f"smtp://127.0.0.1:{self.port}?timeout=5")

    def received(self) -> list[bytes]:
        return [content for _, _, content in self.recorder.messages]

    def open_unreachable(self) -> EmailTransport:
        return SmtpTransport(f"smtp://127.0.0.1:{free_port()}?timeout=2")
