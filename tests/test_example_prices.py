"""dotwist/examples/prices.py, the asyncio example of docs/asyncio.md, does what the page says:
on the real asyncio reactor, against an upstream served on loopback."""

from __future__ import annotations

import json

import pytest_twisted
import treq
from twisted.internet import defer, endpoints, reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

from dotwist.examples import prices

from support import serve


class Upstream(Resource):
    """Answers ``GET /<symbol>`` with a price; fails the first ``failures`` requests with 500."""

    isLeaf = True

    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.failures = failures

    def render_GET(self, request):
        self.calls.append(request.path.decode())
        if len(self.calls) <= self.failures:
            request.setResponseCode(500)
            return b"down"
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(101.5).encode()


async def upstreamAt(failures: int = 0):
    upstream = Upstream(failures)
    port = await endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(upstream))
    return upstream, port


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_share_one_refresh_and_the_cache():
    """Five requests for one symbol at once: the upstream is asked once (the others wait for that
    refresh), all five get the price, and a later request is served from storage."""
    upstream, upstreamPort = await upstreamAt()
    app = prices.app.withBindings(vars={"UPSTREAM": f"http://127.0.0.1:{upstreamPort.getHost().port}"})
    service, port = await serve(app)
    try:
        url = f"http://127.0.0.1:{port}/price/abc"
        responses = await defer.gatherResults([treq.get(url, persistent=False) for _ in range(5)])
        bodies = [await r.json() for r in responses]
        assert bodies == [{"symbol": "ABC", "price": 101.5}] * 5
        assert upstream.calls == ["/ABC"]
        again = await (await treq.get(url, persistent=False)).json()
        assert again == {"symbol": "ABC", "price": 101.5} and upstream.calls == ["/ABC"]
    finally:
        await service.stopService()
        await upstreamPort.stopListening()


@pytest_twisted.ensureDeferred
async def test_failing_upstream_is_retried_after_sleeping():
    """The upstream fails twice: the object sleeps and retries, and the third try's price comes
    back; an upstream that never answers gives 503."""
    upstream, upstreamPort = await upstreamAt(failures=2)
    app = prices.app.withBindings(vars={"UPSTREAM": f"http://127.0.0.1:{upstreamPort.getHost().port}"})
    service, port = await serve(app)
    try:
        response = await treq.get(f"http://127.0.0.1:{port}/price/xyz", persistent=False)
        assert (response.code, await response.json()) == (200, {"symbol": "XYZ", "price": 101.5})
        assert upstream.calls == ["/XYZ"] * 3
        upstream.failures = 100
        response = await treq.get(f"http://127.0.0.1:{port}/price/down", persistent=False)
        assert response.code == 503
    finally:
        await service.stopService()
        await upstreamPort.stopListening()


def test_docs_show_the_example_verbatim():
    """docs/asyncio.md shows the tested Prices class character for character."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    source = (root / "dotwist" / "examples" / "prices.py").read_text()
    block = source[source.index("class Prices(DurableObject):"):source.index("\n\n\napp = ")]
    assert block in (root / "docs" / "asyncio.md").read_text()
