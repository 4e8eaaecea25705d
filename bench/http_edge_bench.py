"""CPU per HTTP request, in-process: dotwist's checked channel against twisted.web's own.

    .venv/bin/python bench/http_edge_bench.py [--requests N]

What ``dotwist._http`` adds to every request (a timer per request, the framing checks, building
and checking the URL) measured against stock ``twisted.web.server.Site`` and ``HTTPChannel`` serving
the same trivial resource. Requests go through ``dataReceived`` on an in-memory transport (no
sockets), timers on a ``task.Clock``; CPU per request (``time.process_time``), median of 7 runs
interleaved across kinds, each in a fresh subprocess (``inprocess.py``).

Rows: a GET on a kept-alive connection, and a connection carrying one GET (connect, request,
response, close), for each channel.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import inprocess  # noqa: E402

CHILD = r'''
import sys, time
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site
kind, N = sys.argv[1], int(sys.argv[2])

class Hello(Resource):
    isLeaf = True
    def render_GET(self, request):
        return b"hello"

clock = Clock()
if kind.startswith("dotwist"):
    from dotwist._http import LimitedSite
    site = LimitedSite(Hello(), reactor=clock)
else:
    site = Site(Hello(), reactor=clock)
    site.timeOut = None
address = IPv4Address("TCP", "127.0.0.1", 40000)
request = b"GET /hello/world?x=1 HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n"

def connection():
    channel = site.buildProtocol(address)
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport

if kind.endswith("keepalive"):
    channel, transport = connection()
    def one(i):
        channel.dataReceived(request)
        if i % 1000 == 0:
            transport.clear()
else:
    def one(i):
        channel, transport = connection()
        channel.dataReceived(request)
        channel.connectionLost(None)

for i in range(2000):
    one(i)
start = time.process_time()
for i in range(N):
    one(i)
print((time.process_time() - start) / N * 1e6)
'''


def main() -> None:
    requests = int(sys.argv[sys.argv.index("--requests") + 1]) if "--requests" in sys.argv else 20_000
    kinds = ["twisted-keepalive", "dotwist-keepalive", "twisted-connection", "dotwist-connection"]
    rows = inprocess.medians(CHILD, kinds, requests)
    names = {
        "twisted-keepalive": "twisted.web, kept-alive GET (reference)",
        "dotwist-keepalive": "dotwist._http, kept-alive GET",
        "twisted-connection": "twisted.web, connection with one GET",
        "dotwist-connection": "dotwist._http, connection with one GET",
    }
    inprocess.report(rows, names, "request", "requests/s", 1, "http_edge.json", {"requests": requests})


if __name__ == "__main__":
    main()
