"""dotwist.testing, the toolkit users test their apps with: the harness and its clock, the test
client in-process and over a real port (the same observations both ways), Cloudflare's
runInDurableObject, runDurableObjectAlarm, listDurableObjectIds and evictDurableObject, resets,
restarts, and isolation between tests."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, Response, WebSocketPair, WorkerEntrypoint
from dotwist.testing.client import DROPPED
from dotwist.testing import (
    CloseEvent,
    FailingCommits,
    Harness,
    LaterCommits,
    NotReady,
    ObjectLifecycle,
    TestClock,
    WebSocketClosed,
    WebSocketRefused,
    abortDurableObject,
    evictDurableObject,
    isDurableObjectInMemory,
    listDurableObjectIds,
    runDurableObjectAlarm,
    runInDurableObject,
)

# pytester runs user projects (their own app, ini and tests) with the plugin as installed.
pytest_plugins = ["pytester"]

START = 1_700_000_000.0


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.calls = 0  # in memory: gone when the object leaves memory

    async def increment(self, by=1):
        self.calls += 1
        value = (await self.ctx.storage.get("count") or 0) + by
        await self.ctx.storage.put("count", value)
        return value

    async def fetch(self, request):
        return Response(str(await self.increment()))

    async def remindAt(self, millis):
        await self.ctx.storage.setAlarm(millis)

    async def alarm(self, alarmInfo):
        runs = await self.ctx.storage.get("alarms") or []
        await self.ctx.storage.put("alarms", runs + [alarmInfo.retryCount])
        if await self.ctx.storage.get("failAlarm"):
            raise RuntimeError("alarm failed")


class Room(DurableObject):
    """A chat room: hibernatable sockets, a message to everyone, "bye" closes with 4000."""

    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        response = Response(None, status=101, webSocket=client)
        if "chat" in (request.headers.get("sec-websocket-protocol") or ""):
            response.headers.set("sec-websocket-protocol", "chat")
        return response

    async def webSocketMessage(self, ws, message):
        if message == "bye":
            ws.close(4000, "see you")
            return
        for other in self.ctx.getWebSockets():
            other.send(message)

    async def webSocketClose(self, ws, code, reason, wasClean):
        await self.ctx.storage.put("closes", (await self.ctx.storage.get("closes") or []) + [[code, reason, wasClean]])
        # The reply, for Workers whose runtime leaves it to them (dates before 2026-04-07); with
        # the automatic reply the socket is closed already and this does nothing.
        ws.close(code, f"room answers {reason}")


class Plain(DurableObject):
    """Sockets accepted with accept(): they keep the object in memory."""

    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()
        server.addEventListener("message", lambda event: server.send(event.data.upper()))
        return Response(None, status=101, webSocket=client)


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlsplit(request.url).path
        if path.startswith("/room/"):
            if (request.headers.get("upgrade") or "").lower() != "websocket":
                return Response("expected a WebSocket", status=426)
            return await self.env.ROOMS.getByName(path[len("/room/"):]).fetch(request)
        if path.startswith("/plain/"):
            return await self.env.PLAIN.getByName(path[len("/plain/"):]).fetch(request)
        if path.startswith("/count/"):
            return await self.env.COUNTERS.getByName(path[len("/count/"):]).fetch(request)
        if path == "/echo":
            return Response.json({
                "url": request.url,
                "method": request.method,
                "body": (await request.text()) if request.body else None,
                "ip": request.headers.get("cf-connecting-ip"),
            })
        if path == "/boom":
            raise RuntimeError("boom")
        return Response("not found", status=404)


APP = App(Front, durableObjects={"COUNTERS": Counter, "ROOMS": Room, "PLAIN": Plain})

pytestmark = pytest.mark.dotwist(app=APP, start=START)


def both(test: Any) -> Any:
    """Run ``test`` in-process and against a real port."""
    return pytest.mark.parametrize("dotwist_transport", ["memory", "tcp"])(test)


# -- the clock ------------------------------------------------------------------------------------


def test_settle_fires_each_timer_at_its_own_time_in_order():
    """settle() stops at every timer's time: a timer set at 1 s that schedules another 1 s later
    sees both times right, and they run in order with one set at 1.5 s; Twisted's advance() runs
    them all at the end of its jump instead."""
    clock = TestClock(start=100)
    seen = []

    def first():
        seen.append(("first", clock.seconds()))
        clock.callLater(1, lambda: seen.append(("chained", clock.seconds())))

    clock.callLater(1, first)
    clock.callLater(1.5, lambda: seen.append(("middle", clock.seconds())))
    clock.settle(3)
    assert seen == [("first", 101), ("middle", 101.5), ("chained", 102)]
    assert clock.seconds() == 103

    jumped = TestClock(start=0)
    times = []
    jumped.callLater(1, lambda: jumped.callLater(1, lambda: times.append(jumped.seconds())))
    jumped.advance(3)
    assert times == []  # set for 4 s: advance() ran the first timer at 3 s
    jumped.advance(1)
    assert times == [4]


def test_run_ready_runs_what_is_due_now_and_nothing_later():
    """runReady() runs zero-delay timers and those they schedule for now, but no later timer;
    settle() refuses to go back in time, and a timer rescheduling itself at the same time for
    ever is reported instead of hanging."""
    clock = TestClock(start=0)
    ran = []
    clock.callLater(0, lambda: clock.callLater(0, ran.append, "chained now"))
    clock.callLater(0.001, ran.append, "later")
    clock.runReady()
    assert ran == ["chained now"] and clock.nextTimer() == 0.001
    with pytest.raises(ValueError):
        clock.settle(-1)

    looping = TestClock(start=0)

    def forever():
        looping.callLater(1, forever)

    looping.callLater(1, forever)
    with pytest.raises(RuntimeError, match="reschedules itself"):
        looping.settle(1e9)


def test_the_clock_starts_at_the_given_time_or_now(dotwist):
    """A harness's clock starts where the marker says; a TestClock without a start starts at the
    real time, so alarms set from time.time() are near."""
    import time

    assert dotwist.clock.seconds() == START
    assert abs(TestClock().seconds() - time.time()) < 60


# -- the harness, in-process ---------------------------------------------------------------------


def test_sync_test_counts_through_the_worker_and_rpc(dotwist):
    """A plain test drives the Worker and an object's RPC methods with run(), and state
    persists between calls."""
    assert dotwist.run(dotwist.fetch("/count/a")).body == b"1"
    counter = dotwist.env.COUNTERS.getByName("a")
    assert dotwist.run(counter.increment(5)) == 6
    assert dotwist.run(dotwist.fetch("http://example.com/count/a")).body == b"7"


async def test_async_test_awaits_stubs_and_the_worker(dotwist):
    """An async test awaits stubs and the client as Cloudflare's tests do, driven by the plugin
    on the test clock."""
    counter = dotwist.env.COUNTERS.getByName("b")
    assert await counter.increment() == 1
    assert await counter.increment() == 2
    response = await dotwist.fetch("/count/b")
    assert response.status == 200 and await response.text() == "3"


def test_run_says_what_is_pending_when_a_call_needs_time(dotwist):
    """run() of a call that waits for a timer fails with NotReady naming the pending timers; with
    the time let pass it returns the result."""

    class Sleeper(DurableObject):
        async def nap(self, seconds):
            import asyncio

            await asyncio.sleep(seconds)
            return "rested"

    harness = Harness({"S": Sleeper}, start=0)
    stub = harness.env.S.getByName("x")
    with pytest.raises(NotReady, match=r"in 5\.000 s"):
        harness.run(stub.nap(5))
    assert harness.run(stub.nap(5), seconds=5) == "rested"
    harness.close()


def test_async_test_that_waits_on_time_fails_with_not_ready(pytester):
    """An async test that awaits something only time would bring fails at once with NotReady,
    not by hanging."""
    pytester.makepyfile(
        app="""
        import asyncio
        from dotwist import App, DurableObject, Response, WorkerEntrypoint

        class Slow(DurableObject):
            async def wait(self):
                await asyncio.sleep(60)
                return "done"

        class Front(WorkerEntrypoint):
            async def fetch(self, request):
                return Response("hi")

        app = App(Front, durableObjects={"SLOW": Slow})
        """,
        test_slow="""
        async def test_waits(dotwist):
            await dotwist.env.SLOW.getByName("x").wait()

        async def test_moves_time(dotwist):
            pending = dotwist.start(dotwist.env.SLOW.getByName("x").wait())
            dotwist.clock.settle(60)
            assert await pending == "done"
        """,
    )
    pytester.makeini("[pytest]\ndotwist_app = app\npythonpath = .\n")
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1, failed=1)
    outcome.stdout.fnmatch_lines(["*NotReady: the test is still waiting*", "*in 60.000 s*"])


def test_the_app_is_found_from_ini_marker_or_fixture_and_its_absence_is_explained(pytester):
    """The dotwist fixture takes its app from an overridden dotwist_app fixture, a marker, or the
    dotwist_app ini option; with none, the test errors with a message saying how to give one."""
    pytester.makepyfile(
        myapp="""
        from dotwist import App, Response, WorkerEntrypoint

        class Hello(WorkerEntrypoint):
            async def fetch(self, request):
                return Response("hello from " + self.env.WHO)

        app = App(Hello, vars={"WHO": "ini"})
        marked = App(Hello, vars={"WHO": "marker"})
        """,
        test_found="""
        import pytest
        import myapp

        def test_ini(dotwist):
            assert dotwist.run(dotwist.fetch("/")).body == b"hello from ini"

        @pytest.mark.dotwist(app="myapp:marked")
        def test_marker(dotwist):
            assert dotwist.run(dotwist.fetch("/")).body == b"hello from marker"

        class TestOverridden:
            @pytest.fixture
            def dotwist_app(self):
                return myapp.app.withBindings(vars={"WHO": "fixture"})

            def test_fixture(self, dotwist):
                assert dotwist.run(dotwist.fetch("/")).body == b"hello from fixture"
        """,
    )
    pytester.makeini("[pytest]\ndotwist_app = myapp\npythonpath = .\n")
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=3)

    pytester.makeini("[pytest]\npythonpath = .\n")
    pytester.makepyfile(test_found="def test_none(dotwist):\n    pass\n")
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(errors=1)
    outcome.stdout.fnmatch_lines(["*has no app to run: set `dotwist_app = yourmodule`*"])


# -- runInDurableObject -------------------------------------------------------------------------


async def test_run_in_durable_object_sees_the_instance_and_its_storage(dotwist):
    """fn(instance, ctx) runs in the live instance: it sees in-memory state and storage, its
    writes are visible to the object's next event, and what it returns or raises comes back."""
    counter = dotwist.env.COUNTERS.getByName("c")
    await counter.increment()
    await counter.increment()

    def look(instance, ctx):
        assert isinstance(instance, Counter)
        return instance.calls, ctx.id.name

    assert await runInDurableObject(counter, look) == (2, "c")

    async def seed(instance, ctx):
        await ctx.storage.put("count", 40)
        return await ctx.storage.get("count")

    assert await runInDurableObject(counter, seed) == 40
    assert await counter.increment(2) == 42

    def fail(instance, ctx):
        raise KeyError("nope")

    with pytest.raises(KeyError):
        await runInDurableObject(counter, fail)


def test_run_in_durable_object_holds_its_result_until_its_writes_are_durable():
    """What fn returns reaches the test only once the writes fn made are durable (the output
    gate), as a call's reply does."""
    backend = LaterCommits()
    harness = Harness(APP, storage=backend, start=START)
    counter = harness.env.COUNTERS.getByName("d")

    def write(instance, ctx):
        ctx.storage.put("count", 9)
        return "written"

    d = runInDurableObject(counter, write)
    harness.clock.runReady()
    assert not d.called and backend.pending == 1
    backend.complete()
    harness.clock.runReady()
    assert harness.run(d) == "written"
    harness.close()


def test_run_in_durable_object_is_an_event_through_the_input_gate(dotwist):
    """A function run in the object waits at its input gate like any event: while a
    blockConcurrencyWhile callback holds the gate for 5 s it does not run, then it does."""
    import asyncio

    counter = dotwist.env.COUNTERS.getByName("e")

    def lock(instance, ctx):
        async def hold():
            await asyncio.sleep(5)

        ctx.blockConcurrencyWhile(hold)

    dotwist.run(runInDurableObject(counter, lock))
    inside = runInDurableObject(counter, lambda instance, ctx: "ran")
    dotwist.clock.settle(4.9)
    assert not inside.called
    assert dotwist.run(inside, seconds=0.1) == "ran"


# -- runDurableObjectAlarm ---------------------------------------------------------------------


async def test_run_durable_object_alarm_runs_a_future_alarm_now_and_deletes_it(dotwist):
    """An alarm set for an hour ahead runs at once with retryCount 0 and is then deleted (the
    scheduled timer does not run it a second time); with no alarm set it returns False."""
    counter = dotwist.env.COUNTERS.getByName("f")
    assert await runDurableObjectAlarm(counter) is False
    await counter.remindAt(int((dotwist.clock.seconds() + 3600) * 1000))
    assert await runDurableObjectAlarm(counter) is True
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.get("alarms")) == [0]
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.getAlarm()) is None
    dotwist.clock.settle(7200)
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.get("alarms")) == [0]
    assert await runDurableObjectAlarm(counter) is False


async def test_run_durable_object_alarm_raises_the_handler_error_and_retries(dotwist):
    """A failing handler's error reaches the test, and the alarm is retried 2 to 2.5 s later as
    in production."""
    counter = dotwist.env.COUNTERS.getByName("g")
    await runInDurableObject(counter, lambda i, ctx: ctx.storage.put("failAlarm", True))
    await counter.remindAt(int((dotwist.clock.seconds() + 60) * 1000))
    with pytest.raises(RuntimeError, match="alarm failed"):
        await runDurableObjectAlarm(counter)
    await runInDurableObject(counter, lambda i, ctx: ctx.storage.put("failAlarm", False))
    dotwist.clock.settle(2.5)
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.get("alarms")) == [0, 1]
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.getAlarm()) is None


async def test_alarms_fire_when_the_clock_reaches_them(dotwist):
    """Without the helper, an alarm fires when the test clock reaches its time, not before."""
    counter = dotwist.env.COUNTERS.getByName("h")
    await counter.remindAt(int((START + 30) * 1000))
    dotwist.clock.settle(29.9)
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.get("alarms")) is None
    dotwist.clock.settle(0.1)
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.get("alarms")) == [0]


# -- listDurableObjectIds ------------------------------------------------------------------------


@pytest.mark.parametrize("dotwist_storage", ["memory", "sqlite"])
async def test_list_durable_object_ids_lists_stored_live_and_hibernated_objects(dotwist, dotwist_storage):
    """Objects with stored data are listed after they leave memory (from memory or from the data
    directory's files), live objects are listed with their names, objects only read are not
    once evicted, and a hibernated room with sockets open is."""
    counters = dotwist.env.COUNTERS
    assert await listDurableObjectIds(counters) == []
    await counters.getByName("stored").increment()
    await runInDurableObject(counters.getByName("read"), lambda i, ctx: ctx.storage.get("count"))
    ids = await listDurableObjectIds(counters)
    assert sorted(i.name for i in ids) == ["read", "stored"]
    assert await evictDurableObject(counters.getByName("read")) is ObjectLifecycle.EVICTED
    assert await evictDurableObject(counters.getByName("stored")) is ObjectLifecycle.EVICTED
    ids = await listDurableObjectIds(counters)
    assert [i.toString() for i in ids] == [counters.idFromName("stored").toString()]
    assert ids[0].equals(counters.idFromName("stored"))

    ws = await dotwist.webSocket("/room/lobby")
    assert await evictDurableObject(dotwist.env.ROOMS.getByName("lobby")) is ObjectLifecycle.HIBERNATED
    assert [i.toString() for i in await listDurableObjectIds(dotwist.env.ROOMS)] == [
        dotwist.env.ROOMS.idFromName("lobby").toString()
    ]
    await ws.close()


# -- eviction, hibernation, resets -------------------------------------------------------------


async def test_evict_drops_memory_keeps_storage_and_the_next_call_constructs_again(dotwist):
    """An evicted object loses its in-memory state and keeps its storage; evicting an object that
    is not in memory fails."""
    counter = dotwist.env.COUNTERS.getByName("i")
    await counter.increment()
    assert await runInDurableObject(counter, lambda i, ctx: i.calls) == 1
    assert await evictDurableObject(counter) is ObjectLifecycle.EVICTED
    with pytest.raises(Exception, match="is not in memory"):
        await evictDurableObject(counter)
    assert await counter.increment() == 2
    assert await runInDurableObject(counter, lambda i, ctx: i.calls) == 1


async def test_evict_waits_for_work_in_progress(dotwist):
    """An eviction asked while a call is still running takes place once it is done, and the call
    gets its answer."""
    counter = dotwist.env.COUNTERS.getByName("j")
    call = counter.increment()
    evicted = evictDurableObject(counter)
    assert await call == 1
    assert await evicted is ObjectLifecycle.EVICTED


async def test_hibernated_room_keeps_its_sockets_and_wakes_on_a_message(dotwist):
    """Evicting a room with hibernatable sockets hibernates it: the sockets stay open, and the
    next message wakes it and is answered to everyone."""
    alice = await dotwist.webSocket("/room/r1")
    bob = await dotwist.webSocket("/room/r1")
    room = dotwist.env.ROOMS.getByName("r1")
    assert await evictDurableObject(room) is ObjectLifecycle.HIBERNATED
    alice.send("still there?")
    assert await alice.receive() == "still there?"
    assert await bob.receive() == "still there?"


async def test_hibernation_comes_by_itself_after_ten_idle_seconds(dotwist):
    """Without the helper, the room hibernates after 10 s idle on the test clock."""
    await dotwist.webSocket("/room/r2")
    room = dotwist.env.ROOMS.getByName("r2")
    assert isDurableObjectInMemory(room)
    dotwist.clock.settle(9.9)
    assert isDurableObjectInMemory(room)
    dotwist.clock.settle(0.1)
    assert not isDurableObjectInMemory(room)


async def test_evict_with_close_closes_hibernatable_sockets(dotwist):
    """webSockets="close" closes the room's sockets (1001, "Durable Object evicted") before the
    eviction, which leaves the room evicted, not hibernated."""
    ws = await dotwist.webSocket("/room/r3")
    state = await evictDurableObject(dotwist.env.ROOMS.getByName("r3"), webSockets="close")
    event = await ws.closed()
    assert (event.code, event.reason, event.wasClean) == (1001, "Durable Object evicted", True)
    assert state is ObjectLifecycle.EVICTED


async def test_plain_sockets_keep_an_object_in_memory_until_it_is_reset(dotwist):
    """An object with a socket it accept()ed cannot be evicted (the error says why); an abort
    resets it and closes that socket with 1011."""
    ws = await dotwist.webSocket("/plain/p")
    ws.send("hi")
    assert await ws.receive() == "HI"
    plain = dotwist.env.PLAIN.getByName("p")
    with pytest.raises(TypeError, match="accepted with ws.accept"):
        await evictDurableObject(plain)
    await abortDurableObject(plain, "test says so")
    event = await ws.closed()
    assert (event.code, event.wasClean) == (1011, True)
    with pytest.raises(Exception, match="is not in memory"):
        await abortDurableObject(plain)


async def test_abort_drops_memory_and_fails_waiting_events(dotwist):
    """After abortDurableObject the next call constructs the object again, with its stored
    state and none of its memory."""
    counter = dotwist.env.COUNTERS.getByName("k")
    await counter.increment()
    await abortDurableObject(counter)
    assert await counter.increment() == 2
    assert await runInDurableObject(counter, lambda i, ctx: i.calls) == 1


async def test_evict_all_durable_objects_evicts_and_hibernates_everything_in_memory(dotwist):
    """Harness.evictAllDurableObjects takes every object out of memory, each as it would leave
    on its own: counters evicted, a room with a member hibernated."""
    await dotwist.env.COUNTERS.getByName("o1").increment()
    await dotwist.env.COUNTERS.getByName("o2").increment()
    await dotwist.webSocket("/room/o3")
    states = await dotwist.evictAllDurableObjects()
    assert sorted(state.value for state in states) == ["evicted", "evicted", "hibernated"]
    assert not isDurableObjectInMemory(dotwist.env.COUNTERS.getByName("o1"))
    assert await dotwist.env.COUNTERS.getByName("o1").increment() == 2


@pytest.mark.dotwist(transport="tcp", realTime=True)
async def test_real_time_serves_on_the_reactor_with_no_clock_to_move(dotwist):
    """With realTime the runtime runs on the reactor, as in production: requests are served, and
    asking for the clock says there is none to move."""
    assert await (await dotwist.fetch("/count/rt")).text() == "1"
    with pytest.raises(TypeError, match="real time"):
        dotwist.clock


def test_a_failed_commit_resets_the_object():
    """With a backend whose commits fail, the write's caller gets an error and the object is
    reset (the harness takes any storage backend)."""
    backend = FailingCommits()
    harness = Harness(APP, storage=backend, start=START)
    counter = harness.env.COUNTERS.getByName("l")
    assert harness.run(counter.increment()) == 1
    backend.failing = True
    with pytest.raises(Exception, match="storage write failed"):
        harness.run(counter.increment())
    harness.close()


# -- the client, in-process and over a real port ------------------------------------------------


@both
async def test_fetch_gives_the_worker_the_same_request_both_ways(dotwist):
    """The Worker sees the same URL (with the example.com host), method, body and client address
    in-process and over a real port."""
    response = await dotwist.fetch("/echo?x=1", method="POST", body="payload")
    assert response.status == 200
    assert await response.json() == {
        "url": "http://example.com/echo?x=1",
        "method": "POST",
        "body": "payload",
        "ip": "127.0.0.1",
    }
    assert (await dotwist.fetch("/nowhere")).status == 404


@both
async def test_counter_counts_both_ways(dotwist):
    """Requests through the Worker and RPC calls reach the same object, both ways."""
    assert (await (await dotwist.fetch("/count/x")).text()) == "1"
    assert await dotwist.env.COUNTERS.getByName("x").increment() == 2
    assert (await (await dotwist.fetch("/count/x")).text()) == "3"


@both
async def test_room_messages_and_closes_are_the_same_both_ways(dotwist, dotwist_transport):
    """In a room, a message reaches every member; the server's close (4000) reaches the client and
    comes back as the room's webSocketClose; a client's close (4001) reaches the room and is
    echoed to the client; a dropped client is a 1006, not clean; the chosen subprotocol is seen."""
    alice = await dotwist.webSocket("/room/lobby", protocols=["chat"])
    bob = await dotwist.webSocket("/room/lobby")
    carol = await dotwist.webSocket("/room/lobby")
    assert alice.protocol == "chat" and bob.protocol is None
    alice.send("hello")
    assert [await alice.receive(), await bob.receive(), await carol.receive()] == ["hello"] * 3
    bob.send(b"\x00binary")
    assert await alice.receive() == b"\x00binary"

    bob.send("bye")
    event = await bob.closed()
    assert (event.code, event.reason, event.wasClean) == (4000, "see you", True)
    event = await alice.close(4001, "done")
    assert (event.code, event.reason, event.wasClean) == (4001, "done", True)
    await carol.drop()

    room = dotwist.env.ROOMS.getByName("lobby")
    closes: list = []
    for _ in range(100):  # over a real port the last close arrives a moment later
        closes = await runInDurableObject(room, lambda i, ctx: ctx.storage.get("closes")) or []
        if len(closes) == 3:
            break
        await _turn(dotwist)
    assert sorted(map(tuple, closes)) == [(1006, "", False), (4000, "see you", True), (4001, "done", True)]
    assert bob.pending == [b"\x00binary"]  # what arrived before the close can still be read
    assert await bob.receive() == b"\x00binary"
    with pytest.raises(WebSocketClosed):
        await bob.receive()


@both
@pytest.mark.dotwist(compatibility="2026-01-01")
async def test_the_object_answers_a_close_before_2026_04_07_both_ways(dotwist):
    """With a compatibility date before 2026-04-07 the runtime leaves the reply to a client's close
    to the object: the client hears the room's close() (its code, the room's reason)."""
    ws = await dotwist.webSocket("/room/manual")
    event = await ws.close(4002, "later")
    assert (event.code, event.reason, event.wasClean) == (4002, "room answers later", True)
    room = dotwist.env.ROOMS.getByName("manual")
    assert await runInDurableObject(room, lambda i, ctx: ctx.storage.get("closes")) == [[4002, "later", True]]


@both
async def test_a_refused_websocket_says_the_status(dotwist):
    """A WebSocket request the Worker answers with a 404 fails with WebSocketRefused, with the
    status and body, and fetch() will not open a WebSocket."""
    with pytest.raises(WebSocketRefused) as refused:
        await dotwist.webSocket("/nowhere")
    assert (refused.value.status, refused.value.body) == (404, b"not found")
    with pytest.raises(TypeError, match="use webSocket"):
        await dotwist.fetch("/room/x", headers={"Upgrade": "websocket"})


async def test_a_worker_exception_reaches_the_in_process_caller(dotwist):
    """In-process, as through Cloudflare's SELF, the Worker's exception reaches the test."""
    with pytest.raises(RuntimeError, match="boom"):
        await dotwist.fetch("/boom")


@pytest.mark.dotwist(transport="tcp")
async def test_a_worker_exception_is_a_500_over_a_real_port(dotwist):
    """Over a real port the HTTP edge answers 500, as in production."""
    response = await dotwist.fetch("/boom")
    assert response.status == 500 and await response.text() == "Worker threw exception"


@pytest.mark.dotwist(transport="tcp")
async def test_time_moves_only_when_the_test_says_even_over_a_real_port(dotwist):
    """Over a real port the runtime still runs on the test clock: the room hibernates when the
    test lets 10 s pass, and wakes on the next message."""
    ws = await dotwist.webSocket("/room/t")
    room = dotwist.env.ROOMS.getByName("t")
    dotwist.clock.settle(9)
    assert isDurableObjectInMemory(room)
    dotwist.clock.settle(1)
    assert not isDurableObjectInMemory(room)
    ws.send("awake?")
    assert await ws.receive() == "awake?"


# -- restarts and isolation -----------------------------------------------------------------------


@pytest.mark.parametrize("dotwist_transport", ["memory", "tcp"])
@pytest.mark.dotwist(storage="sqlite")
async def test_restart_keeps_sqlite_storage_and_its_alarms(dotwist):
    """After a restart on the same data directory the count is still there and an alarm set
    before fires at its time on the new runtime."""
    counter = dotwist.env.COUNTERS.getByName("m")
    await counter.increment()
    await counter.remindAt(int((dotwist.clock.seconds() + 30) * 1000))
    port = dotwist.port if dotwist.transport == "tcp" else None
    await dotwist.restart()
    assert port is None or dotwist.port == port
    counter = dotwist.env.COUNTERS.getByName("m")
    dotwist.clock.settle(30)
    assert await runInDurableObject(counter, lambda i, ctx: ctx.storage.get("alarms")) == [0]
    assert await counter.increment() == 2


async def test_restart_with_memory_storage_forgets_everything(dotwist):
    """With memory storage a restart loses what was stored, as with --storage memory."""
    await dotwist.env.COUNTERS.getByName("n").increment()
    await dotwist.restart()
    assert await dotwist.env.COUNTERS.getByName("n").increment() == 1


LEFT_BEHIND: dict[str, Any] = {}


@pytest.mark.dotwist(storage="sqlite")
async def test_isolation_first_leaves_data_and_an_alarm(dotwist):
    """(With the next test.) This test stores data and sets an alarm, and does not clean up."""
    counter = dotwist.env.COUNTERS.getByName("leak")
    await counter.increment()
    await counter.remindAt(int((dotwist.clock.seconds() + 1) * 1000))
    LEFT_BEHIND["dataDir"] = dotwist.dataDir
    LEFT_BEHIND["clock"] = dotwist.clock
    assert LEFT_BEHIND["clock"].nextTimer() is not None


@pytest.mark.dotwist(storage="sqlite")
async def test_isolation_second_sees_none_of_it(dotwist):
    """The previous test's objects, alarm and clock are not this test's: a new data directory,
    no object, no alarm firing, and the old clock has nothing pending."""
    assert LEFT_BEHIND, "runs after test_isolation_first_leaves_data_and_an_alarm"
    assert dotwist.dataDir != LEFT_BEHIND["dataDir"]
    assert dotwist.clock is not LEFT_BEHIND["clock"]
    assert LEFT_BEHIND["clock"].nextTimer() is None
    assert await listDurableObjectIds(dotwist.env.COUNTERS) == []
    dotwist.clock.settle(60)
    assert await listDurableObjectIds(dotwist.env.COUNTERS) == []


def test_close_event_is_the_runtimes_class():
    """The close events the client gives are dotwist's CloseEvent."""
    assert CloseEvent(1000, "", True).code == 1000


async def _turn(harness: Harness) -> None:
    """Let the real reactor turn once (over a real port), or do nothing (in-process)."""
    if harness.transport == "tcp":
        from twisted.internet import reactor

        d: Deferred[None] = Deferred()
        reactor.callLater(0.01, d.callback, None)
        await d


def test_docs_show_the_demo_project_verbatim():
    """Every code block docs/testing.md takes from examples/testing-demo is in that file, character
    for character (the demo's own test run proves the code works)."""
    root = Path(__file__).resolve().parent.parent
    page = (root / "docs" / "testing.md").read_text()
    blocks = re.findall(r"<!-- from: (\S+) -->\n```python\n(.*?)```", page, re.S)
    assert len(blocks) >= 10
    assert [path for path, block in blocks if block not in (root / path).read_text()] == []
