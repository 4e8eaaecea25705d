"""The WebSocket relay (dotwist.cluster.wsproxy) in memory: the owner's side and the caller's
side joined by a channel that hands frames over when the test pumps it, with a task.Clock.

The reply to a client's close frame, when the runtime leaves it to the application (before
2026-04-07): the object on the owner answers it, and its code and reason are the reply; an object
that never answers is given up on after the close handshake timeout, and both sides let go."""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.task import Clock

from dotwist import Response, WebSocketPair
from dotwist.cluster.wsproxy import OwnerSockets, relay
from dotwist.fetch import Headers
from dotwist.testing import FakeConnection
from dotwist.websocket import CLOSED, CLOSING, closeReceived


class MemoryChannel:
    """What wsproxy uses of a ``wire.Channel``; frames wait in ``outbox`` until :meth:`pump`."""

    def __init__(self) -> None:
        self.sockets: dict[bytes, Any] = {}
        self.peer: Optional[MemoryChannel] = None
        self.outbox: list[tuple[bytes, bytes, bytes]] = []
        self.next = 0

    def openSocket(self, end: Any) -> bytes:
        self.next += 1
        number = self.next.to_bytes(8, "big")
        self.sockets[number] = end
        return number

    def adoptSocket(self, number: bytes, end: Any) -> None:
        self.sockets[number] = end

    def closeSocket(self, number: bytes) -> None:
        self.sockets.pop(number, None)

    def sendSocket(self, number: bytes, op: bytes, data: bytes = b"") -> None:
        self.outbox.append((number, op, data))


def pump(*channels: MemoryChannel) -> None:
    """Deliver every frame on its way, until none is left."""
    while any(c.outbox for c in channels):
        for channel in channels:
            frames, channel.outbox = channel.outbox, []
            assert channel.peer is not None
            for number, op, data in frames:
                end = channel.peer.sockets.get(number)
                if end is not None:
                    end.frameReceived(op, data)


def relayed(answer: bool) -> tuple[Any, ...]:
    """An object's socket on the owner, relayed to a client's connection on another node."""
    clock = Clock()
    owner, caller = MemoryChannel(), MemoryChannel()
    owner.peer, caller.peer = caller, owner
    events: list[tuple[int, str, int]] = []
    client, server = WebSocketPair()
    server.accept()

    def closed(event: Any) -> None:
        events.append((event.code, event.reason, server.readyState))
        if answer and server.readyState == CLOSING:
            server.send("last words")  # the outgoing half is still open
            server.close(event.code, "app says")

    server.addEventListener("close", closed)
    sockets = OwnerSockets(clock, 2.0)
    number = sockets.attach(owner, Response(None, status=101, webSocket=client), 1 << 20, 1 << 20)
    response = relay(caller, number, Headers())
    assert response.webSocket is not None
    connection = FakeConnection(response.webSocket, 1 << 20)
    return clock, owner, caller, sockets, server, connection, events


def test_the_objects_reply_to_a_close_is_the_reply_the_client_gets() -> None:
    """The client's close 4000 "bye" reaches the object with readyState CLOSING; what it sends
    then, and its close(4000, "app says"), reach the client; nothing stays relayed."""
    clock, owner, caller, sockets, server, connection, events = relayed(answer=True)
    closeReceived(connection.clientEnd, 4000, "bye")  # what the server protocol does, manual reply
    pump(owner, caller)
    assert events == [(4000, "bye", CLOSING)]
    assert connection.messages == ["last words"]
    assert connection.closes == [(4000, "app says")]
    assert server.readyState == CLOSED
    assert owner.sockets == {} and caller.sockets == {} and sockets.live == set()
    assert clock.getDelayedCalls() == []


def test_an_object_that_never_answers_a_close_is_given_up_on_after_the_timeout() -> None:
    """No reply: after the close handshake timeout the owner lets the socket go and tells the
    caller's node, which lets go too (its own connection was dropped after the same timeout)."""
    clock, owner, caller, sockets, server, connection, events = relayed(answer=False)
    closeReceived(connection.clientEnd, 4000, "bye")
    pump(owner, caller)
    assert events == [(4000, "bye", CLOSING)]
    assert connection.closes == [] and len(sockets.live) == 1
    clock.advance(1.9)
    assert len(sockets.live) == 1
    clock.advance(0.2)
    pump(owner, caller)
    assert sockets.live == set() and owner.sockets == {} and caller.sockets == {}
    assert len(events) == 1  # no second close event for the object
