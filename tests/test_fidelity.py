"""Where dotwist differed from Cloudflare's documented behaviour, each fixed: ctx.abort() stops
the object's code and fails the aborted call; getAlarm() inside alarm(); close codes a server may
send."""

import pytest

from dotwist import App, DurableObject, DurableObjectError, Response, WebSocketPair, WorkerEntrypoint
from dotwist.errors import DurableObjectAbort
from dotwist.testing import connectWebSocket, liveActor, makeRuntime, result


class Aborter(DurableObject):
    reached: list = []

    async def fetch(self, request):
        await self.ctx.storage.put("uncommitted", 1)
        self.ctx.abort("test abort reason")
        type(self).reached.append("after abort in fetch")
        return Response("ok")

    async def doAbort(self):
        try:
            self.ctx.abort("rpc reason")
        except Exception:  # an `except Exception` cannot swallow it
            type(self).reached.append("swallowed")
        type(self).reached.append("after abort in rpc")
        return "value"

    async def getCounter(self):
        value = (await self.ctx.storage.get("counter") or 0) + 1
        await self.ctx.storage.put("counter", value)
        return value

    async def peek(self):
        return await self.ctx.storage.get("uncommitted")


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.NS.getByName("a").fetch(request)


def runtimeFor(clock):
    Aborter.reached = []
    return makeRuntime(App(Front, durableObjects={"NS": Aborter}), clock=clock)


def test_abort_in_rpc_raises_for_the_caller_and_stops_the_method(clock):
    """An RPC that calls ctx.abort(reason) does not return its value: the caller gets a
    DurableObjectError with durableObjectReset and the reason; nothing after abort() ran, not even
    an `except Exception` around it; a new stub reaches a new instance."""
    runtime = runtimeFor(clock)
    stub = runtime.env.NS.getByName("a")
    first = stub.getCounter()
    clock.advance(0)
    assert result(first) == 1
    with pytest.raises(DurableObjectError, match="rpc reason") as info:
        result(stub.doAbort())
    assert info.value.durableObjectReset
    assert Aborter.reached == []
    second = runtime.env.NS.getByName("a").getCounter()
    clock.advance(0)
    assert result(second) == 2  # committed writes survive; the instance is new


def test_abort_in_fetch_gives_no_200_and_drops_uncommitted_writes(clock):
    """A stub.fetch whose object aborts fails (the Worker answers 500 from outside); the write
    made just before abort() is gone."""
    runtime = runtimeFor(clock)
    with pytest.raises(DurableObjectError, match="test abort reason") as info:
        result(runtime.env.NS.getByName("a").fetch("http://h/"))
    assert info.value.durableObjectReset
    assert Aborter.reached == []
    clock.advance(0)
    assert result(runtime.env.NS.getByName("a").peek()) is None


def test_abort_raises_a_base_exception_in_the_object():
    """What abort() raises inside the object is a BaseException carrying the reason."""
    assert issubclass(DurableObjectAbort, BaseException) and not issubclass(DurableObjectAbort, Exception)
    assert DurableObjectAbort("why").reason == "why"


class AlarmReader(DurableObject):
    seen: list = []

    async def fetch(self, request):
        await self.ctx.storage.setAlarm(int(request.url.rsplit("/", 1)[1]))
        return Response(str(await self.ctx.storage.getAlarm()))

    async def alarm(self):
        seen = type(self).seen
        seen.append(await self.ctx.storage.getAlarm())
        if len(seen) == 1:
            await self.ctx.storage.setAlarm(9000)
            seen.append(await self.ctx.storage.getAlarm())


def test_getAlarm_inside_alarm_is_none_until_the_handler_sets_one(clock):
    """Inside alarm(), getAlarm() returns None (the running alarm no longer counts), and the new
    time once the handler calls setAlarm; outside, it returns the stored alarm."""
    AlarmReader.seen = []
    runtime = makeRuntime({"NS": AlarmReader}, clock=clock)
    stub = runtime.env.NS.getByName("x")
    reply = stub.fetch("http://h/5000")
    clock.advance(0)
    assert result(reply).body == b"5000"
    clock.advance(5)
    clock.advance(0)
    assert AlarmReader.seen == [None, 9000]
    session = liveActor(runtime, stub).storage()
    assert result(session.api.getAlarm()) == 9000
    clock.advance(4)
    clock.advance(0)
    assert AlarmReader.seen == [None, 9000, None]
    assert result(session.api.getAlarm()) is None


class Closer(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()
        code = int(request.url.rsplit("/", 1)[1])
        server.close(code, "server says")
        return Response(None, status=101, webSocket=client)


@pytest.mark.parametrize("code", [1001, 1003, 1011, 1012, 2000, 4999])
def test_server_may_close_with_any_code_workerd_allows(clock, code):
    """close() accepts 1000-4999 except the four codes RFC 6455 forbids on the wire, as workerd
    does (published code closes with 1011 on errors)."""
    runtime = makeRuntime({"NS": Closer}, clock=clock)
    connection = connectWebSocket(result(runtime.env.NS.getByName("c").fetch(f"http://h/{code}")))
    assert connection.closes == [(code, "server says")]


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 5000])
def test_close_refuses_reserved_codes(clock, code):
    """1004, 1005, 1006, 1015 and codes outside 1000-4999 are refused with workerd's message."""
    runtime = makeRuntime({"NS": Closer}, clock=clock)
    with pytest.raises(TypeError, match=f"Invalid WebSocket close code: {code}"):
        result(runtime.env.NS.getByName("c").fetch(f"http://h/{code}"))
