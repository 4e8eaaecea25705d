"""The HTTP edge against hostile clients (issue 19): body limits before reading, header and request
timeouts, strict framing, a URL no client can forge, and the listen backlog.

Most tests drive a ``DotwistChannel`` on an in-memory transport and a fake clock; the last ones
use real loopback sockets and a raw client."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest
import pytest_twisted
from support import serve
from twisted.internet import endpoints, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dotwist import App, Response, WorkerEntrypoint
from dotwist._http import (
    BadRequestTarget,
    DotwistRequest,
    LimitedSite,
    buildUrl,
    effectiveBacklog,
    withBacklog,
)
from dotwist.config import Limits
from dotwist.examples import websocket_server
from dotwist.server import makeSite
from twisted.python import usage

from dotwist.service import Options
from dotwist.testing import makeRuntime

# -- in-memory helpers ----------------------------------------------------------------------------


class Recorder(Resource):
    """A resource that records what reached it and answers 200 (or waits, if told to)."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, str | None, bytes]] = []
        self.hold = False
        self.held: list[Any] = []

    def render(self, request: Any) -> Any:
        body = request.content.read() if request.content is not None else b""
        self.seen.append((request.method, request.validatedUrl, body))
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        return b"ok"


def makeTestSite(clock: Clock, **limits: Any) -> LimitedSite:
    site = LimitedSite(Recorder(), reactor=clock)
    site.limits = Limits().replace(**limits) if limits else Limits()
    return site


class Transport(StringTransport):
    """A TCP transport in memory, as far as the WebSocket hand-over needs one."""

    protocol: Any = None

    def unregisterProducer(self) -> None:
        self.producer = None


def connect(site: LimitedSite) -> tuple[Any, StringTransport]:
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = Transport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
    )
    transport.protocol = channel
    channel.makeConnection(transport)
    return channel, transport


def statusOf(transport: StringTransport) -> int | None:
    data = transport.value()
    if not data.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        return None
    return int(data[9:12])


def seen(site: LimitedSite) -> list[tuple[bytes, str | None, bytes]]:
    return site.resource.seen


# -- buildUrl -------------------------------------------------------------------------------------

VALID = [
    # (scheme, Host headers, target, method, defaultHost, URL)
    ("http", [b"example.com"], b"/", b"GET", None, "http://example.com/"),
    ("http", [b"Example.COM:8080"], b"/a?b=c", b"GET", None, "http://example.com:8080/a?b=c"),
    ("http", [b"127.0.0.1:80"], b"/x", b"GET", None, "http://127.0.0.1/x"),
    ("https", [b"example.com:443"], b"/", b"GET", None, "https://example.com/"),
    ("https", [b"example.com:80"], b"/", b"GET", None, "https://example.com:80/"),
    ("http", [b"[::1]:8080"], b"/", b"GET", None, "http://[::1]:8080/"),
    ("http", [b"[0:0::1]"], b"/", b"GET", None, "http://[::1]/"),
    ("http", [b"my_host.local."], b"/", b"GET", None, "http://my_host.local./"),
    ("http", [b"example.com"], b"/a/./b/../c", b"GET", None, "http://example.com/a/c"),
    ("http", [b"example.com"], b"/public/%2E%2e/admin", b"GET", None, "http://example.com/admin"),
    ("http", [b"example.com"], b"/a/..", b"GET", None, "http://example.com/"),
    ("http", [b"example.com"], b"/../../x", b"GET", None, "http://example.com/x"),
    ("http", [b"example.com"], b"/q?x=../y", b"GET", None, "http://example.com/q?x=../y"),
    ("http", [b"example.com"], b"//evil.example/x", b"GET", None, "http://example.com//evil.example/x"),
    ("http", [b"example.com"], b"/a@b:c/%zz?x=@y", b"GET", None, "http://example.com/a@b:c/%zz?x=@y"),
    # absolute-form: its authority is the URL's (RFC 9112 section 3.2.2)
    ("http", [b"other.example"], b"http://Target.example:80/p?q", b"GET", None, "http://target.example/p?q"),
    ("http", [b"other.example"], b"HTTP://target.example", b"GET", None, "http://target.example/"),
    ("http", [b"other.example"], b"http://target.example?q", b"GET", None, "http://target.example/?q"),
    ("http", [b"example.com"], b"*", b"OPTIONS", None, "http://example.com"),
    # HTTP/1.0 without Host: the caller's stand-in
    ("http", [], b"/x", b"GET", "127.0.0.1:8080", "http://127.0.0.1:8080/x"),
]


@pytest.mark.parametrize("scheme, hosts, target, method, defaultHost, url", VALID)
def test_buildUrl_valid(scheme, hosts, target, method, defaultHost, url):
    """A valid Host and target make exactly this URL (host lower-cased, default port dropped,
    dot segments resolved, the rest as sent)."""
    assert buildUrl(scheme, hosts, target, method=method, defaultHost=defaultHost) == url


INVALID = [
    # (Host headers, target, method, what it is)
    ([b"127.0.0.1/admin?"], b"/public", b"GET", "issue 19: a path smuggled in Host (was /admin)"),
    ([b"127.0.0.1"], b"@evil.example/public", b"GET", "issue 19: a target that makes userinfo (was host evil.example)"),
    ([b"a.example", b"b.example"], b"/", b"GET", "issue 19: two Host headers (the last one won)"),
    ([], b"/", b"GET", "no Host in HTTP/1.1"),
    ([b""], b"/", b"GET", "an empty Host"),
    ([b"a.example,b.example"], b"/", b"GET", "a list in Host"),
    ([b"user@evil.example"], b"/", b"GET", "userinfo in Host"),
    ([b"evil.example#"], b"/", b"GET", "a fragment in Host"),
    ([b"evil.example\\x"], b"/", b"GET", "a backslash in Host"),
    ([b"example.com:"], b"/", b"GET", "an empty port"),
    ([b"example.com:65536"], b"/", b"GET", "a port out of range"),
    ([b"example.com:80:80"], b"/", b"GET", "two ports"),
    ([b"example.com:8o"], b"/", b"GET", "a port that is not a number"),
    ([b"[::1"], b"/", b"GET", "an unclosed IPv6 literal"),
    ([b"[fe80::1%25eth0]"], b"/", b"GET", "an IPv6 zone"),
    ([b"[::1]x"], b"/", b"GET", "text after an IPv6 literal"),
    ([b"[v1.x]"], b"/", b"GET", "IPvFuture"),
    ([b"0x7f.1"], b"/", b"GET", "hexadecimal IPv4 (127.0.0.1 to a WHATWG parser)"),
    ([b"2130706433"], b"/", b"GET", "a 32-bit number (127.0.0.1 to a WHATWG parser)"),
    ([b"127.0.0.01"], b"/", b"GET", "an octal octet"),
    ([b"256.0.0.1"], b"/", b"GET", "an octet out of range"),
    ([b"ex ample.com"], b"/", b"GET", "a space in Host"),
    ([b"caf\xc3\xa9.example"], b"/", b"GET", "non-ASCII Host"),
    ([b"example.com"], b"*", b"GET", "* outside OPTIONS"),
    ([b"example.com"], b"public", b"GET", "a target without a leading slash"),
    ([b"example.com"], b"example.com:443", b"CONNECT", "authority-form"),
    ([b"example.com"], b"http://evil.example@example.com/", b"GET", "userinfo in an absolute target"),
    ([b"example.com"], b"https://example.com/", b"GET", "an https target on a plain connection"),
    ([b"example.com"], b"ftp://example.com/", b"GET", "another scheme"),
    ([b"example.com"], b"http:///x", b"GET", "an absolute target without a host"),
    ([b"example.com"], b"/a#frag", b"GET", "a fragment"),
    ([b"example.com"], b"/a\\..\\admin", b"GET", "a backslash in the path"),
    ([b"example.com"], b"/a b", b"GET", "a space"),
    ([b"example.com"], b"/caf\xc3\xa9", b"GET", "non-ASCII target"),
    ([b"example.com"], b"/\x7f", b"GET", "a control character"),
]


@pytest.mark.parametrize("hosts, target, method, what", INVALID, ids=[row[3] for row in INVALID])
def test_buildUrl_refuses(hosts, target, method, what):
    """Host headers and targets that could steer a Worker routing or authorizing on the URL are
    refused with a typed error (HTTP 400)."""
    with pytest.raises(BadRequestTarget):
        buildUrl("http", hosts, target, method=method)


def test_buildUrl_checks_host_even_for_absolute_form():
    """An absolute-form target's authority wins, but an invalid or doubled Host header is still
    refused (RFC 9112 section 3.2)."""
    assert buildUrl("http", [b"ok.example"], b"http://t.example/") == "http://t.example/"
    with pytest.raises(BadRequestTarget):
        buildUrl("http", [b"bad/host"], b"http://t.example/")
    with pytest.raises(BadRequestTarget):
        buildUrl("http", [b"a.example", b"b.example"], b"http://t.example/")


# -- bodies ---------------------------------------------------------------------------------------


def test_announced_body_over_the_limit_is_refused_before_reading(clock):
    """Stops issue 19's ``Content-Length: 50000000000``, which was spooled to a temporary file at
    200+ MB/s: 413 at once, no body byte read, no file opened, nothing reaches the resource."""
    site = makeTestSite(clock)
    channel, transport = connect(site)
    channel.dataReceived(
        b"POST /upload HTTP/1.1\r\nHost: example.com\r\nContent-Length: 50000000000\r\n\r\n"
        + b"x" * 65536
    )
    assert statusOf(transport) == 413
    assert b"larger than the limit of 100000000 bytes" in transport.value()
    assert channel.requests[-1].content is None  # gotLength never ran: nothing spooled
    assert transport.disconnecting and seen(site) == []
    written = len(transport.value())
    channel.dataReceived(b"x" * 65536)
    assert len(transport.value()) == written and channel.requests[-1].content is None


def test_announced_body_over_the_limit_gets_413_instead_of_100_continue(clock):
    """A client that asks before sending (``Expect: 100-continue``) is told 413, never 100."""
    site = makeTestSite(clock, maxRequestBodySize=1000)
    channel, transport = connect(site)
    channel.dataReceived(
        b"PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1001\r\n\r\n"
    )
    assert statusOf(transport) == 413 and b"100 Continue" not in transport.value()


class SpoolWatcher(DotwistRequest):
    """Records the largest body this request ever held."""

    largest = 0

    def handleContentChunk(self, data: bytes) -> None:
        super().handleContentChunk(data)
        if self.content is not None:
            SpoolWatcher.largest = max(SpoolWatcher.largest, self.content.tell())


def test_never_ending_chunked_body_is_cut_at_the_limit(clock):
    """Stops issue 19's endless chunked body (1.5 GiB in 3 s): 413 once the limit is passed, the
    connection closes, and the spooled body never exceeds the limit."""
    limit = 64 * 1024
    site = makeTestSite(clock, maxRequestBodySize=limit)
    site.requestFactory = SpoolWatcher
    SpoolWatcher.largest = 0
    channel, transport = connect(site)
    channel.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"1000\r\n" + b"y" * 4096 + b"\r\n"
    sent = 0
    while statusOf(transport) is None and sent < 100 * limit:  # the client never stops by itself
        channel.dataReceived(chunk)
        sent += 4096
    assert statusOf(transport) == 413
    assert sent == limit + 4096  # refused by the chunk that crossed the limit
    assert SpoolWatcher.largest <= limit
    assert transport.disconnecting and seen(site) == []
    channel.dataReceived(chunk + b"0\r\n\r\n")  # more, and even the end of the body: ignored
    assert seen(site) == []


@pytest.mark.parametrize(
    "head, body",
    [
        (b"Content-Length: 1000\r\n", b"z" * 1000),
        (b"Transfer-Encoding: chunked\r\n", b"3e8\r\n" + b"z" * 1000 + b"\r\n0\r\n\r\n"),
    ],
)
def test_body_at_the_limit_is_delivered_whole(clock, head, body):
    """A body of exactly the limit reaches the resource unchanged (the limit is not off by one)."""
    site = makeTestSite(clock, maxRequestBodySize=1000)
    channel, transport = connect(site)
    channel.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\n" + head + b"\r\n" + body)
    assert statusOf(transport) == 200
    assert seen(site) == [(b"POST", "http://a/u", b"z" * 1000)]


def test_chunked_body_one_byte_over_the_limit_is_refused(clock):
    """One byte over the limit in a chunked body is refused: the limit counts body bytes."""
    site = makeTestSite(clock, maxRequestBodySize=1000)
    channel, transport = connect(site)
    channel.dataReceived(
        b"POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n"
        + b"z" * 1001
        + b"\r\n0\r\n\r\n"
    )
    assert statusOf(transport) == 413 and seen(site) == []


# -- timeouts -------------------------------------------------------------------------------------


def test_header_timeout_closes_2000_trickling_connections(clock):
    """Stops issue 19's 2,000 connections sending one header byte every 3 s, which stayed open
    forever: each gets 408 and is closed once the header timeout passes."""
    site = makeTestSite(clock)
    connections = [connect(site) for _ in range(2000)]
    request = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: " + b"a" * 100
    for step in range(len(request)):
        if clock.seconds() + 3 > site.limits.headerTimeout:
            break
        for channel, transport in connections:
            channel.dataReceived(request[step : step + 1])
        clock.advance(3)
    assert not any(transport.disconnecting for _, transport in connections)
    clock.advance(site.limits.headerTimeout - clock.seconds())
    assert all(statusOf(transport) == 408 and transport.disconnecting for _, transport in connections)
    assert seen(site) == []


def test_idle_connection_is_closed_quietly_at_the_header_timeout(clock):
    """A connection that never sends anything is closed at the header timeout without a 408."""
    site = makeTestSite(clock, headerTimeout=10)
    channel, transport = connect(site)
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and transport.value() == b""
    clock.advance(channel.abortTimeout)
    assert transport.disconnected  # one that does not read its close is aborted


def test_keepalive_connection_is_timed_from_the_end_of_the_response(clock):
    """After a response, the next request's headers must come within the header timeout; a slow
    Worker (here 100 s) is never timed out while it works."""
    site = makeTestSite(clock, headerTimeout=10)
    site.resource.hold = True
    channel, transport = connect(site)
    channel.dataReceived(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
    clock.advance(100)
    assert not transport.disconnecting
    held = site.resource.held.pop()
    held.write(b"done")
    held.finish()
    assert statusOf(transport) == 200
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting


def test_request_timeout_bounds_a_trickled_body(clock):
    """A body trickled one byte every 2 s is cut at the request timeout with 408, although the
    headers came in time."""
    site = makeTestSite(clock, headerTimeout=10, requestTimeout=30)
    channel, transport = connect(site)
    channel.dataReceived(b"POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
    for _ in range(15):
        channel.dataReceived(b"b")
        clock.advance(1.99)
    assert clock.seconds() < 30 and not transport.disconnecting
    clock.advance(30 - clock.seconds())
    assert statusOf(transport) == 408 and b"not complete after 30 seconds" in transport.value()
    assert transport.disconnecting and seen(site) == []


def test_pipelined_request_gets_its_own_timer(clock):
    """Two pipelined requests are both answered, and the connection is then timed as idle."""
    site = makeTestSite(clock, headerTimeout=10)
    channel, transport = connect(site)
    channel.dataReceived(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [url for _, url, _ in seen(site)] == ["http://a/1", "http://a/2"]
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(10.1)
    assert transport.disconnecting and transport.value().count(b"200 OK") == 2


def test_lost_connection_leaves_no_timer(clock):
    """A connection that goes away leaves no timer behind."""
    site = makeTestSite(clock)
    channel, _ = connect(site)
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    channel.connectionLost(None)
    assert clock.getDelayedCalls() == []


# -- framing --------------------------------------------------------------------------------------

REFUSED = [
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
     "issue 19: a second Transfer-Encoding header (was accepted)"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "identity then chunked"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\nContent-Length: 5\r\n\r\nhello",
     "identity is not a transfer coding (RFC 9112 6.1)"),
    (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     "Transfer-Encoding in HTTP/1.0"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\nhello",
     "obs-fold in a framing header"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Note: one\r\n\ttwo\r\n\r\n",
     "obs-fold in any header"),
    ((b"GET /websocket HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"),
     "issue 19: a WebSocket upgrade in HTTP/1.0 (was accepted)"),
    (b"GET /public HTTP/1.1\r\nHost: 127.0.0.1/admin?\r\n\r\n", "issue 19: a path in Host"),
    (b"GET @evil.example/public HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "issue 19: userinfo from the target"),
    (b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n", "issue 19: two Host headers"),
    (b"GET / HTTP/1.1\r\n\r\n", "no Host in HTTP/1.1"),
]


@pytest.mark.parametrize("data, what", REFUSED, ids=[row[1] for row in REFUSED])
def test_bad_framing_and_targets_get_400_and_never_reach_the_resource(clock, data, what):
    """Requests whose framing two parsers could read differently, or whose URL could be steered,
    get 400 and a closed connection; the resource never sees them."""
    site = makeTestSite(clock)
    channel, transport = connect(site)
    channel.dataReceived(data)
    assert statusOf(transport) == 400, transport.value()
    assert transport.disconnecting and seen(site) == []


@pytest.mark.parametrize(
    "data, url",
    [
        (b"GET /websocket HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "http://a/websocket"),
        (b"GET /x HTTP/1.0\r\n\r\n", "http://127.0.0.1:8080/x"),
        (b"GET http://t.example/p HTTP/1.1\r\nHost: other\r\n\r\n", "http://t.example/p"),
    ],
)
def test_valid_requests_reach_the_resource_with_their_url(clock, data, url):
    """An HTTP/1.1 upgrade, an HTTP/1.0 request without Host (the local address stands in) and an
    absolute-form target pass, with the URL the Worker will see."""
    site = makeTestSite(clock)
    channel, transport = connect(site)
    channel.dataReceived(data)
    assert statusOf(transport) == 200 and seen(site)[0][1] == url


class UrlEcho(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(request.url)


def test_worker_sees_the_checked_url(clock):
    """Through ``makeSite``, the Worker's ``request.url`` is the checked URL, and the issue's
    Host attack never reaches it."""
    site, _ = makeSite(makeRuntime(App(UrlEcho), clock=clock), reactor=clock)
    channel, transport = connect(site)
    channel.dataReceived(b"GET /a/../public?q HTTP/1.1\r\nHost: Example.com\r\n\r\n")
    assert transport.value().endswith(b"\r\n\r\nhttp://example.com/public?q")
    channel, transport = connect(site)
    channel.dataReceived(b"GET /public HTTP/1.1\r\nHost: 127.0.0.1/admin?\r\n\r\n")
    assert statusOf(transport) == 400 and b"http://" not in transport.value()


# -- the backlog and the options ------------------------------------------------------------------


@pytest.mark.parametrize(
    "description, result",
    [
        ("tcp:8080", "tcp:8080:backlog=4096"),
        ("tcp:8080:interface=127.0.0.1", "tcp:8080:interface=127.0.0.1:backlog=4096"),
        ("TCP6:8080", "TCP6:8080:backlog=4096"),
        ("ssl:8443:privateKey=k.pem", "ssl:8443:privateKey=k.pem:backlog=4096"),
        ("unix:/run/d.sock", "unix:/run/d.sock:backlog=4096"),
        ("tcp:8080:backlog=10", "tcp:8080:backlog=10"),
        ("systemd:domain=INET:index=0", "systemd:domain=INET:index=0"),
    ],
)
def test_withBacklog(description, result):
    """``backlog=`` is added to endpoints that take one, unless the user gave one."""
    assert withBacklog(description, 4096) == result


def test_effectiveBacklog_is_capped_by_somaxconn(tmp_path):
    """The backlog asked for is capped by the kernel's somaxconn (and left alone without one)."""
    somaxconn = tmp_path / "somaxconn"
    somaxconn.write_text("128\n")
    assert effectiveBacklog(4096, str(somaxconn)) == 128
    assert effectiveBacklog(100, str(somaxconn)) == 100
    assert effectiveBacklog(4096, str(tmp_path / "missing")) == 4096


def test_options_set_the_new_limits():
    """``twistd dotwist`` options reach ``Limits`` and ``StorageLimits``; bad values stop with one
    clear line."""
    options = Options()
    options.parseOptions(
        ["--header-timeout", "5.5", "--request-timeout", "60", "--backlog", "128",
         "--max-sql-query-duration", "1500"]
    )
    limits = options["limits"]
    assert (limits.headerTimeout, limits.requestTimeout, limits.listenBacklog) == (5.5, 60.0, 128)
    assert options["storageLimits"].maxSqlQueryDurationMs == 1500
    for option, value in [("--header-timeout", "0"), ("--backlog", "1.5"), ("--request-timeout", "nan"),
                          ("--max-sql-query-duration", "-1")]:
        with pytest.raises(usage.UsageError) as info:
            Options().parseOptions([option, value])
        assert option in str(info.value)


# -- real loopback sockets ------------------------------------------------------------------------


class RawClient(Protocol):
    """Sends ``head``, then (if ``chunk``) that chunk again and again until the server answers or
    ``cap`` bytes were sent; collects the answer."""

    def __init__(self, head: bytes, chunk: bytes = b"", cap: int = 64 * 1024 * 1024) -> None:
        self.head, self.chunk, self.cap = head, chunk, cap
        self.received = b""
        self.sent = 0
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.head)
        if self.chunk:
            self._pump()

    def _pump(self) -> None:
        if self.received or self.sent >= self.cap or self.closed.called:
            return
        self.transport.write(self.chunk)
        self.sent += len(self.chunk)
        reactor.callLater(0, self._pump)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received:
            self.transport.loseConnection()  # as a client that read its answer would

    def connectionLost(self, reason: Any) -> None:
        self.closed.callback(self.received)


async def rawRequest(port: int, client: RawClient) -> bytes:
    """What the server answered, once the connection is closed (at most 30 s: a server that never
    answers fails the test instead of hanging it)."""
    endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    protocol = await endpoints.connectProtocol(endpoint, client)
    timer = reactor.callLater(30, protocol.transport.abortConnection)
    try:
        return await client.closed
    finally:
        if timer.active():
            timer.cancel()


def spooledFiles() -> int:
    """Temporary files this process holds open (twisted.web spools bodies in deleted ones)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(tempfile.gettempdir()) and target.endswith("(deleted)"):
            count += 1
    return count


@pytest_twisted.ensureDeferred
async def test_loopback_huge_announced_body_gets_413_and_nothing_is_spooled():
    """Over a real socket, ``Content-Length: 50000000000`` followed by body bytes gets 413 while
    the client is still sending, and the server opens no temporary file for it."""
    service, port = await serve(websocket_server.app)
    try:
        before = spooledFiles()
        client = RawClient(
            b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50000000000\r\n\r\n",
            chunk=b"x" * 65536,
        )
        answer = await rawRequest(port, client)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert spooledFiles() == before
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_loopback_never_ending_chunked_body_is_cut_at_the_limit():
    """Over a real socket, an endless chunked body gets 413 soon after the limit (the client reads
    it, instead of a reset), and no temporary file stays open."""
    limit = 1024 * 1024
    service, port = await serve(websocket_server.app, Limits().replace(maxRequestBodySize=limit))
    try:
        before = spooledFiles()
        client = RawClient(
            b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            chunk=b"10000\r\n" + b"c" * 65536 + b"\r\n",
        )
        answer = await rawRequest(port, client)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert client.sent < client.cap  # answered, not exhausted
        assert spooledFiles() == before
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_loopback_http10_websocket_upgrade_is_refused():
    """Stops issue 19's HTTP/1.0 upgrade, which the seed answered with 101: now 400."""
    service, port = await serve(websocket_server.app)
    try:
        answer = await rawRequest(
            port,
            RawClient(
                b"GET /websocket HTTP/1.0\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            ),
        )
        assert answer.startswith(b"HTTP/1.1 400 ")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_loopback_host_attack_is_refused_and_a_normal_request_is_served():
    """Over a real socket, the issue's Host attack gets 400 and the Worker never runs; a normal
    request on the same server gets the URL it asked for."""
    service, port = await serve(App(UrlEcho))
    try:
        answer = await rawRequest(
            port, RawClient(b"GET /public HTTP/1.1\r\nHost: 127.0.0.1/admin?\r\n\r\n")
        )
        assert answer.startswith(b"HTTP/1.1 400 ")
        answer = await rawRequest(
            port, RawClient(f"GET /public HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        )
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_loopback_listening_port_has_the_backlog():
    """A ``--listen`` endpoint without ``backlog=`` listens with ``Limits.listenBacklog`` (capped by
    somaxconn), not Twisted's 50."""
    service, _ = await serve(websocket_server.app, Limits().replace(listenBacklog=1000))
    try:
        port = await service.ports[0].listening
        assert port.backlog == effectiveBacklog(1000)
        assert port.backlog > 50
    finally:
        await service.stopService()


def test_connection_twisted_refused_is_aborted_if_it_does_not_go(clock):
    """A request twisted.web itself refuses (a malformed Content-Length) is not answered twice,
    and its connection is aborted if the client never lets it close."""
    site = makeTestSite(clock, headerTimeout=10)
    channel, transport = connect(site)
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
    assert statusOf(transport) == 400 and transport.disconnecting
    clock.advance(10)
    assert not transport.disconnected
    clock.advance(channel.abortTimeout)
    assert transport.value().count(b"HTTP/1.1") == 1 and transport.disconnected


def test_websocket_handover_leaves_no_request_timer():
    """Once a connection is handed to the WebSocket protocol, no request timer keeps the HTTP
    channel (and its request) alive, and the socket is never timed out as an HTTP request."""
    clock = MemoryReactorClock()
    site, factory = makeSite(makeRuntime(websocket_server.app, clock=clock), reactor=clock)
    factory.startFactory()
    channel, transport = connect(site)
    channel.dataReceived(
        b"GET /websocket HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    assert transport.value().startswith(b"HTTP/1.1 101 ")
    timers = [call for call in clock.getDelayedCalls() if getattr(call.func, "__self__", None) is channel]
    assert timers == []
    clock.advance(site.limits.requestTimeout + 1)
    assert not transport.disconnecting
    factory.stopFactory()
