"""``WebSocketPair`` and the ``WebSocket`` ends that Workers and Durable Objects hold.

A pair is two ends joined to each other. The Worker (or object) keeps the server end, calls
``accept()`` (or ``ctx.acceptWebSocket``) and listens to it; it returns the client end in a
``101`` response, and the runtime joins that end to the real connection. Messages the server end
sends before the handshake completes wait on the client end and go out once the connection is
there. Events from the connection reach the server end's listeners through the object that
accepted it, so they respect that object's input gate and arrive in order; what the object sends
passes its output gate.

The runtime side of a socket is this module's functions, not methods of ``WebSocket`` (which
carries only Cloudflare's API): the connection glue calls ``attach``, ``received``,
``connectionClosed`` and ``claimForHandover``; the hibernation bookkeeping calls
``makeHibernatable``, ``tagsOf``, ``autoRespond`` and ``autoResponseTime``. A connection is
anything with ``wsSend(payload, isBinary)`` and ``wsClose(code, reason)``: the Autobahn glue in
production, a recording fake in tests.
"""

from __future__ import annotations

import datetime as _dt
import inspect
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Protocol, Union

from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import DurableObjectAbort, RangeError
from .handlers import asDeferred
from .context import currentActor
from .storage import codec

if TYPE_CHECKING:  # pragma: no cover
    from .hibernation import HibernationRecord
    from .objects import Actor

_log = Logger(namespace="dotwist.websocket")

CONNECTING = 0
OPEN = 1
CLOSING = 2
CLOSED = 3

#: Largest serialized attachment (Cloudflare: 16 KiB; 2 KiB before 2025).
MAX_ATTACHMENT = 16 * 1024

#: Largest message ``send()`` takes on a socket not attached to a connection yet
#: (``Limits.maxOutgoingMessageSize``'s default; ``attach`` sets the connection's).
DEFAULT_SEND_LIMIT = 256 * 1024 * 1024

Message = Union[str, bytes]


class Connection(Protocol):
    """What a client end is joined to."""

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


Event = Union[MessageEvent, CloseEvent, ErrorEvent]


def _validCloseCode(code: int) -> bool:
    # workerd's rule (without its pedantic_wpt flag): 1000-4999, except the four codes RFC 6455
    # reserves for reporting and forbids in a close frame. Browsers allow only 1000 and 3000-4999,
    # but a server closes with 1001 or 1011 too.
    return 1000 <= code <= 4999 and code not in (1004, 1005, 1006, 1015)


class WebSocket:
    """One end of a ``WebSocketPair``."""

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
        self._listeners: dict[str, list[Callable[[Any], object]]] = {}
        self._early: Optional[list[tuple[str, Event]]] = []
        self._earlyBytes = 0
        # Client end: the real connection, what was sent before it existed, and how many bytes
        # of messages may wait for a server end that is not accepted yet.
        self._connection: Optional[Connection] = None
        self._outbox: Optional[list[tuple[str, Any, Any]]] = []
        self._handed = False
        self._earlyLimit = 64 * 1024 * 1024
        # Both ends: the largest message send() takes (set when the connection is attached).
        self._sendLimit = DEFAULT_SEND_LIMIT
        # This end sent its close frame (or queued it behind the output gate).
        self._closeSent = False
        # Client end: the peer's close frame arrived and the application must answer it.
        self._replyPending = False
        # Hibernation API (ctx.acceptWebSocket): the record that outlives the object instance.
        self._hib: Optional[HibernationRecord] = None
        self._tags: list[str] = []
        self._attachment: Optional[bytes] = None
        self._autoResponseTimestamp: Optional[_dt.datetime] = None

    # -- the API user code sees -------------------------------------------------------------

    def accept(self) -> None:
        """Start receiving events on this end (call it on the server end, before returning)."""
        if self._isClientEnd:
            raise TypeError("accept() is called on the server end; return the client end.")
        if self._accepted:
            raise TypeError("This WebSocket has already been accepted.")
        self._accepted = True
        owner = self._owner = currentActor()
        if owner is not None:
            owner.adoptSocket(self, self._resetByRuntime)
        early, self._early = self._early, None
        for kind, event in early or ():
            self._route(kind, event)

    def addEventListener(self, type: str, listener: Callable[[Any], object]) -> None:
        if type not in ("message", "close", "error"):
            raise TypeError(f"Unknown WebSocket event type {type!r}: use message, close or error")
        self._listeners.setdefault(type, []).append(listener)

    def removeEventListener(self, type: str, listener: Callable[[Any], object]) -> None:
        listeners = self._listeners.get(type, [])
        if listener in listeners:
            listeners.remove(listener)

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (``bytes``) message to the other end."""
        if not self._accepted:
            raise TypeError(
                "You must call accept() on this WebSocket before sending messages."
            )
        if self._closeSent or self.readyState == CLOSED:
            raise TypeError("Can't call WebSocket send() after close().")
        if isinstance(message, str):
            payload, isBinary = message.encode("utf-8"), False
        elif isinstance(message, (bytes, bytearray, memoryview)):
            payload, isBinary = bytes(message), True
        else:
            raise TypeError(
                f"WebSocket send() takes str or bytes, not {type(message).__name__}"
            )
        if len(payload) > self._sendLimit:
            raise RangeError(
                f"WebSocket message is too large to send: {len(payload)} bytes, over the limit of "
                f"{self._sendLimit} bytes (Limits.maxOutgoingMessageSize). The socket is still open."
            )
        owner = self._owner if self._hib is None else self._hib.liveActor()
        if owner is None or not owner.outputGate.held:
            self._peer._transmit(payload, isBinary)
        else:
            owner.outputGate.send(self._peer._transmit, (payload, isBinary))

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Start the closing handshake, or answer the peer's close frame when the runtime left
        that to the application (compatibility dates before 2026-04-07). Closing an end that
        already sent its close frame, or is closed, does nothing."""
        # As in workerd (and the WebSocket spec), the arguments are checked before the state.
        if code is not None:
            if not isinstance(code, int) or isinstance(code, bool) or not _validCloseCode(code):
                raise TypeError(
                    f"Invalid WebSocket close code: {code!r}. Use 1000 to 4999, except 1004, "
                    "1005, 1006 and 1015."
                )
        if reason is not None:
            if code is None:
                raise TypeError("A close reason needs a close code.")
            if len(reason.encode("utf-8")) > 123:
                raise TypeError("The WebSocket close reason may be at most 123 bytes of UTF-8.")
        if self._closeSent or self.readyState == CLOSED:
            return
        self._closeSent = True
        # CLOSING until the peer's close frame arrives; CLOSED if it already did.
        self.readyState = CLOSED if self.readyState == CLOSING else CLOSING
        owner = self._owner if self._hib is None else self._hib.liveActor()
        if owner is None:
            self._peer._transmitClose(code, reason)
        else:
            owner.outputGate.send(self._peer._transmitClose, (code, reason))

    def serializeAttachment(self, value: Any) -> None:
        """Keep ``value`` (at most 16 KiB serialized) with this socket; it survives hibernation."""
        data = codec.encode(value)
        if len(data) > MAX_ATTACHMENT:
            raise RangeError(
                f"A WebSocket attachment can be at most {MAX_ATTACHMENT} bytes serialized "
                f"(this one is {len(data)})."
            )
        self._attachment = data

    def deserializeAttachment(self) -> Any:
        """The value last given to ``serializeAttachment`` (a fresh copy), or None."""
        data = self._attachment
        return None if data is None else codec.decode(data)

    def __repr__(self) -> str:
        end = "client" if self._isClientEnd else "server"
        return f"<WebSocket {end} end readyState={self.readyState}>"

    # -- the client end, joined to a connection --------------------------------------------

    def _transmit(self, payload: bytes, isBinary: bool) -> None:
        connection = self._connection
        if connection is not None:
            connection.wsSend(payload, isBinary)
        elif self._outbox is not None:
            self._outbox.append(("message", payload, isBinary))

    def _transmitClose(self, code: Optional[int], reason: Optional[str]) -> None:
        connection = self._connection
        if connection is not None:
            connection.wsClose(code, reason)
        elif self._outbox is not None:
            self._outbox.append(("close", code, reason))

    # -- the server end, receiving ---------------------------------------------------------

    def _route(self, kind: str, event: Event) -> None:
        if kind == "close":
            # The peer closed. If the runtime left the reply to the application and this end
            # has not sent its close frame, the end is only half closed: close() answers.
            self.readyState = CLOSING if self._peer._replyPending and not self._closeSent else CLOSED
            if self._owner is not None:
                self._owner.releaseSocket(self)
        if self._hib is not None:
            self._hib.deliver(self._hib, self, kind, event)
            return
        if not self._accepted:
            if self._early is not None:
                self._keepEarly(kind, event)
            return
        owner = self._owner
        if owner is None:
            self._fire(kind, event)
        else:
            owner.socketEvents[kind] += 1
            owner.deliver(self._fire, kind, event)

    def _keepEarly(self, kind: str, event: Event) -> None:
        """Keep an event for accept(): messages up to the connection's bound, then close with 1011."""
        assert self._early is not None
        if isinstance(event, MessageEvent):
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

    def _fire(self, kind: str, event: Event) -> None:
        for listener in self._listeners.get(kind, ()):
            try:
                result = listener(event)
            except (Exception, DurableObjectAbort):  # abort() already reset the object
                self._listenerFailed(None, kind)
                continue
            if result is not None and inspect.isawaitable(result):
                owner = self._owner
                gate = owner.inputGate if owner is not None else None
                asDeferred(result, gate=gate).addErrback(self._listenerFailed, kind)
        if kind == "close":
            # The last event: listeners are usually closures over this socket (a reference
            # cycle); dropping them lets the socket, and what they hold, go by reference counting.
            self._listeners = {}

    def _listenerFailed(self, failure: Optional[Failure], kind: str) -> None:
        owner = self._owner
        if owner is None:
            _log.failure("WebSocket {kind} listener raised", failure, kind=kind)
            return
        owner.stats.errors["listener"] += 1
        _log.failure("{who}: WebSocket {kind} listener raised", failure, kind=kind, **owner.logFields())

    def _resetByRuntime(self, code: int, reason: str) -> None:
        """The owning object was reset: close the connection; nobody listens any more."""
        self._listeners = {}
        self._owner = None
        if self.readyState in (CONNECTING, OPEN) or (self.readyState == CLOSING and not self._closeSent):
            self.readyState = CLOSING
            self._closeSent = True
            self._peer._transmitClose(code, reason)


#: The peer of a server end whose connection has closed: takes and drops whatever reaches it.
_DETACHED = WebSocket(isClientEnd=True)
_DETACHED.readyState = CLOSED
_DETACHED._outbox = None
_DETACHED._handed = True
_DETACHED._closeSent = True


class WebSocketPair:
    """Two joined ``WebSocket`` ends: ``client, server = WebSocketPair()``."""

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        self.client = WebSocket(isClientEnd=True)
        self.server = WebSocket(isClientEnd=False)
        self.client._peer = self.server
        self.server._peer = self.client

    def __iter__(self) -> Iterator[WebSocket]:
        return iter((self.client, self.server))

    def __getitem__(self, index: int) -> WebSocket:
        return (self.client, self.server)[index]

    def __len__(self) -> int:
        return 2


# -- the runtime side: the connection glue ------------------------------------------------------


def isClientEnd(ws: object) -> bool:
    return isinstance(ws, WebSocket) and ws._isClientEnd


def claimForHandover(clientEnd: WebSocket) -> bool:
    """Mark a client end as handed to a connection; False if it already was."""
    if clientEnd._handed:
        return False
    clientEnd._handed = True
    return True


def attach(
    clientEnd: WebSocket, connection: Connection, earlyLimit: int, sendLimit: int = DEFAULT_SEND_LIMIT
) -> None:
    """Join a client end to its connection, and send what the server end already sent.
    ``earlyLimit``: bytes of messages that may wait for a server end not accepted yet;
    ``sendLimit``: the largest message the server end may send from now on."""
    clientEnd._earlyLimit = earlyLimit
    clientEnd._sendLimit = clientEnd._peer._sendLimit = sendLimit
    clientEnd._connection = connection
    outbox, clientEnd._outbox = clientEnd._outbox, None
    for kind, a, b in outbox or ():
        if kind == "close":
            connection.wsClose(a, b)
        else:
            connection.wsSend(a, b)


def received(clientEnd: WebSocket, message: Message) -> None:
    """The connection delivered a message: ``str`` for text (validated), ``bytes`` for binary."""
    clientEnd._peer._route("message", MessageEvent(message))


def closeReceived(clientEnd: WebSocket, code: Optional[int], reason: Optional[str]) -> None:
    """The peer's close frame arrived and the runtime does not answer it itself (Cloudflare's
    behaviour before 2026-04-07, ``web_socket_manual_reply_to_close``): the server end's close
    event fires now with ``readyState`` CLOSING, and its ``close(code, reason)`` sends the reply.
    The connection's end, when it comes, reports no second close event."""
    if clientEnd.readyState == CLOSED:
        return
    clientEnd.readyState = CLOSED
    clientEnd._replyPending = True
    clientEnd._peer._route("close", CloseEvent(1005 if code is None else code, reason or "", True))


def connectionClosed(clientEnd: WebSocket, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
    """The connection is gone. Tell the server end, once (``closeReceived`` may have)."""
    clientEnd._connection = None
    server = clientEnd._peer
    if clientEnd.readyState != CLOSED:
        clientEnd.readyState = CLOSED
        if code is None:
            code = 1005 if wasClean else 1006
        # A hibernatable socket's webSocketError is for failures, not for a peer that vanished
        # (that is webSocketClose with 1006); listeners get "error" for both, as browsers do.
        if not wasClean and not (server._hib is not None and code == 1006):
            server._route("error", ErrorEvent(reason or "WebSocket connection failed"))
        # A connection lost without a close frame has no reason from the peer: what the WebSocket
        # library said about it goes to the error event above, and the close event's reason is
        # empty, as on Cloudflare.
        server._route("close", CloseEvent(code, reason or "" if code != 1006 else "", wasClean))
    # The two ends refer to each other; the server end (which user code may keep) now lets go of
    # this end, so the connection's side is freed by reference counting when the connection goes.
    # Whatever the server end still sends (a late close() reply) has nowhere to go.
    server._peer = _DETACHED


# -- the runtime side: hibernation -----------------------------------------------------------


def makeHibernatable(ws: WebSocket, record: "HibernationRecord", tags: list[str]) -> None:
    """Accept a server end as hibernatable: its events go to ``record`` from now on, and what
    arrived before is delivered now."""
    if not isinstance(ws, WebSocket) or ws._isClientEnd:
        raise TypeError("acceptWebSocket() takes the server end of a WebSocketPair.")
    if ws._accepted or ws._hib is not None:
        raise TypeError("This WebSocket has already been accepted.")
    ws._tags = tags
    ws._hib = record
    ws._accepted = True
    early, ws._early = ws._early, None
    for kind, event in early or ():
        ws._route(kind, event)


def closeByRuntime(ws: WebSocket, code: int, reason: str) -> None:
    """Close a server end for the runtime (any close code, e.g. 1001 or 1011), as when its
    object is reset: nobody listens to it any more."""
    ws._resetByRuntime(code, reason)


def hibernationRecordOf(ws: WebSocket) -> Optional["HibernationRecord"]:
    return ws._hib


def tagsOf(ws: WebSocket) -> list[str]:
    return ws._tags


def autoRespond(ws: WebSocket, response: str, now: float) -> None:
    """Answer on ``ws`` for the runtime (the object is not involved), noting when."""
    ws._autoResponseTimestamp = _dt.datetime.fromtimestamp(now, _dt.timezone.utc)
    ws._peer._transmit(response.encode("utf-8"), False)


def autoResponseTime(ws: WebSocket) -> Optional[_dt.datetime]:
    return ws._autoResponseTimestamp


__all__ = [
    "CloseEvent",
    "Connection",
    "ErrorEvent",
    "MAX_ATTACHMENT",
    "MessageEvent",
    "WebSocket",
    "WebSocketPair",
    "attach",
    "autoRespond",
    "autoResponseTime",
    "claimForHandover",
    "closeByRuntime",
    "closeReceived",
    "connectionClosed",
    "hibernationRecordOf",
    "isClientEnd",
    "makeHibernatable",
    "received",
    "tagsOf",
]
