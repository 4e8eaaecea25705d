"""Relaxed handler calls: fetch, alarm and the webSocket* handlers get only the arguments they
declare, as Cloudflare's Python Workers call them; RPC methods stay strict."""

import pytest

from dotwist import (
    App,
    DurableObject,
    Headers,
    Request,
    Response,
    WebSocketPair,
    WorkerEntrypoint,
)
from dotwist import relaxed
from dotwist.testing import connectWebSocket, liveActor, makeRuntime, result

UPGRADE = Headers({"Upgrade": "websocket"})


class Bare(DurableObject):
    """Every handler declared with as few parameters as Cloudflare's published code uses."""

    log: list = []

    async def fetch(self):
        if not await self.ctx.storage.getAlarm():
            await self.ctx.storage.setAlarm(1000)
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, webSocket=client)

    async def alarm(self):
        type(self).log.append("alarm")
        await self.ctx.storage.put("alarmed", True)

    async def webSocketMessage(self, ws):
        type(self).log.append("message")
        ws.send("got one")

    async def webSocketClose(self, ws, code):
        type(self).log.append(("close", code))


class Forward(WorkerEntrypoint):
    async def fetch(self):  # a Worker's fetch that ignores the request
        return await self.env.NS.getByName("x").fetch("http://h/")


def test_handlers_without_their_trailing_parameters_run(clock):
    """`fetch(self)`, `alarm(self)`, `webSocketMessage(self, ws)` and `webSocketClose(self, ws,
    code)` run; the alarm's work is done once instead of raising TypeError on every retry."""
    Bare.log = []
    runtime = makeRuntime(App(Forward, durableObjects={"NS": Bare}), clock=clock)
    pending = runtime.fetch(Request("http://h/", headers=UPGRADE))
    clock.advance(0)  # the alarm write commits; the 101 leaves after it
    connection = connectWebSocket(result(pending))
    connection.send("hi")
    assert connection.messages == ["got one"]
    clock.advance(2)
    clock.advance(0)
    connection.close(4000, "bye")
    assert Bare.log == ["message", "alarm", ("close", 4000)]
    store = liveActor(runtime, runtime.env.NS.getByName("x")).storage().store
    assert store.get("alarmed") is True and store.getAlarm() is None


class Strict(DurableObject):
    async def alarm(self, alarmInfo, extra):  # declares more than the runtime gives
        raise AssertionError("never called")

    async def ping(self, value):
        return value


def test_too_few_parameters_still_fail_and_rpc_is_strict(clock):
    """Missing arguments are not filled in (TypeError, as with Pyodide's relaxed_call), and RPC
    methods get exactly what the caller sent."""
    runtime = makeRuntime({"NS": Strict}, clock=clock)
    stub = runtime.env.NS.getByName("s")
    with pytest.raises(TypeError):
        result(stub.ping(1, 2))
    assert result(stub.ping(7)) == 7
    namespace = runtime.registry.namespaces["Strict"]
    actor = runtime.registry.actorFor(namespace, stub.id)
    failure = []
    actor.runHandler("alarm", (object(),)).addErrback(failure.append)
    assert failure and failure[0].check(TypeError)


def test_star_args_and_static_methods_get_what_they_accept():
    """A handler taking *args gets every argument; a staticmethod's limit is its own parameters."""

    class Handlers:
        def message(self, *args):
            return args

        @staticmethod
        def close(ws, code):
            return (ws, code)

    h = Handlers()
    assert relaxed.trim(h, "message", h.message, (1, 2, 3)) == (1, 2, 3)
    assert relaxed.trim(h, "close", h.close, (1, 2, 3, 4)) == (1, 2)


def test_limit_is_computed_once_per_class(monkeypatch):
    """The signature is inspected on the first call for a class and handler, not on each call."""
    calls = []
    original = relaxed._limitOf

    def counting(method):
        calls.append(method)
        return original(method)

    monkeypatch.setattr(relaxed, "_limitOf", counting)

    class Once:
        def alarm(self):
            return None

    for _ in range(3):
        instance = Once()
        assert relaxed.trim(instance, "alarm", instance.alarm, ("info",)) == ()
    assert len(calls) == 1
