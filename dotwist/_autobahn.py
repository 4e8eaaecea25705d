"""Autobahn costs that buy nothing in production, removed without changing behaviour.

Masking: Autobahn builds a new XOR masker for every frame; with its C accelerator (NVX) that is
a cffi object with a gc hook and a fresh buffer per call, which costs more than unmasking a small
frame itself. ``IntMasker`` unmasks with one big-integer XOR (C speed, no per-frame C objects);
frames of ``LARGE`` bytes or more still go to Autobahn's own (SIMD) masker.

Autobahn formats its debug log arguments eagerly: every connection pretty-prints its whole
configuration (``pformat``, about a fifth of the CPU of opening a connection) and every message
sent highlights type names (``hltype``/``hlval``, six calls per echoed message), even when debug
logging is off. In the two Autobahn modules that use them on hot paths, ``pformat`` is replaced by
a version that returns a placeholder formatting itself only if the log line is emitted, and the
two highlighters by the identity (a debug line then shows the plain value, without colours).
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


LARGE = 4096


def _plain(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


class IntMasker:
    """A WebSocket XOR masker with Autobahn's interface (``process``, ``pointer``, ``reset``)."""

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = bytes(mask)
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        if not n:
            return b""
        shift = self._ptr & 3
        mask = self._mask[shift:] + self._mask[:shift] if shift else self._mask
        key = mask * ((n >> 2) + 1)
        self._ptr += n
        return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(n, "little")


def _maskerFactory(original: Callable[..., Any]) -> Callable[..., Any]:
    def create_xor_masker(mask: bytes, length: Any = None) -> Any:
        if length is not None and length >= LARGE:
            return original(mask, length)
        return IntMasker(mask)

    create_xor_masker.__wrapped__ = original  # type: ignore[attr-defined]
    return create_xor_masker


def install() -> None:
    """Idempotent: patch the hot-path formatting helpers of Autobahn's WebSocket modules."""
    from autobahn.twisted import websocket as twistedWebsocket
    from autobahn.websocket import protocol

    if not hasattr(protocol.create_xor_masker, "__wrapped__"):
        protocol.create_xor_masker = _maskerFactory(protocol.create_xor_masker)
    for module in (protocol, twistedWebsocket):
        original = getattr(module, "pformat", None)
        if original is not None and not hasattr(original, "__wrapped__"):
            module.pformat = _deferFormatting(original)
        for name in ("hltype", "hlval"):
            if hasattr(module, name):
                setattr(module, name, _plain)
