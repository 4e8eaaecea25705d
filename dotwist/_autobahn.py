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

from autobahn.websocket.protocol import WebSocketProtocol

_STATE_OPEN = WebSocketProtocol.STATE_OPEN


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


class FastMessages:
    """A fast path for whole, unfragmented, uncompressed data frames, mixed into an Autobahn
    ``WebSocketServerProtocol`` subclass that defines ``_deliver(message)``.

    Autobahn parses every frame through a general state machine (a ``FrameHeader``, a masker
    object, an incremental UTF-8 validator, five callbacks and a list join per message) and builds
    every outgoing frame the same general way. Most messages need none of that: a client sends one
    masked frame with FIN set that is already complete in the read buffer. ``dataReceived`` takes
    such frames itself (header, length, unmask, UTF-8 check by decoding) and hands each message to
    ``_deliver``; ``_sendFast`` writes an unmasked server frame in one ``write``.

    Anything else goes to Autobahn unchanged, from the first byte it does not handle: fragments,
    control frames (ping, pong, close), compressed frames, reserved bits or opcodes, unmasked or
    non-minimal lengths, frames over the size limits, invalid UTF-8, partial frames, a message
    Autobahn has already started, and any state other than OPEN. Autobahn then reports errors
    with the close codes it always uses (1002, 1007, 1009). The fast path does not count Autobahn's
    ``trafficStats``; nothing in dotwist reads them.
    """

    def dataReceived(self, data: bytes) -> None:
        if (
            self.state != _STATE_OPEN
            or self.current_frame is not None
            or self.inside_message
            or self._perMessageCompress is not None
            or self.logOctets
            or self.logFrames
        ):
            self._dataReceived(data)
            return
        buf = self.data + data if self.data else data
        n = len(buf)
        i = 0
        limit = self.maxMessagePayloadSize
        frameLimit = self.maxFramePayloadSize
        if 0 < frameLimit and (limit <= 0 or frameLimit < limit):
            limit = frameLimit
        deliver = self._deliver
        while n - i >= 6:
            b0 = buf[i]
            b1 = buf[i + 1]
            # FIN, no RSV bits, text (1) or binary (2); masked.
            if (b0 != 0x81 and b0 != 0x82) or b1 < 0x80:
                break
            length = b1 & 0x7F
            if length < 126:
                start = i + 6
            elif length == 126:
                if n - i < 8:
                    break
                length = (buf[i + 2] << 8) | buf[i + 3]
                if length < 126:
                    break
                start = i + 8
            else:
                if n - i < 14:
                    break
                length = int.from_bytes(buf[i + 2 : i + 10], "big")
                if length < 0x10000 or length > 0x7FFFFFFFFFFFFFFF:
                    break
                start = i + 14
            if 0 < limit < length:
                break
            end = start + length
            if end > n:
                break
            if length >= LARGE:
                payload = _originalMasker(buf[start - 4 : start], length).process(buf[start:end])
            elif length:
                key = buf[start - 4 : start] * ((length >> 2) + 1)
                payload = (
                    int.from_bytes(buf[start:end], "little") ^ int.from_bytes(key[:length], "little")
                ).to_bytes(length, "little")
            else:
                payload = b""
            if b0 == 0x81:
                try:
                    message: Any = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # Autobahn fails the connection with 1007, from this frame on
            else:
                message = payload
            i = end
            deliver(message)
            if self.state != _STATE_OPEN:
                break
        if i:
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
            buf = buf[i:]
        self.data = buf
        if buf:
            self.consumeData()

    def _sendFast(self, payload: bytes, isBinary: bool) -> None:
        """Send one message as a single unmasked frame (Autobahn's ``sendMessage`` otherwise)."""
        length = len(payload)
        if (
            self._perMessageCompress is not None
            or self.send_queue
            or self.logFrames
            or self.logOctets
            or self.maskServerFrames
            or 0 < self.autoFragmentSize < length
            or 0 < self.maxMessagePayloadSize < length
        ):
            self.sendMessage(payload, isBinary)
            return
        b0 = 0x82 if isBinary else 0x81
        if length <= 125:
            header = bytes((b0, length))
        elif length <= 0xFFFF:
            header = bytes((b0, 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((b0, 127)) + length.to_bytes(8, "big")
        self.transport.write(header + payload)


def _originalMasker(mask: bytes, length: int) -> Any:
    from autobahn.websocket import protocol

    factory = protocol.create_xor_masker
    return getattr(factory, "__wrapped__", factory)(mask, length)


