"""WebSockets to an object on another node: the owner keeps the object's socket, the node the
client reached relays it, message by message, on the node-to-node channel
(``dotwist.cluster.wire``).

When a Worker on node A calls ``stub.fetch(request)`` with ``Upgrade: websocket`` for an object
owned by node B, the call goes to B like any other. If the object answers with a ``101`` and a
``webSocket``, B joins the response's client end to an :class:`OwnerSocket` (a connection, as
``dotwist.websocket`` sees it, whose frames travel on the channel the call came on), numbers it,
and answers with the number and the response's headers. On B the object's socket is an ordinary
one: ``accept()``, or ``ctx.acceptWebSocket`` with hibernation, tags and auto-responses.

On A, :func:`relay` makes a local ``WebSocketPair``: its client end goes into the ``Response`` the
Worker gets (and returns to its client), its server end is a :class:`CallerSocket` relaying to B:
text stays text, binary stays binary, close codes and reasons go both ways. When the runtime leaves
the reply to a client's close frame to the application (compatibility dates before 2026-04-07,
``web_socket_manual_reply_to_close``), A sends the client's close to B as a close that awaits a
reply (``Q``): on B the object's close event sees ``readyState`` CLOSING, and its own
``close(code, reason)`` travels back as the reply A sends its client (an object that never answers
is given up on after ``closeHandshakeTimeout`` on both nodes, as in one process). If the channel to B
breaks (B died, the network broke), A closes the client's socket with ``1012`` (Service Restart):
the client reconnects, and its next request reaches the object on its new owner. When B shuts
down gracefully, it closes the sockets it holds with ``1001`` first.
"""

from __future__ import annotations

import struct
from typing import Any, Optional

from twisted.logger import Logger

from .. import websocket
from ..fetch import Headers, Response
from ..websocket import WebSocket, WebSocketPair
from .wire import Channel

__all__ = ["CallerSocket", "OwnerSocket", "OwnerSockets", "relay"]

_log = Logger(namespace="dotwist.cluster")

#: What A's client is closed with when the owner's side is lost without a close.
OWNER_GONE = 1012

_CODE = struct.Struct(">H")

_HANDSHAKE = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-key", "sec-websocket-version",
     "sec-websocket-extensions", "content-length", "transfer-encoding"}
)


def _closeFrame(code: Optional[int], reason: Optional[str]) -> bytes:
    return _CODE.pack(1005 if code is None else code) + (reason or "").encode("utf-8")


def _readClose(data: bytes) -> tuple[int, str]:
    return _CODE.unpack(data[:2])[0], data[2:].decode("utf-8", "replace")


class OwnerSocket:
    """On the owner: the connection a relayed client end is attached to."""

    def __init__(self, sockets: "OwnerSockets", channel: Channel, clientEnd: WebSocket, earlyLimit: int, sendLimit: int) -> None:
        self.sockets = sockets
        self.channel = channel
        self.clientEnd = clientEnd
        self.number = channel.openSocket(self)
        self.done = False
        #: The client's close frame was handed to the object, whose close() is the reply.
        self.replyPending = False
        self._replyTimer: Any = None
        sockets.live.add(self)
        websocket.attach(clientEnd, self, earlyLimit, sendLimit)

    # the connection, as dotwist.websocket sees it
    def wsSend(self, payload: bytes, isBinary: bool) -> None:
        if not self.done:
            self.channel.sendSocket(self.number, b"B" if isBinary else b"T", payload)

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None:
        if not self.done:
            self.channel.sendSocket(self.number, b"C", _closeFrame(code, reason))
            if self.replyPending:
                # The object answered the client's close: the closing handshake is over.
                self._ended(True, code, reason or "")

    # frames from the caller's node
    def frameReceived(self, op: bytes, data: bytes) -> None:
        if self.done:
            return
        if op == b"T":
            websocket.received(self.clientEnd, data.decode("utf-8"))
        elif op == b"B":
            websocket.received(self.clientEnd, data)
        elif op == b"C":
            code, reason = _readClose(data)
            self._ended(True, None if code == 1005 else code, reason)
        elif op == b"Q":
            # The client's close frame, whose reply is the object's own close() (compatibility
            # dates before 2026-04-07): the object's close event sees readyState CLOSING.
            if self.replyPending:
                return
            code, reason = _readClose(data)
            self.replyPending = True
            timeout = self.sockets.closeTimeout
            if self.sockets.reactor is not None and timeout > 0:
                self._replyTimer = self.sockets.reactor.callLater(timeout, self._noReply)
            websocket.closeReceived(self.clientEnd, None if code == 1005 else code, reason or None)
        elif op == b"L":
            self._ended(False, 1006, data.decode("utf-8", "replace"))

    def _noReply(self) -> None:
        """The object did not answer the client's close in time: the relaying node is told (it
        has dropped its client by now, after the same timeout), and the socket is let go."""
        self._replyTimer = None
        if self.replyPending and not self.done:
            self.channel.sendSocket(self.number, b"C", _closeFrame(1006, None))
            self._ended(False, 1006, "")

    def channelLost(self) -> None:
        self._ended(False, 1006, "the node relaying this WebSocket went away")

    def _ended(self, wasClean: bool, code: Optional[int], reason: str) -> None:
        if self.done:
            return
        self.done = True
        self.replyPending = False
        if self._replyTimer is not None and self._replyTimer.active():
            self._replyTimer.cancel()
        self._replyTimer = None
        self.sockets.live.discard(self)
        self.channel.closeSocket(self.number)
        websocket.connectionClosed(self.clientEnd, wasClean, code, reason)

    def goAway(self, code: int, reason: str) -> None:
        """The owner shuts down: the caller's node closes its client with ``code``."""
        self.wsClose(code, reason)
        self._ended(True, code, reason)


class OwnerSockets:
    """The relayed sockets a node holds for other nodes' clients."""

    def __init__(self, reactor: Any = None, closeTimeout: float = 0.0) -> None:
        self.live: set[OwnerSocket] = set()
        #: How long an object has to answer a client's close frame (``Limits.closeHandshakeTimeout``)
        #: when the reply is left to it; no limit without a reactor.
        self.reactor = reactor
        self.closeTimeout = closeTimeout

    def attach(self, channel: Channel, response: Response, earlyLimit: int, sendLimit: int) -> bytes:
        """Join the ``101`` response's client end to ``channel``; its socket number."""
        assert response.webSocket is not None
        if not websocket.claimForHandover(response.webSocket):
            raise TypeError("The Durable Object returned a WebSocket that was already handed to a client")
        return OwnerSocket(self, channel, response.webSocket, earlyLimit, sendLimit).number

    def closeAll(self, code: int, reason: str) -> int:
        live = list(self.live)
        for socket in live:
            socket.goAway(code, reason)
        return len(live)


class CallerSocket:
    """On the node the client reached: the server end of its pair, relayed to the owner."""

    def __init__(self, channel: Channel, number: bytes, server: WebSocket) -> None:
        self.channel = channel
        self.number = number
        self.server = server
        self.done = False
        #: The client's close frame went to the owner, whose reply this end sends when it comes.
        self.awaitingReply = False
        server.accept()
        server.addEventListener("message", self._message)
        server.addEventListener("close", self._closed)
        channel.adoptSocket(number, self)

    def _message(self, event: Any) -> None:
        data = event.data
        if isinstance(data, str):
            self.channel.sendSocket(self.number, b"T", data.encode("utf-8"))
        else:
            self.channel.sendSocket(self.number, b"B", bytes(data))

    def _closed(self, event: Any) -> None:
        if self.done or self.awaitingReply:
            return
        if self.server.readyState == websocket.CLOSING:
            # The runtime left the reply to the client's close frame to the application (before
            # 2026-04-07): the object on the owner answers it; the socket stays relayed until then.
            self.awaitingReply = True
            self.channel.sendSocket(self.number, b"Q", _closeFrame(event.code, event.reason))
            return
        self.done = True
        self.channel.closeSocket(self.number)
        if event.code == 1006:
            self.channel.sendSocket(self.number, b"L", (event.reason or "").encode("utf-8"))
        else:
            self.channel.sendSocket(self.number, b"C", _closeFrame(event.code, event.reason))

    def frameReceived(self, op: bytes, data: bytes) -> None:
        server = self.server
        if server.readyState == websocket.CLOSED:
            return
        # While the client's close waits for the object's reply, the object may still send.
        sending = server.readyState == websocket.OPEN or self.awaitingReply
        try:
            if op == b"T":
                if sending:
                    server.send(data.decode("utf-8"))
            elif op == b"B":
                if sending:
                    server.send(data)
            elif op == b"C":
                code, reason = _readClose(data)
                if self.awaitingReply:
                    self.awaitingReply = False
                    self.done = True
                    self.channel.closeSocket(self.number)
                if code in (1005, 1006):
                    server.close()
                else:
                    server.close(code, reason)
        except Exception:
            _log.failure("Relaying to a client failed")

    def channelLost(self) -> None:
        self.done = True
        if self.server.readyState != websocket.CLOSED:
            self.server.close(OWNER_GONE, "The Durable Object's node went away; reconnect")


def relay(channel: Channel, number: bytes, headers: Headers) -> Response:
    """The ``101`` for the Worker: a new pair whose server end relays to the owner's socket
    ``number`` on ``channel``."""
    client, server = WebSocketPair()
    CallerSocket(channel, number, server)
    kept = [(name, value) for name, value in headers.rawItems() if name.lower() not in _HANDSHAKE]
    return Response(None, status=101, headers=kept, webSocket=client)
