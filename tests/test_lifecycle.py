"""Object lifecycle on an injected clock: hibernation, wake-up, auto-response, eviction, alarms
(firing, retries, restart), deleteAll."""

import random

import pytest

from dotwist import (
    App,
    DurableObject,
    Headers,
    Request,
    Response,
    WebSocketPair,
    WebSocketRequestResponsePair,
    WorkerEntrypoint,
)
from dotwist.alarms import MAX_RETRIES, retryDelay
from dotwist.storage.alarmindex import SqliteAlarmIndex
from dotwist.examples import websocket_hibernation_server
from dotwist.lifecycle import ObjectLifecycle
from dotwist.storage import SqliteBackend
from dotwist.testing import TestClock, connectWebSocket, liveActor, makeRuntime, result

UPGRADE = Headers({"Upgrade": "websocket"})


class Forward(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.NS.getByName("room").fetch(request)


class Room(DurableObject):
    constructed = 0
    messages = []

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1
        ctx.setWebSocketAutoResponse(WebSocketRequestResponsePair("ping", "pong"))

    async def fetch(self, request):
        client, server = WebSocketPair()
        tags = [t for t in request.url.rsplit("/", 1)[-1].split(",") if t]
        self.ctx.acceptWebSocket(server, tags)
        server.serializeAttachment({"joined": request.url, "n": len(self.ctx.getWebSockets())})
        return Response(None, status=101, webSocket=client)

    async def webSocketMessage(self, ws, message):
        type(self).messages.append((message, ws.deserializeAttachment(), self.ctx.getTags(ws)))
        ws.send(f"{len(self.ctx.getWebSockets())} sockets; you said {message}")

    async def webSocketClose(self, ws, code, reason, wasClean):
        type(self).messages.append(("closed", code, wasClean))


def roomRuntime(clock, **limits):
    Room.constructed = 0
    Room.messages = []
    return makeRuntime(App(Forward, durableObjects={"NS": Room}), clock=clock, limits=limits or None)


def connect(runtime, path="/ws/"):
    return connectWebSocket(result(runtime.fetch(Request("http://h" + path, headers=UPGRADE))))


def test_hibernates_after_idle_and_wakes_with_everything_but_memory(clock):
    """After 10 s idle the object leaves memory while its sockets stay open; the next message
    constructs it again, and getWebSockets(), tags and attachments are as they were."""
    runtime = roomRuntime(clock)
    ta = connect(runtime, "/ws/red,blue")
    tb = connect(runtime, "/ws/")
    assert runtime.registry.liveObjects() == 1 and Room.constructed == 1
    clock.advance(9.9)
    assert runtime.registry.liveObjects() == 1
    clock.advance(0.2)
    assert runtime.registry.liveObjects() == 0 and ta.closes == [] and tb.closes == []
    ta.send("hello")
    assert Room.constructed == 2
    assert Room.messages == [("hello", {"joined": "http://h/ws/red,blue", "n": 1}, ["red", "blue"])]
    assert ta.sent == [(b"2 sockets; you said hello", False)]


def test_auto_response_does_not_wake_the_object(clock):
    """A message equal to the auto-response request is answered by the runtime; the object stays
    hibernated, and the timestamp is recorded."""
    runtime = roomRuntime(clock)
    ta = connect(runtime)
    clock.advance(11)
    assert runtime.registry.liveObjects() == 0
    clock.advance(5)
    ta.send("ping")
    assert ta.sent == [(b"pong", False)] and Room.constructed == 1
    stub = runtime.env.NS.getByName("room")
    stamps = result(stub.fetch("http://h/stamps"))  # wakes the object (a WebSocket request)
    server = liveActor(runtime, stub).ctx.getWebSockets()[0]
    assert liveActor(runtime, stub).ctx.getWebSocketAutoResponseTimestamp(server).timestamp() == pytest.approx(16.0)
    ta.send("ping?")
    assert Room.constructed == 2 and stamps.status == 101


def test_disconnect_without_close_frame_reaches_webSocketClose_1006(clock):
    """A vanished client reaches a hibernated object's webSocketClose with 1006, not clean."""
    runtime = roomRuntime(clock)
    a = connect(runtime)
    clock.advance(11)
    a.close(None, "", wasClean=False)
    assert Room.messages == [("closed", 1006, False)]
    actor = liveActor(runtime, runtime.env.NS.getByName("room"))
    assert actor.ctx.getWebSockets() == []


class Plain(DurableObject):
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1

    async def fetch(self, request):
        if request.url.endswith("/wait"):
            from twisted.internet.defer import Deferred

            self.pending = Deferred()
            self.ctx.waitUntil(self.pending)
        if request.url.endswith("/ws"):
            client, server = WebSocketPair()
            server.accept()
            return Response(None, status=101, webSocket=client)
        await self.ctx.storage.put("visits", (await self.ctx.storage.get("visits") or 0) + 1)
        return Response(str(await self.ctx.storage.get("visits")))


def plainRuntime(clock, storage=None, **limits):
    Plain.constructed = 0
    return makeRuntime(
        App(Forward, durableObjects={"NS": Plain}), clock=clock, limits=limits or None, storage=storage
    )


def visit(runtime, clock, path="/"):
    d = runtime.fetch(Request("http://h" + path))
    clock.advance(0)
    return result(d)


def test_eviction_after_70s_idle_keeps_confirmed_storage(clock):
    """An idle object leaves memory after 70 s, not before; the next call constructs it again
    and finds its confirmed storage."""
    runtime = plainRuntime(clock)
    assert visit(runtime, clock).body == b"1"
    clock.advance(69)
    assert runtime.registry.liveObjects() == 1
    assert visit(runtime, clock).body == b"2"  # activity restarts the idle period
    clock.advance(69.9)
    assert runtime.registry.liveObjects() == 1
    clock.advance(0.2)
    assert runtime.registry.liveObjects() == 0
    assert runtime.registry.departures[ObjectLifecycle.EVICTED] == 1
    assert visit(runtime, clock).body == b"3" and Plain.constructed == 2


def test_open_plain_websocket_pins_the_object(clock):
    """A socket accepted with accept() (not hibernatable) keeps the object in memory."""
    runtime = plainRuntime(clock)
    connection = connectWebSocket(result(runtime.fetch(Request("http://h/ws", headers=UPGRADE))))
    clock.advance(1000)
    assert runtime.registry.liveObjects() == 1
    connection.close(1000, "")
    clock.advance(71)
    assert runtime.registry.liveObjects() == 0


def test_waitUntil_keeps_the_object_alive_at_most_30s(clock):
    """An unsettled waitUntil task keeps an otherwise idle object in memory, for at most 30 s."""
    runtime = plainRuntime(clock, evictAfter=10)
    visit(runtime, clock, "/wait")
    clock.advance(20)
    assert runtime.registry.liveObjects() == 1
    clock.advance(25)
    assert runtime.registry.liveObjects() == 0


def test_settled_waitUntil_no_longer_pins(clock):
    """Once its waitUntil task settles, the object is evicted at the next idle check."""
    runtime = plainRuntime(clock, evictAfter=10)
    visit(runtime, clock, "/wait")
    clock.advance(15)
    actor = next(iter(runtime.registry.namespaces["Plain"].actors.values()))
    actor.instance.pending.callback(None)
    clock.advance(10)
    assert runtime.registry.liveObjects() == 0


class Alarmed(DurableObject):
    runs = []
    failUntil = 0

    async def fetch(self, request):
        if request.url.endswith("/set"):
            await self.ctx.storage.setAlarm(request.headers.get("at") and int(request.headers.get("at")))
        elif request.url.endswith("/deleteAll"):
            await self.ctx.storage.deleteAll()
        return Response(str(await self.ctx.storage.getAlarm()))

    async def alarm(self, alarmInfo):
        type(self).runs.append((self.ctx.id.name, alarmInfo.retryCount, alarmInfo.isRetry))
        if len(type(self).runs) <= type(self).failUntil:
            raise RuntimeError("alarm handler failed")


def alarmRuntime(clock, failUntil=0, storage=None, index=None):
    Alarmed.runs = []
    Alarmed.failUntil = failUntil
    runtime = makeRuntime(App(Forward, durableObjects={"NS": Alarmed}), clock=clock, storage=storage, alarmIndex=index)
    runtime.registry.alarms.rng = random.Random(7)
    return runtime


def setAlarm(runtime, clock, at):
    d = runtime.fetch(Request("http://h/set", headers={"at": str(at)}))
    clock.advance(0)
    return result(d)


def test_alarm_fires_at_its_time_and_is_then_deleted(clock):
    """The alarm runs when due (not before), with retryCount 0, and getAlarm() is None after."""
    runtime = alarmRuntime(clock)
    clock.advance(100)
    assert setAlarm(runtime, clock, 105_000).body == b"105000"
    clock.advance(4.9)
    assert Alarmed.runs == []
    clock.advance(0.2)
    clock.advance(0)
    assert Alarmed.runs == [("room", 0, False)]
    assert visit(runtime, clock, "/get").body == b"None"


def test_failing_alarm_is_retried_with_backoff_then_given_up(clock):
    """A raising handler is retried after 2, 4, 8, 16, 32, 64 s (plus up to 25% jitter), six
    times, with retryCount and isRetry; after that the alarm is dropped."""
    runtime = alarmRuntime(clock, failUntil=100)
    setAlarm(runtime, clock, 0)
    clock.advance(0)
    assert Alarmed.runs == [("room", 0, False)]
    rng = random.Random(7)
    for retry in range(1, MAX_RETRIES + 1):
        delay = retryDelay(retry, rng)
        assert 2 ** retry <= delay <= 2 ** retry * 1.25
        clock.advance(delay - 0.01)
        assert len(Alarmed.runs) == retry
        clock.advance(0.02)
        assert Alarmed.runs[-1] == ("room", retry, True)
    clock.advance(0)
    clock.advance(1000)
    assert len(Alarmed.runs) == 1 + MAX_RETRIES
    assert visit(runtime, clock, "/get").body == b"None"


def test_alarm_that_succeeds_on_retry_is_deleted(clock):
    """If a retry succeeds, the alarm is done: no more runs, none stored."""
    runtime = alarmRuntime(clock, failUntil=1)
    setAlarm(runtime, clock, 0)
    clock.advance(0)
    clock.advance(3)
    clock.advance(0)
    assert [r[1] for r in Alarmed.runs] == [0, 1]
    clock.advance(1000)
    assert len(Alarmed.runs) == 2 and visit(runtime, clock, "/get").body == b"None"


def test_deleteAll_removes_the_alarm(clock):
    """deleteAll() deletes the alarm: it never fires."""
    runtime = alarmRuntime(clock)
    setAlarm(runtime, clock, 50_000)
    visit(runtime, clock, "/deleteAll")
    clock.advance(100)
    assert Alarmed.runs == []


def test_alarm_that_came_due_while_down_fires_after_restart(tmp_path):
    """With SQLite storage and the alarm index on disk: an alarm set before a shutdown, due while
    the server was down, fires as soon as the next runtime starts."""
    clock = TestClock(start=1000)
    runtime = alarmRuntime(clock, storage=SqliteBackend(str(tmp_path)), index=SqliteAlarmIndex(str(tmp_path / "alarms.sqlite")))
    setAlarm(runtime, clock, 1_010_000)
    runtime.close()
    assert Alarmed.runs == []

    later = TestClock(start=2000)
    runtime = alarmRuntime(later, storage=SqliteBackend(str(tmp_path)), index=SqliteAlarmIndex(str(tmp_path / "alarms.sqlite")))
    runtime.start()
    later.runReady()
    assert [(retry, isRetry) for _, retry, isRetry in Alarmed.runs] == [(0, False)]
    runtime.close()


def test_setAlarm_needs_an_alarm_handler(clock):
    """setAlarm() on a class without alarm() is refused with Cloudflare's message."""
    runtime = plainRuntime(clock)

    class NoAlarm(Plain):
        async def fetch(self, request):
            await self.ctx.storage.setAlarm(1)
            return Response("set")

    runtime = makeRuntime(App(Forward, durableObjects={"NS": NoAlarm}), clock=clock)
    d = runtime.fetch(Request("http://h/"))
    clock.advance(0)
    with pytest.raises(TypeError, match="must have an alarm\\(\\) handler"):
        result(d)


def test_hibernation_seed_counts_across_hibernation(clock):
    """The hibernating seed still counts its sockets after it hibernates (getWebSockets)."""
    runtime = makeRuntime(websocket_hibernation_server.app, clock=clock)
    transport = connect(runtime, "/websocket")
    clock.advance(11)
    assert runtime.registry.liveObjects() == 0
    count = result(runtime.fetch(Request("http://h/getCurrentConnections")))
    assert count.body == b"There is 1 WebSocket client connected to this Durable Object instance."
    transport.send("hi")
    assert transport.sent == [(b"[Durable Object]: hi", False)]


def test_attachment_and_tag_limits():
    """Attachments over 16 KiB and more than 10 tags are refused."""
    from dotwist import RangeError
    from dotwist.hibernation import HibernationRecord

    client, server = WebSocketPair()
    with pytest.raises(RangeError, match="16384"):
        server.serializeAttachment("x" * 17000)
    record = HibernationRecord("NS", None, None, None)
    with pytest.raises(RangeError, match="10 tags"):
        record.accept(server, [str(i) for i in range(11)])
    with pytest.raises(RangeError, match="256"):
        record.accept(server, ["x" * 257])


class Slow(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        ctx.setHibernatableWebSocketEventTimeout(500)

    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, webSocket=client)

    async def webSocketMessage(self, ws, message):
        from twisted.internet.defer import Deferred

        await Deferred()  # never finishes


def test_event_timeout_resets_a_stuck_handler(clock):
    """A webSocketMessage that runs past setHibernatableWebSocketEventTimeout resets the object;
    the socket stays open and the next message reaches a new instance."""
    runtime = makeRuntime(App(Forward, durableObjects={"NS": Slow}), clock=clock)
    transport = connect(runtime)
    transport.send("hang")
    actor = next(iter(runtime.registry.namespaces["Slow"].actors.values()))
    clock.advance(0.4)
    assert actor.lifecycle is ObjectLifecycle.LIVE
    clock.advance(0.2)
    assert actor.lifecycle is ObjectLifecycle.BROKEN and transport.closes == []
    transport.send("again")
    assert next(iter(runtime.registry.namespaces["Slow"].actors.values())) is not actor
