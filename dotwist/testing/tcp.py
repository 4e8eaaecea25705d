"""The test client's API over a real listening port: HTTP through twisted.web's ``Agent`` and
WebSockets through Autobahn's client, against the whole server stack (twisted.web, Klein,
Autobahn, the runtime).

Imported only when a test asks for a real port (it needs a running reactor, as under
pytest-twisted). Requests go to 127.0.0.1 on the harness's port with the ``Host`` of the URL the
test gave, so the Worker sees the same ``request.url`` as in-process.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Mapping, Optional, Sequence, Union, cast
from urllib.parse import urlsplit, urlunsplit

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectionResponse
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers as WireHeaders
from twisted.web.iweb import IResponse

from ..fetch import Headers, Request, Response
from ..websocket import CloseEvent
from .client import (
    BASE_URL,
    ClientWebSocket,
    Message,
    WebSocketRefused,
    buildRequest,
    isUpgrade,
    resolveUrl,
)

__all__ = ["TcpClient", "TcpWebSocket"]

_NOT_HERE = (
    "fetch() does not open WebSockets: use webSocket(url), which gives a socket to send, receive "
    "and close on (in-process and against a real port alike)."
)


class TcpClient:
    """The Worker served on ``127.0.0.1:port``, called over HTTP and WebSockets; the same API
    as ``InProcessClient``."""

    def __init__(self, reactor: Any, port: int, baseUrl: str = BASE_URL) -> None:
        self.reactor = reactor
        self.port = port
        self.baseUrl = baseUrl
        # Not persistent: no connection outlives its request (nothing to clean up at teardown).
        self._agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    def fetch(self, input: Union[str, Request], init: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> "Deferred[Response]":
        """Send a request to the Worker over HTTP; fires with the ``Response`` the server wrote."""
        try:
            request = buildRequest(self.baseUrl, input, init, kwargs)
        except Exception:
            return fail()
        if isUpgrade(request):
            return fail(TypeError(_NOT_HERE))
        parts = urlsplit(request.url)
        target = urlunsplit(("http", f"127.0.0.1:{self.port}", parts.path or "/", parts.query, ""))
        headers = WireHeaders()
        for name, value in request.headers.rawItems():
            headers.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        body = FileBodyProducer(BytesIO(request.body)) if request.body else None
        sent: Deferred[IResponse] = self._agent.request(
            request.method.encode("ascii"), target.encode("ascii"), headers, body
        )
        return sent.addCallback(_read)

    def webSocket(
        self,
        url: Union[str, Request],
        protocols: Sequence[str] = (),
        headers: Optional[Mapping[str, str]] = None,
    ) -> "Deferred[ClientWebSocket]":
        """Open a WebSocket to the Worker with Autobahn's client; fires with the socket once the
        handshake completed, or fails with ``WebSocketRefused``."""
        parts = urlsplit(resolveUrl(self.baseUrl, url))
        wsUrl = urlunsplit(("ws", parts.netloc, parts.path or "/", parts.query, ""))
        socket = TcpWebSocket(self.reactor)
        factory = _Factory(socket, wsUrl, protocols=list(protocols) or None, headers=dict(headers or {}), reactor=self.reactor)
        # As a browser does: a close the server starts is answered with its code and reason.
        WebSocketClientFactory.setProtocolOptions(factory, echoCloseCodeReason=True)
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port)
        connected: Deferred[Any] = endpoint.connect(factory)
        connected.addErrback(socket.failed)
        return socket.opened


def _read(response: IResponse) -> "Deferred[Response]":
    pairs = [
        (name.decode("latin-1").lower(), value.decode("latin-1"))
        for name, values in response.headers.getAllRawHeaders()
        for value in values
    ]

    def made(body: bytes) -> Response:
        return Response.fromWire(response.code, response.phrase.decode("latin-1"), Headers.fromWire(pairs), body)

    body: Deferred[bytes] = Deferred()
    response.deliverBody(_Body(body))
    return body.addCallback(made)


class _Body(Protocol):
    """Collects a response's body."""

    def __init__(self, done: "Deferred[bytes]") -> None:
        self._done = done
        self._parts: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self._parts.append(data)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


class TcpWebSocket(ClientWebSocket):
    """A ``ClientWebSocket`` over a real connection (Autobahn's client protocol)."""

    def __init__(self, reactor: IReactorTime) -> None:
        super().__init__(timeoutClock=reactor)
        self.opened: Deferred[ClientWebSocket] = Deferred()
        self._protocol: Optional[_Protocol] = None

    def failed(self, failure: Any) -> None:
        if not self.opened.called:
            self.opened.errback(failure)

    def _send(self, message: Message) -> None:
        assert self._protocol is not None
        if isinstance(message, str):
            WebSocketClientProtocol.sendMessage(self._protocol, message.encode("utf-8"), isBinary=False)
        else:
            WebSocketClientProtocol.sendMessage(self._protocol, message, isBinary=True)

    def _close(self, code: Optional[int], reason: str) -> None:
        assert self._protocol is not None
        self._protocol.sendClose(code=code, reason=reason or None)

    def _drop(self) -> None:
        assert self._protocol is not None
        self._protocol.dropConnection(abort=True)

    # What the protocol below reports (ClientWebSocket's hooks, called from this module's class).

    def _attach(self, protocol: _Protocol) -> None:
        self._protocol = protocol

    def _received(self, message: Message) -> None:
        self._arrived(message)

    def _ended(self, event: CloseEvent) -> None:
        self._finished(event)


class _Protocol(WebSocketClientProtocol):
    socket: TcpWebSocket

    def onConnect(self, response: ConnectionResponse) -> None:
        self.socket.protocol = response.protocol or None

    def onOpen(self) -> None:
        self.socket._attach(self)
        self.socket.opened.callback(self.socket)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.socket._received(payload if isBinary else payload.decode("utf-8"))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        socket = self.socket
        if not socket.opened.called:
            status = _status(getattr(self, "http_status_line", None))
            if status is not None:
                head = getattr(self, "http_response_data", b"") or b""
                data = getattr(self, "data", b"") or b""
                socket.opened.errback(WebSocketRefused(status, data[len(head):]))
            else:
                socket.opened.errback(ConnectionError(f"the WebSocket handshake failed: {reason}"))
            return
        if code is None:
            code = 1005 if wasClean else 1006
        socket._ended(CloseEvent(code, reason or "", wasClean))


def _status(line: Optional[str]) -> Optional[int]:
    parts = (line or "").split()
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


class _Factory(WebSocketClientFactory):
    protocol = _Protocol

    def __init__(self, socket: TcpWebSocket, *args: Any, **kwargs: Any) -> None:
        WebSocketClientFactory.__init__(self, *args, **kwargs)
        self._socket = socket

    def buildProtocol(self, addr: Optional[IAddress]) -> _Protocol:
        protocol = cast(_Protocol, WebSocketClientFactory.buildProtocol(self, addr))
        protocol.socket = self._socket
        return protocol
