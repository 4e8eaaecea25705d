"""The Twisted glue: one ``Site`` that serves a runtime's HTTP and WebSockets on one port.

A Klein resource turns every HTTP request into a ``Request`` for the Worker and writes the Worker's
``Response`` back. When the Worker answers an upgrade request with ``101`` and a ``webSocket``, the
resource hands the connection to an Autobahn protocol from the shared ``DotwistWebSocketFactory``
(through ``WebSocketHandover``, Autobahn's ``WebSocketResource``), which completes the handshake and
joins the client end of the Worker's ``WebSocketPair`` to the socket. Both reach Durable Objects
through the runtime's one registry.

Nothing here knows Durable Object semantics: it translates bytes and errors, no more. Every error
becomes an HTTP response in one place, ``errorResponse``.
"""

from __future__ import annotations

import time
from typing import Any, Optional, Union, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.types import ConnectionRequest
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.protocols.policies import ProtocolWrapper
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET

from . import logs, websocket
from ._autobahn import FastMessages
from .errors import BadRequest, DurableObjectError, RequestTooLarge, WorkerResponseError, unavailableIn
from ._http import DotwistChannel, LimitedSite, bodyChecked, requestUrl
from .fetch import Headers, Request, Response
from .worker import Runtime

_log = Logger(namespace="dotwist.server")

# Headers Autobahn writes itself in a 101, or that make no sense to copy into one.
_HANDSHAKE_HEADERS = frozenset(
    {
        "connection", "upgrade", "sec-websocket-accept", "sec-websocket-extensions",
        "sec-websocket-protocol", "sec-websocket-version", "content-length",
        "transfer-encoding", "server", "date",
    }
)


def _validCloseFrame(code: Optional[int], reasonRaw: Optional[bytes]) -> bool:
    """Whether a received close frame is one Autobahn accepts (else Autobahn fails the
    connection, whichever reply mode is in force)."""
    if code is not None and (
        code < 1000
        or (code <= 2999 and code not in WebSocketServerProtocol.CLOSE_STATUS_CODES_ALLOWED)
        or code >= 5000
    ):
        return False
    if reasonRaw is not None:
        try:
            reasonRaw.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _acceptDeflate(offers: list[Any]) -> Optional[PerMessageDeflateOfferAccept]:
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return PerMessageDeflateOfferAccept(offer)
    return None


# Autobahn's own two base classes disagree on the types of ``peer`` and ``_transport_details``.
class DotwistWebSocketProtocol(FastMessages, WebSocketServerProtocol):  # type: ignore[misc]
    """One client's WebSocket, joined to the client end of a ``WebSocketPair``.

    Whole, uncompressed data frames take ``FastMessages``' path; everything else is Autobahn's."""

    clientEnd: websocket.WebSocket
    response: Response
    earlyLimit: int
    #: Answer a client's close frame at once, echoing its code and reason (Cloudflare's
    #: ``web_socket_auto_reply_to_close``, the default from 2026-04-07), or leave the reply to
    #: the application's ``close()`` (earlier compatibility dates). Set from the factory.
    autoReplyToClose = True
    #: Manual reply: the client's close frame arrived and the application has not answered yet.
    _replyPending = False
    _replyTimer: Any = None

    # The runtime side of the pair talks to the connection through these two names.
    def wsSend(self, payload: bytes, isBinary: bool) -> None:
        # A message sent while the connection is going away (its close event is not delivered
        # yet) is dropped, as a browser's would be, instead of raising in the sender's code.
        if self.state == self.STATE_OPEN:
            self.sendFast(payload, isBinary)

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None:
        reasonUtf8 = reason.encode("utf-8")[:123] if reason else None
        if self.state != self.STATE_OPEN:
            return
        if self._replyPending:
            # The application answers the client's close frame: send it, then (as a server
            # does after the closing handshake) drop the TCP connection.
            self._replyPending = False
            if self._replyTimer is not None and self._replyTimer.active():
                self._replyTimer.cancel()
            self.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=True)
            self.dropConnection(abort=False)
            return
        self.sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=False)

    def onCloseFrame(self, code: Optional[int], reasonRaw: Optional[bytes]) -> Any:
        # Autobahn answers a client's close frame itself; with echoCloseCodeReason (set by the
        # factory for auto-reply) it echoes the code and reason, as workerd does. For a manual
        # reply, a valid close frame is handed to the application instead, unanswered.
        if self.autoReplyToClose or self.state != self.STATE_OPEN or not _validCloseFrame(code, reasonRaw):
            return super().onCloseFrame(code, reasonRaw)
        reason = reasonRaw.decode("utf-8") if reasonRaw is not None else None
        self.remoteCloseCode = code
        self.remoteCloseReason = reason
        self.wasClean = True
        self._replyPending = True
        timeout = getattr(self, "closeHandshakeTimeout", 0)  # an Autobahn option
        if timeout and timeout > 0:
            # An application that never answers: the connection is dropped, not kept half open.
            self._replyTimer = self.factory.reactor.callLater(timeout, self._noReply)
        clientEnd = getattr(self, "clientEnd", None)
        if clientEnd is not None:
            websocket.closeReceived(clientEnd, code, reason)
        return None

    def _noReply(self) -> None:
        self._replyTimer = None
        if self._replyPending:
            self._replyPending = False
            self.dropConnection(abort=True)

    def onConnect(self, request: ConnectionRequest) -> Any:
        headers = self.response.headers
        chosen = headers.get("sec-websocket-protocol")
        if chosen is not None and chosen not in request.protocols:
            _log.warn(
                "The Worker chose subprotocol {chosen!r}, which the client did not offer "
                "({offered!r}); not sending it",
                chosen=chosen,
                offered=request.protocols,
            )
            chosen = None
        extra: dict[str, list[str]] = {}
        for name, value in headers.rawItems():
            if name not in _HANDSHAKE_HEADERS:
                extra.setdefault(name, []).append(value)
        return (chosen, extra)

    def onOpen(self) -> None:
        # The Worker's response and the handshake's values have served (onConnect): a socket that
        # stays open, maybe hibernated for days, keeps neither.
        self.__dict__.pop("response", None)
        self.forgetHandshake()
        self.factory.connections.add(self)
        websocket.attach(self.clientEnd, self, self.earlyLimit, self.factory.sendLimit)

    def deliverMessage(self, message: Any) -> None:
        # FastMessages: a whole message, text already decoded (and so validated).
        websocket.received(self.clientEnd, message)

    def onMessageEnd(self) -> None:
        # Autobahn's version also fires its observer signal through a txaio future per message;
        # nothing observes it here, so deliver the message and skip that.
        if not self.failedByMe:
            payload = b"".join(self.message_data)
            websocket.received(
                self.clientEnd, payload if self.message_is_binary else payload.decode("utf-8")
            )
        self.message_data = None  # type: ignore[assignment]  # as Autobahn's own onMessageEnd

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if self._replyTimer is not None and self._replyTimer.active():
            self._replyTimer.cancel()
        factory = self.factory
        factory.connections.discard(self)
        clientEnd = getattr(self, "clientEnd", None)
        if clientEnd is not None:
            websocket.connectionClosed(clientEnd, wasClean, code, reason)
        factory.closed(self)


class DotwistWebSocketFactory(WebSocketServerFactory):
    """Builds the protocols that the HTTP resource hands upgraded connections to."""

    protocol = DotwistWebSocketProtocol

    def __init__(self, runtime: Runtime, reactor: Any = None) -> None:
        WebSocketServerFactory.__init__(self, server="dotwist", reactor=reactor)
        limits = runtime.limits
        # The reply to a client's close frame follows the Worker's compatibility date.
        autoReply = runtime.compatibility.isEnabled("web_socket_auto_reply_to_close")
        self.connections: set[DotwistWebSocketProtocol] = set()
        self.earlyLimit = limits.maxPendingBytes
        self.sendLimit = limits.maxOutgoingMessageSize
        self._closedWaiters: dict[DotwistWebSocketProtocol, Deferred[None]] = {}
        WebSocketServerFactory.setProtocolOptions(
            self,
            perMessageCompressionAccept=_acceptDeflate,
            maxMessagePayloadSize=limits.maxMessageSize,
            maxFramePayloadSize=limits.maxMessageSize,
            openHandshakeTimeout=limits.openHandshakeTimeout,
            closeHandshakeTimeout=limits.closeHandshakeTimeout,
            failByDrop=False,
            echoCloseCodeReason=autoReply,
        )
        # Per-frame logging and timing cost on every message; nobody reads them in production.
        self.logOctets = False
        self.logFrames = False
        self.trackTimings = False
        # Autobahn copies every option onto each protocol instance (and pretty-prints them all
        # for a debug line) unless the protocol class already has them: this factory's protocol
        # class carries the options as class attributes, so a new connection copies nothing.
        options: dict[str, Any] = {
            name: staticmethod(value) if callable(value) else value
            for name, value in ((n, getattr(self, n)) for n in DotwistWebSocketProtocol.CONFIG_ATTRS)
        }
        options["CONFIG_ATTRS"] = ()
        options["earlyLimit"] = self.earlyLimit
        options["maxUnsentBytes"] = limits.maxUnsentBytes
        options["autoReplyToClose"] = autoReply
        self.protocol = cast(
            type[DotwistWebSocketProtocol],
            type("DotwistWebSocketProtocol", (DotwistWebSocketProtocol,), options),
        )

    def buildHandover(self, response: Response) -> "WebSocketHandover":
        return WebSocketHandover(_PerRequest(self, response))

    def closed(self, protocol: DotwistWebSocketProtocol) -> None:
        waiter = self._closedWaiters.pop(protocol, None)
        if waiter is not None:
            waiter.callback(None)

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


class _PerRequest:
    """The factory as one hand-over sees it: its protocol is joined to this response's socket."""

    def __init__(self, factory: DotwistWebSocketFactory, response: Response) -> None:
        self._factory = factory
        self._response = response
        #: The protocol built for this hand-over, once built.
        self.protocol: Optional[DotwistWebSocketProtocol] = None

    def buildProtocol(self, addr: IAddress) -> DotwistWebSocketProtocol:
        protocol = cast(DotwistWebSocketProtocol, self._factory.buildProtocol(addr))
        assert self._response.webSocket is not None
        protocol.clientEnd = self._response.webSocket
        protocol.response = self._response
        self.protocol = protocol
        return protocol


class WebSocketHandover(WebSocketResource):
    """Autobahn's ``WebSocketResource``, rendered once, after the Worker said yes with a ``101``.

    Before Autobahn takes the connection over: twisted.web's idle timeout is cancelled (Autobahn
    has its own), and the HTTP channel stops being the transport's producer: left there, it would
    keep the whole upgrade request (channel, request, headers, Klein's state) alive for as long as
    the socket is open, about 6 KB per socket (the WebSocket protocol becomes the producer). The
    request twisted.web parsed is handed to the protocol as it is (``_openParsed``) when Autobahn
    would accept it, instead of being written out again for Autobahn to parse. After, the channel
    gives the protocol what it read past the request (frames sent in the same packet), and lets
    go of the request (``DotwistChannel.detach``)."""

    def __init__(self, factory: _PerRequest) -> None:
        WebSocketResource.__init__(self, factory)
        self._perRequest = factory

    def render(self, request: IRequest) -> Any:
        channel = request.channel  # type: ignore[attr-defined]
        transport = channel.transport
        if transport is not None:
            channel.setTimeout(None)
            transport.unregisterProducer()  # the channel's registration (TCP or TLS)
        result: Any = NOT_DONE_YET
        if not self._openParsed(request, channel, transport):
            result = WebSocketResource.render(self, request)
        protocol = self._perRequest.protocol
        if protocol is not None and isinstance(channel, DotwistChannel):
            # WebSocket frames the client sent with the upgrade request were read by the HTTP
            # channel; Autobahn has just been given the request itself, so they come next.
            channel.detach(protocol.dataReceived)
        return result

    def _openParsed(self, request: IRequest, channel: Any, transport: Any) -> bool:
        """Hand the connection over with the request twisted.web has already parsed, if Autobahn
        would accept it (``FastMessages.checkParsedHandshake``), instead of Autobahn's way of
        writing the request out again as bytes for its own parser (about a tenth of a short
        connection's CPU). Plain TCP and UNIX connections only; over TLS, and for any request
        Autobahn would answer otherwise, Autobahn's ``WebSocketResource.render`` does it all."""
        if (
            transport is None
            or isinstance(transport, ProtocolWrapper)
            or isinstance(getattr(transport, "protocol", None), ProtocolWrapper)
            or not hasattr(transport, "resumeProducing")
        ):
            return False
        protocol = self._perRequest.buildProtocol(transport.getPeer())
        handshake = protocol.checkParsedHandshake(
            request.method, request.uri, request.requestHeaders.getAllRawHeaders()
        )
        if handshake is None:
            self._perRequest.protocol = None  # Autobahn's render builds its own
            return False
        protocol.expectParsedHandshake()
        # Autobahn's takeover of a plain transport (WebSocketResource.render).
        channel.transport = None
        transport.protocol = protocol
        protocol.makeConnection(transport)  # type: ignore[no-untyped-call]  # Twisted's
        transport.resumeProducing()
        content = request.content
        protocol.openParsed(handshake, content.read() if content is not None else b"")
        return True


def _isUpgrade(request: IRequest) -> bool:
    upgrade = request.getHeader(b"upgrade")
    return upgrade is not None and upgrade.strip().lower() == b"websocket"


def errorResponse(request: IRequest, error: BaseException, method: str = "", url: str = "") -> bytes:
    """The one place where an error becomes an HTTP response: sets the status and headers of
    ``request`` and returns the body."""
    status, body = _errorStatus(request, error, method, url)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain;charset=UTF-8")
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _errorStatus(request: IRequest, error: BaseException, method: str, url: str) -> tuple[int, bytes]:
    if isinstance(error, RequestTooLarge):
        return 413, str(error).encode("utf-8")
    if isinstance(error, BadRequest):
        return 400, b"Bad Request"
    if isinstance(error, DurableObjectError) and error.overloaded:
        request.setHeader(b"retry-after", b"1")
        return 503, str(error).encode("utf-8")
    unavailable = unavailableIn(error)
    if unavailable is not None:
        # The object is moving between cluster nodes (or the cluster cannot place it now): a
        # clear, retryable answer, not a 500 that reads as a bug in the application. The
        # details (node addresses among them) go to the log, not to the client.
        _log.warn(
            "Durable Object unavailable for {method} {url}: {error}", error=str(unavailable),
            method=method, url=url,
        )
        request.setHeader(b"retry-after", b"%d" % max(1, unavailable.retryAfter))
        return 503, b"The Durable Object is unavailable for a moment (it is moving between nodes); try again."
    if isinstance(error, CancelledError):
        # The client went away before the answer: there is nobody to tell, nothing to log.
        return 499, b"Client closed request"
    if isinstance(error, WorkerResponseError):
        _log.error("{error} ({method} {url})", error=str(error), method=method, url=url)
    else:
        _log.failure(
            "Worker threw exception for {method} {url}", Failure(error), method=method, url=url
        )
    return 500, b"Worker threw exception"


#: The usual methods' names, decoded once.
_METHODS = {
    name.encode("ascii"): name
    for name in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}
#: Header names as the Worker sees them (lower-cased text), by the bytes twisted.web gives; the
#: names clients send are few, and at most ``_HEADER_NAMES_KEPT`` are kept.
_HEADER_NAMES: dict[bytes, str] = {}
_HEADER_NAMES_KEPT = 1000


def _headerName(raw: bytes) -> str:
    name = _HEADER_NAMES.get(raw)
    if name is None:
        name = raw.decode("latin-1").lower()
        if len(_HEADER_NAMES) < _HEADER_NAMES_KEPT:
            _HEADER_NAMES[raw] = name
    return name


class Front:
    """The HTTP side: every request, any path and method, goes to the runtime's Worker."""

    app = Klein()

    def __init__(self, runtime: Runtime, factory: DotwistWebSocketFactory) -> None:
        self._runtime = runtime
        self._factory = factory
        #: Requests being handled now (the service waits for them when it stops).
        self.inFlight = 0
        #: Set when the service stops: new requests get 503 and their connection closes.
        self.draining = False

    def resource(self) -> IResource:
        resource: IResource = self.app.resource()
        return resource

    def _toRequest(self, request: IRequest) -> Request:
        limit = self._runtime.limits.maxRequestBodySize
        # An announced or chunked body over the limit was refused before it was read (the
        # channel, dotwist._http); the header check here is for requests the channel did not
        # check against this limit (bodyChecked), such as requests that did not come through it.
        if not bodyChecked(request, limit):
            length = request.getHeader(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        try:
            url = requestUrl(request)  # a validated Host and request target (dotwist._http)
            # As Cloudflare's edge does: CF-Connecting-IP is the client's address, whatever the
            # client sent in it (behind a reverse proxy, that is the proxy's address).
            client = getattr(request.getClientAddress(), "host", None)
            # twisted.web's parser has already refused bad names, and values with line breaks or
            # NULs (it answers 400 itself), so the pairs need no second check.
            pairs: list[tuple[str, str]] = []
            for rawName, values in request.requestHeaders.getAllRawHeaders():
                name = _headerName(rawName)
                if client is not None and name == "cf-connecting-ip":
                    continue
                for value in values:
                    pairs.append((name, value.decode("latin-1").strip(" \t")))
            if client is not None:
                pairs.append(("cf-connecting-ip", client))
            headers = Headers.fromWire(pairs)
            body = request.content.read() if request.content is not None else b""
            rawMethod = request.method
            method = _METHODS.get(rawMethod) or rawMethod.decode("ascii")
        except (UnicodeError, ValueError) as e:  # BadRequestTarget is a ValueError
            raise BadRequest(f"Could not read the request: {e}") from e
        if len(body) > limit:
            raise RequestTooLarge(f"Request body is larger than the limit of {limit} bytes.")
        return Request.fromWire(url, method, headers, body or None)

    @app.route("/", branch=True)
    def handle(self, request: IRequest) -> Union[bytes, WebSocketHandover, Deferred[Any]]:
        # A plain function over Deferreds, not a coroutine, which Klein would wrap in
        # ensureDeferred (a coroutine driver per request; measured in process, the saving is
        # within the noise: Klein's own render is the cost, bench/README.md). Klein cancels the
        # Deferred returned here when the client goes away; the cancellation reaches the Worker.
        if self.draining:
            request.setResponseCode(503)
            request.setHeader(b"connection", b"close")
            request.setHeader(b"retry-after", b"1")
            return b"The server is shutting down."
        try:
            incoming = self._toRequest(request)
        except Exception as e:
            return errorResponse(request, e)
        self.inFlight += 1
        done, outcome = self._runtime.fetchFirst(incoming)
        if done:  # the Worker answered without waiting: no Deferred of ours in between
            return self._respond(outcome, request, incoming)
        answer: Deferred[Any] = outcome
        return answer.addCallbacks(
            self._respond, self._failed, callbackArgs=(request, incoming), errbackArgs=(request, incoming)
        )

    def _respond(
        self, response: Response, request: IRequest, incoming: Request
    ) -> Union[bytes, WebSocketHandover]:
        self.inFlight -= 1
        if response.webSocket is not None:
            try:
                return self._handover(request, response)
            except Exception as e:
                return errorResponse(request, e, incoming.method, incoming.url)
        request.setResponseCode(response.status, response.statusText.encode("latin-1", "replace"))
        outgoing = request.responseHeaders
        for name, value in response.headers.rawItems():
            outgoing.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
        body = response.body or b""
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    def _failed(self, failure: Failure, request: IRequest, incoming: Request) -> bytes:
        self.inFlight -= 1
        error = failure.value if failure.value is not None else Exception(failure.getErrorMessage())
        return errorResponse(request, error, incoming.method, incoming.url)

    def _handover(self, request: IRequest, response: Response) -> WebSocketHandover:
        assert response.webSocket is not None
        if not _isUpgrade(request):
            raise WorkerResponseError(
                "Worker tried to return a WebSocket in a response to a request which did not "
                'contain the header "Upgrade: websocket".'
            )
        if not websocket.claimForHandover(response.webSocket):
            raise WorkerResponseError("Worker returned a WebSocket that was already handed to a client")
        site = getattr(request.channel, "site", None)  # type: ignore[attr-defined]
        if isinstance(site, DotwistSite):
            site.logUpgrade(request)
        return self._factory.buildHandover(response)


class DotwistSite(LimitedSite):
    """A ``Site`` with dotwist's HTTP limits (``dotwist._http``) that logs one line per request
    (``dotwist.logs``; ``accessLog = False`` turns them off) and counts responses by status for
    the metrics."""

    accessLog = True
    #: The HTTP side this site serves (set by ``makeSite``).
    front: Optional["Front"] = None

    def getResourceFor(self, request: Any) -> Any:
        if self.accessLog:  # the time the response took, for the request's line
            request.dotwistStarted = time.monotonic()
        return LimitedSite.getResourceFor(self, request)  # type: ignore[no-untyped-call]  # Twisted's

    def _elapsedMs(self, request: Any) -> float:
        started = getattr(request, "dotwistStarted", None)
        return 0.0 if started is None else (time.monotonic() - started) * 1000.0

    def __init__(self, resource: IResource, reactor: Any = None) -> None:
        if reactor is None:
            LimitedSite.__init__(self, resource)
        else:
            LimitedSite.__init__(self, resource, reactor=reactor)
        #: Responses sent, by status code (101 for WebSocket upgrades).
        self.responses: dict[int, int] = {}

    def log(self, request: Any) -> None:
        code = request.code
        self.responses[code] = self.responses.get(code, 0) + 1
        if self.accessLog:
            logs.logRequest(request, self._elapsedMs(request))

    def logUpgrade(self, request: Any) -> None:
        """A request handed over to a WebSocket (it never finishes as an HTTP request)."""
        self.responses[101] = self.responses.get(101, 0) + 1
        if self.accessLog:
            logs.logRequest(request, self._elapsedMs(request), status=101)


def makeSite(
    runtime: Runtime, reactor: Any = None, accessLog: bool = False
) -> tuple[DotwistSite, DotwistWebSocketFactory]:
    """The ``Site`` serving ``runtime``, and the WebSocket factory it hands sockets to.
    ``accessLog`` is off by default here (library callers, benchmarks); the service turns it on
    unless ``--no-access-log``."""
    factory = DotwistWebSocketFactory(runtime, reactor=reactor)
    front = Front(runtime, factory)
    site = DotwistSite(front.resource(), reactor)
    site.displayTracebacks = False
    site.accessLog = accessLog
    site.limits = runtime.limits
    site.front = front
    return site, factory


__all__ = [
    "DotwistSite",
    "DotwistWebSocketFactory",
    "DotwistWebSocketProtocol",
    "Front",
    "WebSocketHandover",
    "errorResponse",
    "makeSite",
]
