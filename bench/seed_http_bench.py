"""CPU per HTTP request through a Worker to an object, in-process: the seed's ``/getCurrentConnections``.

    .venv/bin/python bench/seed_http_bench.py [--requests N] [--against DIR]

What ``bench/run``'s ``http_10`` figure asks of dotwist (the Worker forwards the request to the
``idFromName("foo")`` object, which answers its socket count), without sockets: requests go through
``dataReceived`` on an in-memory transport, timers on a ``MemoryReactorClock``; CPU per request
(``time.process_time``), median of 7 runs interleaved across kinds, each in a fresh subprocess
(``inprocess.py``). ``--against DIR`` adds the same rows for another checkout (say the tree before
a change), measured in the same run.

Rows: a plain twisted.web ``Site`` answering a count from a trivial resource (the reference: what
twisted.web itself costs), and the seed on a kept-alive connection and with one connection per
request (connect, request, response, close), each with Twisted's coroutine driver (what other
reactors use) and with the asyncio runner (what ``twistd dotwist`` uses, on its asyncio reactor),
here on a ``ClockLoop`` of the same clock.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inprocess  # noqa: E402

CHILD = r'''
import sys, time
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

kind, N = sys.argv[1], int(sys.argv[2])
clock = MemoryReactorClock()
peer = IPv4Address("TCP", "127.0.0.1", 40000)
host = IPv4Address("TCP", "127.0.0.1", 8080)
REQUEST = b"GET /getCurrentConnections HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"

if kind == "twisted":
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Count(Resource):
        isLeaf = True
        def render_GET(self, request):
            return b"0"

    site = Site(Count(), reactor=clock)
else:
    from dotwist.examples import websocket_server
    from dotwist.server import makeSite
    from dotwist.worker import Runtime

    runner = None
    if kind.startswith("seed-aio"):  # the asyncio runner, as twistd runs it, on a loop of the clock
        from dotwist.handlers import AsyncioRunner
        from dotwist.testing.clock import ClockLoop
        runner = AsyncioRunner(loop=ClockLoop(clock))
    runtime = Runtime(websocket_server.app, clock, runner=runner)
    site, factory = makeSite(runtime, reactor=clock)
    factory.startFactory()
    runtime.start()


def connect():
    transport = StringTransport(hostAddress=host, peerAddress=peer)
    protocol = site.buildProtocol(peer)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return transport, protocol


if kind.endswith("-conn"):
    def one():
        transport, protocol = connect()
        protocol.dataReceived(REQUEST)
        protocol.connectionLost(Failure(ConnectionDone()))
        return transport
else:
    kept = connect()
    def one():
        kept[1].dataReceived(REQUEST)
        return kept[0]

out = one().value()
assert out.startswith(b"HTTP/1.1 200"), out[:200]
for i in range(500):
    one()
start = time.process_time()
for i in range(N):
    transport = one()
    if i % 100 == 0:
        transport.clear()
        clock.advance(0)
print((time.process_time() - start) / N * 1e6)
'''


def main() -> None:
    requests = int(sys.argv[sys.argv.index("--requests") + 1]) if "--requests" in sys.argv else 20_000
    names = {
        "twisted": "plain twisted.web, a trivial resource (reference)",
        "seed": "dotwist seed, /getCurrentConnections, keep-alive",
        "seed-conn": "dotwist seed, /getCurrentConnections, a connection per request",
        "seed-aio": "dotwist seed, keep-alive, asyncio runner",
        "seed-aio-conn": "dotwist seed, a connection per request, asyncio runner",
    }
    seeds = ["seed", "seed-conn", "seed-aio", "seed-aio-conn"]
    kinds = inprocess.withAgainst(["twisted", *seeds], names, seeds)
    rows = inprocess.medians(CHILD, kinds, requests)
    inprocess.report(rows, names, "request", "requests/s", 1, "seed_http.json", {"requests": requests})


if __name__ == "__main__":
    main()
