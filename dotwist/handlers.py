"""Running user code: a handler may return a value, a ``Deferred``, a coroutine or any awaitable.

Every place the runtime calls into a Worker or a Durable Object (``fetch``, RPC methods,
``alarm``, WebSocket handlers and listeners, ``blockConcurrencyWhile`` callbacks, ``waitUntil``
tasks) goes through ``invoke``, so that how user code runs is decided in one place.
"""

from __future__ import annotations

import inspect
from typing import Any, Awaitable, Callable, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

T = TypeVar("T")


def asDeferred(result: object) -> Deferred[Any]:
    """A ``Deferred`` for what user code returned: itself if it is one, the coroutine or
    awaitable driven to completion, or a plain value already fired."""
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    if inspect.isawaitable(result):
        return Deferred.fromCoroutine(_await(result))
    return succeed(result)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def invoke(fn: Callable[..., object], *args: Any) -> Deferred[Any]:
    """Call ``fn(*args)``; a synchronous exception becomes a failed ``Deferred``."""
    try:
        result = fn(*args)
    except BaseException:
        return fail()
    return asDeferred(result)


__all__ = ["asDeferred", "invoke"]
