"""CPU per WebSocket message, in-process: dotwist's whole path against a plain Autobahn echo.

    .venv/bin/python bench/msgpath_bench.py [--messages N]

Each server is fed N masked 32-byte text frames through ``dataReceived`` on an in-memory
transport (no sockets, no reactor), after a real opening handshake; the CPU time per message
(``time.process_time``) is reported, median of 5 runs, each in a fresh subprocess so that one
server's patches or warm caches cannot help another. This isolates the per-message cost of the
code paths from the kernel and the load generator, so it is far less noisy than the socket
benchmarks of ``bench/run`` on a shared machine; it does not replace them.

Rows: the plain Autobahn echo server as shipped (the reference of ``bench/run``), dotwist's seed
(Worker -> object listener -> ``server.send``), and dotwist's conformance echo app.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

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
    runtime.fetch(Request._fromWire("http://h" + path, "GET", Headers({"Upgrade": "websocket"}), None)).addBoth(box.append)
    proto = factory.buildProtocol(None)
    proto._clientEnd, proto._response = box[0].webSocket, box[0]
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


def measure(kind: str, messages: int) -> float:
    output = subprocess.run([sys.executable, "-c", CHILD, kind, str(messages)], check=True, capture_output=True, text=True)
    return float(output.stdout.strip())


def main() -> None:
    messages = int(sys.argv[sys.argv.index("--messages") + 1]) if "--messages" in sys.argv else 30_000
    rows = {}
    for kind in ("autobahn", "seed", "echo"):
        rows[kind] = statistics.median(measure(kind, messages) for _ in range(5))
    names = {"autobahn": "plain Autobahn echo (reference)", "seed": "dotwist seed", "echo": "dotwist echo app"}
    print("| server | CPU per message (µs) | messages/s of one core | vs reference |")
    print("|---|---:|---:|---:|")
    for kind, micros in rows.items():
        print(f"| {names[kind]} | {micros:.1f} | {1e6 / micros:,.0f} | {rows['autobahn'] / micros:.2f}× |")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "msgpath.json"), "w") as f:
        json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "messages": messages, "microsPerMessage": rows}, f, indent=2)


if __name__ == "__main__":
    main()
