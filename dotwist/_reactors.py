"""What dotwist needs from Twisted's asyncio reactor, beyond what it does by default.

asyncio runs every callback in the ``contextvars`` context that was current when the callback was
scheduled. Twisted's asyncio reactor schedules its one timer handle (which runs every
``callLater``) and its socket handles from whatever code happens to be running: when that is a
Durable Object's event, the object's context (``dotwist.context.CURRENT``) is captured and every
later timer, and every event of a socket registered then, runs as if it were that object's code.
``isolateContexts`` makes the reactor schedule those handles from an empty context, so a timer or a
socket event starts with no current object, as it does under Twisted's other reactors.

It patches the one reactor instance it is given (its ``addReader``, ``addWriter`` and the private
``_reschedule``), wrapping Twisted's own code unchanged; ``tests/test_asyncio.py`` checks the
effect.
"""

from __future__ import annotations

import contextvars
from typing import Any, Callable

from twisted.logger import Logger

_log = Logger(namespace="dotwist.reactor")

_NAMES = ("addReader", "addWriter", "_reschedule")


def isolateContexts(reactor: Any) -> bool:
    """Make an asyncio reactor create its loop handles in empty contexts; False if ``reactor``
    is not one, or was done already."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor) or getattr(reactor, "_dotwistIsolated", False):
        return False
    for name in _NAMES:
        setattr(reactor, name, _inEmptyContext(getattr(reactor, name)))
    setattr(reactor, "_dotwistIsolated", True)
    _log.info("the asyncio reactor schedules its timers and sockets from an empty context")
    return True


def _inEmptyContext(method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        return contextvars.Context().run(method, *args)

    wrapped.__wrapped__ = method  # type: ignore[attr-defined]
    return wrapped


__all__ = ["isolateContexts"]
