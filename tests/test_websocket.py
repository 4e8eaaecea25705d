"""WebSocketPair semantics, with the client end joined to a recording transport (no network)."""

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, DurableObjectError, Request, Response, WebSocketPair, WorkerEntrypoint
from dotwist.examples import websocket_server
from dotwist.testing import FakeConnection, connectWebSocket, makeRuntime, result
from dotwist.websocket import CLOSED, CLOSING, OPEN

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade"}


def test_send_before_accept_is_refused():
    """send() on a server end that was never accepted is a clear TypeError."""
    client, server = WebSocketPair()
    with pytest.raises(TypeError, match="accept"):
        server.send("x")


def test_messages_sent_before_the_handshake_wait_for_the_connection():
    """What the server end sends before the client end is joined goes out, in order, on join."""
    client, server = WebSocketPair()
    server.accept()
    server.send("one")
    server.send(b"\x02")
    transport = FakeConnection(client, 1 << 20)
    server.send("three")
    assert transport.sent == [(b"one", False), (b"\x02", True), (b"three", False)]


def test_text_arrives_as_str_binary_as_bytes_and_close_once():
    """Text frames reach listeners as str, binary as bytes; the close event fires once with
    the peer's code, and close() afterwards does nothing."""
    client, server = WebSocketPair()
    events = []
    server.accept()
    server.addEventListener("message", lambda e: events.append(e.data))
    server.addEventListener("close", lambda e: (events.append((e.code, e.reason, e.wasClean)), server.close(e.code, "bye")))
    transport = FakeConnection(client, 1 << 20)
    transport.send("héllo")
    transport.send(b"\x00\xff")
    transport.close(1000, "done")
    transport.close(None, "", wasClean=False)
    assert events == ["héllo", b"\x00\xff", (1000, "done", True)]
    assert server.readyState == CLOSED and transport.closes == []


def test_vanished_peer_gives_error_then_close_1006():
    """A connection lost without a close frame gives an error event, then close 1006."""
    client, server = WebSocketPair()
    events = []
    server.accept()
    server.addEventListener("error", lambda e: events.append("error"))
    server.addEventListener("close", lambda e: events.append((e.code, e.wasClean)))
    FakeConnection(client, 1 << 20).close(None, "", wasClean=False)
    assert events == ["error", (1006, False)]


def test_close_validates_code_and_reason():
    """close() takes 1000 or 3000-4999 and a reason of at most 123 bytes."""
    client, server = WebSocketPair()
    server.accept()
    transport = FakeConnection(client, 1 << 20)
    with pytest.raises(TypeError, match="close code"):
        server.close(1006)
    with pytest.raises(TypeError, match="123"):
        server.close(1000, "x" * 124)
    server.close(4000, "done")
    assert server.readyState == CLOSING and transport.closes == [(4000, "done")]
    with pytest.raises(TypeError, match="after close"):
        server.send("late")


def test_listener_errors_do_not_stop_other_listeners():
    """A listener that raises is logged; the next listener still runs; async listeners run."""
    client, server = WebSocketPair()
    seen = []

    def broken(event):
        raise RuntimeError("listener bug")

    async def asyncListener(event):
        seen.append(("async", event.data))

    server.accept()
    server.addEventListener("message", broken)
    server.addEventListener("message", asyncListener)
    FakeConnection(client, 1 << 20).send("x")
    assert seen == [("async", "x")]


def seedUpgrade(runtime, path="/websocket"):
    return connectWebSocket(result(runtime.fetch(Request(f"http://h{path}", headers=UPGRADE))))


def count(runtime):
    response = result(runtime.fetch(Request("http://h/getCurrentConnections")))
    return response.body.decode()


def test_seed_counts_and_echoes_in_memory(clock):
    """The seed echoes with its prefix and counts sockets, with no network involved."""
    runtime = makeRuntime(websocket_server.app, clock=clock)
    assert count(runtime) == "There are 0 WebSocket clients connected to this Durable Object instance."
    t1 = seedUpgrade(runtime)
    assert count(runtime) == "There is 1 WebSocket client connected to this Durable Object instance."
    t2 = seedUpgrade(runtime)
    assert count(runtime) == "There are 2 WebSocket clients connected to this Durable Object instance."
    t1.send("hi")
    t1.send("")
    t2.send(b"\x01")
    assert t1.sent == [(b"[Durable Object]: hi", False), (b"[Durable Object]: ", False)]
    assert t2.sent == [(b"[Durable Object]: b'\\x01'", False)]
    t1.close(1000, "bye")
    t2.close(None, "", wasClean=False)
    assert count(runtime) == "There are 0 WebSocket clients connected to this Durable Object instance."


class Resettable(DurableObject):
    async def fetch(self, request):
        if request.url.endswith("/abort"):
            self.ctx.abort("test")
            return Response("aborted")
        client, server = WebSocketPair()
        server.accept()
        return Response(None, status=101, webSocket=client)


class Forward(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.NS.getByName("x").fetch(request)


def test_reset_object_closes_its_sockets_with_1011(clock):
    """When an object is reset, the sockets it accepted are closed with 1011."""
    runtime = makeRuntime(App(Forward, durableObjects={"NS": Resettable}), clock=clock)
    transport = seedUpgrade(runtime)
    with pytest.raises(DurableObjectError, match="test"):
        result(runtime.fetch(Request("http://h/abort")))
    assert transport.closes == [(1011, "Durable Object reset")]


class GatedEcho(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.gate = None

    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()

        def onMessage(event):
            if event.data == "block":
                self.gate = Deferred()
                self.ctx.blockConcurrencyWhile(lambda: self.gate)
            server.send(event.data)

        server.addEventListener("message", onMessage)
        return Response(None, status=101, webSocket=client)


def test_socket_messages_wait_at_the_input_gate_in_order(clock):
    """While the object's gate is closed, its socket messages wait and then arrive in order."""
    runtime = makeRuntime(App(Forward, durableObjects={"NS": GatedEcho}), clock=clock)
    transport = seedUpgrade(runtime)
    for text in ("a", "block", "b", "c"):
        transport.send(text)
    assert [p for p, _ in transport.sent] == [b"a", b"block"]
    actor = next(iter(runtime.registry.namespaces["GatedEcho"].actors.values()))
    actor.instance.gate.callback(None)
    assert [p for p, _ in transport.sent] == [b"a", b"block", b"b", b"c"]


def test_messages_for_a_never_accepted_end_are_bounded_then_1011():
    """A server end nobody accepts keeps what arrives for it, up to a bound; past it the
    connection closes with 1011 and nothing more is kept."""
    client, server = WebSocketPair()
    transport = FakeConnection(client, earlyLimit=10)
    transport.send("12345")
    transport.send(b"67890")
    assert transport.closes == []
    transport.send("x")
    transport.send("y")
    assert transport.closes == [(1011, "The WebSocket was not accepted")]
    # What was kept within the bound is still delivered if the end is accepted after all.
    got = []
    server.addEventListener("message", lambda e: got.append(e.data))
    server.accept()
    assert got == ["12345", b"67890"]
