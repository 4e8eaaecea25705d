"""The Twisted glue: one ``Site`` that serves a runtime's HTTP and WebSockets on one port.

A Klein resource turns every HTTP request into a ``Request`` for the Worker and writes the Worker's
``Response`` back. When the Worker answers an upgrade request with ``101`` and a ``webSocket``, the
resource hands the connection to an Autobahn protocol from the shared ``DotwistWebSocketFactory``,
which completes the handshake and joins the client end of the Worker's ``WebSocketPair`` to the
socket. Both reach Durable Objects through the runtime's one registry.

Nothing here knows Durable Object semantics: it translates bytes and errors, no more.
"""

from __future__ import annotations

from typing import Any, Optional

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionRequest
from klein import Klein
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer
from twisted.web.resource import IResource

from . import _autobahn
from ._http import LimitedSite, requestUrl
from .fetch import Headers, Request, Response
from .websocket import WebSocket
from .worker import Runtime

_log = Logger(namespace="dotwist.server")

_autobahn.install()

# Headers Autobahn writes itself in a 101, or that make no sense to copy into one.
_HANDSHAKE_HEADERS = frozenset(
    {
        "connection", "upgrade", "sec-websocket-accept", "sec-websocket-extensions",
        "sec-websocket-protocol", "sec-websocket-version", "content-length",
        "transfer-encoding", "server", "date",
    }
)


def _acceptDeflate(offers: list[Any]) -> Optional[PerMessageDeflateOfferAccept]:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


class DotwistWebSocketProtocol(_autobahn.FastMessages, WebSocketServerProtocol):
    """One client's WebSocket, joined to the client end of a ``WebSocketPair``.

    Whole, uncompressed data frames take ``FastMessages``' path; everything else is Autobahn's."""

    _clientEnd: WebSocket
    _response: Response

    # The runtime side of the pair talks to the connection through these two names.
    def wsSend(self, payload: bytes, isBinary: bool) -> None:
        # A message sent while the connection is going away (its close event is not delivered
        # yet) is dropped, as a browser's would be, instead of raising in the sender's code.
        if self.state == self.STATE_OPEN:
            self._sendFast(payload, isBinary)

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None:
        reasonUtf8 = reason.encode("utf-8")[:123] if reason else None
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=False)

    def onConnect(self, request: ConnectionRequest) -> Any:
        headers = self._response.headers
        chosen = headers.get("sec-websocket-protocol")
        if chosen is not None and chosen not in request.protocols:
            _log.warn(
                "The Worker chose subprotocol {chosen!r}, which the client did not offer "
                "({offered!r}); not sending it",
                chosen=chosen,
                offered=request.protocols,
            )
            chosen = None
        extra: dict[str, Any] = {}
        for name, value in headers.rawItems():
            if name not in _HANDSHAKE_HEADERS:
                extra.setdefault(name, []).append(value)
        return (chosen, extra)

    def onOpen(self) -> None:
        self.factory.connections.add(self)
        self._clientEnd._attach(self)

    def _deliver(self, message: Any) -> None:
        # FastMessages: a whole message, text already decoded (and so validated).
        self._clientEnd._receivedMessage(message)

    def onMessageEnd(self) -> None:
        # Autobahn's version also fires its observer signal through a txaio future per message;
        # nothing observes it here, so deliver the message and skip that.
        if not self.failedByMe:
            self._clientEnd._received(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.factory.connections.discard(self)
        clientEnd = getattr(self, "_clientEnd", None)
        if clientEnd is not None:
            clientEnd._connectionClosed(wasClean, code, reason)
        closed = self.factory._closedWaiters.pop(self, None)
        if closed is not None:
            closed.callback(None)


class DotwistWebSocketFactory(WebSocketServerFactory):
    """Builds the protocols that the HTTP resource hands upgraded connections to."""

    protocol = DotwistWebSocketProtocol

    def __init__(self, runtime: Runtime, reactor: Any = None) -> None:
        super().__init__(server="dotwist", reactor=reactor)
        limits = runtime.limits
        self.connections: set[DotwistWebSocketProtocol] = set()
        self.earlyLimit = limits.maxPendingBytes
        self._closedWaiters: dict[DotwistWebSocketProtocol, Deferred[None]] = {}
        self.setProtocolOptions(
            perMessageCompressionAccept=_acceptDeflate,
            maxMessagePayloadSize=limits.maxMessageSize,
            maxFramePayloadSize=limits.maxMessageSize,
            openHandshakeTimeout=limits.openHandshakeTimeout,
            closeHandshakeTimeout=limits.closeHandshakeTimeout,
            failByDrop=False,
        )
        # Per-frame logging and timing cost on every message; nobody reads them in production.
        self.logOctets = False
        self.logFrames = False
        self.trackTimings = False
        # Autobahn copies every option onto each protocol instance unless the protocol already
        # has it; giving this factory's protocol class the options as class attributes saves
        # that copy (about 3 KB per socket) and the time to make it.
        options = {
            name: staticmethod(value) if callable(value) else value
            for name, value in ((n, getattr(self, n)) for n in DotwistWebSocketProtocol.CONFIG_ATTRS)
        }
        self.protocol = type("DotwistWebSocketProtocol", (DotwistWebSocketProtocol,), options)

    def closeAll(self, code: int, reason: str, timeout: float, clock: IReactorTime) -> Deferred[Any]:
        """Start the close handshake on every socket; fire when all are gone (or dropped)."""
        waits = []
        for protocol in list(self.connections):
            waiter: Deferred[None] = Deferred()
            self._closedWaiters[protocol] = waiter
            waits.append(waiter)
            protocol.wsClose(code, reason)
        done = DeferredList(waits)

        def dropStragglers() -> None:
            for protocol in list(self._closedWaiters):
                protocol.dropConnection(abort=True)

        if waits:
            timer = clock.callLater(timeout, dropStragglers)
            done.addBoth(lambda r: timer.cancel() if timer.active() else None)
        return done


@implementer(IResource)
class _Handover:
    """Renders once: gives the request's connection to a WebSocket protocol, as Autobahn's
    ``WebSocketResource`` does, after the Worker has said yes with a ``101``."""

    isLeaf = True

    def __init__(self, factory: DotwistWebSocketFactory, response: Response) -> None:
        self._factory = factory
        self._response = response

    def getChildWithDefault(self, name: bytes, request: Any) -> Any:  # pragma: no cover
        return self

    def putChild(self, path: bytes, child: Any) -> None:  # pragma: no cover
        raise NotImplementedError()

    def render(self, request: Any) -> Any:
        channel = request.channel
        transport = channel.transport
        if transport is None:
            request.setResponseCode(500)
            return b"connection is gone"
        protocol = self._factory.buildProtocol(transport.getPeer())
        protocol._clientEnd = self._response.webSocket
        protocol._clientEnd._earlyLimit = self._factory.earlyLimit
        protocol._response = self._response
        channel.setTimeout(None)
        channel.transport = None
        # HTTPChannel registered itself as the transport's producer; left there, it would keep
        # the whole upgrade request (channel, request, headers, Klein's state) alive for as long
        # as the socket is open: about 6 KB per socket.
        if getattr(transport, "producer", None) is channel:
            transport.unregisterProducer()
        if isinstance(transport, ProtocolWrapper):
            transport.wrappedProtocol = protocol
        elif isinstance(getattr(transport, "protocol", None), ProtocolWrapper):
            transport.protocol.wrappedProtocol = protocol
        else:
            transport.protocol = protocol
        protocol.makeConnection(transport)
        producer = getattr(transport, "_networkProducer", None)
        if producer is not None:
            producer.resumeProducing()
        elif hasattr(transport, "resumeProducing"):
            transport.resumeProducing()
        data = request.method + b" " + request.uri + b" HTTP/1.1\r\n"
        for name, values in request.requestHeaders.getAllRawHeaders():
            data += name + b": " + b",".join(values) + b"\r\n"
        data += b"\r\n"
        protocol.dataReceived(data)
        return NOT_DONE_YET


def _isUpgrade(request: Any) -> bool:
    upgrade = request.getHeader(b"upgrade")
    return upgrade is not None and upgrade.strip().lower() == b"websocket"


class Front:
    """The HTTP side: every request, any path and method, goes to the runtime's Worker."""

    app = Klein()

    def __init__(self, runtime: Runtime, factory: DotwistWebSocketFactory) -> None:
        self._runtime = runtime
        self._factory = factory

    def resource(self) -> Resource:
        return self.app.resource()

    def _toRequest(self, request: Any) -> Request:
        url = requestUrl(request)  # checked by the channel (dotwist._http); raises if invalid
        # twisted.web's parser has already refused bad names, and values with line breaks or NULs
        # (it answers 400 itself), so the pairs need no second check.
        headers = Headers._trusted(
            [
                (name.decode("latin-1").lower(), value.decode("latin-1").strip(" \t"))
                for name, values in request.requestHeaders.getAllRawHeaders()
                for value in values
            ]
        )
        body = request.content.read() if request.content is not None else b""
        return Request._fromWire(url, request.method.decode("ascii"), headers, body or None)

    @app.route("/", branch=True)
    async def handle(self, request: Any) -> Any:
        # An announced or chunked body over the limit was refused before it was read (_http);
        # this check is for requests that did not come through a DotwistChannel.
        limit = self._runtime.limits.maxRequestBodySize
        try:
            incoming = self._toRequest(request)
        except Exception:
            _log.failure("Could not read the request")
            request.setResponseCode(400)
            return b"Bad Request"
        if incoming.body is not None and len(incoming.body) > limit:
            request.setResponseCode(413)
            return f"Request body is larger than the limit of {limit} bytes.".encode()
        try:
            response = await self._runtime.fetch(incoming)
        except Exception as e:
            if getattr(e, "overloaded", False):
                request.setResponseCode(503)
                request.setHeader(b"retry-after", b"1")
                request.setHeader(b"content-type", b"text/plain;charset=UTF-8")
                return str(e).encode("utf-8")
            _log.failure("Worker threw exception for {method} {url}", method=incoming.method, url=incoming.url)
            request.setResponseCode(500)
            request.setHeader(b"content-type", b"text/plain;charset=UTF-8")
            return b"Worker threw exception"
        if response.webSocket is not None:
            if not _isUpgrade(request):
                _log.error(
                    "Worker tried to return a WebSocket in a response to a request which did "
                    'not contain the header "Upgrade: websocket". ({url})',
                    url=incoming.url,
                )
                request.setResponseCode(500)
                return b"Worker threw exception"
            if response.webSocket._handed:
                _log.error("Worker returned a WebSocket that was already handed to a client")
                request.setResponseCode(500)
                return b"Worker threw exception"
            response.webSocket._handed = True
            return _Handover(self._factory, response)
        request.setResponseCode(response.status, response.statusText.encode("latin-1", "replace"))
        for name, value in response.headers.rawItems():
            request.responseHeaders.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        body = response.body or b""
        request.setHeader(b"content-length", b"%d" % len(body))
        return body


class DotwistSite(LimitedSite):
    """A ``Site`` whose access log is opt-in (it costs on every request), and whose connections
    enforce the runtime's HTTP limits (``dotwist._http``)."""

    accessLog = False

    def log(self, request: Any) -> None:
        if self.accessLog:
            super().log(request)


def makeSite(runtime: Runtime, reactor: Any = None, accessLog: bool = False) -> tuple[DotwistSite, DotwistWebSocketFactory]:
    """The ``Site`` serving ``runtime``, and the WebSocket factory it hands sockets to."""
    factory = DotwistWebSocketFactory(runtime, reactor=reactor)
    front = Front(runtime, factory)
    site = DotwistSite(front.resource(), reactor=reactor) if reactor is not None else DotwistSite(front.resource())
    site.displayTracebacks = False
    site.limits = runtime.limits
    site.accessLog = accessLog
    return site, factory
