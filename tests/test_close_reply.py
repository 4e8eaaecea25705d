"""The reply to a client's close frame follows the compatibility date, as on Cloudflare: from
2026-04-07 (and with no date) the runtime echoes the client's code and reason at once; before, the
application's close() sends the reply."""

import datetime

import pytest
import pytest_twisted
from twisted.internet import reactor

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint
from dotwist.compat_flags import Compatibility, resolveFlags
from dotwist.config import Limits
from dotwist.testing import FakeConnection, Harness
from dotwist.websocket import CLOSED, CLOSING, closeReceived

from support import connectWS


class Room(DurableObject):
    """Answers a client's close with its own reason; or not at all for the room named "mute"."""

    events: list = []

    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()
        mute = request.url.endswith("/mute")

        def closed(event):
            type(self).events.append((event.code, event.reason, server.readyState))
            if not mute:
                server.close(event.code if event.code != 1005 else 1000, "app says")

        server.addEventListener("close", closed)
        return Response(None, status=101, webSocket=client)


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.ROOMS.getByName("r").fetch(request)


async def serveWith(compatibility, limits=None):
    harness = Harness(
        App(Front, durableObjects={"ROOMS": Room}), transport="tcp", realTime=True, limits=limits,
        compatibility=compatibility, reactor=reactor,
    )
    return harness.service, harness.port


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("compatibility", [None, Compatibility(datetime.date(2026, 4, 7))])
async def test_close_frame_is_echoed_with_its_code_and_reason(compatibility):
    """With no compatibility date, or one from 2026-04-07: a client closing with 4000 "custom"
    gets 4000 "custom" back, and the close event sees readyState CLOSED (nothing to answer)."""
    Room.events = []
    service, port = await serveWith(compatibility)
    try:
        client = await connectWS(port)
        client.sendClose(4000, "custom")
        wasClean, code, reason = await client.closed
        assert (wasClean, code, reason) == (True, 4000, "custom")
        empty = await connectWS(port)
        empty.sendClose()
        assert (await empty.closed)[:2] == (True, None)  # no code given: none echoed
    finally:
        await service.stopService()
    assert Room.events[0] == (4000, "custom", CLOSED)


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(
    "compatibility",
    [
        resolveFlags(datetime.date(2025, 11, 2), []),
        resolveFlags(datetime.date(2026, 5, 1), ["web_socket_manual_reply_to_close"]),
    ],
)
async def test_before_2026_04_07_the_application_answers_the_close(compatibility):
    """With an earlier date (or web_socket_manual_reply_to_close), the runtime does not answer:
    the close event sees readyState CLOSING, and the application's close(code, reason) is the
    reply the client gets."""
    Room.events = []
    service, port = await serveWith(compatibility)
    try:
        client = await connectWS(port)
        client.sendClose(4000, "custom")
        assert await client.closed == (True, 4000, "app says")
    finally:
        await service.stopService()
    assert Room.events == [(4000, "custom", CLOSING)]


@pytest_twisted.ensureDeferred
async def test_a_close_nobody_answers_is_dropped_after_the_close_handshake_timeout():
    """Manual reply and an application that never answers: the connection is dropped after the
    close handshake timeout instead of staying half open."""
    Room.events = []
    compatibility = resolveFlags(datetime.date(2025, 1, 1), [])
    service, port = await serveWith(compatibility, Limits(closeHandshakeTimeout=0.2))
    try:
        client = await connectWS(port, "/mute")
        client.sendClose(4000, "custom")
        wasClean, code, reason = await client.closed
        assert not wasClean and code != 4000
    finally:
        await service.stopService()
    assert Room.events == [(4000, "custom", CLOSING)]


def test_close_received_leaves_the_reply_to_close():
    """In memory: after closeReceived the server end is CLOSING, its close() sends the reply and
    makes it CLOSED, a second close() and the connection's end add nothing."""
    client, server = WebSocketPair()
    server.accept()
    events = []
    server.addEventListener("close", lambda e: events.append((e.code, e.reason, server.readyState)))
    connection = FakeConnection(client, 1 << 20)
    closeReceived(client, 4001, "client")
    assert events == [(4001, "client", CLOSING)]
    server.send("still allowed: the outgoing half is open")
    server.close(4002, "reply")
    server.close(4003, "ignored")
    assert server.readyState == CLOSED
    assert connection.closes == [(4002, "reply")]
    connection.close(4001, "client")
    assert len(events) == 1
    with pytest.raises(TypeError, match="after close"):
        server.send("late")
