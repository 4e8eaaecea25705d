"""The limits a deployment can change. Defaults are Cloudflare's where Cloudflare has one."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    #: Largest WebSocket message accepted from a client (Cloudflare: 32 MiB). Larger: close 1009.
    maxMessageSize: int = 32 * MiB
    #: Largest HTTP request body a Worker is given (Cloudflare's lowest plan: 100 MB). Larger: 413.
    maxRequestBodySize: int = 100 * 1000 * 1000
    #: How long ``blockConcurrencyWhile`` may run before the object is reset (Cloudflare: 30 s).
    blockConcurrencyTimeout: float = 30.0
    #: How long a client has to complete the WebSocket opening handshake, in seconds.
    openHandshakeTimeout: float = 10.0
    #: How long to wait for the peer's close frame before dropping the connection, in seconds.
    closeHandshakeTimeout: float = 2.0
    #: On shutdown, how long open sockets get to finish their close handshake, in seconds.
    shutdownTimeout: float = 5.0
    #: On shutdown (SIGTERM), how long requests and object events already running get to finish
    #: before storage is flushed and sockets are closed, in seconds (Cloudflare gave in-flight
    #: work 30 s on a runtime update until 2026, and up to 20 minutes since).
    drainTimeout: float = 30.0
    #: An object whose only activity is hibernatable WebSockets leaves memory after this long idle.
    hibernateAfter: float = 10.0
    #: An object with no sockets and nothing pending leaves memory after this long idle
    #: (Cloudflare: 70 to 140 s).
    evictAfter: float = 70.0
    #: Calls (requests and RPC) pending at one object, queued or running, before new ones are
    #: refused with an ``overloaded`` error (HTTP 503 from outside). Cloudflare does not publish
    #: its threshold; this default lets a burst queue for a few seconds at typical rates.
    maxPendingCalls: int = 1000
    #: Bytes of request bodies and RPC arguments pending at one object, before refusing.
    maxPendingBytes: int = 64 * MiB
    #: ``ctx.waitUntil`` keeps an idle object in memory for at most this long, in seconds.
    waitUntilTimeout: float = 30.0
    #: CPU time one invocation of a handler may use, in seconds, summed over its steps; past it,
    #: it is stopped at its next ``await`` with "exceeded CPU time limit" and its object is reset
    #: (Cloudflare: 30 s by default on paid plans, configurable up to 5 minutes). asyncio runner only.
    cpuTimeLimit: float = 30.0
    #: A single step of a handler (the code between two awaits) that holds the event loop longer
    #: than this, in seconds, is logged with the handler's name: every other client waits meanwhile.
    blockedLoopWarning: float = 0.1
    #: Seconds a client has to send a request's headers, counted from connecting or from the end
    #: of its previous response (so it also closes idle keep-alive connections). Later: 408 and
    #: the connection closes (or just the close, if nothing of a request had arrived). Apache's
    #: ``RequestReadTimeout`` starts at 20 s, nginx and Node.js wait 60 s; 20 s covers a slow
    #: mobile client and several TCP retransmissions (1 + 2 + 4 + 8 s) while trickling clients are
    #: gone three times sooner.
    headerTimeout: float = 20.0
    #: Seconds a client has to send a whole request, body included, counted like
    #: ``headerTimeout`` (Node.js's ``requestTimeout`` default). Later: 408. At the default body
    #: limit that asks for 333 kB/s; raise it with the body limit for slow uploads.
    requestTimeout: float = 300.0
    #: Length of the listen queue for ``--listen`` endpoints that do not set ``backlog=``
    #: (Twisted's default is 50), capped by ``/proc/sys/net/core/somaxconn``. A burst larger
    #: than the queue waits on SYN retries (seconds each) instead of getting an answer.
    listenBacklog: int = 4096

    def replace(self, **changes: Any) -> "Limits":
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"Unknown limit(s): {', '.join(sorted(unknown))}")
        for name, value in changes.items():
            if value is None or value <= 0:
                raise ValueError(f"Limit {name} must be positive, not {value!r}")
        return replace(self, **changes)
