"""The node-to-node wire (dotwist.cluster.wire) over loopback: many calls in flight on one
connection, answered in any order; a wrong secret refused; a connection that breaks fails the
calls waiting on it and tells its relayed sockets, and the next call connects again."""

from __future__ import annotations

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint

from dotwist.cluster.wire import CallClient, Channel, WireBroken, WireServerFactory


async def _listen(serve: object, secret: str = "s3cret") -> tuple[object, int]:
    factory = WireServerFactory(serve, secret)  # type: ignore[arg-type]
    port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
    return port, port.getHost().port


class Recorder:
    def __init__(self) -> None:
        self.frames: list[tuple[bytes, bytes]] = []
        self.lost = False

    def frameReceived(self, op: bytes, data: bytes) -> None:
        self.frames.append((op, data))

    def channelLost(self) -> None:
        self.lost = True


@pytest_twisted.ensureDeferred
async def test_calls_in_flight_together_are_answered_in_any_order_and_sockets_relay_frames() -> None:
    """Three calls answer while a slow one waits; a socket the server side numbers gets the
    frames sent before the caller adopted it, then later ones, both ways."""
    held: dict[bytes, Deferred[bytes]] = {}
    serverEnd = Recorder()
    channels: list[Channel] = []

    def serve(body: bytes, channel: Channel) -> Deferred[bytes]:
        channels.append(channel)
        if body.startswith(b"slow"):
            held[body] = Deferred()
            return held[body]
        if body == b"socket":
            number = channel.openSocket(serverEnd)
            d = succeed(number)
            channel.sendSocket(number, b"T", b"early")  # after the reply, before adoption
            return d
        return succeed(b"echo:" + body)

    port, number = await _listen(serve)
    address = f"127.0.0.1:{number}"
    client = CallClient(reactor, "s3cret")
    try:
        slow = client.call(address, b"slow-1")
        answered: list[object] = []
        slow.addCallback(lambda r: answered.append(r) or r)
        fast = [client.call(address, b"x" * n) for n in (0, 1, 70000)]
        results = await DeferredList(fast, fireOnOneErrback=True)
        assert [r[1] for _, r in results] == [b"echo:", b"echo:x", b"echo:" + b"x" * 70000]
        assert answered == [] and b"slow-1" in held
        held[b"slow-1"].callback(b"late")
        assert (await slow)[1] == b"late"
        channel, socketNumber = await client.call(address, b"socket")
        callerEnd = Recorder()
        await _turn()
        channel.adoptSocket(socketNumber, callerEnd)
        assert callerEnd.frames == [(b"T", b"early")]
        channel.sendSocket(socketNumber, b"B", b"\x00up")
        while not serverEnd.frames:
            await _turn()
        assert serverEnd.frames == [(b"B", b"\x00up")]
        channel.transport.loseConnection()  # type: ignore[union-attr]
        while not (callerEnd.lost and serverEnd.lost):
            await _turn()
    finally:
        client.close()
        await port.stopListening()  # type: ignore[attr-defined]


@pytest_twisted.ensureDeferred
async def test_a_wrong_secret_is_refused_and_a_broken_connection_fails_its_calls() -> None:
    waiting: list[Deferred[bytes]] = []

    def serve(body: bytes, channel: Channel) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        waiting.append(d)
        return d

    port, number = await _listen(serve)
    address = f"127.0.0.1:{number}"
    wrong = CallClient(reactor, "guess")
    client = CallClient(reactor, "s3cret")
    try:
        try:
            await wrong.call(address, b"hi")
            raise AssertionError("a call with the wrong secret was answered")
        except WireBroken:
            pass
        assert waiting == []
        pending = client.call(address, b"never answered")
        while not waiting:
            await _turn()
        connection = client.connectionTo(address)
        assert connection is not None
        connection.transport.loseConnection()  # type: ignore[union-attr]
        try:
            await pending
            raise AssertionError("a call on a broken connection did not fail")
        except WireBroken:
            pass
        again = client.call(address, b"again")
        while len(waiting) < 2:
            await _turn()
        waiting[1].callback(b"answered")
        assert (await again)[1] == b"answered"
    finally:
        client.close()
        wrong.close()
        await port.stopListening()  # type: ignore[attr-defined]


def _turn() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.01, d.callback, None)  # type: ignore[attr-defined]
    return d
