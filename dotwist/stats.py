"""What the runtime counts as it runs: plain integers kept in the core, read at scrape time.

Each namespace has one ``NamespaceStats``; its objects (``Actor``), their storage sessions and the
alarm scheduler add to it where the thing counted happens. The message path is hot (a few
microseconds per message), so counting is an integer increment on an object already at hand, never
a call into a metrics library: ``dotwist.metrics`` turns these numbers into Prometheus metrics only
when it is scraped. Counts kept per object (its gates' waits, its store's bytes) are added to the
namespace's when the object leaves memory, and read from the live objects at scrape time.

Core: no I/O. ``timer`` (``time.perf_counter``) is read only to measure commit latency.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from typing import Callable, Sequence

__all__ = [
    "COMMIT_BUCKETS",
    "EVENT_KINDS",
    "Histogram",
    "NamespaceStats",
    "SOCKET_EVENTS",
]

#: The kinds of events an object runs, as metrics label them.
EVENT_KINDS = (
    "fetch",
    "rpc",
    "websocket_message",
    "websocket_close",
    "websocket_error",
    "alarm",
)
#: A plain socket's event names (``websocket._route``) and hibernatable handlers' -> the kind.
SOCKET_EVENTS = {"message": "websocket_message", "close": "websocket_close", "error": "websocket_error"}
#: Error kinds: the event kinds, plus what runs outside an event.
ERROR_KINDS = EVENT_KINDS + ("constructor", "block_concurrency", "wait_until", "listener", "timeout")

#: Commit latency buckets, in seconds: fsync on an SSD is 0.1-2 ms, on a disk or a busy VM 5-50 ms.
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Histogram:
    """Counts of observations per bucket (upper bounds, inclusive), their sum and count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at most that), +Inf last, as Prometheus wants them."""
        out = []
        total = 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            total += n
            out.append((bound, total))
        return out


class NamespaceStats:
    """The counts of one namespace (one Durable Object class binding)."""

    #: What measures commit latency (seconds, monotonic); tests may replace it on an instance.
    timer: Callable[[], float] = staticmethod(time.perf_counter)

    def __init__(self) -> None:
        #: Events delivered to objects, by kind (``EVENT_KINDS``).
        self.events: dict[str, int] = dict.fromkeys(EVENT_KINDS, 0)
        #: Plain (non-hibernatable) WebSocket events by their name, on the hot path.
        self.socketEvents: dict[str, int] = dict.fromkeys(SOCKET_EVENTS, 0)
        #: Exceptions that escaped user code, by kind (``ERROR_KINDS``).
        self.errors: dict[str, int] = dict.fromkeys(ERROR_KINDS, 0)
        self.constructed = 0
        self.resets = 0
        #: Objects that left memory, by the state they left in (hibernated, evicted, broken).
        self.departures: dict[str, int] = {"hibernated": 0, "evicted": 0, "broken": 0}
        #: Calls refused because an object had too many pending (the ``overloaded`` error).
        self.overloaded = 0
        #: Events that waited at a locked or busy input gate, and output held for durability, of
        #: objects no longer in memory (live objects' are read from their gates).
        self.inputGateWaits = 0
        self.outputGateWaits = 0
        #: Storage operations through ``ctx.storage``: read, write, sql, transaction.
        self.storageOps: dict[str, int] = {"read": 0, "write": 0, "sql": 0, "transaction": 0}
        #: Key-value bytes (keys and encoded values) read and written, of closed stores.
        self.storageBytesRead = 0
        self.storageBytesWritten = 0
        #: SQL rows read and written by ``sql.exec``.
        self.sqlRowsRead = 0
        self.sqlRowsWritten = 0
        self.commitSeconds = Histogram(COMMIT_BUCKETS)
        self.commitFailures = 0
        #: Alarm handler runs (first tries and retries), retries scheduled, and alarms given up.
        self.alarmRuns = 0
        self.alarmRetries = 0
        self.alarmFailures = 0
