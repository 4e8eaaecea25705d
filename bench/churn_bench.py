"""CPU per WebSocket connection's whole life, in-process: dotwist's seed against a plain Autobahn echo.

    .venv/bin/python bench/churn_bench.py [--lives N] [--against DIR]

One life is what ``bench/run``'s churn figure does over a socket: the HTTP upgrade request, the
``101``, one 32-byte text echo, the client's close frame and the server's reply, and the connection
going away. Here the bytes go through ``dataReceived`` on in-memory transports (no sockets, no
kernel, no load generator), so the figure is the Python CPU per life (``time.process_time``,
garbage collection included), median of 7 fresh subprocesses per server, run interleaved. It is far steadier than the socket
figure on a shared machine, and it leaves out the kernel's share (accept, close, TIME_WAIT), which
the socket figure includes.

Rows: the plain Autobahn echo server as shipped (the reference of ``bench/run``), and dotwist
serving the seed through the whole path: twisted.web, Klein, the Worker, the namespace, the object,
the handover to Autobahn, the object's listeners; with Twisted's coroutine driver (what other
reactors use) and with the asyncio runner (what ``twistd dotwist`` uses on its asyncio reactor),
here on a ``ClockLoop`` of the same clock.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inprocess  # noqa: E402

CHILD = r'''
import os, sys, time
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport, MemoryReactorClock
from twisted.python.failure import Failure

kind, N = sys.argv[1], int(sys.argv[2])
clock = MemoryReactorClock()
path = "/websocket"


class Transport(StringTransport):
    def unregisterProducer(self):
        self.producer = None


def masked(opcode, payload):
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


UPGRADE = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % path).encode()
MESSAGE = masked(1, b"x" * 32)
CLOSE = masked(8, (1000).to_bytes(2, "big"))
peer = IPv4Address("TCP", "127.0.0.1", 40000)
host = IPv4Address("TCP", "127.0.0.1", 8080)

if kind == "autobahn":
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)

    factory = WebSocketServerFactory(reactor=clock)
    factory.protocol = Echo
    factory.startFactory()
    entry = factory
else:
    from dotwist.examples import websocket_server
    from dotwist.server import makeSite
    from dotwist.worker import Runtime

    runner = None
    if kind == "seed-aio":  # the asyncio runner, as twistd runs it, on a loop of the clock
        from dotwist.handlers import AsyncioRunner
        from dotwist.testing.clock import ClockLoop
        runner = AsyncioRunner(loop=ClockLoop(clock))
    runtime = Runtime(websocket_server.app, clock, runner=runner)
    site, factory = makeSite(runtime, reactor=clock)
    factory.startFactory()
    runtime.start()
    entry = site


def life():
    transport = Transport(hostAddress=host, peerAddress=peer)
    protocol = entry.buildProtocol(peer)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    protocol.dataReceived(UPGRADE)
    ws = transport.protocol  # the handover replaces the HTTP channel with the WebSocket protocol
    ws.dataReceived(MESSAGE)
    ws.dataReceived(CLOSE)
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 101"), out[:120]
    assert transport.disconnecting, out
    ws.connectionLost(Failure(ConnectionDone()))
    return out


first = life()
assert b"x" * 32 in first, first
for i in range(300):
    life()
start = time.process_time()
for i in range(N):
    life()
    if i % 100 == 0:
        clock.advance(0)
print((time.process_time() - start) / N * 1e6)
'''


def main() -> None:
    lives = int(sys.argv[sys.argv.index("--lives") + 1]) if "--lives" in sys.argv else 3_000
    names = {
        "autobahn": "plain Autobahn echo (reference)",
        "seed": "dotwist seed (Worker -> object)",
        "seed-aio": "dotwist seed, asyncio runner",
    }
    seeds = ["seed", "seed-aio"]
    rows = inprocess.medians(CHILD, inprocess.withAgainst(["autobahn", *seeds], names, seeds), lives)
    inprocess.report(rows, names, "connection life", "lives/s", 0, "churn.json", {"lives": lives})


if __name__ == "__main__":
    main()
