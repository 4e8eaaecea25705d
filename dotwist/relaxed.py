"""Relaxed handler calls: positional arguments a handler does not declare are dropped.

Cloudflare's Python Workers call ``fetch`` (of a Worker and of a Durable Object), ``alarm``,
``webSocketMessage``, ``webSocketClose`` and ``webSocketError`` this way (Pyodide's
``relaxed_call``), so published code writes ``async def alarm(self)`` or ``async def
fetch(self)``, and dotwist does the same for every app. Missing arguments are not filled in: a
handler that declares more than the runtime passes still fails with ``TypeError``. RPC methods and
``scheduled`` are called strictly.

How many positional arguments a handler takes is worked out once per class and handler name
(these calls are on the message path), from the bound method's signature, so ``self``,
``staticmethod`` and ``classmethod`` all count right. The answer is kept per class: a handler
assigned to an instance after the class's first call of that name is trimmed as its class's was.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

__all__ = ["callRelaxed", "positionalLimit", "trim"]

_KEEP = -1  # the handler takes *args (or has no signature): pass everything

#: (class, handler name) -> positional limit. Keyed by the class itself: classes live as long as
#: the app does, and a weak mapping costs more per lookup than the rest of the call.
_limits: dict[tuple[type, str], int] = {}


def _limitOf(method: Callable[..., Any]) -> int:
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):  # builtins and other callables without a signature
        return _KEEP
    count = 0
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return _KEEP
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def positionalLimit(instance: object, name: str, method: Callable[..., Any]) -> Optional[int]:
    """How many positional arguments ``method`` (``instance.name``) accepts; None if any number."""
    key = (type(instance), name)
    limit = _limits.get(key)
    if limit is None:
        limit = _limitOf(method)
        if name not in getattr(instance, "__dict__", ()):
            _limits[key] = limit
    return None if limit == _KEEP else limit


def trim(instance: object, name: str, method: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
    """``args`` without the trailing ones ``method`` (``instance.name``) does not declare."""
    limit = _limits.get((type(instance), name))
    if limit is None:
        limit = positionalLimit(instance, name, method)
        if limit is None:
            return args
    if limit < 0 or limit >= len(args):
        return args
    return args[:limit]


def callRelaxed(function: Callable[..., Any], *args: Any) -> Any:
    """Call ``function`` with the leading ``args`` it declares (inspected on each call: for
    functions that are not methods of a class, such as a module's ``on_fetch``)."""
    limit = _limitOf(function)
    return function(*(args if limit < 0 or limit >= len(args) else args[:limit]))
