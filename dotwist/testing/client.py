"""A test client for the Worker, in-process: HTTP requests (``fetch``) and WebSockets
(``webSocket``: send, receive, close with codes) without sockets, straight into the runtime.

``InProcessClient`` and ``dotwist.testing.tcp.TcpClient`` (the same API over a real listening
port, through twisted.web and Autobahn) both return ``Deferred``s, so a test written with
``await`` runs against either. ``FakeConnection`` is the lower-level piece: it joins the client end
of a ``101`` response to a recording connection.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Optional, Protocol, Sequence, Union
from urllib.parse import urljoin, urlsplit

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from .. import websocket
from ..config import Limits
from ..errors import WorkerResponseError
from ..fetch import Headers, Request, Response
from ..websocket import CloseEvent
from ..worker import Runtime

__all__ = [
    "BASE_URL",
    "ClientWebSocket",
    "FakeConnection",
    "InProcessClient",
    "InProcessWebSocket",
    "WebSocketClosed",
    "WebSocketRefused",
    "WorkerClient",
    "connectWebSocket",
]

#: Where relative URLs given to a client point (the host the Worker sees, in both modes).
BASE_URL = "http://example.com"

Message = Union[str, bytes]

#: What the runtime's WebSocket server (Autobahn) says when a client vanishes: an object's listeners
#: get it in the error event; the close event (1006) has an empty reason.
DROPPED = (
    'connection was closed uncleanly ("peer dropped the TCP connection without previous '
    'WebSocket closing handshake")'
)

# RFC 6455's sample nonce: the in-process client needs a key only because Workers may look at it.
_SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


class WebSocketRefused(Exception):
    """The Worker answered a WebSocket request with something other than a ``101``: ``status``
    and ``body`` are its response's."""

    def __init__(self, status: int, body: bytes, statusText: str = "") -> None:
        super().__init__(f"the WebSocket request was answered with {status} {statusText}: {body[:200]!r}")
        self.status = status
        self.body = body
        self.statusText = statusText


class WebSocketClosed(Exception):
    """``receive()`` on a socket that closed before another message came: ``event`` says how."""

    def __init__(self, event: CloseEvent) -> None:
        super().__init__(
            f"the WebSocket closed (code {event.code}{', clean' if event.wasClean else ', not clean'}"
            f"{': ' + event.reason if event.reason else ''}) before a message came"
        )
        self.event = event


def _validCloseCode(code: Optional[int]) -> bool:
    return code is None or code == 1000 or 3000 <= code <= 4999


class ClientWebSocket:
    """The client's end of a WebSocket to the Worker, as a test holds it.

    ``send(message)``; ``await receive()`` for the next message (``str`` for text, ``bytes`` for
    binary); ``await close(code, reason)`` and ``await closed()`` for the ``CloseEvent`` (code,
    reason, wasClean); ``drop()`` to vanish without a closing handshake. ``protocol`` is the
    subprotocol the Worker chose, if any; ``pending`` the messages that arrived and were not
    received yet.

    It behaves as a browser does: when the server closes, it replies with the same code and
    reason. When it closes, the runtime's server echoes its code and reason (or, for Workers with
    a compatibility date before 2026-04-07, the object's ``close()`` answers).
    """

    __test__ = False

    def __init__(self, timeoutClock: Optional[IReactorTime] = None) -> None:
        #: The subprotocol the Worker chose (from the client's offer), or None.
        self.protocol: Optional[str] = None
        #: How the socket closed, once it has.
        self.closeEvent: Optional[CloseEvent] = None
        self._inbox: deque[Message] = deque()
        self._receivers: deque[Deferred[Message]] = deque()
        self._closeWaiters: list[Deferred[CloseEvent]] = []
        self._closing = False
        self._timeoutClock = timeoutClock

    # -- what a test does --------------------------------------------------------------------

    @property
    def pending(self) -> list[Message]:
        """Messages that arrived and were not received yet, oldest first."""
        return list(self._inbox)

    def receive(self, timeout: float = 10.0) -> "Deferred[Message]":
        """The next message. Fails with ``WebSocketClosed`` if the socket closes first; against
        a real port, with ``TimeoutError`` after ``timeout`` seconds (in-process nothing is
        waited for in real time: a message comes when the clock runs what sends it)."""
        if self._inbox:
            return succeed(self._inbox.popleft())
        if self.closeEvent is not None:
            return fail(WebSocketClosed(self.closeEvent))
        d: Deferred[Message] = Deferred()
        self._receivers.append(d)
        clock = self._timeoutClock
        if clock is not None:
            timer = clock.callLater(timeout, self._timedOut, d, timeout)
            d.addBoth(_cancelling(timer))
        return d

    def send(self, message: Message) -> None:
        """Send a text (``str``) or binary (``bytes``) message to the Worker."""
        if self._closing or self.closeEvent is not None:
            raise TypeError("Can't call WebSocket send() after close().")
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"WebSocket send() takes str or bytes, not {type(message).__name__}")
        self._send(message if isinstance(message, str) else bytes(message))

    def close(self, code: Optional[int] = 1000, reason: str = "") -> "Deferred[CloseEvent]":
        """Start the closing handshake with ``code`` (1000, or 3000 to 4999; None for no code) and
        ``reason``; fires with the ``CloseEvent`` once closed (the server's reply code)."""
        if not _validCloseCode(code):
            raise TypeError(f"Invalid WebSocket close code {code!r}: use 1000 or 3000 to 4999.")
        if reason and code is None:
            raise TypeError("A close reason needs a close code.")
        if len(reason.encode("utf-8")) > 123:
            raise TypeError("The WebSocket close reason may be at most 123 bytes of UTF-8.")
        if not self._closing and self.closeEvent is None:
            self._closing = True
            self._close(code, reason)
        return self.closed()

    def drop(self) -> "Deferred[CloseEvent]":
        """Vanish without a closing handshake (the server sees 1006, not clean)."""
        if self.closeEvent is None:
            self._closing = True
            self._drop()
        return self.closed()

    def closed(self) -> "Deferred[CloseEvent]":
        """Fires with the ``CloseEvent`` once the socket is closed, by either side."""
        if self.closeEvent is not None:
            return succeed(self.closeEvent)
        d: Deferred[CloseEvent] = Deferred()
        self._closeWaiters.append(d)
        return d

    # -- what a transport calls --------------------------------------------------------------

    def _arrived(self, message: Message) -> None:
        if self._receivers:
            self._receivers.popleft().callback(message)
        else:
            self._inbox.append(message)

    def _finished(self, event: CloseEvent) -> None:
        if self.closeEvent is not None:
            return
        self.closeEvent = event
        receivers, self._receivers = self._receivers, deque()
        for d in receivers:
            d.errback(WebSocketClosed(event))
        waiters, self._closeWaiters = self._closeWaiters, []
        for waiter in waiters:
            waiter.callback(event)

    def _timedOut(self, d: "Deferred[Message]", timeout: float) -> None:
        if d in self._receivers:
            self._receivers.remove(d)
            d.errback(TimeoutError(f"no WebSocket message within {timeout:g} s"))

    # -- what each transport does ------------------------------------------------------------

    def _send(self, message: Message) -> None:
        raise NotImplementedError

    def _close(self, code: Optional[int], reason: str) -> None:
        raise NotImplementedError

    def _drop(self) -> None:
        raise NotImplementedError


def _cancelling(timer: IDelayedCall) -> Any:
    def cancel(outcome: object) -> object:
        if timer.active():
            timer.cancel()
        return outcome

    return cancel


class InProcessWebSocket(ClientWebSocket):
    """A ``ClientWebSocket`` joined in memory to the client end of a ``101`` response: what the
    test sends is delivered to the server end at once; what the server sends arrives at once; the
    reply to a close the server started comes on the clock's next turn, as a real client's would
    come a moment later.

    A close the client starts is answered as the runtime's server answers it: at once, echoing
    the code and reason (``autoReplyToClose``, Cloudflare's behaviour from 2026-04-07), or by the
    object's own ``close()``, the connection being dropped if that does not come within
    ``closeHandshakeTimeout`` seconds (earlier compatibility dates)."""

    def __init__(
        self,
        response: Response,
        clock: Optional[IReactorTime] = None,
        earlyLimit: int = Limits.maxPendingBytes,
        autoReplyToClose: bool = True,
        closeHandshakeTimeout: float = Limits.closeHandshakeTimeout,
    ) -> None:
        super().__init__()
        if response.status != 101 or response.webSocket is None:
            raise AssertionError(f"expected a 101 response with a webSocket, got {response!r}")
        self.clientEnd = response.webSocket
        self._clock = clock
        self._autoReply = autoReplyToClose
        self._closeTimeout = closeHandshakeTimeout
        self._replyTimer: Optional[IDelayedCall] = None
        websocket.attach(self.clientEnd, self, earlyLimit)

    # The connection the runtime's client end talks to.
    def wsSend(self, payload: bytes, isBinary: bool) -> None:
        if self.closeEvent is None:
            self._arrived(payload if isBinary else payload.decode("utf-8"))

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None:
        if self.closeEvent is not None:
            return
        if self._closing:
            # The object's reply to the client's close (a manual reply): the connection ends.
            if self._replyTimer is not None and self._replyTimer.active():
                self._replyTimer.cancel()
            self._finished(CloseEvent(1005 if code is None else code, reason or "", True))
            return
        # The server closed: reply as a browser does, with its code and reason.
        self._finished(CloseEvent(1005 if code is None else code, reason or "", True))
        if self._clock is None:
            websocket.connectionClosed(self.clientEnd, True, code, reason)
        else:
            self._clock.callLater(0, websocket.connectionClosed, self.clientEnd, True, code, reason)

    def _send(self, message: Message) -> None:
        websocket.received(self.clientEnd, message)

    def _close(self, code: Optional[int], reason: str) -> None:
        if self._autoReply:
            websocket.connectionClosed(self.clientEnd, True, code, reason or None)
            self._finished(CloseEvent(1005 if code is None else code, reason, True))
            return
        websocket.closeReceived(self.clientEnd, code, reason or None)
        if self._clock is not None and self.closeEvent is None:
            self._replyTimer = self._clock.callLater(self._closeTimeout, self._noReply)

    def _noReply(self) -> None:
        # The server drops a connection whose close the object never answered.
        self._replyTimer = None
        self._finished(CloseEvent(1006, "", False))

    def _drop(self) -> None:
        websocket.connectionClosed(self.clientEnd, False, 1006, DROPPED)
        self._finished(CloseEvent(1006, "", False))


def resolveUrl(baseUrl: str, url: Union[str, Request]) -> str:
    """``url`` made absolute against ``baseUrl`` (an absolute http(s) URL stays as it is)."""
    if isinstance(url, Request):
        return url.url
    parts = urlsplit(url)
    if parts.scheme in ("ws", "wss"):
        url = ("http" if parts.scheme == "ws" else "https") + url[len(parts.scheme):]
    return url if urlsplit(url).netloc else urljoin(baseUrl, url)


def buildRequest(
    baseUrl: str, input: Union[str, Request], init: Optional[Mapping[str, Any]], kwargs: Mapping[str, Any]
) -> Request:
    """The ``Request`` a test client sends for ``fetch(input, init, **kwargs)``, with a ``Host``
    header, as one sent over HTTP has."""
    if isinstance(input, Request):
        request = Request(input, init, **kwargs)
    else:
        request = Request(resolveUrl(baseUrl, input), init, **kwargs)
    if not request.headers.has("host"):
        request.headers.set("host", urlsplit(request.url).netloc)
    return request


def isUpgrade(request: Request) -> bool:
    upgrade = request.headers.get("upgrade")
    return upgrade is not None and upgrade.strip().lower() == "websocket"


def upgradeHeaders(protocols: Sequence[str], headers: Optional[Mapping[str, str]]) -> Headers:
    """The headers of a WebSocket opening request."""
    out = Headers(dict(headers or {}))
    out.set("upgrade", "websocket")
    out.set("connection", "Upgrade")
    out.set("sec-websocket-version", "13")
    if not out.has("sec-websocket-key"):
        out.set("sec-websocket-key", _SAMPLE_KEY)
    if protocols:
        out.set("sec-websocket-protocol", ", ".join(protocols))
    return out


class WorkerClient(Protocol):
    """A test client for the Worker: ``InProcessClient``, or ``dotwist.testing.tcp.TcpClient``
    over a real port."""

    baseUrl: str

    def fetch(
        self, input: Union[str, Request], init: Optional[Mapping[str, Any]] = None, **kwargs: Any
    ) -> "Deferred[Response]": ...

    def webSocket(
        self,
        url: Union[str, Request],
        protocols: Sequence[str] = (),
        headers: Optional[Mapping[str, str]] = None,
    ) -> "Deferred[ClientWebSocket]": ...


_NOT_HERE = (
    "fetch() does not open WebSockets: use webSocket(url), which gives a socket to send, receive "
    "and close on (in-process and against a real port alike)."
)


class InProcessClient:
    """The Worker of ``runtime``, called in-process: ``fetch`` returns its ``Response``;
    ``webSocket`` opens a socket to it. Relative URLs are relative to ``baseUrl``.

    As Cloudflare's ``SELF`` (a service binding to the Worker), an exception the Worker raises
    reaches the caller (over a real port it is a ``500``). The request gets ``Host`` and
    ``CF-Connecting-IP: 127.0.0.1`` headers unless it has them, as it would at the HTTP edge."""

    def __init__(self, runtime: Runtime, baseUrl: str = BASE_URL, clock: Optional[IReactorTime] = None) -> None:
        self.runtime = runtime
        self.baseUrl = baseUrl
        self._clock = clock if clock is not None else runtime.registry.clock

    def fetch(self, input: Union[str, Request], init: Optional[Mapping[str, Any]] = None, **kwargs: Any) -> "Deferred[Response]":
        """Send a request to the Worker; fires with its ``Response``."""
        try:
            request = buildRequest(self.baseUrl, input, init, kwargs)
        except Exception:
            return fail()
        if isUpgrade(request):
            return fail(TypeError(_NOT_HERE))
        return self._send(request).addCallback(_noWebSocket)

    def webSocket(
        self,
        url: Union[str, Request],
        protocols: Sequence[str] = (),
        headers: Optional[Mapping[str, str]] = None,
    ) -> "Deferred[ClientWebSocket]":
        """Open a WebSocket to the Worker (``ws://``, ``http://`` or a relative URL), offering
        ``protocols``; fires with the socket once the Worker answered ``101``, or fails with
        ``WebSocketRefused``."""
        try:
            request = Request(resolveUrl(self.baseUrl, url), headers=upgradeHeaders(protocols, headers))
            request.headers.set("host", urlsplit(request.url).netloc)
        except Exception:
            return fail()

        def opened(response: Response) -> ClientWebSocket:
            if response.status != 101 or response.webSocket is None:
                raise WebSocketRefused(response.status, response.body or b"", response.statusText)
            if not websocket.claimForHandover(response.webSocket):
                raise WorkerResponseError("Worker returned a WebSocket that was already handed to a client")
            runtime = self.runtime
            socket = InProcessWebSocket(
                response,
                self._clock,
                runtime.limits.maxPendingBytes,
                autoReplyToClose=runtime.compatibility.isEnabled("web_socket_auto_reply_to_close"),
                closeHandshakeTimeout=runtime.limits.closeHandshakeTimeout,
            )
            chosen = response.headers.get("sec-websocket-protocol")
            socket.protocol = chosen if chosen in protocols else None
            return socket

        return self._send(request).addCallback(opened)

    def _send(self, request: Request) -> "Deferred[Response]":
        if not request.headers.has("cf-connecting-ip"):
            request.headers.set("cf-connecting-ip", "127.0.0.1")
        return self.runtime.fetch(request)


def _noWebSocket(response: Response) -> Response:
    if response.webSocket is not None:
        raise WorkerResponseError(
            "Worker tried to return a WebSocket in a response to a request which did not "
            'contain the header "Upgrade: websocket".'
        )
    return response


class FakeConnection:
    """A client's WebSocket connection, in memory: records what the server sent (``sent``,
    ``closes``) and delivers what the test ``send``s. (``InProcessWebSocket`` is the higher-level
    socket a test client gives; this one only records.)"""

    def __init__(self, clientEnd: websocket.WebSocket, earlyLimit: int) -> None:
        self.clientEnd = clientEnd
        self.sent: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[Optional[int], Optional[str]]] = []
        websocket.attach(clientEnd, self, earlyLimit)

    # What the server end's side calls.
    def wsSend(self, payload: bytes, isBinary: bool) -> None:
        self.sent.append((payload, isBinary))

    def wsClose(self, code: Optional[int], reason: Optional[str]) -> None:
        self.closes.append((code, reason))

    # What a test does as the client.
    @property
    def messages(self) -> list[Union[str, bytes]]:
        """What the server sent, text decoded."""
        return [payload if isBinary else payload.decode("utf-8") for payload, isBinary in self.sent]

    def send(self, message: Union[str, bytes]) -> None:
        websocket.received(self.clientEnd, message)

    def close(self, code: Optional[int] = 1000, reason: str = "", wasClean: bool = True) -> None:
        """The client closed (or, with ``wasClean=False`` and no code, vanished)."""
        websocket.connectionClosed(self.clientEnd, wasClean, code, reason)


def connectWebSocket(response: Response, earlyLimit: int = Limits.maxPendingBytes) -> FakeConnection:
    """Join the client end of a ``101`` response to a ``FakeConnection``."""
    if response.status != 101 or response.webSocket is None:
        raise AssertionError(f"expected a 101 response with a webSocket, got {response!r}")
    return FakeConnection(response.webSocket, earlyLimit)
