"""Whose code is running now: which Durable Object (``CURRENT``), or which Worker invocation
(``WORKER``), and so which ``Runtime``.

The runtime sets ``CURRENT`` around every event it runs in an object; code that acts on behalf of
the running object (a stub call, an outbound ``fetch``, ``WebSocket.accept``) reads it with
``currentActor()``. ``WORKER`` is set while a Worker's handler runs (``fetch``, an RPC call
through a service binding, ``scheduled``). ``currentRuntime()`` answers from either: what the
compatibility names need (``workers.env``, the compatibility date). Context variables, so asyncio
tasks and coroutines started by the code keep them.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Any, NamedTuple, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor
    from .worker import ExecutionContext, Runtime

CURRENT: contextvars.ContextVar[Optional["Actor"]] = contextvars.ContextVar(
    "dotwist_current_actor", default=None
)


class WorkerCall(NamedTuple):
    """One running Worker invocation: its runtime and its ``ctx``."""

    runtime: "Runtime"
    ctx: "ExecutionContext"


WORKER: contextvars.ContextVar[Optional[WorkerCall]] = contextvars.ContextVar(
    "dotwist_current_worker", default=None
)


def currentActor() -> Optional["Actor"]:
    """The object whose code is running now, or None in a Worker."""
    return CURRENT.get()


def currentRuntime() -> Optional["Runtime"]:
    """The runtime whose code (an object's or a Worker's) is running now, or None."""
    actor = CURRENT.get()
    if actor is not None:
        runtime: Any = actor.registry.runtime
        return runtime  # type: ignore[no-any-return]
    call = WORKER.get()
    return call.runtime if call is not None else None


__all__ = ["CURRENT", "WORKER", "WorkerCall", "currentActor", "currentRuntime"]
