"""Which Durable Object's code is running now (None in a Worker).

The runtime sets ``CURRENT`` around every event it runs in an object; code that acts on behalf of
the running object (a stub call, an outbound ``fetch``, ``WebSocket.accept``) reads it with
``currentActor()``. A context variable, so asyncio tasks started by an object keep it.
"""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor

CURRENT: contextvars.ContextVar[Optional["Actor"]] = contextvars.ContextVar(
    "dotwist_current_actor", default=None
)


def currentActor() -> Optional["Actor"]:
    """The object whose code is running now, or None in a Worker."""
    return CURRENT.get()


__all__ = ["CURRENT", "currentActor"]
