"""Autobahn costs that buy nothing in production, removed without changing behaviour.

Autobahn formats its debug log arguments eagerly: every connection pretty-prints its whole
configuration (``pformat``, about a fifth of the CPU of opening a connection) and every message
sent highlights type names (``hltype``/``hlval``), even when debug logging is off. Here those three
names, in the two Autobahn modules that use them on hot paths, are replaced by versions that
return a placeholder which formats itself only if the log line is actually emitted. Debug output,
when enabled, is unchanged.
"""

from __future__ import annotations

from typing import Any, Callable


class _Later:
    __slots__ = ("_fn", "_arg")

    def __init__(self, fn: Callable[[Any], str], arg: Any) -> None:
        self._fn = fn
        self._arg = arg

    def __str__(self) -> str:
        return str(self._fn(self._arg))

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)


def _deferFormatting(fn: Callable[[Any], str]) -> Callable[[Any], _Later]:
    def later(arg: Any) -> _Later:
        return _Later(fn, arg)

    later.__wrapped__ = fn  # type: ignore[attr-defined]
    return later


def install() -> None:
    """Idempotent: patch the hot-path formatting helpers of Autobahn's WebSocket modules."""
    from autobahn.twisted import websocket as twistedWebsocket
    from autobahn.websocket import protocol

    for module in (protocol, twistedWebsocket):
        for name in ("pformat", "hltype", "hlval"):
            original = getattr(module, name, None)
            if original is not None and not hasattr(original, "__wrapped__"):
                setattr(module, name, _deferFormatting(original))
