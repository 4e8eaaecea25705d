"""CPU per WebSocket message, in-process: dotwist's whole path against a plain Autobahn echo.

    .venv/bin/python bench/msgpath_bench.py [--messages N] [--against DIR]

Each server is fed N masked 32-byte text frames through ``dataReceived`` on an in-memory
transport (no sockets, no reactor), after a real opening handshake; the CPU time per message
(``time.process_time``) is reported, median of 7 runs interleaved across servers, each in a
fresh subprocess so that one server's patches or warm caches cannot help another. This isolates the per-message cost of the
code paths from the kernel and the load generator, so it is far less noisy than the socket
benchmarks of ``bench/run`` on a shared machine; it does not replace them.

Rows: the plain Autobahn echo server as shipped (the reference of ``bench/run``), dotwist's seed
(Worker -> object listener -> ``server.send``), and dotwist's conformance echo app.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inprocess  # noqa: E402

CHILD = r'''
import os, sys, time
from twisted.internet.testing import StringTransport, MemoryReactorClock
kind, N = sys.argv[1], int(sys.argv[2])
if kind == "autobahn":
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    class Echo(WebSocketServerProtocol):
        def onMessage(self, payload, isBinary):
            self.sendMessage(payload, isBinary)
    factory = WebSocketServerFactory(reactor=MemoryReactorClock())
    factory.protocol = Echo
    factory.startFactory()
    proto = factory.buildProtocol(None)
    path = "/"
else:
    from dotwist import Headers, Request
    from dotwist.examples import echo, websocket_server
    from dotwist.server import makeSite
    from dotwist.worker import Runtime
    clock = MemoryReactorClock()
    app, path = (websocket_server.app, "/websocket") if kind == "seed" else (echo.app, "/echo")
    runtime = Runtime(app, clock)
    site, factory = makeSite(runtime, reactor=clock)
    factory.startFactory()
    box = []
    runtime.fetch(Request.fromWire("http://h" + path, "GET", Headers({"Upgrade": "websocket"}), None)).addBoth(box.append)
    proto = factory.buildProtocol(None)
    proto.clientEnd, proto.response = box[0].webSocket, box[0]
transport = StringTransport()
proto.makeConnection(transport)
proto.dataReceived(("GET %s HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" % path).encode())
assert transport.value().startswith(b"HTTP/1.1 101"), transport.value()[:80]
transport.clear()
mask = os.urandom(4)
frame = bytes([0x81, 0x80 | 32]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(b"x" * 32))
for i in range(2000):
    proto.dataReceived(frame)
transport.clear()
start = time.process_time()
for i in range(N):
    proto.dataReceived(frame)
    if i % 1000 == 0:
        transport.clear()
print((time.process_time() - start) / N * 1e6)
'''


def main() -> None:
    messages = int(sys.argv[sys.argv.index("--messages") + 1]) if "--messages" in sys.argv else 30_000
    names = {"autobahn": "plain Autobahn echo (reference)", "seed": "dotwist seed", "echo": "dotwist echo app"}
    rows = inprocess.medians(CHILD, inprocess.withAgainst(["autobahn", "seed", "echo"], names, ["seed", "echo"]), messages)
    inprocess.report(rows, names, "message", "messages/s", 1, "msgpath.json", {"messages": messages})


if __name__ == "__main__":
    main()
