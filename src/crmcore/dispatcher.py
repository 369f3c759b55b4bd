"""Event delivery off the request path: a dispatcher thread, or a worker process.

By default a CRM delivers events right after the transaction that wrote them, so
subscribers' time is the writer's. An application starts a `Dispatcher` instead
(`crm.start_dispatcher()`): commits only wake it, and it drains the outbox on its
own thread with the same at-least-once guarantee (entries are leased, so several
dispatchers, threads or `crmcore worker` processes, share one outbox safely).
It also prunes delivered entries once they are older than the retention.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from crmcore.errors import CRMError

if TYPE_CHECKING:
    from crmcore.crm import CRM

log = logging.getLogger(__name__)


class Dispatcher:
    """Drains the outbox whenever woken, and at least every `interval` seconds."""

    def __init__(
        self,
        crm: CRM,
        *,
        interval: float = 1.0,
        retention: timedelta | None = timedelta(days=7),
        prune_every: float = 600.0,
        batch: int = 500,
    ) -> None:
        self.crm = crm
        self.interval = interval
        self.retention = retention
        self.prune_every = prune_every
        self.batch = batch
        self.delivered = 0
        self.pruned = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Dispatcher:
        if not self.running:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self.run, args=(self._stop,), name="crmcore-dispatcher", daemon=True
            )
            self._thread.start()
        return self

    def wake(self) -> None:
        """A transaction wrote events: deliver them soon (called after commit)."""
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current batch and stop; what is left stays in the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def run(self, stop: threading.Event) -> None:
        """Deliver until `stop` is set (the thread's body, and `crmcore worker`'s)."""
        next_prune = time.monotonic()
        while not stop.is_set():
            self._wake.clear()
            self.drain()
            if self.retention is not None and time.monotonic() >= next_prune:
                self.prune()
                next_prune = time.monotonic() + self.prune_every
            self._wake.wait(self.interval)

    def drain(self) -> int:
        """Deliver until the outbox has nothing due; a storage failure waits for the next round."""
        total = 0
        try:
            while True:
                settled = self.crm.dispatch_events(self.batch)
                total += settled
                if settled < self.batch:
                    break
        except CRMError as error:
            log.warning("event delivery deferred: %s", error)
        self.delivered += total
        return total

    def prune(self) -> int:
        from crmcore.outbox import prune

        if self.retention is None:
            return 0
        try:
            removed = prune(self.crm, self.retention)
        except CRMError as error:
            log.warning("outbox pruning deferred: %s", error)
            return 0
        self.pruned += removed
        return removed


def work(url: str, stop: threading.Event, **options: float | timedelta | None) -> Dispatcher:
    """Run a dispatcher in the foreground on the CRM at `url` until `stop` is set
    (what `crmcore worker` does in a process of its own)."""
    import crmcore

    crm = crmcore.open(url)
    try:
        dispatcher = Dispatcher(crm, **options)  # type: ignore[arg-type]
        dispatcher.run(stop)
        return dispatcher
    finally:
        crm.close()
