"""A SIP phone driven through baresip's `ctrl_tcp` control socket (`baresip://host:port`).

    baresip://127.0.0.1:4444?agent=agent100&gateway=127.0.0.1:5070&no_answer=30

`gateway` is where numbers are dialled (`sip:+15551234567@gateway`), `transport=tcp`
adds `;transport=tcp` to those URIs, `no_answer` is the ring timeout in seconds
(baresip's own did not fire, so this adapter enforces it with `hangup`).

The control protocol is JSON in netstrings (`LEN:JSON,`). Events carry no time,
so the adapter stamps every step itself (see `CallTracker`). If the control
connection drops, every live call ends as FAILED: a phone that vanishes still
leaves its records. `launch()` starts a private baresip on loopback.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crmcore import values as v
from crmcore.errors import NotFound, PluginError, ValidationError
from crmcore.hookspecs import Adapter, hookimpl
from crmcore.model import Direction
from crmcore.ports.telephony import CallOutcome
from crmcore_adapters.telephony.tracker import CallTracker, Tracked

MAX_FRAME = 1 << 20
COMMAND_TIMEOUT = 5.0
NORMAL_HANGUP = ("connection reset by user", "connection reset by peer")
_URI = re.compile(r"^sips?:[^\s<>\"]{1,500}$")


# ---- netstrings ----


def netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


class NetstringDecoder:
    """Splits a byte stream into netstring payloads; broken framing is a ValidationError."""

    def __init__(self, max_length: int = MAX_FRAME) -> None:
        self.max_length = max_length
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        digits = len(str(self.max_length))
        frames = []
        while self._buffer:
            head, colon, rest = self._buffer.partition(b":")
            if not head.isdigit() or len(head) > digits:
                raise ValidationError("netstring", head[:40], "has no valid length prefix")
            if not colon:
                break
            size = int(head)
            if size > self.max_length:
                raise ValidationError("netstring", size, f"is longer than {self.max_length} bytes")
            if len(rest) <= size:
                break
            if rest[size:size + 1] != b",":
                raise ValidationError("netstring", rest[:40], "does not end with ','")
            frames.append(rest[:size])
            self._buffer = rest[size + 1:]
        return frames


# ---- what a closed call means ----


def outcome_of(reason: str, answered: bool, *, rejected: bool = False, gave_up: bool = False) -> CallOutcome:
    """Classify a CALL_CLOSED reason; only a prior CALL_ESTABLISHED tells a hang-up from a cancel.

    `rejected`: we hung up an inbound call while it rang; `gave_up`: we hung up an
    outbound call nobody had answered (the no-answer timeout or the agent).
    """
    text = reason.strip().lower()
    if answered:
        return CallOutcome.ANSWERED if text.startswith(NORMAL_HANGUP) else CallOutcome.FAILED
    if gave_up:
        return CallOutcome.NO_ANSWER
    if rejected:
        return CallOutcome.REJECTED
    code = int(text[:3]) if text[:3].isdigit() else None
    if code in (486, 600):
        return CallOutcome.REJECTED if "reject" in text else CallOutcome.BUSY
    if code in (403, 603):
        return CallOutcome.REJECTED
    if code in (408, 480, 487) or text.startswith("connection reset by peer"):
        return CallOutcome.NO_ANSWER
    return CallOutcome.FAILED


# ---- the phone ----


class BaresipPhone(Tracked):
    """One baresip user agent: the phone of one agent, driven over its control socket."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        agent: str | None = None,
        gateway: str | None = None,
        transport: str | None = None,
        no_answer_after: float | None = 30.0,
        clock: Callable[[], datetime] = v.now,
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = f"baresip://{host}:{port}"
        self.agent = agent
        self.gateway = gateway
        self.transport = transport
        self.no_answer_after = no_answer_after
        self.tracker = CallTracker(agent=agent, clock=clock)
        self._tokens = itertools.count(1)
        self._replies: dict[str, tuple[threading.Event, list[dict[str, Any]]]] = {}
        self._dialling: dict[str, list[tuple[datetime, threading.Event, list[str]]]] = {}
        self._hung_up: set[str] = set()
        self._lines: dict[str, tuple[str, bool]] = {}
        """Call id -> (the account it is on, inbound?): baresip acts per account."""
        self._timers: dict[str, threading.Timer] = {}
        self._state = threading.Lock()
        self._commands = threading.Lock()
        self._selecting = threading.Lock()
        self._closed = threading.Event()
        try:
            self._socket = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise PluginError(f"cannot reach baresip control socket {host}:{port}: {exc}") from exc
        self._socket.settimeout(None)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._reader = threading.Thread(target=self._read, name=f"baresip-{port}", daemon=True)
        self._reader.start()

    # -- commands --

    def dial(self, number: str, *, no_answer_after: float | None = None) -> str:
        uri = self.uri_for(number)
        started = self.tracker.clock()
        found: list[str] = []
        matched = threading.Event()
        with self._state:
            self._dialling.setdefault(uri, []).append((started, matched, found))
        try:
            self._command("dial", uri)
            if not matched.wait(COMMAND_TIMEOUT):
                raise PluginError(f"baresip reported no call for dial {uri}")
        finally:
            with self._state:
                pending = [p for p in self._dialling.pop(uri, []) if p[1] is not matched]
                if pending:
                    self._dialling[uri] = pending
        call_id = found[0]
        limit = self.no_answer_after if no_answer_after is None else no_answer_after
        if limit and self.tracker.is_live(call_id):
            timer = threading.Timer(limit, self._no_answer, (call_id,))
            timer.daemon = True
            with self._state:
                self._timers[call_id] = timer
            timer.start()
        return call_id

    def answer(self, call_id: str) -> None:
        self._on_call(call_id, "accept")

    def hangup(self, call_id: str) -> None:
        with self._state:
            self._hung_up.add(call_id)
        try:
            self._on_call(call_id, "hangup")
        except NotFound:
            with self._state:
                self._hung_up.discard(call_id)
            raise

    def close(self) -> None:
        """Disconnect; calls still live end as FAILED (the phone process is left running)."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._reader.join(2)
        for timer in list(self._timers.values()):
            timer.cancel()
        self.tracker.drain()

    def __enter__(self) -> BaresipPhone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def uri_for(self, number: str) -> str:
        """A SIP URI as is, or an E.164 number at the gateway."""
        if number.startswith(("sip:", "sips:")):
            if not _URI.match(number):
                raise ValidationError("number", number, "is not a SIP URI")
            return number
        if not self.gateway:
            raise ValidationError("number", number, "needs a gateway= in the phone URL to be dialled")
        tail = f";transport={self.transport}" if self.transport else ""
        return f"sip:{v.phone(number, 'number')}@{self.gateway}{tail}"

    def _on_call(self, call_id: str, command: str) -> None:
        """baresip acts on its current line and call: select ours first, no other thread in between."""
        with self._selecting:
            if not self.tracker.is_live(call_id):
                raise NotFound("call", call_id)
            with self._state:
                line = self._lines.get(call_id)
                others = [c for c, (aor, inbound) in self._lines.items()
                          if line and c != call_id and aor == line[0] and inbound]
            if command == "accept" and any(not self.tracker.answered(c) for c in others):
                # baresip 1.0 first holds the line's other call; an unanswered one cannot be
                # held, and then nothing is answered at all
                raise PluginError(
                    f"{self.url}: call {call_id} cannot be answered while another call rings on "
                    f"the same line {line[0] if line else ''}; give the phone more lines"
                )
            if line:
                self._command("uafind", line[0])
            self._command("callfind", call_id)
            self._command(command)

    def _command(self, command: str, params: str | None = None) -> dict[str, Any]:
        if self._closed.is_set():
            raise PluginError(f"{self.url}: the phone is gone")
        token = f"c{next(self._tokens)}"
        done, slot = threading.Event(), list[dict[str, Any]]()
        message: dict[str, Any] = {"command": command, "token": token}
        if params is not None:
            message["params"] = params
        with self._state:
            self._replies[token] = (done, slot)
        try:
            with self._commands:
                self._socket.sendall(netstring(json.dumps(message).encode()))
            if not done.wait(COMMAND_TIMEOUT) or not slot:
                raise PluginError(f"{self.url}: no reply to {command!r}")
        except OSError as exc:
            raise PluginError(f"{self.url}: {command!r} failed: {exc}") from exc
        finally:
            with self._state:
                self._replies.pop(token, None)
        reply: dict[str, Any] = slot[0]
        if not reply.get("ok"):
            raise PluginError(f"{self.url}: {command!r} refused: {reply.get('data')!r}")
        return reply

    def _no_answer(self, call_id: str) -> None:
        with self._state:
            self._timers.pop(call_id, None)
        if self.tracker.is_live(call_id) and not self.tracker.answered(call_id):
            try:
                self.hangup(call_id)
            except (PluginError, NotFound) as exc:
                self.tracker.fault(exc)

    # -- the reader thread --

    def _read(self) -> None:
        decoder = NetstringDecoder()
        reason = "phone vanished: control connection closed"
        quickack = getattr(socket, "TCP_QUICKACK", None)
        try:
            while True:
                data = self._socket.recv(65536)
                if not data:
                    break
                if quickack is not None:
                    # baresip writes each message on its own; with delayed ACKs here, its
                    # Nagle holds the next one back for 40 ms. Linux resets this flag, so renew it.
                    self._socket.setsockopt(socket.IPPROTO_TCP, quickack, 1)
                for frame in decoder.feed(data):
                    self._dispatch(frame)
        except ValidationError as exc:
            self.tracker.fault(exc)
            reason = f"phone vanished: control stream corrupt ({exc.reason})"
        except OSError as exc:
            reason = f"phone vanished: {exc}"
        if self._closed.is_set():
            reason = "the phone was closed by crmcore during the call"
        self._closed.set()
        with self._state:
            waiting = list(self._replies.values())
        for done, _slot in waiting:
            done.set()
        self.tracker.end_all(reason)

    def _dispatch(self, frame: bytes) -> None:
        try:
            message = json.loads(frame)
            if not isinstance(message, dict):
                raise ValidationError("message", frame[:80], "is not a JSON object")
            if message.get("response"):
                with self._state:
                    waiter = self._replies.get(str(message.get("token")))
                if waiter is not None:
                    waiter[1].append(message)
                    waiter[0].set()
            elif message.get("event") and message.get("class") == "call":
                self._on_event(message)
        except (ValueError, TypeError, KeyError) as exc:  # ValidationError is a ValueError
            self.tracker.fault(exc if isinstance(exc, ValidationError)
                               else ValidationError("message", frame[:80], f"is malformed: {exc}"))

    def _on_event(self, event: dict[str, Any]) -> None:
        kind, call_id = event.get("type"), event.get("id")
        if not isinstance(call_id, str) or not call_id.strip():
            raise ValidationError("id", call_id, f"is missing from {kind} event")
        peer = str(event.get("peeruri", ""))
        outgoing = event.get("direction") == "outgoing"
        if not self.tracker.is_live(call_id) and kind in ("CALL_INCOMING", "CALL_RINGING",
                                                          "CALL_PROGRESS", "CALL_OUTGOING",
                                                          "CALL_ESTABLISHED", "CALL_CLOSED"):
            self._start(call_id, peer, str(event.get("peerdisplayname", "")), outgoing)
            aor = event.get("accountaor")
            if isinstance(aor, str) and _URI.match(aor):
                with self._state:
                    self._lines[call_id] = (aor, not outgoing)
        if kind == "CALL_ESTABLISHED":
            self.tracker.answer(call_id)
        elif kind == "CALL_CLOSED":
            with self._state:
                ours = call_id in self._hung_up
                self._hung_up.discard(call_id)
                self._lines.pop(call_id, None)
                timer = self._timers.pop(call_id, None)
            if timer:
                timer.cancel()
            reason = str(event.get("param", ""))
            self.tracker.end(
                call_id,
                lambda answered: outcome_of(
                    reason, answered, rejected=ours and not outgoing, gave_up=ours and outgoing
                ),
                reason,
            )

    def _start(self, call_id: str, peer: str, display: str, outgoing: bool) -> None:
        started = None
        if outgoing:
            with self._state:
                pending = self._dialling.get(peer)
                if pending:
                    started, matched, found = pending.pop(0)
                    found.append(call_id)
                    matched.set()
        self.tracker.ringing(
            call_id, Direction.OUTBOUND if outgoing else Direction.INBOUND, peer, display, at=started
        )


def open_phone(url: str) -> BaresipPhone:
    parts = urlsplit(url)
    query = {k: vals[-1] for k, vals in parse_qs(parts.query).items()}
    if not parts.hostname or not parts.port:
        raise ValidationError("url", url, "needs host and port of the ctrl_tcp socket")
    timeout = query.get("no_answer")
    try:
        no_answer = float(timeout) if timeout else 30.0
    except ValueError:
        raise ValidationError("no_answer", timeout, "must be a number of seconds") from None
    return BaresipPhone(
        parts.hostname, parts.port, agent=query.get("agent"), gateway=query.get("gateway"),
        transport=query.get("transport"), no_answer_after=no_answer,
    )


@hookimpl
def crmcore_register_telephony() -> list[Adapter]:
    return [Adapter("baresip", open_phone)]


# ---- a private baresip process ----


class Baresip:
    """A baresip process on loopback with its own config directory; stop() sends SIGTERM."""

    def __init__(self, process: subprocess.Popen[bytes], ctrl_port: int, sip_port: int, user: str,
                 directory: Path, lines: int = 1) -> None:
        self.process = process
        self.lines = [f"sip:{line}@127.0.0.1:{sip_port}" for line in line_users(user, lines)]
        self.ctrl_port = ctrl_port
        self.sip_port = sip_port
        self.user = user
        self.directory = directory

    @property
    def sip_uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def url(self, **query: object) -> str:
        tail = "&".join(f"{k}={val}" for k, val in query.items() if val is not None)
        return f"baresip://127.0.0.1:{self.ctrl_port}" + (f"?{tail}" if tail else "")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(1)  # a BYE to a vanished peer would wait for SIP timers
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """Vanish without a goodbye (no BYE is sent)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


def line_users(user: str, lines: int) -> list[str]:
    return [user] + [f"{user}-{n}" for n in range(2, lines + 1)]


CONFIG = """\
module_path {modules}
sip_listen 127.0.0.1:{sip_port}
net_interface 127.0.0.1
dns_server 127.0.0.1:53
audio_player aubridge,{name}
audio_source aubridge,{name}
audio_alert aubridge,{name}-alert
module g711.so
module aubridge.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl_port}
rtp_ports {rtp_port}-{rtp_end}
rtp_timeout {rtp_timeout}
ringback_disabled yes
statmode_default off
"""


def launch(
    directory: Path,
    *,
    user: str,
    sip_port: int,
    ctrl_port: int,
    rtp_port: int,
    display: str | None = None,
    rtp_timeout: int = 2,
    lines: int = 1,
    modules: str = "/usr/lib/baresip/modules",
    binary: str = "baresip",
    ready_within: float = 5.0,
) -> Baresip:
    """Start baresip with a private config (SIP on sip_port and sip_port+1) and wait for ctrl_tcp.

    `user` is the account's user part, e.g. an E.164 number for a customer's phone:
    that is the caller ID the other side sees. `lines` > 1 adds accounts `user-2`,
    `user-3`...: one ringing call per line, as a hunt group would hand them out.
    """
    if not re.fullmatch(r"[A-Za-z0-9+._-]{1,64}", user):
        raise ValidationError("user", user, "must be a SIP user part of letters, digits, + . _ -")
    directory.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9]", "", user) or "phone"
    (directory / "config").write_text(CONFIG.format(
        modules=modules, sip_port=sip_port, name=f"{name}{sip_port}", ctrl_port=ctrl_port,
        rtp_port=rtp_port, rtp_end=rtp_port + 9, rtp_timeout=rtp_timeout,
    ))
    shown = (display or user).replace('"', "")
    (directory / "accounts").write_text("".join(
        f'"{shown}" <sip:{line}@127.0.0.1:{sip_port}>;regint=0;answermode=manual\n'
        for line in line_users(user, lines)
    ))
    try:
        process = subprocess.Popen(
            [binary, "-f", str(directory)], stdin=subprocess.DEVNULL,
            stdout=open(directory / "baresip.log", "wb"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
    except OSError as exc:
        raise PluginError(f"cannot start {binary}: {exc}") from exc
    phone = Baresip(process, ctrl_port, sip_port, user, directory, lines)
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = (directory / "baresip.log").read_text(errors="replace")[-500:]
            raise PluginError(f"baresip exited with {process.returncode}: {log}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", ctrl_port), 0.2):
            return phone
        time.sleep(0.01)
    phone.stop()
    raise PluginError(f"baresip did not open its control port {ctrl_port} in {ready_within}s")


@contextlib.contextmanager
def running(directory: Path, **options: Any) -> Iterator[Baresip]:
    phone = launch(directory, **options)
    try:
        yield phone
    finally:
        phone.stop()
