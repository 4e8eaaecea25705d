"""The input gate and the output gate of one Durable Object (workerd's ``io-gate.h`` vocabulary).

**Input gate.** Events (requests, RPC calls, WebSocket messages, alarms, replies to the object's
own outgoing calls) enter an object through its input gate. While the gate is open and nothing
waits, an event runs at once, synchronously, in the order it was sent; while the gate is locked,
events wait in arrival order and run when the last lock is released. A lock is taken for the
whole of a ``blockConcurrencyWhile`` callback and of a storage ``transaction``; locks nest.

**Output gate.** What an object sends out (responses to its callers, WebSocket messages, calls and
requests to other services) must not leave before the writes it may depend on are durable. Every
write batch of the object has a sequence number; a confirmed write into batch ``n`` means that
all output from now on waits for batch ``n``. ``send`` runs an output at once if nothing it
depends on is pending, or queues it; ``durableThrough(n)`` releases, in order, what waited for
batches up to ``n``; ``fail(error)`` drops everything queued (the writes it depended on are lost)
and tells each waiter's ``onFail`` why. Order is kept: an output never overtakes one queued before
it.

Pure bookkeeping: neither gate schedules anything, reads a clock or touches a socket. The input
gate runs each event with its owner set in a context variable (``dotwist.context.CURRENT``), so
that code the event runs knows which object it belongs to.
"""

from __future__ import annotations

import contextvars
from collections import deque
from typing import Any, Callable, Optional

Event = tuple[Callable[..., object], tuple[Any, ...]]
OnFail = Optional[Callable[[BaseException], object]]


class InputGate:
    """Admits one object's events in order; holds them while locked."""

    __slots__ = ("_context", "_owner", "_locks", "_waiting", "_draining", "waits")

    def __init__(self, context: contextvars.ContextVar[Any], owner: object) -> None:
        #: Events run with ``context`` set to ``owner``.
        self._context = context
        self._owner = owner
        self._locks = 0
        self._waiting: deque[Event] = deque()
        self._draining = False
        #: How many events had to wait (for metrics).
        self.waits = 0

    @property
    def locked(self) -> bool:
        return self._locks > 0

    @property
    def waiting(self) -> int:
        """How many events wait at the gate."""
        return len(self._waiting)

    def submit(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        """Run ``fn(*args)`` now if the gate is open and nothing waits, else queue it."""
        if self._locks or self._waiting:
            self._waiting.append((fn, args))
            self.waits += 1
            return
        token = self._context.set(self._owner)
        try:
            fn(*args)
        finally:
            self._context.reset(token)

    def lock(self) -> None:
        """Hold back events until a matching ``unlock``."""
        self._locks += 1

    def unlock(self) -> None:
        """Release one lock; when the last goes, waiting events run in order."""
        if not self._locks:
            return
        self._locks -= 1
        if not self._locks:
            self.drain()

    def drain(self) -> None:
        """Run waiting events while the gate stays open (a running event may lock it again)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._waiting and not self._locks:
                fn, args = self._waiting.popleft()
                token = self._context.set(self._owner)
                try:
                    fn(*args)
                finally:
                    self._context.reset(token)
        finally:
            self._draining = False

    def clear(self) -> list[Event]:
        """Open the gate and take every waiting event out (the object is going away)."""
        waiting, self._waiting = list(self._waiting), deque()
        self._locks = 0
        return waiting


class OutputGate:
    """Holds one object's outgoing messages until the writes before them are durable."""

    __slots__ = ("_needed", "_durable", "_queue", "held", "waits")

    def __init__(self) -> None:
        self._needed = 0  # the latest batch that output from now on must wait for
        self._durable = 0  # the latest batch known durable
        self._queue: deque[tuple[int, Callable[..., object], tuple[Any, ...], OnFail]] = deque()
        #: Whether output sent now would wait (kept up to date: read it freely).
        self.held = False
        #: How many outputs had to wait for durability (for metrics).
        self.waits = 0

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def waitFor(self, batch: int) -> None:
        """A confirmed write went into ``batch``: output from now on waits until it is durable."""
        if batch > self._needed:
            self._needed = batch
            self.held = self._durable < batch or bool(self._queue)

    def send(self, fn: Callable[..., object], args: tuple[Any, ...]) -> None:
        """Run ``fn(*args)`` now if nothing it depends on is pending, else when it is durable
        (never, if those writes fail)."""
        if self.held:
            self._queue.append((self._needed, fn, args, None))
            self.waits += 1
        else:
            fn(*args)

    def sendOrFail(self, fn: Callable[[Any], object], arg: Any, onFail: Callable[[BaseException], object]) -> None:
        """As ``send(fn, arg)``; if the writes it waits for fail, ``onFail(error)`` instead."""
        if self.held:
            self._queue.append((self._needed, fn, (arg,), onFail))
            self.waits += 1
        else:
            fn(arg)

    def durableThrough(self, batch: int) -> None:
        """Batches up to ``batch`` are durable: send, in order, what waited only for them."""
        if batch > self._durable:
            self._durable = batch
        queue = self._queue
        while queue and queue[0][0] <= self._durable:
            _, fn, args, _ = queue.popleft()
            fn(*args)
        self.held = self._durable < self._needed or bool(queue)

    def fail(self, error: BaseException) -> None:
        """The writes the queued output depended on are lost: drop it, telling each waiter."""
        queue, self._queue = self._queue, deque()
        self._durable = self._needed
        self.held = False
        for _, _, _, onFail in queue:
            if onFail is not None:
                onFail(error)


__all__ = ["Event", "InputGate", "OutputGate"]
