"""The WebSocket handover with the request twisted.web already parsed (``checkParsedHandshake`` and
``openParsed`` in ``dotwist._autobahn``) answers every upgrade request byte for byte as Autobahn's
own way does (the request written out again and parsed by ``processHandshake``), and leaves the
protocol in the same state; requests it is not sure about go Autobahn's way."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint
from dotwist.server import DotwistWebSocketProtocol, makeSite
from dotwist.testing import makeRuntime
from support import turns


class Objects(DurableObject):
    pass


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()
        server.addEventListener("message", lambda event: server.send(event.data))
        headers = {}
        offered = request.headers.get("sec-websocket-protocol")
        if offered:
            headers["Sec-WebSocket-Protocol"] = offered.split(",")[-1].strip()
        if request.url.endswith("/extra"):
            headers["X-Extra"] = "yes"
        return Response(None, status=101, webSocket=client, headers=headers)


class Transport(StringTransport):
    protocol: Any = None

    def unregisterProducer(self) -> None:
        self.producer = None


KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
BASE = ["Host: h", "Upgrade: websocket", "Connection: Upgrade", KEY, "Sec-WebSocket-Version: 13"]
# A masked text frame "hi" and a close frame 1000, as a client sends them with its request.
FRAMES = bytes([0x81, 0x82, 1, 2, 3, 4, ord("h") ^ 1, ord("i") ^ 2]) + bytes(
    [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xE8 ^ 2]
)


def replace(lines: list[str], name: str, line: str | None) -> list[str]:
    kept = [entry for entry in lines if not entry.lower().startswith(name.lower() + ":")]
    return kept + ([line] if line is not None else [])


def request(target: str = "/ws", lines: list[str] = BASE, method: str = "GET", body: bytes = b"") -> bytes:
    return ("\r\n".join([f"{method} {target} HTTP/1.1", *lines, "", ""])).encode("latin-1") + body


CASES = {
    "plain": request(),
    "with frames": request(body=FRAMES),
    "query": request("/ws?a=1&b=2&a=3"),
    "path parameters": request("/ws;p=1"),
    "target like a network path": request("//h.example/ws"),
    "path with a colon": request("/a:b/ws"),
    "host with port": request(lines=replace(BASE, "Host", "Host: H.example:8080")),
    "host with a bad port": request(lines=replace(BASE, "Host", "Host: h:x")),
    "subprotocols": request(lines=BASE + ["Sec-WebSocket-Protocol: chat, superchat"]),
    "duplicate subprotocols": request(lines=BASE + ["Sec-WebSocket-Protocol: chat, chat"]),
    "two protocol lines": request(lines=BASE + ["Sec-WebSocket-Protocol: a", "Sec-WebSocket-Protocol: b"]),
    "origin": request(lines=BASE + ["Origin: http://example.com"]),
    "null origin": request(lines=BASE + ["Origin: null"]),
    "origin without host": request(lines=BASE + ["Origin: http://"]),
    "deflate offer": request(lines=BASE + ["Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"]),
    "unknown extension": request(lines=BASE + ["Sec-WebSocket-Extensions: x-foo; a=\"1\""]),
    "version 8": request(lines=replace(BASE, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 8")),
    "version 99": request(lines=replace(BASE, "Sec-WebSocket-Version", "Sec-WebSocket-Version: 99")),
    "version not a number": request(lines=replace(BASE, "Sec-WebSocket-Version", "Sec-WebSocket-Version: x")),
    "no version": request(lines=replace(BASE, "Sec-WebSocket-Version", None)),
    "no key": request(lines=replace(BASE, "Sec-WebSocket-Key", None)),
    "short key": request(lines=replace(BASE, "Sec-WebSocket-Key", "Sec-WebSocket-Key: abc==")),
    "bad key character": request(
        lines=replace(BASE, "Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ!=")
    ),
    "no connection header": request(lines=replace(BASE, "Connection", None)),
    "connection without upgrade": request(lines=replace(BASE, "Connection", "Connection: keep-alive")),
    "connection list": request(lines=replace(BASE, "Connection", "Connection: keep-alive, Upgrade")),
    "upgrade list": request(lines=replace(BASE, "Upgrade", "Upgrade: h2c, websocket")),
    "post": request(method="POST", lines=BASE + ["Content-Length: 0"]),
    "forwarded for": request(lines=BASE + ["X-Forwarded-For: 10.0.0.1"]),
    "control character in a value": request(lines=BASE + ["X-Thing: a\x01b"]),
    "extra response header": request("/extra"),
}


def serve(raw: bytes) -> tuple[bytes, Any, bool]:
    """The bytes the server wrote for ``raw``, its WebSocket protocol (or None) and whether the
    connection is closing."""
    clock = MemoryReactorClock()
    runtime = makeRuntime(App(Worker, durableObjects={"NS": Objects}), clock=clock)
    site, factory = makeSite(runtime, reactor=clock)
    factory.startFactory()
    transport = Transport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
    )
    channel = site.buildProtocol(transport.getPeer())
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(raw)
    clock.advance(0)
    protocol = transport.protocol if isinstance(transport.protocol, DotwistWebSocketProtocol) else None
    return transport.value(), protocol, transport.disconnecting


STATE = ("state", "websocket_version", "websocket_protocol_in_use", "peer", "data", "wasNotCleanReason")
REQUEST = ("peer", "headers", "host", "path", "params", "version", "origin", "protocols", "extensions")


def snapshot(protocol: Any, seen: list[Any]) -> dict[str, Any]:
    """The protocol's state, and what its onConnect was given (the handshake's values, which the
    protocol lets go of once the connection is open)."""
    state = {} if protocol is None else {name: repr(getattr(protocol, name, "unset")) for name in STATE}
    if protocol is not None:  # what connectionMade found out about the transport
        state["transport_details"] = repr(protocol.transport_details.marshal())
    state["onConnect"] = [{name: repr(getattr(request, name)) for name in REQUEST} for request in seen]
    return state


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_parsed_handshake_answers_as_autobahn_does(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same request, served with the parsed handshake and then Autobahn's way only: the same
    bytes back (the 101 or the refusal, and the echo of frames sent with the request), the same
    protocol state, the same close."""
    raw = CASES[name]
    opened: list[bool] = []
    seen: list[Any] = []
    openParsed = DotwistWebSocketProtocol.openParsed
    onConnect = DotwistWebSocketProtocol.onConnect

    def counted(self: Any, *args: Any) -> None:
        opened.append(True)
        openParsed(self, *args)

    def recorded(self: Any, request: Any) -> Any:
        seen.append(request)
        return onConnect(self, request)

    monkeypatch.setattr(DotwistWebSocketProtocol, "openParsed", counted)
    monkeypatch.setattr(DotwistWebSocketProtocol, "onConnect", recorded)
    fast = serve(raw)
    fastState = snapshot(fast[1], seen)
    seen.clear()
    monkeypatch.setattr(DotwistWebSocketProtocol, "checkParsedHandshake", lambda self, *a: None)
    stock = serve(raw)
    assert fast[0] == stock[0]
    assert fastState == snapshot(stock[1], seen)
    assert fast[2] == stock[2]
    if name in ("plain", "with frames", "query", "subprotocols", "origin", "deflate offer"):
        # The common requests do take the parsed way (what the test is about).
        assert opened and fast[0].startswith(b"HTTP/1.1 101 ")
    if name == "with frames":
        assert b"\x81\x02hi" in fast[0]


def test_an_open_socket_keeps_nothing_of_its_handshake() -> None:
    """Once open, the protocol has let go of the Worker's response and of the handshake's
    request values (they read as empty), and holds no send queue until something is queued."""
    out, protocol, _ = serve(CASES["subprotocols"])
    assert out.startswith(b"HTTP/1.1 101 ")
    kept = vars(protocol)
    for name in ("response", "http_headers", "http_request_params", "http_response_data", "_wskey"):
        assert name not in kept, name
    # Nor per-connection traffic counters: nothing counts into them on this path (about 0.3 KiB).
    assert "trafficStats" not in kept
    assert dict(protocol.http_headers) == {} and protocol.http_request_path == ""
    assert protocol.send_queue == () and protocol.websocket_protocol_in_use == "superchat"
    # A message still echoes on it.
    protocol.dataReceived(FRAMES[:8])
    assert protocol.transport.value().endswith(b"\x81\x02hi")


@pytest_twisted.ensureDeferred
async def test_data_sent_chopped_is_queued_and_written_in_order() -> None:
    """Autobahn's chopped sends (``sendData(chopsize=...)``, which queue, and write the rest on
    later reactor turns) still work on a protocol that starts without a send queue: every chunk is
    written, in order."""
    clock = MemoryReactorClock()
    runtime = makeRuntime(App(Worker, durableObjects={"NS": Objects}), clock=clock)
    site, factory = makeSite(runtime, reactor=clock)
    factory.startFactory()
    transport = Transport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8080), peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
    )
    channel = site.buildProtocol(transport.getPeer())
    transport.protocol = channel
    channel.makeConnection(transport)
    channel.dataReceived(CASES["plain"])
    protocol = transport.protocol
    transport.clear()
    protocol.sendData(b"abcdefghij", chopsize=3)
    assert transport.value() == b"abc" and len(protocol.send_queue) == 3
    for _ in range(1000):  # Autobahn writes a chunk per turn of the real reactor
        if not protocol.send_queue and not protocol.triggered:
            break
        await turns(1)
    assert transport.value() == b"abcdefghij"
