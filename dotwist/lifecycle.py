"""Where one Durable Object is in its life, and the pure decisions about staying in memory.

An object (the runtime's ``Actor`` for one ID) moves through these states::

    CONSTRUCTING --> LIVE --> HIBERNATED   (idle, with hibernatable WebSockets still open)
         |            |  \\-> EVICTED      (idle, nothing open)
         |            \\----> BROKEN       (reset: an error, a failed write, abort(), a timeout)
         \\-----------------> BROKEN       (the constructor raised)

``HIBERNATED``, ``EVICTED`` and ``BROKEN`` are final for that incarnation: the next event for the
ID constructs a new one. Storage is committed before an object leaves memory; a reset drops
what was not yet committed. Nothing here reads a clock or schedules a timer: callers pass the time
in and act on the answer.
"""

from __future__ import annotations

import enum
from typing import Iterable


class ObjectLifecycle(enum.Enum):
    CONSTRUCTING = "constructing"
    LIVE = "live"
    HIBERNATED = "hibernated"
    EVICTED = "evicted"
    BROKEN = "broken"

    @property
    def inMemory(self) -> bool:
        return self in (ObjectLifecycle.CONSTRUCTING, ObjectLifecycle.LIVE)

    @property
    def final(self) -> bool:
        return not self.inMemory


_ALLOWED: dict[ObjectLifecycle, frozenset[ObjectLifecycle]] = {
    ObjectLifecycle.CONSTRUCTING: frozenset({ObjectLifecycle.LIVE, ObjectLifecycle.BROKEN}),
    ObjectLifecycle.LIVE: frozenset(
        {ObjectLifecycle.HIBERNATED, ObjectLifecycle.EVICTED, ObjectLifecycle.BROKEN}
    ),
    ObjectLifecycle.HIBERNATED: frozenset(),
    ObjectLifecycle.EVICTED: frozenset(),
    ObjectLifecycle.BROKEN: frozenset(),
}


class LifecycleError(RuntimeError):
    """A transition the lifecycle does not allow (a bug in the runtime, never user input)."""


def transition(current: ObjectLifecycle, to: ObjectLifecycle) -> ObjectLifecycle:
    """``to``, if an object in ``current`` may move there; else ``LifecycleError``."""
    if to not in _ALLOWED[current]:
        raise LifecycleError(f"A Durable Object cannot go from {current.value} to {to.value}")
    return to


def idleDelay(hasHibernatableSockets: bool, hibernateAfter: float, evictAfter: float) -> float:
    """How long an idle object stays in memory: hibernation comes sooner than eviction."""
    return hibernateAfter if hasHibernatableSockets else evictAfter


def pinned(
    *,
    running: int,
    waitingAtGate: int,
    gateLocked: bool,
    outputHeld: bool,
    liveSockets: int,
    storageBusy: bool,
    waitUntilSince: Iterable[float],
    now: float,
    waitUntilTimeout: float,
) -> bool:
    """Whether something keeps the object in memory however long it has been idle: an event
    running or waiting, a locked gate, output not yet sent, a plain (non-hibernatable) WebSocket,
    a commit or transaction in progress, or a ``waitUntil`` task younger than its cap."""
    if running or waitingAtGate or gateLocked or outputHeld or liveSockets or storageBusy:
        return True
    return any(now - since < waitUntilTimeout for since in waitUntilSince)


def leaveAs(hasHibernatableSockets: bool) -> ObjectLifecycle:
    """The state an idle object leaves memory in."""
    return ObjectLifecycle.HIBERNATED if hasHibernatableSockets else ObjectLifecycle.EVICTED


__all__ = ["LifecycleError", "ObjectLifecycle", "idleDelay", "leaveAs", "pinned", "transition"]
