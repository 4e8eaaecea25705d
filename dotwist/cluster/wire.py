"""The node-to-node channel's wire: length-prefixed frames over one persistent TCP connection per
pair of nodes, many calls and relayed WebSockets on it at once.

Calls between nodes are small and many; HTTP/1.1 (one request at a time per connection, headers
parsed and written on both sides) costs more CPU than the call itself, and an extra WebSocket
connection per relayed socket costs a masking and a frame parser per message. So everything goes
as frames of Twisted's ``Int32StringReceiver`` (a 4-byte length, then the bytes) on the node's
internal port.

A connection starts with the caller's hello frame, ``DWC1`` and the cluster's shared secret
(compared in constant time; a wrong one closes the connection). Then:

- ``C`` + call number (8 bytes) + the call (``dotwist.cluster.calls``), from the caller;
- ``R`` + call number + the reply, from the owner, in whatever order calls finish;
- ``S`` + socket number (8 bytes, chosen by the owner) + an operation + data, both ways: a
  WebSocket relayed on this connection (``dotwist.cluster.wsproxy``): ``T`` a text message,
  ``B`` a binary one, ``C`` a close (2-byte code, UTF-8 reason), ``L`` the peer's connection was
  lost without a close.

A connection that breaks fails every call waiting on it with :class:`WireBroken` and tells each
relayed socket (``channelLost``).
"""

from __future__ import annotations

import hmac
import struct
from typing import Any, Callable, Optional, Protocol

from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver

__all__ = ["CallClient", "Channel", "SocketEnd", "WireBroken", "WireServerFactory"]

_log = Logger(namespace="dotwist.cluster")

HELLO = b"DWC1"
_NUMBER = struct.Struct(">Q")
#: The largest frame (a request body, a reply, a message): 1 GiB.
MAX_FRAME = 1 << 30


class WireBroken(Exception):
    """The connection to another node broke (or could not be made) with calls in flight."""


class CallOutcomeUnknown(WireBroken):
    """A call was sent, and its connection broke (or its time ran out) before the reply: the
    other node may have run it, whole or in part. Never sent again by itself."""


class SocketEnd(Protocol):
    """One side of a WebSocket relayed on a channel."""

    def frameReceived(self, op: bytes, data: bytes) -> None: ...

    def channelLost(self) -> None: ...


class Channel(Int32StringReceiver):
    """One end of a node-to-node connection: its relayed sockets, and frames out."""

    MAX_LENGTH = MAX_FRAME

    def __init__(self) -> None:
        self.sockets: dict[bytes, SocketEnd] = {}
        self.early: dict[bytes, list[tuple[bytes, bytes]]] = {}
        self.nextSocket = 0

    # -- relayed sockets ---------------------------------------------------------------------------

    def openSocket(self, end: SocketEnd) -> bytes:
        """Number a socket relayed on this channel (the owner's side does)."""
        self.nextSocket += 1
        number = _NUMBER.pack(self.nextSocket)
        self.sockets[number] = end
        return number

    def adoptSocket(self, number: bytes, end: SocketEnd) -> None:
        """The caller's side of a socket the owner numbered; frames that came first are given
        to it now."""
        self.sockets[number] = end
        for op, data in self.early.pop(number, ()):
            end.frameReceived(op, data)

    def closeSocket(self, number: bytes) -> None:
        self.sockets.pop(number, None)
        self.early.pop(number, None)

    def sendSocket(self, number: bytes, op: bytes, data: bytes = b"") -> None:
        if self.connected:
            self.sendString(b"S" + number + op + data)  # type: ignore[no-untyped-call]

    def socketFrame(self, data: bytes) -> None:
        number, op, rest = data[1:9], data[9:10], data[10:]
        end = self.sockets.get(number)
        if end is not None:
            end.frameReceived(op, rest)
        elif number in self.early or self.acceptsEarly():
            self.early.setdefault(number, []).append((op, rest))

    def acceptsEarly(self) -> bool:
        """Frames of a socket not known yet are kept (on the caller's side, the owner's frames
        can arrive before the reply that numbered it has been handled)."""
        return False

    def connectionLost(self, reason: Any = None) -> None:
        sockets, self.sockets = self.sockets, {}
        self.early.clear()
        for end in sockets.values():
            try:
                end.channelLost()
            except Exception:
                _log.failure("A relayed WebSocket failed to close")

    def lengthLimitExceeded(self, length: int) -> None:
        _log.warn("A frame of {length} bytes between nodes is over the limit; connection closed", length=length)
        _close(self.transport)


class _ServerSide(Channel):
    def __init__(self, serve: Callable[[bytes, Channel], "Deferred[bytes]"], secret: bytes) -> None:
        Channel.__init__(self)
        self.serve = serve
        self.secret = secret
        self.greeted = False

    def stringReceived(self, data: bytes) -> None:
        if not self.greeted:
            if not (data[:4] == HELLO and hmac.compare_digest(data[4:], self.secret)):
                _log.warn("A node connection with a wrong secret was refused")
                _close(self.transport)
                return
            self.greeted = True
            return
        kind = data[:1]
        if kind == b"S":
            self.socketFrame(data)
            return
        if kind != b"C":
            _close(self.transport)
            return
        callId = data[1:9]

        def reply(answer: bytes) -> None:
            if self.connected:
                self.sendString(b"R" + callId + answer)  # type: ignore[no-untyped-call]

        def failed(failure: Any) -> None:
            _log.failure("Serving a cluster call failed", failure)
            _close(self.transport)

        self.serve(data[9:], self).addCallbacks(reply, failed)


class WireServerFactory(protocol.Factory):
    """The node's internal endpoint: ``serve(call, channel)`` answers each call."""

    noisy = False

    def __init__(self, serve: Callable[[bytes, Channel], "Deferred[bytes]"], secret: str) -> None:
        self.serve = serve
        self.secret = secret.encode("utf-8")

    def buildProtocol(self, addr: Any) -> protocol.Protocol:
        return _ServerSide(self.serve, self.secret)


class _ClientSide(Channel):
    def __init__(self, client: "CallClient", address: str) -> None:
        Channel.__init__(self)
        self.client = client
        self.address = address
        self.pending: dict[bytes, Deferred[bytes]] = {}

    def connectionMade(self) -> None:
        self.sendString(HELLO + self.client.secret.encode("utf-8"))  # type: ignore[no-untyped-call]

    def acceptsEarly(self) -> bool:
        return True

    def call(self, body: bytes) -> Deferred[bytes]:
        client = self.client
        client.nextId += 1
        callId = _NUMBER.pack(client.nextId)
        d: Deferred[bytes] = Deferred()
        self.pending[callId] = d
        self.sendString(b"C" + callId + body)  # type: ignore[no-untyped-call]
        if client.callTimeout:
            timer = client.reactor.callLater(client.callTimeout, self._timedOut, callId)
            d.addBoth(_cancelling(timer))
        return d

    def _timedOut(self, callId: bytes) -> None:
        d = self.pending.pop(callId, None)
        if d is not None:
            d.errback(CallOutcomeUnknown(
                f"node {self.address} did not answer within {self.client.callTimeout:g} s"
            ))

    def stringReceived(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"R":
            d = self.pending.pop(data[1:9], None)
            if d is not None:
                d.callback(data[9:])
        elif kind == b"S":
            self.socketFrame(data)

    def connectionLost(self, reason: Any = None) -> None:
        self.client.lost(self)
        pending, self.pending = self.pending, {}
        why = reason.getErrorMessage() if reason is not None else ""
        for d in pending.values():
            d.errback(CallOutcomeUnknown(f"the connection to node {self.address} broke: {why}"))
        Channel.connectionLost(self, reason)


class CallClient:
    """One connection per other node, made on first use, made again after it broke."""

    def __init__(self, reactor: Any, secret: str, connectTimeout: float = 5.0, callTimeout: float = 120.0) -> None:
        self.reactor = reactor
        self.secret = secret
        self.connectTimeout = connectTimeout
        #: Seconds a call may wait for its reply (0: forever).
        self.callTimeout = callTimeout
        self.nextId = 0
        self._connections: dict[str, _ClientSide] = {}
        self._connecting: dict[str, list[Deferred[_ClientSide]]] = {}

    def call(self, address: str, body: bytes) -> Deferred[tuple[Channel, bytes]]:
        """Send a call to the node at ``address``; fires with the channel it went on and the
        reply."""
        connection = self._connections.get(address)
        if connection is not None:
            return _withChannel(connection, connection.call(body))
        return self._connect(address).addCallback(lambda c: _withChannel(c, c.call(body)))

    def _connect(self, address: str) -> Deferred[_ClientSide]:
        waiter: Deferred[_ClientSide] = Deferred()
        waiting = self._connecting.get(address)
        if waiting is not None:
            waiting.append(waiter)
            return waiter
        waiting = self._connecting[address] = [waiter]
        host, _, port = address.rpartition(":")
        endpoint = TCP4ClientEndpoint(self.reactor, host, int(port), timeout=self.connectTimeout)
        factory = protocol.Factory.forProtocol(lambda: _ClientSide(self, address))
        factory.noisy = False

        def connected(connection: _ClientSide) -> None:
            del self._connecting[address]
            self._connections[address] = connection
            for w in waiting:
                w.callback(connection)

        def failed(failure: Any) -> None:
            del self._connecting[address]
            for w in waiting:
                w.errback(WireBroken(f"cannot connect to node {address}: {failure.getErrorMessage()}"))

        endpoint.connect(factory).addCallbacks(connected, failed)
        return waiter

    def lost(self, connection: _ClientSide) -> None:
        if self._connections.get(connection.address) is connection:
            del self._connections[connection.address]

    def close(self) -> None:
        for connection in list(self._connections.values()):
            _close(connection.transport)
        self._connections.clear()

    def connectionTo(self, address: str) -> Optional[Channel]:
        return self._connections.get(address)


def _withChannel(channel: Channel, d: "Deferred[bytes]") -> "Deferred[tuple[Channel, bytes]]":
    return d.addCallback(lambda data: (channel, data))


def _cancelling(timer: Any) -> Callable[[Any], Any]:
    def cancel(result: Any) -> Any:
        if timer.active():
            timer.cancel()
        return result

    return cancel


def _close(transport: Any) -> None:
    if transport is not None:
        transport.loseConnection()
