"""WebSockets to an object on another node: the owner keeps the socket, the node the client
reached relays it.

When a Worker on node A calls ``stub.fetch(request)`` with ``Upgrade: websocket`` for an object
owned by node B, the call goes to B like any other (``dotwist.cluster.channel``). If the object
answers with a ``101`` and a ``webSocket``, B does not encode it: it *parks* the response under a
random token (:class:`ParkedSockets`) and answers with the token and the response's headers. A then
opens a WebSocket to B's internal endpoint (``GET /dotwist-cluster/ws/<token>``, with the cluster
secret), which B hands over to the parked client end exactly as its public server hands a Worker's
``101`` over to a client: so on B the object's socket is an ordinary one (``accept()``, or
``ctx.acceptWebSocket`` with hibernation, auto-responses, tags, close codes).

On A, :func:`connectRelay` makes a local ``WebSocketPair``: its client end goes into the
``Response`` the Worker gets (and returns to its client), its server end is relayed to B's socket,
message by message (text stays text, binary stays binary) and close by close (code and reason,
both ways). If B's connection is lost without a close (B died, the network broke), A closes the
client's socket with ``1012`` (Service Restart): the client reconnects, and its next request
reaches the object on its new owner.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Optional, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

from .. import websocket
from ..fetch import Headers, Response
from ..websocket import WebSocketPair

if TYPE_CHECKING:  # pragma: no cover
    from ..websocket import WebSocket

__all__ = ["ParkedSockets", "WS_PATH", "connectRelay"]

_log = Logger(namespace="dotwist.cluster")

WS_PATH = "/dotwist-cluster/ws/"

#: What A's client closes with when the owner's connection is lost without a close frame.
OWNER_GONE = 1012

_HANDSHAKE = frozenset(
    {"upgrade", "connection", "sec-websocket-accept", "sec-websocket-key", "sec-websocket-version",
     "sec-websocket-extensions", "content-length", "transfer-encoding"}
)


class ParkedSockets:
    """On the owner: ``101`` responses waiting for the calling node to connect (at most
    ``timeout`` seconds; then the object's socket is closed as if the client left)."""

    def __init__(self, reactor: Any, timeout: float = 30.0) -> None:
        self.reactor = reactor
        self.timeout = timeout
        self._parked: dict[str, tuple[Response, Any]] = {}

    def park(self, response: Response) -> str:
        token = secrets.token_urlsafe(24)
        timer = self.reactor.callLater(self.timeout, self._expire, token)
        self._parked[token] = (response, timer)
        return token

    def take(self, token: str) -> Optional[Response]:
        entry = self._parked.pop(token, None)
        if entry is None:
            return None
        response, timer = entry
        if timer.active():
            timer.cancel()
        return response

    def _expire(self, token: str) -> None:
        entry = self._parked.pop(token, None)
        if entry is None:
            return
        clientEnd = entry[0].webSocket
        if clientEnd is not None:
            websocket.connectionClosed(clientEnd, False, 1006, "the calling node never connected")

    def __len__(self) -> int:
        return len(self._parked)


class _RelayProtocol(WebSocketClientProtocol):
    """A's connection to the owner, relaying to and from the local server end."""

    server: "WebSocket"
    opened: Deferred[Any]
    isOpen = False

    def onOpen(self) -> None:
        self.isOpen = True
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        server = self.server
        if server.readyState == websocket.OPEN:
            server.send(payload if isBinary else payload.decode("utf-8"))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if not self.isOpen:
            if not self.opened.called:
                self.opened.errback(ConnectionError(f"the owner refused the WebSocket: {reason}"))
            return
        server = getattr(self, "server", None)
        if server is None or server.readyState == websocket.CLOSED:
            return
        try:
            if wasClean and code is not None and code not in (1005, 1006):
                server.close(code, reason or "")
            elif wasClean:
                server.close()
            else:
                server.close(OWNER_GONE, "The Durable Object's node went away; reconnect")
        except Exception:
            _log.failure("Relaying a close to the client failed")


def connectRelay(reactor: Any, address: str, token: str, secret: str, headers: Headers, protocols: list[str]) -> Deferred[Response]:
    """Connect to the owner's parked socket; fires with the ``101`` for the Worker, whose client
    end is relayed to it."""
    from .channel import SECRET_HEADER

    host, _, port = address.rpartition(":")
    factory = WebSocketClientFactory(
        f"ws://{address}{WS_PATH}{token}",
        headers={SECRET_HEADER: secret},
        protocols=protocols or None,
    )
    factory.setProtocolOptions(
        maxMessagePayloadSize=0, maxFramePayloadSize=0, autoPingInterval=0, openHandshakeTimeout=30
    )
    factory.protocol = _RelayProtocol
    opened: Deferred[Any] = Deferred()

    def build(addr: Any) -> _RelayProtocol:
        protocol = cast(_RelayProtocol, WebSocketClientFactory.buildProtocol(factory, addr))
        protocol.opened = opened
        return protocol

    factory.buildProtocol = build  # type: ignore[method-assign]
    endpoint = clientFromString(reactor, f"tcp:host={host}:port={port}:timeout=10")
    connecting = endpoint.connect(factory)
    def notConnected(failure: Any) -> None:
        if not opened.called:
            opened.errback(failure)

    connecting.addErrback(notConnected)

    def relay(protocol: _RelayProtocol) -> Response:
        client, server = WebSocketPair()
        protocol.server = server
        server.accept()

        def onMessage(event: Any) -> None:
            data = event.data
            if isinstance(data, str):
                protocol.sendMessage(data.encode("utf-8"), isBinary=False)  # type: ignore[no-untyped-call]
            else:
                protocol.sendMessage(bytes(data), isBinary=True)  # type: ignore[no-untyped-call]

        def onClose(event: Any) -> None:
            if protocol.state != protocol.STATE_OPEN:
                return
            code = event.code
            if code == 1006:
                protocol.dropConnection(abort=True)
            elif code == 1005:
                protocol.sendClose()
            else:
                protocol.sendClose(code=code, reason=event.reason or None)

        server.addEventListener("message", onMessage)
        server.addEventListener("close", onClose)
        kept = [(name, value) for name, value in headers.rawItems() if name.lower() not in _HANDSHAKE]
        return Response(None, status=101, headers=kept, webSocket=client)

    return opened.addCallback(relay)
