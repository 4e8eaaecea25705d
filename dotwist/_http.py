"""HTTP/1.1 at the edge: what a client may send before the Worker sees a request.

twisted.web's ``HTTPChannel`` parses requests. ``DotwistChannel`` and ``DotwistRequest`` add, through
the methods twisted.web has for subclasses (``lineReceived``, ``allHeadersReceived``,
``allContentReceived``, ``requestDone``, ``connectionLost``; ``IRequest.gotLength`` and
``IRequest.handleContentChunk``):

- **Request bodies.** A ``Content-Length`` over ``Limits.maxRequestBodySize`` is refused with 413
  before a byte of the body is read (so nothing is spooled); a chunked body is cut off with 413 at
  the limit. Within the limit, twisted.web keeps a body in memory (under 100,000 bytes) or in a
  temporary file, which therefore never grows past the limit.
- **Time.** ``Limits.headerTimeout`` bounds the time from connecting (or from the end of the
  previous response) to the end of the headers, and ``Limits.requestTimeout`` the time to the end of
  the body, so a client that trickles bytes cannot hold a connection open. One timer per
  connection, moved from request to request; none while the Worker has the request, and none
  after a WebSocket handover.
- **Framing.** More than one ``Transfer-Encoding`` header, a transfer coding other than ``chunked``,
  a ``Transfer-Encoding`` in an HTTP/1.0 request, and obsolete line folding (a header line that
  starts with a space or a tab) are refused with 400 (RFC 9112 sections 5.2 and 6.1). So is a
  WebSocket upgrade in an HTTP/1.0 request (RFC 6455 section 4.1: the handshake "MUST be a valid
  HTTP request" of version "at least 1.1"; section 4.2.2 answers a bad handshake with 400; 426 is
  for a ``Sec-WebSocket-Version`` the server does not speak).
- **The URL.** :func:`buildUrl` makes ``request.url`` from the one ``Host`` header and the request
  target, and refuses anything it cannot make a URL of with 400.
- **The WebSocket handover.** Bytes read after a complete upgrade request (a client's first frames,
  sent with the request) are kept, and :meth:`DotwistChannel.detach` hands them, and whatever the
  channel is still given, to the WebSocket protocol; the channel then lets go of its requests.

A refused request never reaches the Worker: the client gets the status, a one-line reason, and
``Connection: close``. Then the server stops writing but keeps reading (and dropping) what the
client still sends, for ``LINGER_TIME`` seconds at most, so that the client reads the answer instead
of a connection reset; then it closes.

The listen backlog lives here too (:func:`withBacklog`): it is the first thing a burst of clients
meets.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Callable

from twisted.internet.abstract import FileDescriptor
from twisted.internet.interfaces import IDelayedCall, ISSLTransport
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel
from twisted.web.server import Request, Site

from .config import Limits

__all__ = [
    "LINGER_TIME",
    "BadRequestTarget",
    "DotwistChannel",
    "DotwistRequest",
    "LimitedSite",
    "bodyChecked",
    "buildUrl",
    "effectiveBacklog",
    "requestUrl",
    "withBacklog",
]

_log = Logger(namespace="dotwist.http")

#: After refusing a request, how long the server keeps reading (and dropping) what the client
#: still sends before it closes, in seconds. Closing a socket with unread data makes the kernel
#: send a reset, which can destroy the refusal before the client has read it (nginx's
#: ``lingering_close`` does the same for the same reason).
LINGER_TIME = 5.0

_DEFAULT_LIMITS = Limits()


# -- the URL --------------------------------------------------------------------------------------


class BadRequestTarget(ValueError):
    """The ``Host`` header or the request target cannot make a URL (HTTP answers 400)."""


_DEFAULT_PORTS = {"http": 80, "https": 443}
# reg-name, restricted to what host names use: RFC 3986 allows sub-delimiters (",", ";", "!", ...)
# and percent-encoding too, which no DNS name needs and some intermediaries read as separators.
_REG_NAME = re.compile(r"[A-Za-z0-9._~-]+\Z")
_PORT = re.compile(r"[0-9]{1,5}\Z")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0[xX][0-9A-Fa-f]*)\Z")
_ABSOLUTE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)\Z", re.DOTALL)
# Visible ASCII: no controls, spaces or bytes over 0x7E (twisted.web refuses those too).
_VISIBLE = re.compile(r"[\x21-\x7e]*\Z")
_SINGLE_DOT = frozenset({".", "%2e"})
_DOUBLE_DOT = frozenset({"..", ".%2e", "%2e.", "%2e%2e"})


def _authority(value: str, scheme: str, what: str) -> str:
    """``host[:port]`` checked and normalized: host lower-cased, IPv6 compressed, default port
    dropped."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            raise BadRequestTarget(f"{what}: an IPv6 address without its closing bracket")
        literal, rest = value[1:end], value[end + 1 :]
        try:
            if "%" in literal:
                raise ValueError("zone")
            host = "[" + ipaddress.IPv6Address(literal).compressed + "]"
        except ValueError:
            raise BadRequestTarget(f"{what}: {value[: end + 1]!r} is not an IPv6 address") from None
        if rest and not rest.startswith(":"):
            raise BadRequestTarget(f"{what}: unexpected {rest!r} after the IPv6 address")
        port = rest[1:] if rest else None
    else:
        name, colon, portText = value.partition(":")
        port = portText if colon else None
        if not name:
            raise BadRequestTarget(f"{what}: the host is empty")
        if not _REG_NAME.match(name):
            raise BadRequestTarget(f"{what}: {name!r} is not a valid host name")
        labels = name.split(".")
        last = labels[-1] if labels[-1] or len(labels) == 1 else labels[-2]
        # A name whose last label is a number is an IPv4 address to a WHATWG URL parser, which
        # also reads "0x7f.1" and "2130706433" as 127.0.0.1: accept only the plain dotted form,
        # so that every parser the Worker might use reads the same host.
        if _NUMERIC_LABEL.match(last) and not _IPV4.match(name):
            raise BadRequestTarget(f"{what}: {name!r} is not a valid IPv4 address")
        host = name.lower()
    if port is None:
        return host
    if not _PORT.match(port) or int(port) > 65535:
        raise BadRequestTarget(f"{what}: {port!r} is not a valid port")
    number = int(port)
    return host if number == _DEFAULT_PORTS.get(scheme) else f"{host}:{number}"


def _removeDotSegments(path: str) -> str:
    """RFC 3986 section 5.2.4 on an absolute path, with ``%2e`` read as ``.`` as URL parsers do."""
    segments = path.split("/")[1:]
    out: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        lowered = segment.lower()
        if lowered in _SINGLE_DOT:
            if i == last:
                out.append("")
        elif lowered in _DOUBLE_DOT:
            if out:
                out.pop()
            if i == last:
                out.append("")
        else:
            out.append(segment)
    return "/" + "/".join(out)


def _pathAndQuery(text: str) -> str:
    if not _VISIBLE.match(text) or "#" in text:
        raise BadRequestTarget(
            "the request target may only hold visible ASCII characters, and no '#'"
        )
    path, question, query = text.partition("?")
    if "\\" in path:
        # URL parsers read a backslash in an http path as "/"; Python's do not.
        raise BadRequestTarget("a backslash in the request path is not accepted")
    if "." in path or "%2" in path:
        path = _removeDotSegments(path)
    return path + question + query


def buildUrl(
    scheme: str,
    hostHeaders: Sequence[bytes],
    target: bytes,
    *,
    method: bytes = b"GET",
    defaultHost: str | None = None,
) -> str:
    """The URL of a request: ``scheme://host[:port]/path?query``.

    ``scheme`` is the connection's (``http``, or ``https`` over TLS). ``hostHeaders`` are the values
    of every ``Host`` header line: there must be exactly one, holding a valid host (a host name, a
    dotted IPv4 address or a bracketed IPv6 address) and an optional port. ``defaultHost`` stands in
    when there is none; pass it only where HTTP allows a missing ``Host`` (HTTP/1.0).

    ``target`` is the request target (RFC 9112 section 3.2): origin-form (``/path?query``),
    absolute-form (``http://host/path``, whose authority is the URL's, the ``Host`` header still
    being checked; its scheme must be the connection's), or ``*`` for ``OPTIONS`` (the URL is then
    ``scheme://host``). The host is lower-cased, the scheme's default port dropped, and dot segments
    (``/a/../b``) resolved, as Cloudflare's URL normalization and URL parsers do; the rest of the
    path and the query stay as sent.

    Raises :class:`BadRequestTarget` (HTTP 400) for anything else.
    """
    return _urlFor(scheme, _hostAuthority(scheme, hostHeaders, defaultHost), target, method)


def _hostAuthority(scheme: str, hostHeaders: Sequence[bytes], defaultHost: str | None) -> str:
    if len(hostHeaders) > 1:
        raise BadRequestTarget("more than one Host header")
    if hostHeaders:
        try:
            return _authority(hostHeaders[0].decode("ascii"), scheme, "Host header")
        except UnicodeDecodeError:
            raise BadRequestTarget("Host header: not ASCII") from None
    if defaultHost is not None:
        return defaultHost
    raise BadRequestTarget("no Host header")


def _urlFor(scheme: str, authority: str, target: bytes, method: bytes) -> str:
    """The URL of ``target`` on a connection to ``authority`` (already checked)."""
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError:
        raise BadRequestTarget("the request target is not ASCII") from None
    if text.startswith("/"):
        return f"{scheme}://{authority}{_pathAndQuery(text)}"
    if text == "*":
        if method != b"OPTIONS":
            raise BadRequestTarget("the request target '*' is for OPTIONS only")
        return f"{scheme}://{authority}"
    absolute = _ABSOLUTE.match(text)
    if absolute is None:
        raise BadRequestTarget(
            "the request target must be a path (/path?query), an absolute URL "
            "(http://host/path) or, for OPTIONS, '*'"
        )
    targetScheme, targetAuthority, rest = absolute.groups()
    if targetScheme.lower() != scheme:
        raise BadRequestTarget(
            f"the request target's scheme {targetScheme!r} is not this connection's ({scheme})"
        )
    if "@" in targetAuthority:
        raise BadRequestTarget("the request target's authority may not hold user information")
    authority = _authority(targetAuthority, scheme, "request target")
    if not rest.startswith("/"):
        rest = "/" + rest
    return f"{scheme}://{authority}{_pathAndQuery(rest)}"


def _localAuthority(channel: HTTPChannel, scheme: str) -> str:
    """Where the connection arrived, as a URL authority (for HTTP/1.0 requests without Host)."""
    address = channel.transport.getHost() if channel.transport is not None else None
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        return "localhost"  # a UNIX socket
    if ":" in host:
        host = f"[{host}]"
    return host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"


def _isOldVersion(version: bytes) -> bool:
    return version < b"HTTP/1.1"


def _never() -> float:
    """The time, for a channel without a site's reactor: never late enough to reuse a timer."""
    return math.inf


def requestUrl(request: Any) -> str:
    """``request.url`` for the Worker: the URL :class:`DotwistChannel` checked, or, for a request
    that did not come through one, :func:`buildUrl` of it (raises :class:`BadRequestTarget`)."""
    url = getattr(request, "validatedUrl", None)
    if url is not None:
        return str(url)
    scheme = "https" if request.isSecure() else "http"
    defaultHost = None
    if _isOldVersion(request.clientproto):
        address = request.getHost()
        host, port = getattr(address, "host", "localhost"), getattr(address, "port", None)
        host = f"[{host}]" if ":" in host else host
        defaultHost = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return buildUrl(
        scheme,
        request.requestHeaders.getRawHeaders(b"host") or [],
        request.uri,
        method=request.method,
        defaultHost=defaultHost,
    )


def bodyChecked(request: Any, limit: int) -> bool:
    """Whether :class:`DotwistChannel` has refused ``request``'s body if it is (or was announced
    as) larger than ``limit`` bytes: it came through the channel, which checked it against a
    limit no larger."""
    return (
        isinstance(request, DotwistRequest)
        and request.validatedUrl is not None
        and request.maxBodySize <= limit
    )


# -- the channel ----------------------------------------------------------------------------------


def _hasToken(values: list[bytes] | None, token: bytes) -> bool:
    return any(
        part.strip().lower() == token for value in values or () for part in value.split(b",")
    )


class DotwistRequest(Request):
    """A ``twisted.web.server.Request`` that stops taking body bytes at ``maxBodySize`` and carries
    the URL its channel checked."""

    #: The request's URL, set by :class:`DotwistChannel` once the headers are in.
    validatedUrl: str | None = None
    #: Body bytes this request accepts; set by the channel before any arrive.
    maxBodySize: int = _DEFAULT_LIMITS.maxRequestBodySize
    _bodySize = 0

    def handleContentChunk(self, data: bytes) -> None:
        if self.content is None:
            return  # refused: the channel is only draining what was already received
        self._bodySize += len(data)
        if self._bodySize > self.maxBodySize:
            channel = self.channel
            if isinstance(channel, DotwistChannel):
                channel._refuse(413, _tooLarge(self.maxBodySize))
            return
        Request.handleContentChunk(self, data)


def _tooLarge(limit: int) -> str:
    return f"Request body is larger than the limit of {limit} bytes."


class DotwistChannel(HTTPChannel):
    """``HTTPChannel`` with body limits, header and request timeouts, stricter framing, and a
    checked URL (see the module docstring). Its limits are its site's ``limits``."""

    requestFactory = DotwistRequest

    def __init__(self) -> None:
        HTTPChannel.__init__(self)
        self._limits = _DEFAULT_LIMITS
        self._inHead = False  # between a request line and the end of its headers
        self._requestLine: tuple[bytes, bytes, bytes] | None = None
        self._refused = False
        self._idle = True  # nothing received since the current request's timer started
        self._deadline: IDelayedCall | None = None
        self._headersDone = False
        self._handling = False  # the request is complete and with the resource
        self._closing: IDelayedCall | None = None
        self._scheme = "http"
        self._secure: bool | None = None  # isSecure(), once connected (connectionMade)
        self._now: Callable[[], float] = _never
        self._firstTimeout = min(self._limits.headerTimeout, self._limits.requestTimeout)
        self._hostCache: tuple[bytes, str] = (b"", "")  # last Host value and its authority
        # The last request's authority, method and target, and the URL they made: a keep-alive
        # client often asks for the same thing again.
        self._urlCache: tuple[str, bytes, bytes, str] = ("", b"", b"", "")
        # Bytes read past a complete upgrade request (a client may send its first WebSocket
        # frames with the request), kept for ``detach``; then, where they go instead of HTTP.
        self._pastUpgrade: list[bytes] = []
        self._detachedTo: Callable[[bytes], object] | None = None

    # -- timers ---------------------------------------------------------------------------

    def _startDeadline(self) -> None:
        """Start the clock of the next request (one timer per connection, reused)."""
        self._idle = True
        self._headersDone = False
        self._handling = False
        first = self._firstTimeout
        deadline = self._deadline
        if deadline is not None and deadline.active():
            if deadline.getTime() <= self._now() + first:
                # Moving a pending call later costs the reactor nothing until it comes due,
                # where a new call per request is a heap insertion plus a cancellation.
                deadline.reset(first)
                return
            deadline.cancel()
        self._deadline = self._later(first, self._timedOut)

    def _cancelDeadline(self) -> None:
        deadline = self._deadline
        if deadline is not None:
            self._deadline = None
            if deadline.active():
                deadline.cancel()

    def _timedOut(self) -> None:
        self._deadline = None
        if self._handling:
            return  # the Worker has the request: no timeout now; requestDone starts the next
        if self._idle or getattr(self.transport, "disconnecting", False):
            # A keep-alive connection, one never used, or one twisted.web already answered (a
            # malformed request) and is closing: nothing to answer; make sure it goes.
            self._closeQuietly()
            return
        limits = self._limits
        if self._headersDone:
            message = f"The request was not complete after {limits.requestTimeout:g} seconds."
        else:
            message = f"The request headers were not complete after {limits.headerTimeout:g} seconds."
        self._refuse(408, message)

    # -- HTTPChannel ----------------------------------------------------------------------

    def connectionMade(self) -> None:
        site = getattr(self, "site", None)
        limits = getattr(site, "limits", None)
        if isinstance(limits, Limits):
            self._limits = limits
            self._firstTimeout = min(limits.headerTimeout, limits.requestTimeout)
        seconds = getattr(getattr(site, "reactor", None), "seconds", None)
        if callable(seconds):
            self._now = seconds
        HTTPChannel.connectionMade(self)
        # Once per connection: isSecure() is a zope adaptation, a few microseconds each time
        # (and Klein asks it twice per request, through ``Request.isSecure``).
        self._secure = HTTPChannel.isSecure(self)
        self._scheme = "https" if self._secure else "http"
        self._startDeadline()

    def isSecure(self) -> bool:
        """``HTTPChannel.isSecure``, found once per connection: a connection's transport does not
        become TLS, or stop being TLS, while it speaks HTTP (after a WebSocket handover, which
        takes the transport away, this asks the transport again, as twisted.web does)."""
        secure = self._secure
        if secure is None or self.transport is None:
            return bool(HTTPChannel.isSecure(self))
        return secure

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: drop it
        self._idle = False
        HTTPChannel.dataReceived(self, data)

    def rawDataReceived(self, data: bytes) -> None:
        detached = self._detachedTo
        if detached is not None:
            # Handed over while twisted.web was still splitting what one read delivered.
            detached(data)
            return
        if self._handling and self.requests and _hasToken(
            self.requests[-1].requestHeaders.getRawHeaders(b"upgrade"), b"websocket"
        ):
            # An upgrade request is with the Worker, and more bytes came: likely WebSocket frames
            # (twisted.web only keeps them for a next request it would parse as HTTP, which
            # never comes if the Worker upgrades). At most 16 KiB arrive before twisted.web stops
            # reading (``HTTPChannel._optimisticEagerReadSize``), so the copy is bounded.
            self._pastUpgrade.append(data)
        HTTPChannel.rawDataReceived(self, data)

    def detach(self, deliver: Callable[[bytes], object]) -> None:
        """The connection leaves HTTP (a WebSocket handover): the bytes this channel read past
        the request, and any it is still given, go to ``deliver``, in order; the channel lets go
        of its requests (which refer back to it) so that it is freed by reference counting."""
        self._cancelDeadline()
        self._detachedTo = deliver
        kept, self._pastUpgrade = self._pastUpgrade, []
        requests, self.requests = self.requests, []
        for request in requests:
            # Klein's rendering closures keep the request in a reference cycle until a garbage
            # collection; without its channel and transport it keeps nothing of the connection.
            request.channel = None
            request.transport = None
        for data in kept:
            deliver(data)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._inHead:
            if line and (line[0] == 32 or line[0] == 9):  # SP or HTAB: obs-fold
                self._refuse(
                    400,
                    "Obsolete line folding (a header line starting with a space or a tab) "
                    "is not accepted.",
                )
                return
        elif line:
            self._inHead = True
            parts = line.split(b" ")
            self._requestLine = (parts[0], parts[1], parts[2]) if len(parts) == 3 else None
        HTTPChannel.lineReceived(self, line)

    def allHeadersReceived(self) -> None:
        self._inHead = False
        request = self.requests[-1]
        problem = self._checkHead(request)
        if problem is not None:
            self._refuse(*problem)
            return
        self._headersDone = True
        limits = self._limits
        deadline = self._deadline
        if (
            self.length != 0
            and deadline is not None
            and deadline.active()
            and limits.requestTimeout > limits.headerTimeout
        ):
            deadline.delay(limits.requestTimeout - limits.headerTimeout)
        HTTPChannel.allHeadersReceived(self)

    def _checkHead(self, request: Any) -> tuple[int, str] | None:
        """Why the request must be refused now that its headers are in, or ``None``."""
        if self._requestLine is None:
            return (400, "Malformed request line.")
        method, target, version = self._requestLine
        old = version < b"HTTP/1.1"
        headers = request.requestHeaders
        codings = headers.getRawHeaders(b"transfer-encoding")
        if codings:
            if old:
                return (400, "Transfer-Encoding is not allowed in an HTTP/1.0 request.")
            if len(codings) > 1:
                return (400, "More than one Transfer-Encoding header.")
            if codings[0].strip().lower() != b"chunked":
                return (400, "The only transfer coding accepted is chunked.")
        limit = self._limits.maxRequestBodySize
        if self.length is not None and self.length > limit:
            return (413, _tooLarge(limit))
        if old and _hasToken(headers.getRawHeaders(b"upgrade"), b"websocket"):
            return (400, "A WebSocket upgrade needs HTTP/1.1 (RFC 6455, section 4.1).")
        scheme = self._scheme
        hosts = headers.getRawHeaders(b"host") or []
        try:
            # buildUrl, with the checked Host kept: a connection's requests usually share it.
            if len(hosts) == 1 and hosts[0] == self._hostCache[0]:
                authority = self._hostCache[1]
            else:
                authority = _hostAuthority(
                    scheme, hosts, _localAuthority(self, scheme) if old else None
                )
                if len(hosts) == 1:
                    self._hostCache = (hosts[0], authority)
            last = self._urlCache
            if last[2] == target and last[0] == authority and last[1] == method:
                url = last[3]
            else:
                url = _urlFor(scheme, authority, target, method)
                self._urlCache = (authority, method, target, url)
        except BadRequestTarget as e:
            return (400, f"Bad request: {e}.")
        request.validatedUrl = url
        request.maxBodySize = limit
        return None

    def allContentReceived(self) -> None:
        if self._refused:
            return  # the chunked decoder finished a body that was already refused
        self._handling = True
        HTTPChannel.allContentReceived(self)

    def requestDone(self, request: Any) -> None:
        self._pastUpgrade = []  # answered without an upgrade: twisted.web parses those bytes
        # The timer starts before twisted.web replays pipelined bytes of the next request.
        if self.persistent and not self._refused:
            self._startDeadline()
        HTTPChannel.requestDone(self, request)

    def setTimeout(self, period: float | None) -> float | None:
        """``TimeoutMixin.setTimeout``; ``None`` (no timeouts: the WebSocket handover in
        ``dotwist.server`` says so when it takes the connection away) also stops the request
        timer, which would otherwise keep this channel alive until it came due."""
        if period is None:
            self._cancelDeadline()
        previous: float | None = HTTPChannel.setTimeout(self, period)
        return previous

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._cancelDeadline()
        closing = self._closing
        if closing is not None and closing.active():
            closing.cancel()
        self._closing = None
        HTTPChannel.connectionLost(self, reason)

    # -- refusing ---------------------------------------------------------------------------

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` without involving the Worker, then close (lingering)."""
        if self._refused:
            return
        self._refused = True
        self._cancelDeadline()
        for request in self.requests:
            content = getattr(request, "content", None)
            if content is not None:
                content.close()  # a spooled body: give its space back now
                request.content = None
        transport: Any = self.transport
        if transport is None:
            return
        body = message.encode("utf-8")
        reason = RESPONSES.get(status, b"")
        transport.writeSequence(
            [
                b"HTTP/1.1 %d %s\r\n" % (status, reason),
                b"Connection: close\r\nContent-Type: text/plain;charset=UTF-8\r\n",
                b"Content-Length: %d\r\n\r\n" % len(body),
                body,
            ]
        )
        if isinstance(transport, FileDescriptor) and not ISSLTransport.providedBy(transport):
            # Plain TCP or UNIX socket: finish writing, then half-close, and keep reading (and
            # dropping) until the client closes or LINGER_TIME passes.
            if getattr(transport, "producer", None) is self:
                transport.unregisterProducer()
            transport.loseWriteConnection()
            transport.resumeProducing()
            self._closing = self._later(LINGER_TIME, self._abort)
        else:
            # TLS has no half-close here: close after the answer is written.
            self._closeQuietly()

    def _closeQuietly(self) -> None:
        """Close; abort if the client has not let the connection go after ``abortTimeout``."""
        if not getattr(self.transport, "disconnecting", False):
            HTTPChannel.loseConnection(self)
        if self._closing is None:
            self._closing = self._later(self.abortTimeout, self._abort)

    def _abort(self) -> None:
        self._closing = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def _later(self, delay: float, fn: Callable[[], None]) -> IDelayedCall:
        call: IDelayedCall = self.callLater(delay, fn)  # type: ignore[no-untyped-call]
        return call


class LimitedSite(Site):
    """A ``Site`` whose connections are :class:`DotwistChannel`s enforcing ``limits``.

    Speaks HTTP/1.1 only: the limits above are written for it (twisted.web switches a TLS
    connection to HTTP/2 when ALPN picks it and the optional ``h2`` package is installed).
    twisted.web's idle timeout is off: ``limits.headerTimeout`` covers idle connections.
    """

    protocol = DotwistChannel  # type: ignore[assignment]
    requestFactory = DotwistRequest
    limits: Limits = _DEFAULT_LIMITS

    def __init__(self, resource: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", None)
        Site.__init__(self, resource, *args, **kwargs)

    def acceptableProtocols(self) -> list[bytes]:
        return [b"http/1.1"]


# -- the listen backlog ---------------------------------------------------------------------------

_BACKLOG_ENDPOINTS = frozenset({"tcp", "tcp6", "ssl", "unix"})
_HAS_BACKLOG = re.compile(r"(?:^|(?<!\\):)backlog=", re.IGNORECASE)


def effectiveBacklog(requested: int, somaxconn: str = "/proc/sys/net/core/somaxconn") -> int:
    """``requested``, capped by the kernel's ``somaxconn`` (Linux silently caps ``listen()``'s
    backlog at it; capping here makes the real figure visible in the log)."""
    try:
        with open(somaxconn) as f:
            cap = int(f.read().strip())
    except (OSError, ValueError):
        return requested
    if 0 < cap < requested:
        _log.info(
            "Listen backlog {requested} capped at {cap} by {path}; raise that to queue more",
            requested=requested,
            cap=cap,
            path=somaxconn,
        )
        return cap
    return requested


def withBacklog(description: str, backlog: int) -> str:
    """A ``--listen`` endpoint description with ``backlog=`` added, unless it has one or its kind
    of endpoint takes none (only tcp, tcp6, ssl and unix do)."""
    kind = description.split(":", 1)[0].strip().lower()
    if kind not in _BACKLOG_ENDPOINTS or _HAS_BACKLOG.search(description):
        return description
    if not isinstance(backlog, int) or isinstance(backlog, bool) or backlog < 1:
        raise ValueError(f"a listen backlog is a positive int, not {backlog!r}")
    return f"{description}:backlog={backlog}"
