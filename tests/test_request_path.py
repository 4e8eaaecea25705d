"""The HTTP request path's shortcuts (issue 18): each gives what the general way gives, and each
guard that decides when a shortcut applies is tested here, in memory, without timers."""

from __future__ import annotations

import io
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.web.server import Request as WebRequest
from twisted.web.test.requesthelper import DummyChannel, DummyRequest
from zope.interface import directlyProvides

from dotwist import App, DurableObject, DurableObjectError, Response, WorkerEntrypoint
from dotwist import server
from dotwist._http import DotwistChannel, DotwistRequest, bodyChecked
from dotwist.config import Limits
from dotwist.server import makeSite
from dotwist.testing import TestClock, abortDurableObject, evictDurableObject, makeRuntime, result


class Echo(WorkerEntrypoint):
    """Answers with the URL, the method, and the headers the Worker sees, one per line."""

    async def fetch(self, request):
        lines = [request.method, request.url]
        lines += [f"{name}: {value}" for name, value in request.headers.rawItems()]
        return Response("\n".join(lines))


class Shapes(WorkerEntrypoint):
    """``fetch`` answering in each shape ``entry`` accepts."""

    def fetch(self, request):
        path = request.url.rsplit("/", 1)[1]
        if path == "plain":
            return Response("plain")
        if path == "deferred":
            return succeed(Response("deferred"))
        if path == "nested":
            async def inner():
                return Response("nested")

            async def outer():
                return inner()  # a coroutine whose result is another coroutine

            return outer()
        if path == "text":
            async def text():
                return "not a response"

            return text()
        raise AssertionError(path)


class Transport(StringTransport):
    def setTcpNoDelay(self, enabled: bool) -> None:  # what twisted.web asks of a TLS transport
        pass


def connect(site: Any, secure: bool = False) -> tuple[Any, StringTransport]:
    transport = Transport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=IPv4Address("TCP", "10.1.2.3", 40000)
    )
    if secure:
        directlyProvides(transport, ISSLTransport)
    channel = site.buildProtocol(transport.getPeer())
    channel.makeConnection(transport)
    return channel, transport


def answer(site: Any, clock: MemoryReactorClock, raw: bytes, secure: bool = False) -> tuple[int, bytes]:
    channel, transport = connect(site, secure)
    channel.dataReceived(raw)
    clock.advance(0)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def serve(app: App, **limits: Any) -> tuple[Any, MemoryReactorClock]:
    clock = MemoryReactorClock()
    site, _ = makeSite(makeRuntime(app, clock=clock, limits=limits or None), reactor=clock)
    return site, clock


# -- the channel's isSecure, found once per connection ------------------------------------------


def test_a_tls_connection_is_secure_for_each_request_and_the_url_is_https():
    site, clock = serve(App(Echo))
    status, body = answer(site, clock, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n", secure=True)
    assert status == 200 and body.split(b"\n")[1] == b"https://h/a"
    status, body = answer(site, clock, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 200 and body.split(b"\n")[1] == b"http://h/a"


@pytest.mark.parametrize("secure", [False, True])
def test_channel_isSecure_follows_its_transport(secure):
    """Connected: what twisted.web's ``HTTPChannel.isSecure`` says, for every request. Before
    ``connectionMade`` and after the transport is taken away (a WebSocket handover), it asks the
    transport as twisted.web does."""
    site, _ = serve(App(Echo))
    channel, transport = connect(site, secure)
    assert channel.isSecure() is secure
    channel.transport = None  # what the handover does
    assert channel.isSecure() is False
    fresh = DotwistChannel()
    other = Transport()
    directlyProvides(other, ISSLTransport)
    fresh.transport = other  # not connected yet: nothing found once
    assert fresh.isSecure() is True


# -- the body limit: checked once, by the channel, when it can be ------------------------------


def test_bodyChecked_only_for_a_request_the_channel_checked_against_that_limit():
    clock = MemoryReactorClock()
    site, _ = makeSite(makeRuntime(App(Echo), clock=clock, limits={"maxRequestBodySize": 100}), reactor=clock)
    channel, _ = connect(site)
    checked = DotwistRequest(channel)
    # Its headers never went through the channel's check (no URL was made), whatever the limit.
    assert bodyChecked(checked, 100) is False
    assert bodyChecked(checked, checked.maxBodySize) is False
    checked.validatedUrl = "http://h/a"
    checked.maxBodySize = 100
    assert bodyChecked(checked, 100) is True
    assert bodyChecked(checked, 1000) is True
    assert bodyChecked(checked, 50) is False  # checked against a larger limit than this one
    assert bodyChecked(DummyRequest([b""]), 100) is False  # not a DotwistRequest


def test_announced_body_over_the_limit_is_413_for_a_request_the_channel_did_not_check():
    """A request that did not come through the channel (here twisted.web's DummyRequest, with a
    Content-Length and no body read) is still refused by its announced length."""
    site, _ = serve(App(Echo), maxRequestBodySize=10)
    channel = DummyChannel()
    request = WebRequest(channel)
    request.method, request.uri, request.clientproto = b"POST", b"/", b"HTTP/1.1"
    request.prepath, request.postpath = [], [b""]
    request.requestHeaders.setRawHeaders(b"host", [b"h"])
    request.requestHeaders.setRawHeaders(b"content-length", [b"50"])
    request.content = io.BytesIO(b"")
    site.resource.render(request)
    assert request.code == 413
    assert channel.transport.written.getvalue().endswith(
        b"\r\n\r\nRequest body is larger than the limit of 10 bytes."
    )


def test_a_channel_with_a_larger_limit_than_the_runtime_still_gets_the_runtime_limit():
    site, clock = serve(App(Echo), maxRequestBodySize=10)
    site.limits = Limits().replace(maxRequestBodySize=1000)
    body = b"x" * 50
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 50\r\n\r\n" + body
    status, text = answer(site, clock, raw)
    assert (status, text) == (413, b"Request body is larger than the limit of 10 bytes.")
    status, _ = answer(site, clock, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n" + b"x" * 10)
    assert status == 200


# -- headers as the Worker sees them ---------------------------------------------------------------


def test_worker_sees_lower_case_names_every_value_and_the_peer_as_cf_connecting_ip(monkeypatch):
    """Names lower-cased, values stripped, repeated headers kept in order, CF-Connecting-IP
    replaced by the peer; the same with the cache of names full."""
    raw = (
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-Thing: one \r\nCF-Connecting-IP: 1.1.1.1\r\n"
        b"x-thing:two\r\nUser-Agent: t\r\n\r\n"
    )
    want = [
        b"GET", b"http://h/a", b"host: h", b"x-thing: one", b"x-thing: two", b"user-agent: t",
        b"cf-connecting-ip: 10.1.2.3",
    ]
    site, clock = serve(App(Echo))
    assert answer(site, clock, raw) == (200, b"\n".join(want))
    monkeypatch.setattr(server, "_HEADER_NAMES", {})
    monkeypatch.setattr(server, "_HEADER_NAMES_KEPT", 1)
    assert answer(site, clock, raw) == (200, b"\n".join(want))
    assert answer(site, clock, raw) == (200, b"\n".join(want))
    assert len(server._HEADER_NAMES) == 1


@pytest.mark.parametrize("method", [b"GET", b"DELETE", b"PROPFIND"])
def test_worker_sees_the_method(method):
    site, clock = serve(App(Echo))
    status, body = answer(site, clock, method + b" /a HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 200 and body.split(b"\n")[0] == method


# -- the Worker's fetch, in each shape --------------------------------------------------------------


@pytest.mark.parametrize(
    "path, status, body",
    [
        ("plain", 200, b"plain"),
        ("deferred", 200, b"deferred"),
        ("nested", 200, b"nested"),
        ("text", 500, b"Worker threw exception"),
    ],
)
def test_worker_fetch_in_each_shape(path, status, body):
    """A Response, a Deferred of one, a coroutine giving a coroutine of one: each is awaited to
    its Response; anything else is the Worker's error."""
    site, clock = serve(App(Shapes))
    assert answer(site, clock, f"GET /{path} HTTP/1.1\r\nHost: h\r\n\r\n".encode()) == (status, body)


# -- ctx.storage, found once per incarnation ---------------------------------------------------------


class Keeper(DurableObject):
    """Keeps its ctx where the test can reach it; ``/put`` writes, ``/get`` reads."""

    kept: list[Any] = []

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        Keeper.kept.append(ctx)

    async def fetch(self, request):
        storage = self.ctx.storage
        if request.url.endswith("/put"):
            await storage.put("k", len(Keeper.kept))
            return Response("ok")
        return Response(str(await storage.get("k")))


@pytest.mark.parametrize("leave", ["evict", "abort"])
def test_ctx_storage_of_a_past_incarnation_fails_and_the_next_one_has_its_own(leave):
    """``ctx.storage`` is the same object for as long as the incarnation lives; once the object
    has left memory or was reset, that ctx's ``storage`` fails as before, and the next
    incarnation's ctx has a storage of its own that sees what was committed."""
    Keeper.kept = []
    clock = TestClock()
    runtime = makeRuntime(App(WorkerEntrypoint, durableObjects={"NS": Keeper}), clock=clock)
    stub = runtime.env.NS.getByName("o")
    d = stub.fetch("http://o/put")
    clock.advance(0)
    assert result(d).status == 200
    first = Keeper.kept[0]
    assert first.storage is first.storage
    if leave == "evict":
        evictDurableObject(stub)
    else:
        abortDurableObject(stub, "test")
    clock.advance(0)
    with pytest.raises(DurableObjectError) as raised:
        first.storage
    assert raised.value.durableObjectReset
    stub = runtime.env.NS.getByName("o")
    d = stub.fetch("http://o/get")
    clock.advance(0)
    assert result(d).status == 200
    second = Keeper.kept[-1]
    assert second is not first and second.storage is not None
    with pytest.raises(DurableObjectError):
        first.storage


# -- the URL of a connection's next request ------------------------------------------------------------


def test_each_request_on_a_connection_gets_its_own_url():
    """A keep-alive connection's requests: the same target with another Host, another target
    with the same Host, and '*' first with OPTIONS then with GET, each as if it came alone."""
    site, clock = serve(App(Echo))
    channel, transport = connect(site)
    seen = []
    for raw in [
        b"GET /a?x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a?x HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /a?x HTTP/1.1\r\nHost: other:81\r\n\r\n",
        b"GET /b/../a?x HTTP/1.1\r\nHost: other:81\r\n\r\n",
        b"GET /a?y HTTP/1.1\r\nHost: other:81\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: h\r\n\r\n",
    ]:
        transport.clear()
        channel.dataReceived(raw)
        clock.advance(0)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        seen.append((int(head.split(b" ", 2)[1]), body.split(b"\n")[:2]))
    assert seen == [
        (200, [b"GET", b"http://h/a?x"]),
        (200, [b"GET", b"http://h/a?x"]),
        (200, [b"GET", b"http://other:81/a?x"]),
        (200, [b"GET", b"http://other:81/a?x"]),
        (200, [b"GET", b"http://other:81/a?y"]),
        (200, seen[5][1]),  # (Klein answers OPTIONS itself)
        (400, [b"Bad request: the request target '*' is for OPTIONS only."]),
    ]
