"""Building a million small records without the cyclic garbage collector in the way.

Each tuple a query returns or a score creates is a container the collector tracks;
creating millions of them sets off collection after collection, each walking every
object alive, which doubles the time of a summary or an RFM run on a large base
(measured at 1,000,000 customers). The records made here are acyclic, so pausing the
collector while they are made frees nothing late; it runs again right after.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused_collection() -> Iterator[None]:
    """The cyclic collector off for the block (if it was on), and back on after it."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()
