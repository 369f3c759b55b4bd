"""Real mail servers on loopback for the e-mail tests: aiosmtpd (SMTP) and a private dovecot (IMAP).

Everything a server needs (config, certificate, Maildir) lives under one
temporary directory; ports are picked free for each run.
"""

from __future__ import annotations

import imaplib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support import unavailable

MAIL_UID = 1000
"""dovecot refuses to serve mail as root: the test user's files belong to uid 1000."""
USER, PASSWORD = "crm", "s3cret pass"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 made for this run (cert, key)."""
    if shutil.which("openssl") is None:
        unavailable("openssl is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


class Recorder:
    """An aiosmtpd handler that keeps what it received and can be told to refuse."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.replies: list[str] = []
        """Replies to give to the next DATA commands instead of accepting (e.g. "451 later")."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@contextmanager
def smtp_server(handler: Any, **options: Any) -> Iterator[int]:
    """An aiosmtpd server on a free loopback port; yields the port."""
    try:
        from aiosmtpd.controller import Controller
    except ImportError:
        unavailable("aiosmtpd is not installed (pip install 'crmcore[email]')")
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    try:
        controller.start()
    except Exception as exc:
        unavailable(f"aiosmtpd could not start: {exc!r}")
    try:
        yield port
    finally:
        controller.stop()


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class Dovecot:
    """A private dovecot instance serving one user's Maildir over IMAP on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.maildir = self.home / "Maildir"
        self.port = free_port()
        self.tls_port = free_port()
        self.certificate: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.path.exists(binary):
            unavailable("dovecot is not installed (apt-get install dovecot-imapd)")
        if os.geteuid() != 0:
            unavailable("the dovecot fixture runs as root (it serves mail as uid 1000)")
        self.root.chmod(0o755)  # dovecot's auth and mail processes must reach in
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        for path in (self.home, *self.home.rglob("*")):
            os.chown(path, MAIL_UID, MAIL_UID)
        (self.root / "run").mkdir()
        (self.root / "state").mkdir()
        self.certificate, key = self_signed(self.root)
        users = self.root / "users"
        users.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{MAIL_UID}:{MAIL_UID}::{self.home}\n")
        config = self.root / "dovecot.conf"
        config.write_text(CONFIG.format(
            root=self.root, port=self.port, tls_port=self.tls_port, users=users,
            cert=self.certificate, key=key,
        ))
        self.process = subprocess.Popen(
            [binary, "-F", "-c", str(config)], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "dovecot.log").read_text(errors="replace")[-2000:] \
                    if (self.root / "dovecot.log").exists() else ""
                unavailable(f"dovecot exited with {self.process.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    if conn.recv(100).startswith(b"* OK"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        unavailable("dovecot did not greet within 10 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def url(self, folder: str = "INBOX", scheme: str = "imap") -> str:
        """The folder's URL; `imaps` and `imap+starttls` trust the instance's own certificate."""
        from urllib.parse import quote

        port = self.tls_port if scheme == "imaps" else self.port
        url = f"{scheme}://{USER}:{quote(PASSWORD)}@127.0.0.1:{port}/{quote(folder)}"
        return url if scheme == "imap" else f"{url}?cafile={self.certificate}"

    @contextmanager
    def client(self) -> Iterator[imaplib.IMAP4]:
        imap = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        imap.login(USER, PASSWORD)
        try:
            yield imap
        finally:
            imap.logout()

    def create(self, folder: str) -> None:
        with self.client() as imap:
            status, data = imap.create(f'"{folder}"')
            assert status == "OK", data

    def delete(self, folder: str) -> None:
        with self.client() as imap:
            status, data = imap.delete(f'"{folder}"')
            assert status == "OK", data

    def append(self, folder: str, *messages: bytes, when: float | None = None) -> None:
        """Put messages into a folder as a delivery agent would (exact bytes, no SMTP).

        `when` (a Unix time) sets the server's receive date; default now.
        """
        date = None if when is None else imaplib.Time2Internaldate(when)
        with self.client() as imap:
            for raw in messages:
                status, data = imap.append(f'"{folder}"', None, date, raw)
                assert status == "OK", data


CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
instance_name = crmcore-test-{port}
log_path = {root}/dovecot.log
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 1000
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service stats {{
  inet_listener http {{
    port = 0
  }}
}}
"""


class MaildirDelivery:
    """An aiosmtpd handler delivering into a Maildir that dovecot serves (files owned by its user)."""

    def __init__(self, maildir: Path) -> None:
        self.maildir = maildir

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        import mailbox

        box = mailbox.Maildir(self.maildir, create=False)
        key = box.add(envelope.content)
        path = self.maildir / "new" / key
        os.chown(path, MAIL_UID, MAIL_UID)
        return "250 OK"
