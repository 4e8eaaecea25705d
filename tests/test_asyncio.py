"""asyncio inside Workers and Durable Objects, deterministically: every handler kind can use
asyncio and await dotwist's calls and Twisted Deferreds, and Cloudflare's gate semantics hold
across asyncio awaits. The runtime runs on a ``ClockLoop`` (asyncio on a ``task.Clock``), so
``asyncio.sleep`` takes no real time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import globalLogPublisher

from dotwist import App, DurableObject, DurableObjectError, Request, Response, WebSocketPair, WorkerEntrypoint
from dotwist.lifecycle import ObjectLifecycle
from dotwist.testing import LaterCommits, TestClock, connectWebSocket, liveActor, makeRuntime, result


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def text(logged: list[dict]) -> str:
    from twisted.logger import formatEvent

    return "\n".join(formatEvent(e) for e in logged)


def settle(clock: TestClock, d: Deferred[Any], seconds: float = 0) -> Any:
    """Let ``seconds`` pass, timer by timer (so timers set along the way fire in order, each at
    its time), and return the Deferred's result."""
    clock.settle(seconds)
    return result(d)


class Forward(WorkerEntrypoint):
    async def fetch(self, request):
        name = request.headers.get("x-object") or "o"
        return await self.env.NS.getByName(name).fetch(request)


# -- every handler can use asyncio ---------------------------------------------------------


class Everything(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.log = []

        async def load():
            await asyncio.sleep(1)
            self.log.append("constructed")

        ctx.blockConcurrencyWhile(load)

    async def fetch(self, request):
        path = request.url.rsplit("/", 1)[1]
        if path == "gather":
            await self.ctx.storage.put({"a": 1, "b": 2})
            a, b = await asyncio.gather(self.ctx.storage.get("a"), self.ctx.storage.get("b"))
            return Response(f"{a}+{b}")
        if path == "sleep":
            started = asyncio.get_running_loop().time()
            await asyncio.sleep(5)
            return Response(f"slept {round(asyncio.get_running_loop().time() - started):g}")
        if path == "wait_for":
            try:
                await asyncio.wait_for(asyncio.Event().wait(), timeout=2)
            except asyncio.TimeoutError:
                return Response("timed out")
        if path == "timeout":
            try:
                async with asyncio.timeout(3):
                    await asyncio.sleep(10)
            except TimeoutError:
                return Response("timeout")
        if path == "queue":
            queue: asyncio.Queue[int] = asyncio.Queue()

            async def produce():
                for i in range(3):
                    await asyncio.sleep(0.5)
                    await queue.put(i)

            task = asyncio.create_task(produce())
            got = [await queue.get() for _ in range(3)]
            await task
            return Response(repr(got))
        if path == "deferred":
            # A Twisted Deferred, dotwist's own calls and asyncio, in one coroutine and in tasks.
            clock = self.env.CLOCK
            first = await deferLater(clock, 1, lambda: "deferred")
            other = await self.env.NS.getByName("other").rpcEcho("rpc")
            inTask = await asyncio.create_task(self.deferredInTask(clock))
            both = await asyncio.gather(deferLater(clock, 1, lambda: "gathered"), asyncio.sleep(1, "slept"))
            return Response(" ".join([first, other, inTask, *both]))
        return Response(" ".join(self.log))

    async def deferredInTask(self, clock):
        return await deferLater(clock, 1, lambda: "in-task")

    async def rpcEcho(self, value):
        await asyncio.sleep(0.5)
        return value

    async def alarm(self, alarmInfo):
        await asyncio.sleep(1)
        await self.ctx.storage.put("alarm", "ran")

    async def webSocketMessage(self, ws, message):
        await asyncio.sleep(0.25)
        ws.send(f"echo {message}")


def everything(clock: TestClock, **kwargs: Any):
    runtime = makeRuntime(App(Forward, durableObjects={"NS": Everything}, vars={"CLOCK": clock}), clock=clock, asyncio=True, **kwargs)
    return runtime, runtime.env.NS.getByName("o")


@pytest.mark.parametrize(
    "path,expected,seconds",
    [
        ("gather", "1+2", 1),
        ("sleep", "slept 5", 7),
        ("wait_for", "timed out", 4),
        ("timeout", "timeout", 5),
        ("queue", "[0, 1, 2]", 3),
        ("deferred", "deferred rpc in-task gathered slept", 6),
        ("constructed", "constructed", 1),
    ],
)
def test_object_fetch_uses_asyncio(clock, path, expected, seconds):
    """asyncio's sleep, gather (over storage reads), wait_for, timeout, Queue and create_task work
    in an object's fetch, beside Deferreds and dotwist's own stub calls; the constructor's
    blockConcurrencyWhile callback can sleep too. Times are the clock's."""
    _, stub = everything(clock)
    assert settle(clock, stub.fetch(f"http://x/{path}"), seconds).body.decode() == expected


def test_alarm_and_websocket_handlers_use_asyncio(clock):
    """An alarm handler and a hibernatable socket's webSocketMessage can await asyncio.sleep."""

    class Sockets(Everything):
        async def fetch(self, request):
            if request.url.endswith("/ws"):
                client, server = WebSocketPair()
                self.ctx.acceptWebSocket(server)
                return Response(None, status=101, webSocket=client)
            if request.url.endswith("/alarm"):
                await self.ctx.storage.setAlarm(int(asyncio.get_running_loop().time() * 1000) + 1000)
                return Response("set")
            return Response(str(await self.ctx.storage.get("alarm")))

    runtime = makeRuntime({"NS": Sockets}, clock=clock, asyncio=True)
    stub = runtime.env.NS.getByName("o")
    connection = connectWebSocket(settle(clock, stub.fetch("http://x/ws", headers={"upgrade": "websocket"}), 1))
    connection.send("hi")
    clock.advance(0)
    clock.advance(0.2)
    assert connection.messages == []
    clock.advance(0.1)
    assert connection.messages == ["echo hi"]
    settle(clock, stub.fetch("http://x/alarm"))
    clock.advance(1)
    clock.advance(1)
    assert settle(clock, stub.fetch("http://x/read")).body == b"ran"


class SleepyWorker(WorkerEntrypoint):
    async def fetch(self, request):
        await asyncio.sleep(2)
        self.ctx.waitUntil(self.later())
        return Response("worker slept")

    async def later(self):
        await asyncio.sleep(1)
        self.env.DONE.append("waitUntil ran")


def test_worker_fetch_and_waitUntil_use_asyncio(clock):
    """A Worker's fetch can sleep, and its waitUntil task runs (and sleeps) after the response."""
    done: list[str] = []
    runtime = makeRuntime(App(SleepyWorker, vars={"DONE": done}), clock=clock, asyncio=True)
    assert settle(clock, runtime.fetch(Request("http://x/")), 2).body == b"worker slept"
    assert done == []
    clock.advance(1)
    assert done == ["waitUntil ran"]


# -- the gates across asyncio awaits ----------------------------------------------------------


class Counter(DurableObject):
    async def fetch(self, request):
        value = await self.ctx.storage.get("n") or 0
        if request.url.endswith("/sleepy"):
            await asyncio.sleep(0.1)  # not a storage await: the input gate opens here
        await self.ctx.storage.put("n", value + 1)
        return Response(str(value + 1))


def test_input_gate_stays_closed_over_storage_awaits_and_opens_over_others(clock):
    """Two increments at once through storage awaits alone both count; with an asyncio.sleep
    between the read and the write, the second request runs during the sleep and an update is
    lost, which shows where the gate holds and where it does not."""
    runtime = makeRuntime({"NS": Counter}, clock=clock, asyncio=True)
    stub = runtime.env.NS.getByName("c")
    first, second = stub.fetch("http://x/"), stub.fetch("http://x/")
    clock.advance(0)
    assert (result(first).body, result(second).body) == (b"1", b"2")
    first, second = stub.fetch("http://x/sleepy"), stub.fetch("http://x/sleepy")
    clock.advance(0)
    clock.advance(0.1)
    assert (result(first).body, result(second).body) == (b"3", b"3")


class Initialising(DurableObject):
    """Its fetch locks the input gate in its first step (before any await)."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.seen: list[str] = []
        self.ready = False

    async def fetch(self, request):
        if not self.ready:
            async def initialise():
                await asyncio.sleep(1)
                self.ready = True

            self.ctx.blockConcurrencyWhile(initialise)
        self.seen.append(f"{request.url[-1]} ready={self.ready}")
        return Response("ok")


def test_an_event_that_locks_the_gate_in_its_first_step_holds_the_events_behind_it(clock):
    """Requests delivered back to back: the first one's blockConcurrencyWhile, called before its
    first await, holds the second, although both were delivered before the first one's task ran
    (the gate stays locked from an event's delivery until its first step ends)."""
    runtime = makeRuntime({"NS": Initialising}, clock=clock, asyncio=True)
    stub = runtime.env.NS.getByName("i")
    first, second = stub.fetch("http://x/1"), stub.fetch("http://x/2")
    clock.advance(0)
    clock.advance(1)
    result(first), result(second)
    assert liveActor(runtime, stub).instance.seen == ["1 ready=False", "2 ready=True"]


class Writer(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("k", request.url)
        await asyncio.sleep(0.5)
        return Response("written")


def test_output_gate_holds_the_response_until_the_write_is_durable(clock):
    """With commits that complete later, an asyncio handler's response leaves only once its write
    is durable."""
    backend = LaterCommits()
    runtime = makeRuntime({"NS": Writer}, clock=clock, asyncio=True, storage=backend)
    d = runtime.env.NS.getByName("w").fetch("http://x/")
    clock.advance(0)
    clock.advance(1)
    assert not d.called and backend.pending == 1
    backend.complete()
    clock.advance(0)
    assert result(d).body == b"written"


class Ordered(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.arrived: list[int] = []

    async def add(self, i):
        self.arrived.append(i)
        await asyncio.sleep((7 * i % 5) / 10)
        return i


def test_calls_through_one_stub_arrive_in_order(clock):
    """100 asyncio RPC calls through one stub start in the order they were made, whatever each
    then awaits."""
    runtime = makeRuntime({"NS": Ordered}, clock=clock, asyncio=True)
    stub = runtime.env.NS.getByName("o")
    calls = [stub.add(i) for i in range(100)]
    clock.advance(0)
    clock.advance(1)
    assert [result(c) for c in calls] == list(range(100))
    assert liveActor(runtime, stub).instance.arrived == list(range(100))


class Background(DurableObject):
    async def fetch(self, request):
        if request.url.endswith("/read"):
            return Response(str(await self.ctx.storage.get("late")))

        async def later():
            await asyncio.sleep(5)
            await self.ctx.storage.put("late", "written after the response")

        if request.url.endswith("/waitUntil"):
            self.ctx.waitUntil(later())
        else:
            asyncio.create_task(later())
        return Response("answered")


def test_a_task_that_writes_after_the_response_still_commits(clock):
    """A task made with create_task that writes after the response was sent: the write commits,
    and a later reader (after the object left memory) sees it."""
    runtime = makeRuntime({"NS": Background}, clock=clock, asyncio=True)
    stub = runtime.env.NS.getByName("b")
    assert settle(clock, stub.fetch("http://x/task")).body == b"answered"
    clock.advance(5)
    clock.advance(0)
    assert settle(clock, stub.fetch("http://x/read")).body == b"written after the response"


def test_waitUntil_keeps_the_object_alive_while_it_runs_and_a_bare_task_is_cancelled(clock, logged):
    """With a short eviction delay: a waitUntil task keeps the object in memory until it is done
    (its write commits); a bare create_task is cancelled when the object leaves memory, and
    that is logged."""
    runtime = makeRuntime({"NS": Background}, clock=clock, asyncio=True, limits={"evictAfter": 1})
    stub = runtime.env.NS.getByName("w")
    settle(clock, stub.fetch("http://x/waitUntil"))
    for _ in range(4):
        clock.advance(1)
    assert runtime.registry.liveObjects() == 1
    clock.advance(1)
    clock.advance(2)
    assert runtime.registry.liveObjects() == 0
    assert settle(clock, stub.fetch("http://x/read")).body == b"written after the response"

    other = runtime.env.NS.getByName("bare")
    settle(clock, other.fetch("http://x/task"))
    clock.advance(1.5)
    assert runtime.registry.liveObjects() <= 1 and "task(s) it started were still running" in text(logged)
    clock.advance(10)
    assert settle(clock, other.fetch("http://x/read")).body == b"None"


class Aborting(DurableObject):
    async def fetch(self, request):
        async def spin():
            while True:
                await asyncio.sleep(1)

        asyncio.create_task(spin())
        await asyncio.sleep(0.5)
        self.ctx.abort("enough")
        return Response("aborted")


def test_tasks_of_a_reset_object_are_cancelled_and_logged(clock, logged):
    """When an object is reset, tasks it started are cancelled, and the log says so."""
    runtime = makeRuntime({"NS": Aborting}, clock=clock, asyncio=True)
    d = runtime.env.NS.getByName("a").fetch("http://x/")
    clock.advance(0)
    clock.advance(0.5)
    clock.advance(0)
    assert "was reset; 1 task(s) it started were still running and are cancelled" in text(logged)


# -- limits ---------------------------------------------------------------------------------


class Hog(DurableObject):
    async def fetch(self, request):
        if request.url.endswith("/cpu"):
            deadline = time.thread_time() + 0.3
            while time.thread_time() < deadline:
                pass
            await asyncio.sleep(0)
            return Response("never")
        if request.url.endswith("/block"):
            time.sleep(0.2)
        return Response("done")


def test_a_handler_over_the_cpu_limit_is_stopped_and_its_object_reset(clock, logged):
    """A handler that uses more CPU than the limit is stopped at its next await with Cloudflare's
    message; its caller gets a reset error and the object starts fresh."""
    runtime = makeRuntime({"NS": Hog}, clock=clock, asyncio=True, limits={"cpuTimeLimit": 0.1})
    stub = runtime.env.NS.getByName("h")
    first = liveActor(runtime, stub)
    d = stub.fetch("http://x/cpu")
    clock.advance(0)
    with pytest.raises(DurableObjectError, match="exceeded CPU time limit") as info:
        result(d)
    assert info.value.durableObjectReset
    assert first.lifecycle is ObjectLifecycle.BROKEN
    assert settle(clock, runtime.env.NS.getByName("h").fetch("http://x/ok")).body == b"done"


def test_a_step_that_blocks_the_loop_is_logged(clock, logged):
    """time.sleep in a handler holds every other client: the step is logged with its handler."""
    runtime = makeRuntime({"NS": Hog}, clock=clock, asyncio=True, limits={"blockedLoopWarning": 0.05})
    assert settle(clock, runtime.env.NS.getByName("h").fetch("http://x/block")).body == b"done"
    assert "held the event loop for" in text(logged) and "Hog.fetch" in text(logged)


class TaskAware(DurableObject):
    async def fetch(self, request):
        # Before any await: the handler already runs inside its own task.
        mine = asyncio.current_task()
        async with asyncio.timeout(5):
            async with asyncio.TaskGroup() as group:
                first = group.create_task(self.read("missing"))
                second = group.create_task(asyncio.sleep(1, "slept"))
        return Response(f"{mine is not None} {first.result()} {second.result()}")

    async def read(self, key):
        return await self.ctx.storage.get(key)


class CallsTaskAware(WorkerEntrypoint):
    async def fetch(self, request):
        caller = asyncio.current_task()
        response = await self.env.NS.getByName("t").fetch(request)
        return Response(f"{await response.text()} {asyncio.current_task() is caller}")


def test_asyncio_timeout_and_taskgroup_work_before_the_first_await(clock):
    """A handler runs inside its own asyncio task from its first line: asyncio.timeout and
    TaskGroup work there, and a Worker calling it keeps its own task."""
    runtime = makeRuntime(App(CallsTaskAware, durableObjects={"NS": TaskAware}), clock=clock, asyncio=True)
    assert settle(clock, runtime.fetch(Request("http://x/")), 2).body == b"True None slept True"
