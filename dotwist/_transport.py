"""A TCP transport that writes at once when it can, and the endpoint wrapper that installs it.

Twisted's TCP transport never writes in ``write()``: it appends to a buffer and registers the socket
for writability (``epoll_ctl``); the reactor then reports the socket writable, the transport sends
and unregisters it (``epoll_ctl`` again). For a WebSocket echo that is a second trip through the
reactor loop and two system calls per message, about a tenth of the server's CPU, and a loop
iteration of latency.

``DirectWriteServer.write`` sends straight away when nothing is buffered (the common case: the
kernel's send buffer has room), and falls back to Twisted's own buffering for whatever the kernel did
not take, and for every other case (TLS started, a write already pending, the connection closing, a
send error: the buffered path then reports the loss as usual). Order is kept: a direct send only
happens when nothing is waiting ahead of it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer


class DirectWriteServer(tcp.Server):
    """``tcp.Server`` whose ``write`` (and ``writeSequence``) sends immediately when its buffer is
    empty."""

    def write(self, data: bytes) -> None:
        if (
            type(data) is not bytes
            or self._tempDataLen
            or self.offset != len(self.dataBuffer)
            or self.TLS
            or self.disconnecting
            or not self.connected
            or self._writeDisconnected
        ):
            tcp.Server.write(self, data)
            return
        try:
            sent = self.socket.send(data)
        except OSError:
            # EAGAIN, EINTR, or a dead connection: the buffered path retries, or reports the loss
            # through connectionLost the way Twisted always does.
            sent = 0
        if sent < len(data):
            tcp.Server.write(self, data[sent:])

    def writeSequence(self, iovec: Any) -> None:
        # twisted.web writes a response's status line and headers as a sequence: joined, they
        # take the same direct path as ``write`` (one send, no writability registration).
        self.write(b"".join(iovec))


def useDirectWrites(port: Any) -> Any:
    """Make a listening port build ``DirectWriteServer`` transports, if it is a plain TCP port."""
    if isinstance(port, tcp.Port) and port.transport is tcp.Server:
        port.transport = DirectWriteServer
    return port


@implementer(IStreamServerEndpoint)
class DirectWriteEndpoint:
    """Wraps a server endpoint; TCP ports it listens on get ``DirectWriteServer`` connections.
    Other kinds of port (UNIX sockets, ...) are left exactly as the endpoint made them."""

    def __init__(self, wrapped: IStreamServerEndpoint) -> None:
        self._wrapped = wrapped

    def listen(self, protocolFactory: Any) -> "Deferred[Any]":
        return self._wrapped.listen(protocolFactory).addCallback(useDirectWrites)
