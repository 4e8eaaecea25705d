"""``FastMessages``: whole data frames skip Autobahn's frame machinery; everything else still gets
Autobahn's exact behaviour. Every case is checked against a stock Autobahn protocol fed the same
bytes, in memory."""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOfferAccept
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure


from dotwist import _autobahn
from seeded import randbytes

HANDSHAKE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class Transport(StringTransport):
    def unregisterProducer(self) -> None:
        # Autobahn unregisters when it drops the connection, registered or not; a real TCP
        # transport allows that, StringTransport does not.
        self.producer = None


class Stock(WebSocketServerProtocol):
    """Autobahn as it comes: records messages and the close."""

    def onOpen(self) -> None:
        self.got: list[Any] = []
        self.fast = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.got.append(payload if isBinary else payload.decode("utf-8"))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.closed = (code, wasClean)


class Fast(_autobahn.FastMessages, Stock):
    def deliverMessage(self, message: Any) -> None:
        self.fast += 1
        self.got.append(message)


def opened(cls: type, maxSize: int = 1 << 20) -> Any:
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(maxMessagePayloadSize=maxSize, maxFramePayloadSize=maxSize, failByDrop=False)
    factory.protocol = cls
    protocol = factory.buildProtocol(None)
    transport = Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(HANDSHAKE)
    assert protocol.state == protocol.STATE_OPEN
    transport.clear()
    return protocol


def frame(payload: bytes, opcode: int = 1, fin: bool = True, rsv: int = 0, masked: bool = True,
          lengthForm: str = "minimal") -> bytes:
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    maskBit = 0x80 if masked else 0
    if lengthForm == "minimal":
        if n <= 125:
            header = bytes((b0, maskBit | n))
        elif n <= 0xFFFF:
            header = bytes((b0, maskBit | 126)) + struct.pack("!H", n)
        else:
            header = bytes((b0, maskBit | 127)) + struct.pack("!Q", n)
    elif lengthForm == "16":
        header = bytes((b0, maskBit | 126)) + struct.pack("!H", n)
    else:
        header = bytes((b0, maskBit | 127)) + struct.pack("!Q", n)
    if not masked:
        return header + payload
    mask = randbytes(4, "frame mask")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def feed(cls: type, data: bytes, chunks: list[int] | None = None, maxSize: int = 1 << 20) -> Any:
    protocol = opened(cls, maxSize)
    if chunks is None:
        protocol.dataReceived(data)
    else:
        pos = 0
        for size in chunks:
            protocol.dataReceived(data[pos:pos + size])
            pos += size
        if pos < len(data):
            protocol.dataReceived(data[pos:])
    if protocol.transport.disconnecting:
        protocol.connectionLost(Failure(ConnectionDone()))
    return protocol


def sentCloseCode(protocol: Any) -> Any:
    """The code of the close frame the server wrote (server frames are unmasked)."""
    data, i = protocol.transport.value(), 0
    while i < len(data):
        opcode, n, i = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        if n == 126:
            n, i = struct.unpack("!H", data[i:i + 2])[0], i + 2
        elif n == 127:
            n, i = struct.unpack("!Q", data[i:i + 8])[0], i + 8
        if opcode == 8:
            return struct.unpack("!H", data[i:i + 2])[0]
        i += n
    return None


def same(data: bytes, chunks: list[int] | None = None, maxSize: int = 1 << 20) -> Any:
    """Feed both protocols; they must agree on messages, what they wrote and the close."""
    stock = feed(Stock, data, chunks, maxSize)
    fast = feed(Fast, data, chunks, maxSize)
    assert fast.got == stock.got
    assert fast.transport.value() == stock.transport.value()
    assert fast.state == stock.state
    assert getattr(fast, "closed", None) == getattr(stock, "closed", None)
    return fast


MESSAGES = [
    frame(b""),
    frame("héllo wörld ✓".encode()),
    frame(randbytes(125, "binary 125"), opcode=2),
    frame(b"x" * 126),
    frame(randbytes(5000, "binary 5000"), opcode=2),
    frame(b"y" * 70000),
]


def test_whole_frames_take_the_fast_path_in_order() -> None:
    fast = same(b"".join(MESSAGES))
    assert fast.fast == len(MESSAGES)
    assert fast.got[1] == "héllo wörld ✓" and fast.got[5] == "y" * 70000


@pytest.mark.parametrize("seed", range(20))
def test_any_chunking_gives_the_same_messages(seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(MESSAGES)
    chunks = [rng.choice([1, 2, 3, 5, 7, 100, 4000, 70000]) for _ in range(200)]
    same(data, chunks)


@pytest.mark.parametrize(
    "bad",
    ids=["utf8", "surrogate", "rsv", "opcode", "unmasked", "unmasked-binary", "len16", "len16-binary",
         "len64", "len64-binary", "continuation"],
    argvalues=[
        frame(b"\xff\xfe", opcode=1),  # invalid UTF-8: 1007
        frame(b"ok\xed\xa0\x80", opcode=1),  # a surrogate: 1007
        frame(b"abc", rsv=1),  # reserved bit, no extension: 1002
        frame(b"abc", opcode=3),  # reserved opcode: 1002
        frame(b"abc", masked=False),  # unmasked client frame: 1002
        frame(b"abc", opcode=2, masked=False),  # the same, binary (no UTF-8 check to catch it)
        frame(b"abc", lengthForm="16"),  # non-minimal length: 1002
        frame(b"abc", opcode=2, lengthForm="16"),
        frame(b"abc" * 100, lengthForm="64"),  # non-minimal length: 1002
        frame(b"abc" * 100, opcode=2, lengthForm="64"),
        frame(b"abc", opcode=0),  # continuation outside a message: 1002
    ],
)
def test_bad_frames_fail_exactly_as_autobahn_does(bad: bytes) -> None:
    fast = same(frame(b"before") + bad + frame(b"after"))
    assert fast.got == ["before"]
    assert sentCloseCode(fast) in (1002, 1007)


def test_oversized_message_is_1009() -> None:
    fast = same(frame(b"a" * 10) + frame(b"b" * 101) + frame(b"c"), maxSize=100)
    assert fast.got == ["a" * 10] and sentCloseCode(fast) == 1009


def test_fragments_pings_and_close_go_to_autobahn() -> None:
    data = (
        frame(b"one")
        + frame(b"frag-", fin=False)
        + frame(b"ping", opcode=9)
        + frame(b"ment", opcode=0)
        + frame(b"two", opcode=2)
        + frame(struct.pack("!H", 1000) + b"bye", opcode=8)
        + frame(b"after close")
    )
    fast = same(data)
    assert fast.got == ["one", "frag-ment", b"two"]
    assert fast.closed == (1000, True)


def test_closing_inside_a_message_handler_stops_the_fast_path() -> None:
    class ClosesOnFirst(Fast):
        def deliverMessage(self, message: Any) -> None:
            super().deliverMessage(message)
            self.sendClose(1000)

    class StockClosesOnFirst(Stock):
        def onMessage(self, payload: bytes, isBinary: bool) -> None:
            super().onMessage(payload, isBinary)
            self.sendClose(1000)

    data = frame(b"first") + frame(b"second") + frame(b"third")
    fast = feed(ClosesOnFirst, data)
    stock = feed(StockClosesOnFirst, data)
    assert fast.fast == 1
    # Autobahn goes on reading while the close handshake is under way, as it always does.
    assert fast.got == stock.got
    assert fast.transport.value() == stock.transport.value()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 100000])
@pytest.mark.parametrize("isBinary", [False, True])
def test_sent_frames_are_byte_for_byte_autobahns(size: int, isBinary: bool) -> None:
    payload = randbytes(size, f"sent {size}")
    fast, stock = opened(Fast), opened(Stock)
    fast.sendFast(payload, isBinary)
    stock.sendMessage(payload, isBinary)
    assert fast.transport.value() == stock.transport.value()


def test_the_incoming_limit_does_not_apply_to_sending() -> None:
    """A message over the limit on *incoming* messages is sent (Autobahn would raise
    PayloadExceededError and send nothing): the outgoing limit is checked by ``WebSocket.send()``.
    The frame is Autobahn's own, byte for byte, and the incoming limit still holds afterwards."""
    fast, stock = opened(Fast, maxSize=100), opened(Stock, maxSize=1 << 20)
    fast.sendFast(b"x" * 101, False)
    stock.sendMessage(b"x" * 101, False)
    assert fast.transport.value() == stock.transport.value() != b""
    assert fast.maxMessagePayloadSize == 100


# -- close frames ---------------------------------------------------------------------------------


class CountsCloseFrames(Fast):
    """Fast, counting the close frames that reached Autobahn's frame parser."""

    def processControlFrame(self) -> bool:
        self.parsedClose = getattr(self, "parsedClose", 0) + (self.current_frame.opcode == 8)
        return bool(super().processControlFrame())


def _stockAndFast(data: bytes, chunks: list[int] | None = None, echo: bool = True) -> tuple[Any, Any]:
    class StockEcho(Stock):
        pass

    class FastEcho(CountsCloseFrames):
        pass

    for cls in (StockEcho, FastEcho):
        cls.echoCloseCodeReason = echo  # type: ignore[attr-defined]
    stock = feed(StockEcho, data, chunks)
    fast = feed(FastEcho, data, chunks)
    assert fast.got == stock.got
    assert fast.transport.value() == stock.transport.value()
    assert fast.state == stock.state
    assert getattr(fast, "closed", None) == getattr(stock, "closed", None)
    assert (fast.wasClean, fast.remoteCloseCode, fast.remoteCloseReason) == (
        stock.wasClean, stock.remoteCloseCode, stock.remoteCloseReason
    )
    return stock, fast


CLOSES = {
    "empty": b"",
    "code": struct.pack("!H", 1000),
    "code-reason": struct.pack("!H", 4001) + "gone ✓".encode(),
    "reason-123": struct.pack("!H", 1001) + b"r" * 123,
}


@pytest.mark.parametrize("echo", [True, False])
@pytest.mark.parametrize("name", sorted(CLOSES))
def test_a_whole_close_frame_skips_autobahns_frame_parser(name: str, echo: bool) -> None:
    """The client's close frame, whole and valid, is handed to ``onCloseFrame`` straight away;
    the reply, the state and the close are Autobahn's, byte for byte."""
    data = frame(b"first") + frame(CLOSES[name], opcode=8) + frame(b"after close")
    stock, fast = _stockAndFast(data, echo=echo)
    assert getattr(fast, "parsedClose", 0) == 0
    assert fast.got == ["first"]
    assert fast.state == fast.STATE_CLOSED and fast.wasClean


@pytest.mark.parametrize(
    "payload",
    ids=["bad-code", "reserved-code", "bad-utf8-reason", "length-1", "length-126"],
    argvalues=[
        struct.pack("!H", 999),  # Autobahn's onCloseFrame refuses it: 1002
        struct.pack("!H", 1005),
        struct.pack("!H", 1000) + b"\xff\xfe",  # 1007
        b"\x03",  # a close payload of one byte: Autobahn's frame parser fails it (1002)
        struct.pack("!H", 1000) + b"r" * 124,  # a control frame over 125 bytes: 1002
    ],
)
def test_bad_close_frames_fail_exactly_as_autobahn_does(payload: bytes) -> None:
    stock, fast = _stockAndFast(frame(b"before") + frame(payload, opcode=8) + frame(b"after"))
    assert fast.got == ["before"]
    assert sentCloseCode(fast) in (1002, 1007)


def test_close_frames_the_fast_path_leaves_to_autobahn() -> None:
    """Unfinished, unmasked or reserved-bit close frames go to Autobahn's parser."""
    for data, chunks in [
        (frame(struct.pack("!H", 1000) + b"bye", opcode=8), [1, 5, 3]),  # arrives in pieces
        (frame(struct.pack("!H", 1000), opcode=8, fin=False), None),  # fragmented control frame
        (frame(struct.pack("!H", 1000), opcode=8, rsv=2), None),
        (frame(struct.pack("!H", 1000), opcode=8, masked=False), None),
    ]:
        stock, fast = _stockAndFast(data + frame(b"after"), chunks)
        assert fast.parsedClose == 1


@pytest.mark.parametrize("seed", range(10))
def test_any_chunking_of_messages_and_close_is_autobahns(seed: int) -> None:
    rng = random.Random(seed)
    data = b"".join(MESSAGES) + frame(struct.pack("!H", 1000) + b"bye", opcode=8) + frame(b"late")
    chunks = [rng.choice([1, 2, 3, 5, 7, 100, 4000, 70000]) for _ in range(200)]
    _stockAndFast(data, chunks)


def test_a_close_frame_does_not_restart_the_auto_ping() -> None:
    """Autobahn restarts its auto-ping timeout on data frames only."""
    restarted = []

    class Pinged(Fast):
        autoPingRestartOnAnyTraffic = True

        def _cancelAutoPingTimeoutCall(self) -> None:
            restarted.append(True)

    protocol = opened(Pinged)
    protocol.autoPingTimeoutCall = object()
    protocol.dataReceived(frame(struct.pack("!H", 1000), opcode=8))
    assert restarted == [] and protocol.state == protocol.STATE_CLOSED
    protocol = opened(Pinged)
    protocol.autoPingTimeoutCall = object()
    protocol.dataReceived(frame(b"data") + frame(struct.pack("!H", 1000), opcode=8))
    assert restarted == [True]


def test_connection_made_finds_what_autobahns_does() -> None:
    """``connectionMade`` (given without Autobahn's debug line) sets the same peer, transport
    details and TCP option, and makes the connection the same way."""

    class NoDelay(Transport):
        noDelay: Any = None

        def setTcpNoDelay(self, enabled: bool) -> None:
            self.noDelay = enabled

    made = []
    for cls in (Stock, Fast):
        factory = WebSocketServerFactory()
        factory.protocol = cls
        protocol = factory.buildProtocol(None)
        transport = NoDelay()
        protocol.makeConnection(transport)
        made.append((protocol.peer, protocol.transport_details.marshal(), transport.noDelay,
                     protocol.state, factory.countConnections))
    assert made[0] == made[1]
    assert made[1][0].startswith("tcp4:")


@pytest.mark.parametrize(
    "args",
    ids=["close", "close-code", "close-reason", "close-125", "ping", "pong-empty", "ping-200",
         "close-masked", "close-not-fin", "close-rsv", "close-payload-len", "text", "reserved-opcode"],
    argvalues=[
        dict(opcode=8),
        dict(opcode=8, payload=struct.pack("!H", 1000)),
        dict(opcode=8, payload=struct.pack("!H", 4000) + "bye ✓".encode()),
        dict(opcode=8, payload=b"r" * 125),
        dict(opcode=9, payload=b"ping"),
        dict(opcode=10),
        dict(opcode=9, payload=b"p" * 200),  # sendFrame deliberately allows invalid frames
        dict(opcode=8, payload=b"\x03\xe8", mask=b"abcd"),
        dict(opcode=8, payload=b"\x03\xe8", fin=False),
        dict(opcode=8, payload=b"\x03\xe8", rsv=1),
        dict(opcode=9, payload=b"ab", payload_len=5),
        dict(opcode=1, payload=b"text"),
        dict(opcode=11, payload=b"x"),
    ],
)
def test_control_frames_sent_are_byte_for_byte_autobahns(args: dict[str, Any]) -> None:
    fast, stock = opened(Fast), opened(Stock)
    fast.sendFrame(**args)
    stock.sendFrame(**args)
    assert fast.transport.value() == stock.transport.value() != b""
    # (Autobahn counts the data frames it sends.)
    assert fast.trafficStats.outgoingWebSocketFrames == stock.trafficStats.outgoingWebSocketFrames


def test_a_masking_server_sends_masked_control_frames() -> None:
    fast, stock = opened(Fast), opened(Stock)
    for protocol in (fast, stock):
        protocol.maskServerFrames = True
        random.seed(7)  # Autobahn's mask
        protocol.sendFrame(opcode=8, payload=struct.pack("!H", 1000))
    assert fast.transport.value() == stock.transport.value()
    assert fast.transport.value()[1] & 0x80


def test_control_frames_of_a_client_or_logged_take_autobahns_way() -> None:
    """A client masks its frames; a protocol logging frames logs each one it sends."""
    fast, stock = opened(Fast), opened(Stock)
    for protocol in (fast, stock):
        protocol.factory.isServer = False
        protocol.maskClientFrames = True
        random.seed(8)
        protocol.sendFrame(opcode=9, payload=b"ping")
    assert fast.transport.value() == stock.transport.value()
    assert fast.transport.value()[1] & 0x80
    logged = []
    fast = opened(Fast)
    fast.logFrames = True
    fast.logTxFrame = lambda *args: logged.append(args[0].opcode)
    fast.sendFrame(opcode=10, payload=b"pong")
    assert logged == [10] and fast.transport.value() == b"\x8a\x04pong"


# -- the opening handshake's answer ---------------------------------------------------------------


def _handshakeOf(base: type, answer: Any, extra: bytes = b"", server: str | None = "x",
                 factoryHeaders: Any = None, **options: Any) -> tuple[bytes, Any]:
    class Answers(base):  # type: ignore[misc, valid-type]
        def onConnect(self, request: Any) -> Any:
            return answer

    factory = WebSocketServerFactory(server=server, headers=factoryHeaders, reactor=MemoryReactorClock())
    factory.setProtocolOptions(**{"openHandshakeTimeout": 0, **options})
    factory.protocol = Answers
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(Transport())
    request = HANDSHAKE[:-2] + extra + b"\r\n" + frame(b"with the request")
    protocol.dataReceived(request)
    names = ("state", "websocket_protocol_in_use", "got", "http_response_data", "openHandshakeTimeoutCall",
             "inside_message", "current_frame", "websocket_extensions_in_use")
    # (Autobahn's protocol lacks what it has not set yet; FastMessages has class defaults.)
    state = tuple(
        repr(getattr(protocol, name, getattr(_autobahn.FastMessages, name, None))) for name in names
    ) + (protocol.is_open.called,)
    # (Which cancels Autobahn's timers, such as an auto-ping's, on the global reactor.)
    protocol.connectionLost(Failure(ConnectionDone()))
    return protocol.transport.value(), state


SUBPROTOCOLS = b"Sec-WebSocket-Protocol: chat, superchat\r\n"


@pytest.mark.parametrize(
    "answer, extra, server, factoryHeaders",
    ids=["plain", "subprotocol", "headers", "header-list", "header-int", "no-server", "factory-headers",
         "not-a-tuple", "three", "unoffered", "deflate-offer"],
    argvalues=[
        ((None, {}), b"", "x", None),
        (("chat", {}), SUBPROTOCOLS, "x", None),
        ((None, {"X-One": "1", "X-Two": "2 ✓"}), b"", "x", None),
        ((None, {"X-Many": ["a", "b"], "X-Tuple": ("c",)}), b"", "x", None),
        ((None, {"X-Int": 7}), b"", "x", None),
        ((None, {}), b"", None, None),
        ((None, {"X-Own": "own"}), b"", "x", {"X-Factory": "f", "X-Factory-List": ["g", "h"]}),
        ("superchat", SUBPROTOCOLS, "x", None),  # Autobahn's other form: the subprotocol alone
        (("chat", {}, "more"), SUBPROTOCOLS, "x", None),
        (("other", {}), SUBPROTOCOLS, "x", None),  # refused: not what the client offered
        ((None, {}), b"Sec-WebSocket-Extensions: permessage-deflate\r\n", "x", None),
    ],
)
def test_the_101_is_byte_for_byte_autobahns(answer: Any, extra: bytes, server: Any, factoryHeaders: Any) -> None:
    results = []
    for base in (Stock, Fast):
        try:
            results.append(_handshakeOf(base, answer, extra, server, factoryHeaders))
        except Exception as e:  # the same refusal from both
            results.append((type(e), str(e)))
    assert results[0] == results[1]
    if answer != ("other", {}):
        assert results[1][0].startswith(b"HTTP/1.1 101 ")
        assert results[1][1][2] == repr(["with the request"])  # frames sent with the request are read


def test_the_101_cancels_the_opening_handshake_timer() -> None:
    cancelled = []

    class Call:
        def cancel(self) -> None:
            cancelled.append(True)

    for base in (Stock, Fast):
        class Answers(base):  # type: ignore[misc, valid-type]
            def onConnect(self, request: Any) -> Any:
                return (None, {})

        factory = WebSocketServerFactory()
        factory.setProtocolOptions(openHandshakeTimeout=0)
        factory.protocol = Answers
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(Transport())
        protocol.openHandshakeTimeoutCall = Call()  # as Autobahn's timer would be
        protocol.dataReceived(HANDSHAKE)
        assert protocol.state == protocol.STATE_OPEN and protocol.openHandshakeTimeoutCall is None
    assert cancelled == [True, True]


def test_an_accepted_extension_gets_autobahns_own_101() -> None:
    offer = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    accept = lambda offers: PerMessageDeflateOfferAccept(offers[0])  # noqa: E731
    results = [
        _handshakeOf(base, (None, {}), offer, perMessageCompressionAccept=accept) for base in (Stock, Fast)
    ]
    assert results[0] == results[1]
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in results[1][0]


def test_pinging_or_timing_protocols_get_autobahns_own_101(monkeypatch: pytest.MonkeyPatch) -> None:
    """Autobahn starts its auto-ping, or tracks timings, in succeedHandshake: those take its way."""
    autobahns = []
    succeed = WebSocketServerProtocol.succeedHandshake

    def counted(self: Any, res: Any) -> None:
        autobahns.append(res)
        succeed(self, res)

    monkeypatch.setattr(WebSocketServerProtocol, "succeedHandshake", counted)
    for options, timings in (({}, False), ({"autoPingInterval": 10}, False), ({}, True)):
        class Answers(Fast):
            def connectionMade(self) -> None:
                super().connectionMade()
                if timings:
                    self.setTrackTimings(False)
                    self.setTrackTimings(True)

        out, state = _handshakeOf(Answers, (None, {}), **options)
        assert out.startswith(b"HTTP/1.1 101 ")
    assert len(autobahns) == 2
