"""The fast path for whole data frames, mixed into dotwist's Autobahn protocol.

Nothing here changes Autobahn itself: ``FastMessages`` is a mixin for a
``WebSocketServerProtocol`` subclass, and it only overrides that subclass's methods. It relies on
Autobahn's protocol internals (``_dataReceived``, ``data``, ``current_frame``, ``inside_message``,
``_perMessageCompress``, ``send_queue``, ``trafficStats``, the auto-ping timer), which is why it
lives in this one module; ``tests/test_fast_messages.py`` checks it byte for byte against stock
Autobahn, so an Autobahn upgrade that changes them fails there first.

Besides the message path, a few of Autobahn's per-connection methods are given without their
debug log lines: Autobahn formats those lines' arguments (``hltype``, ``hlval``) before the logger
decides to drop them, about a tenth of the CPU of a short connection's life.

The mixin also owns every write the protocol makes (``sendFast`` and ``sendData``, through which
Autobahn sends pongs, close frames and compressed messages), so it bounds what a client that does
not read can make the server hold: see ``FastMessages.pauseProducing``.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import re
from collections import deque
from collections.abc import Iterable, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol
from urllib import parse

import txaio
from autobahn.twisted.util import create_transport_details
from autobahn.util import _is_tls_error, _maybe_tls_reason
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import (
    TrafficStats,
    WebSocketProtocol,
    _is_same_origin,
    _url_to_origin,
)
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from autobahn.websocket.utf8validator import Utf8Validator
from autobahn.websocket.xormasker import create_xor_masker  # type: ignore[attr-defined]
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

_STATE_OPEN = WebSocketProtocol.STATE_OPEN
_STATE_CONNECTING = WebSocketProtocol.STATE_CONNECTING
_STATE_CLOSED = WebSocketProtocol.STATE_CLOSED
#: RFC 6455's GUID, hashed with the client's key into Sec-WebSocket-Accept.
_WS_MAGIC = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Set by the opening handshake (Autobahn's or ``FastMessages.openParsed``) and read by nothing after.
_HANDSHAKE_ONLY = (
    "http_headers", "http_request_params", "http_status_line", "http_request_uri",
    "http_request_path", "http_request_host", "http_request_data", "http_response_data",
    "websocket_origin", "websocket_protocols", "websocket_extensions", "_wskey",
    "openHandshakeTimeout",
)

# What Autobahn's handshake parser (``parseHttpHeader``, ``processHandshake``) accepts.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_FIELD_VALUE_INVALID = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(r"[\x21-\x22\x24-\x7e]+\Z")  # visible ASCII but '#'
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==\Z")

#: Frames this large or larger are unmasked by Autobahn's masker (SIMD with its accelerator);
#: smaller ones with one big-integer XOR, which costs less than building a masker.
LARGE = 4096


if TYPE_CHECKING:  # pragma: no cover

    class _Protocol(Protocol):
        """What the mixin uses of Autobahn's WebSocket protocol (whose attributes Autobahn sets
        dynamically, so its own annotations cannot describe them)."""

        state: int
        current_frame: Any
        inside_message: bool
        _perMessageCompress: Any
        logOctets: bool
        logFrames: bool
        data: bytes
        maxMessagePayloadSize: int
        maxFramePayloadSize: int
        autoPingTimeoutCall: Any
        autoPingRestartOnAnyTraffic: bool
        send_queue: Any
        maskServerFrames: bool
        autoFragmentSize: int
        transport: Any
        trafficStats: Any
        factory: Any
        log: Any

        def _dataReceived(self, data: bytes) -> None: ...

        def _cancelAutoPingTimeoutCall(self) -> None: ...

        def consumeData(self) -> None: ...

        onCloseFrame: Any

        sendMessage: Any

        def sendData(self, data: bytes, sync: bool = False, chopsize: Any = None) -> None: ...

        wasClean: bool
        wasNotCleanReason: Any
        is_closed: Any

        def dropConnection(self, abort: bool = False) -> None: ...

        trustXForwardedFor: int
        _transport_details: Any
        is_server: Any
        tcpNoDelay: bool
        CONFIG_ATTRS: Any
        trackTimings: bool
        openHandshakeTimeout: float

        def onOpenHandshakeTimeout(self) -> None: ...

        versions: Any
        allowedOriginsPatterns: Any
        maxConnections: int
        peer: Any
        http_status_line: str
        http_headers: dict[str, str]
        http_request_uri: str
        http_request_path: str
        http_request_params: dict[str, list[str]]
        http_request_host: str
        websocket_version: int
        websocket_protocols: list[str]
        websocket_origin: str
        websocket_extensions: list[Any]
        _wskey: str

        def _parseExtensionsHeader(self, header: str) -> list[Any]: ...

        def onConnect(self, request: Any) -> Any: ...

        def failHandshake(self, reason: str, code: int = 400) -> None: ...

        def succeedHandshake(self, res: Any) -> None: ...

        autoPingInterval: float
        websocket_protocol_in_use: Any
        websocket_extensions_in_use: list[Any]
        http_response_data: str
        openHandshakeTimeoutCall: Any
        is_open: Any

        def _onOpen(self) -> None: ...

else:
    _Protocol = object


#: Header names as twisted.web gives them (``getAllRawHeaders``), each a valid field name, with
#: the name ``checkParsedHandshake`` keys it by: the names an upgrade request usually carries need
#: neither decoding nor the check of their characters.
_COMMON_NAMES = {
    raw: raw.decode("iso-8859-1").lower()
    for raw in (
        b"Host", b"Upgrade", b"Connection", b"Sec-Websocket-Key", b"Sec-Websocket-Version",
        b"Sec-Websocket-Protocol", b"Sec-Websocket-Extensions", b"Origin", b"User-Agent",
        b"Accept-Encoding", b"Accept-Language", b"Pragma", b"Cache-Control", b"Cookie",
    )
}


def _hasToken(value: str | None, token: str) -> bool:
    if value is None:
        return False
    if value.lower() == token:  # one token, the usual case
        return True
    return any(part.strip().lower() == token for part in value.split(","))


class _MadeOnFirstUse:
    """A class attribute standing for a per-connection object that is made, and stored on the
    instance (which then shadows this), the first time it is read."""

    def __init__(self, make: Any) -> None:
        self.make = make
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        value = self.make()
        instance.__dict__[self.name] = value
        return value


class ParsedHandshake:
    """What Autobahn's ``processHandshake`` finds in an opening handshake it accepts."""

    __slots__ = (
        "uri", "headers", "host", "path", "params", "version", "origin", "protocols",
        "extensions", "key",
    )

    def __init__(
        self, uri: str, headers: dict[str, str], host: str, path: str,
        params: dict[str, list[str]], version: int, origin: str, protocols: list[str],
        extensions: list[Any], key: str,
    ) -> None:
        self.uri = uri
        self.headers = headers
        self.host = host
        self.path = path
        self.params = params
        self.version = version
        self.origin = origin
        self.protocols = protocols
        self.extensions = extensions
        self.key = key


class FastMessages(_Protocol):
    """A fast path for whole, unfragmented, uncompressed data frames, mixed into an Autobahn
    ``WebSocketServerProtocol`` subclass that defines ``deliverMessage(message)``.

    Autobahn parses every frame through a general state machine (a ``FrameHeader``, a masker
    object, an incremental UTF-8 validator, five callbacks and a list join per message) and builds
    every outgoing frame the same general way. Most messages need none of that: a client sends one
    masked frame with FIN set that is already complete in the read buffer. ``dataReceived`` takes
    such frames itself (header, length, unmask, UTF-8 check by decoding) and hands each message to
    ``deliverMessage``; ``sendFast`` writes an unmasked server frame in one ``write``.

    Anything else goes to Autobahn unchanged, from the first byte it does not handle: fragments,
    control frames (ping, pong, close), compressed frames, reserved bits or opcodes, unmasked or
    non-minimal lengths, frames over the size limits, invalid UTF-8, partial frames, a message
    Autobahn has already started, and any state other than OPEN. Autobahn then reports errors
    with the close codes it always uses (1002, 1007, 1009). The fast path does not count Autobahn's
    ``trafficStats``; nothing in dotwist reads them.
    """

    if TYPE_CHECKING:  # pragma: no cover
        data: bytes

    #: Bytes that may be queued for the client while it is behind (see ``pauseProducing``);
    #: the factory sets it from ``Limits.maxUnsentBytes``.
    maxUnsentBytes = 16 * 1024 * 1024
    #: Whether the transport's buffer is full (between ``pauseProducing`` and ``resumeProducing``).
    behind = False
    #: Bytes written since the client fell behind.
    unsentWhileBehind = 0
    #: What pauses and resumes reading from the client (set when registered as producer).
    _reading: Any = None

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
        pending: bytes = self.data
        buf = pending + data if pending else data
        n = len(buf)
        i = 0
        limit = self.maxMessagePayloadSize
        frameLimit = self.maxFramePayloadSize
        if 0 < frameLimit and (limit <= 0 or frameLimit < limit):
            limit = frameLimit
        deliver = self.deliverMessage
        dataEnd = 0  # where the last data frame taken here ended
        while n - i >= 6:
            b0 = buf[i]
            b1 = buf[i + 1]
            # FIN, no RSV bits, text (1) or binary (2); masked.
            if (b0 != 0x81 and b0 != 0x82) or b1 < 0x80:
                if b0 == 0x88 and b1 >= 0x80:
                    # A whole masked close frame (FIN, no RSV bits).
                    if self._closeFrame(buf, i, n):
                        i += (b1 & 0x7F) + 6
                        if self.state != _STATE_OPEN:
                            break
                        continue
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
                payload = create_xor_masker(buf[start - 4 : start], length).process(buf[start:end])
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
            i = dataEnd = end
            deliver(message)
            if self.state != _STATE_OPEN:
                break
        if i:
            # (Autobahn restarts the auto-ping on data frames, not on control frames.)
            if dataEnd and self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
            buf = buf[i:]
        self.data = buf
        if buf:
            self.consumeData()

    def _closeFrame(self, buf: bytes, i: int, n: int) -> bool:
        """The masked close frame at ``buf[i]``, if it is whole and one Autobahn's frame parser
        takes (a payload of 0 or 2 to 125 bytes): what ``processControlFrame`` does with it, which
        is to call ``onCloseFrame(code, reasonRaw)`` (and its checks of the code and reason, its
        reply and the drop of the connection are all Autobahn's, or the subclass's). False, having
        done nothing, for any other frame: Autobahn takes it from there."""
        length = buf[i + 1] & 0x7F
        if length > 125 or length == 1:
            return False
        start = i + 6
        end = start + length
        if end > n:
            return False
        code: int | None = None
        reasonRaw: bytes | None = None
        if length:
            key = buf[start - 4 : start] * ((length >> 2) + 1)
            payload = (
                int.from_bytes(buf[start:end], "little") ^ int.from_bytes(key[:length], "little")
            ).to_bytes(length, "little")
            code = (payload[0] << 8) | payload[1]
            if length > 2:
                reasonRaw = payload[2:]
        # Autobahn has consumed the frame when it calls onCloseFrame.
        self.data = buf[end:]
        self.onCloseFrame(code, reasonRaw)
        return True

    def deliverMessage(self, message: Any) -> None:
        """A whole message arrived: ``str`` for text (valid UTF-8), ``bytes`` for binary."""
        raise NotImplementedError()

    def sendFast(self, payload: bytes, isBinary: bool) -> None:
        """Send one message as a single unmasked frame (Autobahn's ``sendMessage`` otherwise)."""
        length = len(payload)
        if (
            self._perMessageCompress is not None
            or self.send_queue
            or self.logFrames
            or self.logOctets
            or self.maskServerFrames
            or 0 < self.autoFragmentSize < length
        ):
            self._sendSlow(payload, isBinary)
            return
        b0 = 0x82 if isBinary else 0x81
        if length <= 125:
            header = bytes((b0, length))
        elif length <= 0xFFFF:
            header = bytes((b0, 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((b0, 127)) + length.to_bytes(8, "big")
        behind = self.behind
        self.transport.write(header + payload)
        if behind:
            self._queuedWhileBehind(length + len(header))

    def _sendSlow(self, payload: bytes, isBinary: bool) -> None:
        # Autobahn's sendMessage refuses a message over ``maxMessagePayloadSize``, which is the
        # limit on *incoming* messages; the outgoing limit was checked at ``WebSocket.send()``.
        limit = self.maxMessagePayloadSize
        setattr(self, "maxMessagePayloadSize", 0)  # (mypy cannot type an assignment to it here)
        try:
            self.sendMessage(payload, isBinary)
        finally:
            setattr(self, "maxMessagePayloadSize", limit)

    # -- a client that does not read --------------------------------------------------------------

    def registerAsProducer(self) -> None:
        """Be the transport's producer, so that it says when its buffer fills and empties."""
        transport = self.transport
        try:
            transport.registerProducer(self, True)
        except RuntimeError:  # another producer is registered: no bound on this connection
            return
        # What stops and resumes reading: the transport itself (TCP), or for TLS the transport
        # under it (the TLS protocol only passes pause and resume on to its own producer).
        if not IPushProducer.providedBy(transport):
            transport = getattr(transport, "transport", None)
        self._reading = transport if IPushProducer.providedBy(transport) else None

    def pauseProducing(self) -> None:
        """The transport's buffer is full (over 64 KiB, Twisted's ``bufferSize``): the client is
        behind. Stop reading from it, so that what it sends cannot make more replies pile up
        (pings and their pongs included); and from now on count what is queued for it, up to
        ``maxUnsentBytes``."""
        if self.behind:
            return  # Twisted says so again on every write while the buffer stays full
        self.behind = True
        self.unsentWhileBehind = 0
        reading = self._reading
        if reading is not None:
            reading.pauseProducing()

    def resumeProducing(self) -> None:
        """The transport's buffer is empty again: the client caught up."""
        self.behind = False
        self.unsentWhileBehind = 0
        reading = self._reading
        if reading is not None and self.state != _STATE_CLOSED:
            reading.resumeProducing()

    def stopProducing(self) -> None:
        """The connection is gone (``connectionLost`` follows)."""

    def _queuedWhileBehind(self, n: int) -> None:
        unsent = self.unsentWhileBehind = self.unsentWhileBehind + n
        if unsent > self.maxUnsentBytes and self.state != _STATE_CLOSED:
            self.wasClean = False
            self.wasNotCleanReason = (
                f"the client is not reading: more than {self.maxUnsentBytes} bytes were queued "
                "for it (Limits.maxUnsentBytes)"
            )
            # A close frame would wait behind everything the client has not read: abort, which
            # frees the queued bytes now.
            self.dropConnection(abort=True)

    # -- the opening handshake, already parsed by twisted.web ---------------------------------

    def checkParsedHandshake(
        self, method: bytes, uri: bytes, rawHeaders: Iterable[tuple[bytes, Sequence[bytes]]]
    ) -> "ParsedHandshake | None":
        """An upgrade request that twisted.web has parsed, read and checked as Autobahn's
        ``processHandshake`` reads and checks the bytes ``WebSocketResource`` gives it (the request
        line ``METHOD URI HTTP/1.1`` and one line per header name, its values joined by commas).

        Returns what ``processHandshake`` would have found, or ``None`` for any request it would
        refuse, answer otherwise, or that this reading is not sure about: such a request goes to
        Autobahn as bytes, as before, and gets Autobahn's exact answer. Reads only the protocol's
        options and its factory, so it may be called before ``makeConnection``."""
        if method != b"GET" or not uri.startswith(b"/") or not _TARGET.match(uri.decode("iso-8859-1")):
            return None
        headers: dict[str, str] = {}
        common = _COMMON_NAMES
        invalid = _FIELD_VALUE_INVALID
        for rawName, values in rawHeaders:
            name = common.get(rawName)
            if name is None:
                name = rawName.decode("iso-8859-1")
                if not _FIELD_NAME.match(name):
                    return None
                name = name.lower()
            raw = values[0] if len(values) == 1 else b",".join(values)
            value = raw.decode("iso-8859-1").strip(" \t")
            if invalid.search(value):
                return None
            if name in headers:
                return None  # two lines for one name: Autobahn counts them; let it decide
            headers[name] = value
        factory = self.factory
        if "x-forwarded-for" in headers and self.trustXForwardedFor:
            return None
        host = headers.get("host")
        if host is None:
            return None
        host = host.strip()
        if ":" in host and not host.endswith("]"):
            hostName, port = host.rsplit(":", 1)
            try:
                number = int(str(port.strip()))
            except ValueError:
                return None
            if factory.externalPort and number != factory.externalPort:
                return None
            host = hostName
        if not _hasToken(headers.get("upgrade"), "websocket") or not _hasToken(
            headers.get("connection"), "upgrade"
        ):
            return None
        try:
            version = int(headers["sec-websocket-version"])
        except (KeyError, ValueError):
            return None
        if version not in self.versions:
            return None
        offered = headers.get("sec-websocket-protocol")
        protocols = [str(x.strip()) for x in offered.split(",")] if offered is not None else []
        if len(set(protocols)) != len(protocols):
            return None
        origin = headers.get("origin" if version >= 13 else "sec-websocket-origin")
        if origin is not None:
            origin = origin.strip()
            try:
                originTuple = _url_to_origin(origin)
                allowed = (originTuple == "null" and factory.allowNullOrigin) or _is_same_origin(
                    originTuple,
                    "https" if factory.isSecure else "http",
                    factory.externalPort or factory.port,
                    self.allowedOriginsPatterns,
                )
            except Exception:
                return None
            if not allowed:
                return None
        key = headers.get("sec-websocket-key")
        if key is None:
            return None
        key = key.strip()
        if not _KEY.match(key):
            return None
        extensions: list[Any] = []
        offeredExtensions = headers.get("sec-websocket-extensions")
        if offeredExtensions is not None:
            try:
                extensions = self._parseExtensionsHeader(offeredExtensions)
            except Exception:
                return None
        # processHandshake runs after the connection was counted (in _connectionMade)
        if self.maxConnections > 0 and factory.countConnections + 1 > self.maxConnections:
            return None
        text = uri.decode("iso-8859-1")
        if "?" not in text and ";" not in text and not text.startswith("//"):
            # What urlparse gives for such a target (no '#' either: _TARGET): the path alone.
            path = text
            params: dict[str, list[str]] = {}
        else:
            try:
                _scheme, _netloc, path, _params, query, fragment = parse.urlparse(text)
                params = parse.parse_qs(query)
            except Exception:
                return None
            if fragment:
                return None
        return ParsedHandshake(
            text, headers, host, path, params, version, origin or "", protocols, extensions, key
        )

    def expectParsedHandshake(self) -> None:
        """The handshake is complete and checked before the connection is made
        (``checkParsedHandshake``): no opening-handshake timer is needed, since ``openParsed``
        follows ``makeConnection`` at once."""
        setattr(self, "openHandshakeTimeout", 0)

    def openParsed(self, handshake: "ParsedHandshake", rest: bytes) -> None:
        """What ``processHandshake`` does once it has read and checked the request: the
        protocol's ``onConnect``, then Autobahn's ``succeedHandshake`` (or ``failHandshake`` if
        ``onConnect`` refuses). ``rest`` is what the client sent after the request's headers."""
        self.http_status_line = f"GET {handshake.uri} HTTP/1.1"
        self.http_headers = handshake.headers
        self.http_request_uri = handshake.uri
        self.http_request_path = handshake.path
        self.http_request_params = handshake.params
        self.http_request_host = handshake.host
        self.websocket_version = handshake.version
        self.websocket_protocols = handshake.protocols
        self.websocket_origin = handshake.origin
        self.websocket_extensions = handshake.extensions
        self.data = rest
        self._wskey = handshake.key
        request = ConnectionRequest(
            self.peer,
            handshake.headers,
            handshake.host,
            handshake.path,
            handshake.params,
            handshake.version,
            handshake.origin,
            handshake.protocols,
            handshake.extensions,
        )
        try:
            result = self.onConnect(request)
        except Exception:
            self._refusedByOnConnect(Failure())
            return
        if isinstance(result, Deferred) or inspect.isawaitable(result):
            # An onConnect that answers later, as processHandshake allows (txaio.as_future).
            later: Deferred[Any] = ensureDeferred(result)  # type: ignore[arg-type]
            later.addCallbacks(self.succeedHandshake, self._refusedByOnConnect)
            return
        self.succeedHandshake(result)

    def succeedHandshake(self, res: Any) -> None:
        """Autobahn's ``succeedHandshake`` (onConnect said yes: send the ``101`` and open), for
        the usual answer: ``(subprotocol or None, headers)`` to a request that offered no
        extensions, on a protocol that neither pings nor tracks timings. The response is the
        same bytes, built in one join and without the debug lines; any other case is Autobahn's."""
        if (
            type(res) is not tuple
            or len(res) != 2
            or self.websocket_extensions
            or self.autoPingInterval
            or self.trackedTimings
        ):
            super().succeedHandshake(res)  # type: ignore[safe-super]
            return
        protocol, headers = res
        if protocol is not None and protocol not in self.websocket_protocols:
            super().succeedHandshake(res)  # type: ignore[safe-super]  # raises, as it does
            return
        self.websocket_protocol_in_use = protocol
        self.websocket_extensions_in_use = []
        factory = self.factory
        lines = ["HTTP/1.1 101 Switching Protocols\r\n"]
        if factory.server:
            lines.append(f"Server: {factory.server}\r\n")
        lines.append("Upgrade: WebSocket\r\nConnection: Upgrade\r\n")
        for source in (factory.headers, headers):
            for name, value in source.items():
                if isinstance(value, str):
                    lines.append(f"{name}: {value}\r\n")
                    continue
                try:
                    values = iter(value)
                except TypeError:
                    values = iter((value,))
                for one in values:
                    lines.append(f"{name}: {one}\r\n")
        if protocol is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}\r\n")
        accept = base64.b64encode(hashlib.sha1(self._wskey.encode("utf8") + _WS_MAGIC).digest())
        lines.append(f"Sec-WebSocket-Accept: {accept.decode()}\r\n\r\n")
        response = "".join(lines)
        self.sendData(response.encode("utf8"))
        self.http_response_data = response
        self.state = _STATE_OPEN
        timer = self.openHandshakeTimeoutCall
        if timer is not None:
            timer.cancel()
            self.openHandshakeTimeoutCall = None
        # (Autobahn sets these two; left at the class's values, they take no room on the socket.)
        if self.inside_message:
            self.inside_message = False
        if self.current_frame is not None:
            self.current_frame = None
        self._onOpen()
        txaio.resolve(self.is_open, None)  # type: ignore[attr-defined]
        if self.data:
            self.consumeData()

    def _refusedByOnConnect(self, failure: Failure) -> None:
        # processHandshake's errback: a ConnectionDeny is the application's refusal; anything
        # else is user code that needs fixing, answered with 500.
        error = failure.value
        if isinstance(error, ConnectionDeny):
            self.failHandshake(str(error.reason), error.code)
            return
        self.log.warn("Unexpected exception in onConnect ['{err.value}']", err=failure)
        self.log.warn("{tb}", tb=failure.getTraceback())
        self.failHandshake(f"Internal server error: {error}", ConnectionDeny.INTERNAL_SERVER_ERROR)

    # -- Autobahn's per-connection methods, without the eagerly formatted debug lines ------------

    def sendData(self, data: bytes, sync: bool = False, chopsize: Any = None) -> None:
        """Autobahn's ``sendData``: the common case (write now) without its debug line."""
        if sync or chopsize or self.send_queue or self.logOctets:
            if type(self.send_queue) is not deque:
                self.send_queue = deque()  # Autobahn queues what it sends synchronously or chopped
            super().sendData(data, sync, chopsize)  # type: ignore[safe-super]
            return
        # Nor does it count the bytes into Autobahn's ``trafficStats`` (which ``sendFast`` does not
        # count either, and nothing reads): counting the handshake's response made a
        # ``TrafficStats`` on every connection, kept for the socket's life.
        behind = self.behind
        self.transport.write(data)
        if behind:
            self._queuedWhileBehind(len(data))

    def sendFrame(
        self, opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0,
        mask: bytes | None = None, payload_len: int | None = None, chopsize: int | None = None,
        sync: bool = False,
    ) -> None:
        """Autobahn's ``sendFrame``: a server's unmasked close, ping or pong frame (what it sends
        to close a connection or answer a ping) is written without the general frame builder."""
        if (
            opcode < 8  # data frames: Autobahn counts them in trafficStats
            or not fin
            or rsv
            or mask
            or payload_len is not None
            or len(payload) > 125
            or self.maskServerFrames
            or self.logFrames
            or not self.factory.isServer
        ):
            super().sendFrame(  # type: ignore[misc]
                opcode, payload, fin, rsv, mask, payload_len, chopsize, sync
            )
            return
        self.sendData(bytes((0x80 | opcode % 128, len(payload))) + payload, sync, chopsize)

    # What Autobahn's ``_connectionMade`` sets on every connection to a value that does not depend
    # on the connection: here they are class attributes, which the instance's own assignments
    # (Autobahn's, when something happens) shadow. Left on each instance, they took a connection's
    # attribute dict past the 30 keys that Python keeps compactly, to about 2 KiB per socket.
    _perMessageCompress: Any = None
    trackedTimings: Any = None
    send_state = WebSocketProtocol.SEND_STATE_GROUND
    # A send queue is made when something is first queued (``sendData``); an empty deque is 760 bytes.
    send_queue: Any = ()
    # Made when Autobahn first uses them: whole frames (FastMessages) need neither, so a socket
    # that only ever exchanged those never has them (about 0.3 KiB).
    trafficStats: Any = _MadeOnFirstUse(TrafficStats)
    utf8validator: Any = _MadeOnFirstUse(Utf8Validator)
    triggered = False
    wasMaxFramePayloadSizeExceeded = False
    wasMaxMessagePayloadSizeExceeded = False
    closedByMe = False
    failedByMe = False
    droppedByMe = False
    wasClean = False
    wasNotCleanReason: Any = None
    wasServerConnectionDropTimeout = False
    wasOpenHandshakeTimeout = False
    wasCloseHandshakeTimeout = False
    wasServingFlashSocketPolicyFile = False
    localCloseCode: Any = None
    localCloseReason: Any = None
    remoteCloseCode: Any = None
    remoteCloseReason: Any = None
    openHandshakeTimeoutCall: Any = None
    closeHandshakeTimeoutCall: Any = None
    autoPingTimeoutCall: Any = None
    autoPingPending: Any = None
    autoPingPendingCall: Any = None
    autoPingPendingSeq = 0
    autoPingPendingSent: Any = None
    websocket_protocol_in_use: Any = None
    inside_message = False
    current_frame: Any = None
    # The opening handshake's request, forgotten once the connection is open (``forgetHandshake``).
    http_headers: Any = MappingProxyType({})
    http_request_params: Any = MappingProxyType({})
    http_status_line = ""
    http_request_uri = ""
    http_request_path = ""
    http_request_host = ""
    http_response_data = ""
    websocket_origin = ""
    websocket_protocols: Any = ()
    websocket_extensions: Any = ()

    def connectionMade(self) -> None:
        """autobahn.twisted's ``connectionMade`` without its debug line, whose arguments
        (``hltype``, ``hlval``) are formatted whether or not the line is logged."""
        details = self._transport_details = create_transport_details(self.transport, self.is_server)
        details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
        self.peer = details.peer
        try:
            self.transport.setTcpNoDelay(self.tcpNoDelay)
        except Exception:  # as Autobahn: UNIX sockets, transports without the option
            pass
        self._connectionMade()

    def _connectionMade(self) -> None:
        # WebSocketServerProtocol._connectionMade (WebSocketProtocol's, then the count) without
        # its debug lines, setting on the instance only what differs per connection (the rest is
        # the class attributes above). A protocol that copies options from its factory
        # (CONFIG_ATTRS) or tracks timings gets Autobahn's own.
        if self.CONFIG_ATTRS or self.trackTimings:
            WebSocketProtocol._connectionMade(self)  # type: ignore[arg-type]  # a WebSocketProtocol at run time
        else:
            # (trafficStats and utf8validator are made on first use: see the class attributes)
            self.state = _STATE_CONNECTING
            self.data = b""
            if self.openHandshakeTimeout > 0:
                self.openHandshakeTimeoutCall = self.factory._batched_timer.call_later(
                    self.openHandshakeTimeout, self.onOpenHandshakeTimeout
                )
        self.factory.countConnections += 1
        self.registerAsProducer()

    def forgetHandshake(self) -> None:
        """The connection is open: let go of what only the opening handshake needed (the
        request's headers and values, the response sent), about a kilobyte per socket. Reading
        them afterwards gives empty values."""
        attributes = self.__dict__
        for name in _HANDSHAKE_ONLY:
            attributes.pop(name, None)

    def _connectionLost(self, reason: Any) -> None:
        # WebSocketServerProtocol._connectionLost, without its debug line.
        WebSocketProtocol._connectionLost(self, reason)  # type: ignore[arg-type]
        self.factory.countConnections -= 1

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        # autobahn.twisted's connectionLost, whose other branches only log at debug level.
        if _is_tls_error(reason.value):
            self.log.error(_maybe_tls_reason(reason.value))
        self._connectionLost(reason)
        # Autobahn's ``is_closed`` Deferred has this protocol as its result: a reference cycle
        # that would keep the protocol (and all it refers to) until a garbage collection.
        self.is_closed = None
