"""The seed example over real loopback sockets, checked row by row against Cloudflare's runtime
(the table in docs/seed.md), with treq for HTTP and Autobahn's client for WebSockets."""

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.task import deferLater

from dotwist.examples import websocket_server

from support import connectWS, serve, turns

USAGE = """
This Durable Object supports the following endpoints:
  /websocket
    - Creates a WebSocket connection. Any messages sent to it are echoed with a prefix.
  /getCurrentConnections
    - A regular HTTP GET endpoint that returns the number of currently connected WebSocket clients.
"""


def connections(n):
    if n == 1:
        return "There is 1 WebSocket client connected to this Durable Object instance."
    return f"There are {n} WebSocket clients connected to this Durable Object instance."


@pytest_twisted.async_yield_fixture
async def seed():
    service, port = await serve(websocket_server.app)
    yield port
    await service.stopService()


async def get(port, path, method="GET", headers=None):
    response = await treq.request(method, f"http://127.0.0.1:{port}{path}", headers=headers, persistent=False)
    return response.code, await response.text("utf-8")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("method,path", [("GET", "/"), ("GET", "/anything/else"), ("POST", "/x"), ("DELETE", "/")])
async def test_any_other_path_gets_the_usage_text(seed, method, path):
    """Any path but the two endpoints, any method: 200 with the usage text, exactly."""
    assert await get(seed, path, method) == (200, USAGE)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("method,path", [("GET", "/websocket"), ("POST", "/websocket"), ("GET", "/foo/websocket")])
async def test_websocket_path_without_upgrade_is_426(seed, method, path):
    """/websocket (any prefix, any method) without Upgrade: websocket gets 426 and the message."""
    assert await get(seed, path, method) == (426, "Durable Object expected Upgrade: websocket")


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("path", ["/websocket?x=1", "/websocket/", "/WebSocket"])
async def test_match_is_endswith_on_the_full_url(seed, path):
    """The match is url.endswith("/websocket") on the full URL, so these get the usage text."""
    assert await get(seed, path) == (200, USAGE)


@pytest_twisted.ensureDeferred
async def test_echo_with_prefix_and_connection_counts(seed):
    """Echo with the prefix (empty and non-ASCII too); the count follows 0, 1, 2, 1, 0, and drops
    at once when a client closes with 1000."""
    assert await get(seed, "/getCurrentConnections") == (200, connections(0))
    first = await connectWS(seed)
    assert await get(seed, "/getCurrentConnections") == (200, connections(1))
    second = await connectWS(seed)
    assert await get(seed, "/getCurrentConnections") == (200, connections(2))
    for text in ("hi", "", "héllo wörld ✓ 😀"):
        first.sendMessage(text.encode("utf-8"))
        assert await first.messages.get() == f"[Durable Object]: {text}"
    first.sendClose(1000, "bye")
    wasClean, code, reason = await first.closed
    assert wasClean and code == 1000
    assert await get(seed, "/getCurrentConnections") == (200, connections(1))
    second.sendClose(1000)
    await second.closed
    assert await get(seed, "/getCurrentConnections") == (200, connections(0))


@pytest_twisted.ensureDeferred
async def test_binary_message_is_echoed_as_python_text(seed):
    """A binary message comes back as text, formatted as Python formats bytes (documented)."""
    client = await connectWS(seed)
    client.sendMessage(b"\x00\x01", isBinary=True)
    assert await client.messages.get() == "[Durable Object]: b'\\x00\\x01'"
    client.sendClose(1000)
    await client.closed


@pytest_twisted.ensureDeferred
async def test_dropped_tcp_connection_is_cleaned_up(seed):
    """A client that vanishes without a close frame is noticed: the count returns to 0."""
    client = await connectWS(seed)
    assert await get(seed, "/getCurrentConnections") == (200, connections(1))
    client.transport.abortConnection()
    await client.closed
    for _ in range(100):
        if (await get(seed, "/getCurrentConnections"))[1] == connections(0):
            break
        await turns()
    assert await get(seed, "/getCurrentConnections") == (200, connections(0))


@pytest_twisted.ensureDeferred
async def test_ping_is_answered_with_same_payload(seed):
    """A ping gets a pong with the same payload."""
    client = await connectWS(seed)
    client.sendPing(b"are you there")
    assert await client.pongs.get() == b"are you there"
    client.sendClose(1000)
    await client.closed


@pytest_twisted.ensureDeferred
async def test_permessage_deflate_is_negotiated(seed):
    """permessage-deflate is accepted when the client offers it, and messages still echo."""
    client = await connectWS(seed, deflate=True)
    assert [e.EXTENSION_NAME for e in client.websocket_extensions_in_use] == ["permessage-deflate"]
    client.sendMessage(("x" * 5000).encode())
    assert await client.messages.get() == "[Durable Object]: " + "x" * 5000
    client.sendClose(1000)
    await client.closed


@pytest_twisted.ensureDeferred
async def test_autobahn_client_upgrade_header_is_refused_as_cloudflare_does(seed):
    """The seed compares Upgrade to "websocket" exactly, as on Cloudflare; Autobahn's client sends
    "WebSocket", so its handshake gets the 426 (the seed's code, faithfully ported)."""
    with pytest.raises(ConnectionError):
        await connectWS(seed, lowercaseUpgrade=False)
    assert await get(seed, "/websocket", headers={"Upgrade": "WebSocket"}) == (
        426,
        "Durable Object expected Upgrade: websocket",
    )
