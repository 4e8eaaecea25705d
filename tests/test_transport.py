"""``DirectWriteServer``: sends at once when nothing is buffered, and never reorders bytes."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest_twisted
from twisted.internet import endpoints, reactor, tcp
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from dotwist._transport import DirectWriteEndpoint, DirectWriteServer, useDirectWrites
from seeded import randbytes


class Writer(Protocol):
    """Writes the chunks it is given as soon as it is connected, then closes."""

    chunks: list[bytes] = []

    def connectionMade(self) -> None:
        self.factory.transports.append(self.transport)
        # A small kernel send buffer makes the big chunk only partly sent by the direct write.
        self.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        for chunk in self.factory.chunks:
            self.transport.write(chunk)
        self.factory.bufferedAfterWrites.append(self.transport._tempDataLen)
        self.transport.loseConnection()


class Reader(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(b"".join(self.received))


async def _transfer(chunks: list[bytes]) -> tuple[bytes, Any, list[int]]:
    factory = Factory.forProtocol(Writer)
    factory.chunks = chunks
    factory.transports = []
    factory.bufferedAfterWrites = []
    port = await DirectWriteEndpoint(endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")).listen(factory)
    try:
        reader = Reader()
        await endpoints.connectProtocol(
            endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), reader
        )
        data = await reader.done
    finally:
        await port.stopListening()
    return data, factory.transports[0], factory.bufferedAfterWrites


@pytest_twisted.ensureDeferred
async def test_everything_arrives_in_order_when_the_kernel_takes_only_part() -> None:
    big = randbytes(4 << 20, "transport big")
    chunks = [b"first;", big, b";after-the-big-one;", b"last"]
    data, transport, buffered = await _transfer(chunks)
    assert type(transport) is DirectWriteServer
    assert data == b"".join(chunks)
    # The kernel could not take 4 MiB at once: the rest (and what followed it) was buffered.
    assert buffered[0] > 0


@pytest_twisted.ensureDeferred
async def test_small_writes_go_out_without_buffering() -> None:
    chunks = [b"a" * 100, b"b" * 100, b"c" * 100]
    data, transport, buffered = await _transfer(chunks)
    assert data == b"".join(chunks)
    assert buffered == [0]


def test_only_plain_tcp_ports_are_changed() -> None:
    class OtherPort:
        transport = object()

    other = OtherPort()
    assert useDirectWrites(other) is other
    assert other.transport is OtherPort.transport

    port = tcp.Port(0, Factory(), interface="127.0.0.1", reactor=reactor)
    assert useDirectWrites(port) is port
    assert port.transport is DirectWriteServer

    class CustomServer(tcp.Server):
        pass

    custom = tcp.Port(0, Factory(), interface="127.0.0.1", reactor=reactor)
    custom.transport = CustomServer
    useDirectWrites(custom)
    assert custom.transport is CustomServer, "a port that chose its own transport keeps it"
