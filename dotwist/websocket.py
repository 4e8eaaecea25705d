"""``WebSocketPair`` and the ``WebSocket`` ends that Workers and Durable Objects hold.

A pair is two ends joined to each other. The Worker (or object) keeps the server end, calls
``accept()`` and listens to it; it returns the client end in a ``101`` response, and the runtime
joins that end to the real connection (anything that provides the small ``_Transport`` interface:
the Autobahn glue in production, a list in tests). Messages the server end sends before the
handshake completes wait on the client end and go out once the connection is there.

Events from the connection reach the server end's listeners through the object that accepted it, so
they respect that object's input gate and arrive in order.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional, Protocol, Union, TYPE_CHECKING

from twisted.logger import Logger

from .objects import _asDeferred

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor

_log = Logger(namespace="dotwist.websocket")

CONNECTING = 0
OPEN = 1
CLOSING = 2
CLOSED = 3

Message = Union[str, bytes]


class _Transport(Protocol):
    def wsSend(self, payload: bytes, isBinary: bool) -> None: ...

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None: ...


class MessageEvent:
    """A message: ``data`` is ``str`` for a text frame and ``bytes`` for a binary one."""

    __slots__ = ("data",)
    type = "message"

    def __init__(self, data: Message) -> None:
        self.data = data


class CloseEvent:
    """The connection closed: ``code`` (1005 if the peer gave none, 1006 if it vanished)."""

    __slots__ = ("code", "reason", "wasClean")
    type = "close"

    def __init__(self, code: int, reason: str, wasClean: bool) -> None:
        self.code = code
        self.reason = reason
        self.wasClean = wasClean


class ErrorEvent:
    """The connection failed; ``message`` says how. A ``close`` event follows."""

    __slots__ = ("message", "error")
    type = "error"

    def __init__(self, message: str) -> None:
        self.message = message
        self.error = Exception(message)


def _validCloseCode(code: int) -> bool:
    return code == 1000 or 3000 <= code <= 4999


class WebSocket:
    """One end of a ``WebSocketPair``."""

    # How many bytes of messages may wait for a server end that is not accepted yet: a setting of
    # the client end (the connection's side), which the server glue sets from Limits.maxPendingBytes.
    _earlyLimit = 64 * 1024 * 1024

    READY_STATE_CONNECTING = CONNECTING
    READY_STATE_OPEN = OPEN
    READY_STATE_CLOSING = CLOSING
    READY_STATE_CLOSED = CLOSED

    def __init__(self, isClientEnd: bool) -> None:
        self._isClientEnd = isClientEnd
        self._peer: WebSocket = self
        self.readyState = OPEN
        # Server end: who receives events, and what arrived before accept().
        self._accepted = False
        self._owner: Optional[Actor] = None
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}
        self._early: Optional[list[Any]] = []
        self._earlyBytes = 0
        # Client end: the real connection, and what was sent before it existed.
        self._transport: Optional[_Transport] = None
        self._outbox: Optional[list[Any]] = []
        self._handed = False
        # Hibernation API (ctx.acceptWebSocket): the record that outlives the object instance.
        self._hib: Any = None
        self._tags: list[str] = []
        self._attachment: Optional[bytes] = None
        self._autoResponseTimestamp: Any = None

    # -- the API user code sees -------------------------------------------------------------

    def accept(self) -> None:
        """Start receiving events on this end (call it on the server end, before returning)."""
        if self._isClientEnd:
            raise TypeError("accept() is called on the server end; return the client end.")
        if self._accepted:
            raise TypeError("This WebSocket has already been accepted.")
        from .objects import currentActor

        self._accepted = True
        owner = self._owner = currentActor()
        if owner is not None:
            owner._sockets.add(self)
        early, self._early = self._early, None
        for kind, args in early or ():
            self._route(kind, args)

    def addEventListener(self, type: str, listener: Callable[[Any], Any]) -> None:
        if type not in ("message", "close", "error"):
            raise TypeError(f"Unknown WebSocket event type {type!r}: use message, close or error")
        self._listeners.setdefault(type, []).append(listener)

    def removeEventListener(self, type: str, listener: Callable[[Any], Any]) -> None:
        listeners = self._listeners.get(type, [])
        if listener in listeners:
            listeners.remove(listener)

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (``bytes``) message to the other end."""
        if not self._accepted:
            raise TypeError(
                "You must call accept() on this WebSocket before sending messages."
            )
        if self.readyState != OPEN:
            raise TypeError("Can't call WebSocket send() after close().")
        if isinstance(message, str):
            payload, isBinary = message.encode("utf-8"), False
        elif isinstance(message, (bytes, bytearray, memoryview)):
            payload, isBinary = bytes(message), True
        else:
            raise TypeError(
                f"WebSocket send() takes str or bytes, not {type(message).__name__}"
            )
        owner = self._owner if self._hib is None else self._hib.liveActor()
        if owner is not None and owner._outputHeld:
            owner._holdOutput(self._peer._transmit, payload, isBinary)
        else:
            self._peer._transmit(payload, isBinary)

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Start the closing handshake. Closing an end that is already closed does nothing."""
        if self.readyState in (CLOSING, CLOSED):
            return
        if code is not None:
            if not isinstance(code, int) or not _validCloseCode(code):
                raise TypeError(
                    f"Invalid WebSocket close code {code!r}: use 1000 or 3000 to 4999."
                )
        if reason is not None:
            if code is None:
                raise TypeError("A close reason needs a close code.")
            if len(reason.encode("utf-8")) > 123:
                raise TypeError("The WebSocket close reason may be at most 123 bytes of UTF-8.")
        self.readyState = CLOSING
        owner = self._owner if self._hib is None else self._hib.liveActor()
        if owner is not None and owner._outputHeld:
            owner._holdOutput(self._peer._transmitClose, code, reason)
        else:
            self._peer._transmitClose(code, reason)

    # -- the client end, joined to a real connection ---------------------------------------

    def _attach(self, transport: _Transport) -> None:
        """Join this client end to a connection; flush what the server end already sent."""
        self._transport = transport
        outbox, self._outbox = self._outbox, None
        for item in outbox or ():
            if item[0] == "close":
                transport.wsClose(item[1], item[2])
            else:
                transport.wsSend(item[1], item[2])

    def _transmit(self, payload: bytes, isBinary: bool) -> None:
        transport = self._transport
        if transport is not None:
            transport.wsSend(payload, isBinary)
        elif self._outbox is not None:
            self._outbox.append(("message", payload, isBinary))

    def _transmitClose(self, code: Optional[int], reason: Optional[str]) -> None:
        transport = self._transport
        if transport is not None:
            transport.wsClose(code, reason)
        elif self._outbox is not None:
            self._outbox.append(("close", code, reason))

    def _received(self, payload: bytes, isBinary: bool) -> None:
        """The connection delivered a message (UTF-8 already validated for text)."""
        self._receivedMessage(payload if isBinary else payload.decode("utf-8"))

    def _receivedMessage(self, message: Message) -> None:
        """The connection delivered a message: ``str`` for text (validated), ``bytes`` for binary."""
        self._peer._route("message", MessageEvent(message))

    def _connectionClosed(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        """The connection is gone. Tell the server end, once."""
        if self.readyState == CLOSED:
            return
        self.readyState = CLOSED
        self._transport = None
        server = self._peer
        if code is None:
            code = 1005 if wasClean else 1006
        # A hibernatable socket's webSocketError is for failures, not for a peer that vanished
        # (that is webSocketClose with 1006); listeners get "error" for both, as browsers do.
        if not wasClean and not (server._hib is not None and code == 1006):
            server._route("error", ErrorEvent(reason or "WebSocket connection failed"))
        server._route("close", CloseEvent(code, reason or "", wasClean))

    # -- the server end, receiving ---------------------------------------------------------

    def _route(self, kind: str, event: Any) -> None:
        if kind == "close":
            self.readyState = CLOSED
            if self._owner is not None:
                self._owner._sockets.discard(self)
        if self._hib is not None:
            self._hib.namespace.registry._deliverHibernated(self._hib, self, kind, event)
            return
        if not self._accepted:
            if self._early is not None:
                self._keepEarly(kind, event)
            return
        owner = self._owner
        if owner is None:
            self._fire(kind, event)
        else:
            owner._submit(self._fire, kind, event)

    def _keepEarly(self, kind: str, event: Any) -> None:
        """Keep an event for accept(): messages up to the connection's bound, then close with 1011."""
        if kind == "message":
            limit = self._peer._earlyLimit
            size = len(event.data)
            self._earlyBytes += size
            if self._earlyBytes > limit:
                if self._earlyBytes - size <= limit:
                    _log.warn(
                        "A WebSocket that was never accepted received more than {limit} bytes; "
                        "closing it with 1011",
                        limit=limit,
                    )
                    self._peer._transmitClose(1011, "The WebSocket was not accepted")
                return
        self._early.append((kind, event))

    def _fire(self, kind: str, event: Any) -> None:
        for listener in self._listeners.get(kind, ()):
            try:
                result = listener(event)
            except Exception:
                _log.failure("WebSocket {kind} listener raised", kind=kind)
                continue
            if result is not None and inspect.isawaitable(result):
                _asDeferred(result).addErrback(
                    lambda f, kind=kind: _log.failure(
                        "WebSocket {kind} listener raised", f, kind=kind
                    )
                )

    def serializeAttachment(self, value: Any) -> None:
        """Keep ``value`` (at most 16 KiB serialized) with this socket; it survives hibernation."""
        from .hibernation import serializeAttachment

        serializeAttachment(self, value)

    def deserializeAttachment(self) -> Any:
        """The value last given to ``serializeAttachment`` (a fresh copy), or None."""
        from .hibernation import deserializeAttachment

        return deserializeAttachment(self)

    def _resetByRuntime(self, code: int, reason: str) -> None:
        """The owning object was reset: close the connection; nobody listens any more."""
        self._listeners = {}
        self._owner = None
        if self.readyState in (CONNECTING, OPEN):
            self.readyState = CLOSING
            self._peer._transmitClose(code, reason)

    def __repr__(self) -> str:
        end = "client" if self._isClientEnd else "server"
        return f"<WebSocket {end} end readyState={self.readyState}>"


class WebSocketPair:
    """Two joined ``WebSocket`` ends: ``client, server = WebSocketPair()``."""

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        self.client = WebSocket(isClientEnd=True)
        self.server = WebSocket(isClientEnd=False)
        self.client._peer = self.server
        self.server._peer = self.client

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter((self.client, self.server))

    def __getitem__(self, index: int) -> WebSocket:
        return (self.client, self.server)[index]

    def __len__(self) -> int:
        return 2
