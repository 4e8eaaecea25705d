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

Pure bookkeeping: neither gate schedules anything, reads a clock or touches a socket. The caller
supplies the function that runs an event (the actor sets its context there).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Optional

Event = tuple[Callable[..., object], tuple[Any, ...]]
OnFail = Optional[Callable[[BaseException], object]]


class InputGate:
    """Admits one object's events in order; holds them while locked."""

    __slots__ = ("_run", "_locks", "_waiting", "_draining")

    def __init__(self, run: Callable[[Callable[..., object], tuple[Any, ...]], None]) -> None:
        #: ``run(fn, args)`` runs one event (the actor wraps it in its context).
        self._run = run
        self._locks = 0
        self._waiting: deque[Event] = deque()
        self._draining = False

    @property
    def locked(self) -> bool:
        return self._locks > 0

    @property
    def waiting(self) -> int:
        """How many events wait at the gate."""
        return len(self._waiting)

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` now if the gate is open and nothing waits, else queue it."""
        if self._locks or self._waiting:
            self._waiting.append((fn, args))
            return
        self._run(fn, args)

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
                self._run(fn, args)
        finally:
            self._draining = False

    def clear(self) -> list[Event]:
        """Open the gate and take every waiting event out (the object is going away)."""
        waiting, self._waiting = list(self._waiting), deque()
        self._locks = 0
        return waiting


class OutputGate:
    """Holds one object's outgoing messages until the writes before them are durable."""

    __slots__ = ("_needed", "_durable", "_queue")

    def __init__(self) -> None:
        self._needed = 0  # the latest batch that output from now on must wait for
        self._durable = 0  # the latest batch known durable
        self._queue: deque[tuple[int, Callable[..., object], tuple[Any, ...], OnFail]] = deque()

    @property
    def held(self) -> bool:
        """Whether output sent now would wait."""
        return self._durable < self._needed or bool(self._queue)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def waitFor(self, batch: int) -> None:
        """A confirmed write went into ``batch``: output from now on waits until it is durable."""
        if batch > self._needed:
            self._needed = batch

    def send(self, fn: Callable[..., object], *args: Any, onFail: OnFail = None) -> None:
        """Run ``fn(*args)`` now if nothing it depends on is pending, else when it is durable.
        If those writes fail instead, ``onFail(error)`` is called and ``fn`` never is."""
        if self._queue or self._durable < self._needed:
            self._queue.append((self._needed, fn, args, onFail))
        else:
            fn(*args)

    def durableThrough(self, batch: int) -> None:
        """Batches up to ``batch`` are durable: send, in order, what waited only for them."""
        if batch > self._durable:
            self._durable = batch
        queue = self._queue
        while queue and queue[0][0] <= self._durable:
            _, fn, args, _ = queue.popleft()
            fn(*args)

    def fail(self, error: BaseException) -> None:
        """The writes the queued output depended on are lost: drop it, telling each waiter."""
        queue, self._queue = self._queue, deque()
        self._durable = self._needed
        for _, _, _, onFail in queue:
            if onFail is not None:
                onFail(error)


__all__ = ["Event", "InputGate", "OutputGate"]
