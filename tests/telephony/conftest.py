"""Real SIP peers on loopback: baresip phones and sipp as a scripted caller or busy line."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import crmcore
from crmcore.errors import PluginError
from crmcore.ports.telephony import CallEvent, CallEventKind
from crmcore.testing.telephony import CallLog
from crmcore_adapters.telephony import baresip
from tests.support import unavailable

SIPP_DIR = Path(__file__).parent / "sipp"
CUSTOMER_NUMBER = "+15551234567"
_taken: set[int] = set()
_lock = threading.Lock()


def _bindable(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def port_block(size: int) -> int:
    """The first of `size` consecutive ports free for TCP and UDP on loopback."""
    with _lock:
        for _ in range(200):
            base = random.randrange(20000, 60000 - size)
            span = set(range(base, base + size))
            if not span & _taken and all(_bindable(p) for p in span):
                _taken.update(span)
                return base
    raise RuntimeError("no free port block")


class Phones:
    """Start baresip phones for one test, stop them all afterwards."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[baresip.Baresip] = []

    def start(self, user: str, *, display: str | None = None, rtp_timeout: int = 1,
              lines: int = 1) -> baresip.Baresip:
        if shutil.which("baresip") is None:
            unavailable("baresip is not installed (Debian package baresip-core)")
        base = port_block(16)
        try:
            phone = baresip.launch(
                self.root / f"{user}-{base}", user=user, display=display, sip_port=base,
                ctrl_port=base + 2, rtp_port=base + 4, rtp_timeout=rtp_timeout, lines=lines,
            )
        except PluginError as exc:
            unavailable(f"baresip would not start: {exc}")
        self.started.append(phone)
        return phone

    def stop(self) -> None:
        for phone in self.started:
            phone.stop()


@pytest.fixture
def phones(tmp_path: Path) -> Iterator[Phones]:
    started = Phones(tmp_path)
    yield started
    started.stop()


class Recorder(CallLog):
    """The shipped call log, with the shorter wait these loopback tests expect."""

    def wait(self, kind: CallEventKind, timeout: float = 5.0, **match: Any) -> CallEvent:
        return super().wait(kind, timeout, **match)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def sipp(*args: str, timeout: float = 15.0, background: bool = False) -> tuple[subprocess.Popen[str], int]:
    """Run sipp for one call with free local ports; returns the process and its SIP port."""
    if shutil.which("sipp") is None:
        unavailable("sipp is not installed (Debian package sip-tester)")
    base = port_block(4)
    command = [
        "sipp", *args, "-i", "127.0.0.1", "-p", str(base), "-mp", str(base + 2),
        "-cp", str(base + 3), "-m", "1", "-nostdin", "-timeout", f"{timeout}s", "-timeout_error",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if background:
        time.sleep(0.2)
    return process, base


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def crm(tmp_path: Path) -> Iterator[crmcore.CRM]:
    with crmcore.open(f"sqlite:///{tmp_path / 'crm.db'}") as opened:
        yield opened
