"""The HTTP glue's error paths, on an in-memory transport: every error reaches the client as the
status ``errorResponse`` maps it to, and the server keeps serving."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.web.test.requesthelper import DummyRequest

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint
from dotwist.errors import (
    BadRequest,
    DurableObjectError,
    DurableObjectUnavailable,
    RequestTooLarge,
    WorkerResponseError,
)
from dotwist.server import errorResponse, makeSite
from dotwist.testing import liveActor, makeRuntime

KEPT: list[Any] = []


class Objects(DurableObject):
    async def fetch(self, request):
        if request.url.endswith("/block"):
            self.waiting = Deferred()
            await self.waiting
        return Response("object")


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path == "raise":
            raise RuntimeError("the Worker broke")
        if path == "not-a-response":
            return "text"
        if path == "socket":
            client, server = WebSocketPair()
            server.accept()
            return Response(None, status=101, webSocket=client)
        if path == "socket-twice":
            if not KEPT:
                client, server = WebSocketPair()
                server.accept()
                KEPT.append(client)
            return Response(None, status=101, webSocket=KEPT[0])
        if path in ("block", "object"):
            return await self.env.NS.getByName("o").fetch(request)
        return Response(f"ok {len(await request.text())}")


def serve(**limits: Any) -> tuple[Any, Any, MemoryReactorClock]:
    clock = MemoryReactorClock()
    runtime = makeRuntime(App(Worker, durableObjects={"NS": Objects}), clock=clock, limits=limits or None)
    site, factory = makeSite(runtime, reactor=clock)
    return site, runtime, clock


class Transport(StringTransport):
    """A TCP transport in memory, as far as the WebSocket hand-over needs one."""

    protocol: Any = None

    def unregisterProducer(self) -> None:
        self.producer = None


def send(site: Any, clock: MemoryReactorClock, raw: bytes) -> tuple[int, dict[str, str], bytes, StringTransport]:
    transport = Transport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
    )
    protocol = site.buildProtocol(transport.getPeer())
    transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    clock.advance(0)
    head, _, body = transport.value().partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0] else 0
    headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:])}
    return status, headers, body, transport


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: h", *extra, "", ""])).encode()


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def test_worker_exception_is_500_and_logged(logged):
    """A Worker that raises gets the client a 500 "Worker threw exception", and the traceback is
    logged with the request; the next request is served."""
    site, _, clock = serve()
    status, _, body, _ = send(site, clock, get("/raise"))
    assert (status, body) == (500, b"Worker threw exception")
    assert any("the Worker broke" in str(e.get("log_failure", "")) for e in logged)
    assert send(site, clock, get("/fine"))[0] == 200


def test_worker_returning_something_else_is_500():
    """A Worker whose fetch returns a non-Response gets the client a 500."""
    site, _, clock = serve()
    assert send(site, clock, get("/not-a-response"))[:3:2] == (500, b"Worker threw exception")


def test_websocket_for_a_plain_request_is_500_with_the_reason_logged(logged):
    """A 101 with a WebSocket answering a request that did not ask to upgrade is a 500, and the
    log says why."""
    site, _, clock = serve()
    assert send(site, clock, get("/socket"))[0] == 500
    assert any("Upgrade: websocket" in str(e.get("error", "")) for e in logged)


def test_a_websocket_handed_to_two_clients_is_500_for_the_second():
    """The same client end returned for two upgrade requests: the second client gets a 500."""
    KEPT.clear()
    site, _, clock = serve()
    upgrade = ("Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
               "Sec-WebSocket-Version: 13")
    assert send(site, clock, get("/socket-twice", *upgrade))[0] == 101
    assert send(site, clock, get("/socket-twice", *upgrade))[0] == 500


def test_announced_body_over_the_limit_is_413():
    """A Content-Length over the limit is refused with 413."""
    site, _, clock = serve(maxRequestBodySize=10)
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n" + b"x" * 11
    status, _, body, _ = send(site, clock, raw)
    assert status == 413 and b"limit of 10 bytes" in body


def test_chunked_body_over_the_limit_is_413():
    """A chunked body that turns out larger than the limit is refused with 413."""
    site, _, clock = serve(maxRequestBodySize=10)
    raw = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n" + b"x" * 11 + b"\r\n0\r\n\r\n"
    assert send(site, clock, raw)[0] == 413
    within = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nxxxxx\r\n0\r\n\r\n"
    assert send(site, clock, within)[:3:2] == (200, b"ok 5")


def test_overloaded_object_is_503_with_retry_after():
    """A request that meets an overloaded object is 503 with Retry-After: 1."""
    site, runtime, clock = serve(maxPendingCalls=1)
    blocked = send(site, clock, get("/block"))[3]
    status, headers, body, _ = send(site, clock, get("/object"))
    assert status == 503 and headers["retry-after"] == "1" and b"overloaded" in body
    liveActor(runtime, runtime.env.NS.getByName("o")).instance.waiting.callback(None)
    clock.advance(0)
    assert blocked.value().startswith(b"HTTP/1.1 200")


def test_a_request_twisted_web_cannot_parse_is_400_before_the_worker():
    """A method that is not a token never reaches dotwist: twisted.web answers 400 itself."""
    site, _, clock = serve()
    status, _, body, _ = send(site, clock, b"G\xc9T / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 400


def _causedBy(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    "error,status,header",
    [
        (BadRequest("no host"), 400, None),
        (RequestTooLarge("too big"), 413, None),
        (DurableObjectError("busy", overloaded=True), 503, (b"retry-after", [b"1"])),
        (DurableObjectError("reset", durableObjectReset=True), 500, None),
        (DurableObjectUnavailable("moving between nodes"), 503, (b"retry-after", [b"1"])),
        (DurableObjectUnavailable("moving", remote=True, retryAfter=5), 503, (b"retry-after", [b"5"])),
        (_causedBy(DurableObjectError("reset", durableObjectReset=True), DurableObjectUnavailable("moved")),
         503, (b"retry-after", [b"1"])),
        (DurableObjectError("not now", retryable=True), 500, None),
        (WorkerResponseError("bad socket"), 500, None),
        (ValueError("bug"), 500, None),
    ],
)
def test_error_response_maps_each_error_type(error, status, header):
    """errorResponse, the one mapping: each typed error gets its status, a text body and its
    length. An object that is moving between cluster nodes (DurableObjectUnavailable, or a reset
    it caused) is 503 with Retry-After; another retryable error is the application's: 500."""
    request = DummyRequest([b""])
    body = errorResponse(request, error)
    assert request.responseCode == status
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"%d" % len(body)]
    if header is not None:
        assert request.responseHeaders.getRawHeaders(header[0]) == header[1]


class Echoes(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(request.headers.get("cf-connecting-ip") or "none")


def test_cf_connecting_ip_is_the_peer_whatever_the_client_sent():
    """The Worker sees the client's address in CF-Connecting-IP, as behind Cloudflare's edge; a
    value the client sent itself is replaced, so it cannot pose as another address."""
    clock = MemoryReactorClock()
    site, _ = makeSite(makeRuntime(App(Echoes), clock=clock), reactor=clock)
    assert send(site, clock, get("/"))[2] == b"127.0.0.1"
    assert send(site, clock, get("/", "CF-Connecting-IP: 10.9.8.7"))[2] == b"127.0.0.1"


def test_client_leaving_before_the_answer_cancels_the_worker_call(logged):
    """A client that goes away while the Worker is still working: the Worker's call is cancelled
    (the request is no longer in flight), nothing is written or logged as an error, and the site
    keeps serving."""
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    site, runtime, clock = serve()
    _, _, _, transport = send(site, clock, get("/block"))
    front = site.front
    assert front.inFlight == 1 and transport.value() == b""
    transport.protocol.connectionLost(Failure(ConnectionDone()))
    clock.advance(0)
    assert front.inFlight == 0
    assert transport.value() == b""
    assert not [e for e in logged if e.get("log_level") is not None and e["log_level"].name in ("error", "critical")]
    assert send(site, clock, get("/fine"))[0] == 200


def test_percent_encoded_path_that_is_not_utf8_is_400():
    """A path whose percent-encoded bytes are not UTF-8 is refused with 400, as it was when a
    Klein route served the site."""
    site, _, clock = serve()
    status, _, body, _ = send(site, clock, get("/%FF"))
    assert (status, body) == (400, b"Non-UTF-8 encoding in URL.")
    assert send(site, clock, get("/%C3%A9"))[:3:2] == (200, b"ok 0")
