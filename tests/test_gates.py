"""Storage through ctx.storage, and the gates that make it safe: input gate, output gate, write
coalescing, transactions, and reset on a failed write. Deterministic: an injected clock."""

import json

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, DurableObjectError, Request, Response, WebSocketPair, WorkerEntrypoint
from dotwist.context import CURRENT, currentActor
from dotwist.gates import InputGate, OutputGate
from dotwist.storage import MemoryBackend
from dotwist.testing import FailingCommits, LaterCommits, connectWebSocket, liveActor, makeRuntime, result


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("worker")


def runtimeWith(cls, clock, storage=None):
    return makeRuntime(App(Worker, durableObjects={"NS": cls}), clock=clock, storage=storage)


def sessionOf(runtime, stub):
    return liveActor(runtime, stub).storage()


# -- the gates on their own -----------------------------------------------------------------


def test_input_gate_runs_in_order_and_holds_events_while_locked():
    """Events run at once while the gate is open, with the gate's owner as the current object;
    while locked they wait, in order, and run when the last (nested) lock is released."""
    ran = []
    gate = InputGate(CURRENT, "owner")
    gate.submit(lambda n: ran.append((n, currentActor())), (1,))
    gate.lock()
    gate.lock()
    gate.submit(lambda n: ran.append((n, currentActor())), (2,))
    gate.submit(lambda n: ran.append((n, currentActor())), (3,))
    gate.unlock()
    assert ran == [(1, "owner")] and gate.waiting == 2
    gate.unlock()
    assert ran == [(1, "owner"), (2, "owner"), (3, "owner")] and not gate.locked
    assert currentActor() is None


def test_input_gate_keeps_order_when_an_event_locks_it_again():
    """An event that locks the gate while waiting events drain stops the drain; the rest run
    after its unlock, still in order."""
    ran = []
    gate = InputGate(CURRENT, "owner")
    gate.lock()
    gate.submit(lambda: (ran.append("a"), gate.lock()), ())
    gate.submit(ran.append, ("b",))
    gate.unlock()
    assert ran == ["a"]
    gate.submit(ran.append, ("c",))
    gate.unlock()
    assert ran == ["a", "b", "c"]


def test_output_gate_releases_each_output_when_the_batch_it_waited_for_is_durable():
    """Output sent after a write into batch 1 waits for batch 1; output after a write into batch
    2 waits for batch 2 even when batch 1 is durable; order is never broken."""
    sent = []
    gate = OutputGate()
    gate.send(sent.append, ("free",))
    gate.waitFor(1)
    gate.send(sent.append, ("after 1",))
    gate.waitFor(2)
    gate.send(sent.append, ("after 2",))
    assert sent == ["free"] and gate.held
    gate.durableThrough(1)
    assert sent == ["free", "after 1"]
    gate.send(sent.append, ("later",))  # must not overtake "after 2"
    gate.durableThrough(2)
    assert sent == ["free", "after 1", "after 2", "later"] and not gate.held


def test_output_gate_failure_drops_what_waited_and_tells_each_waiter():
    """When the writes fail, nothing that waited for them is sent; each waiter hears why."""
    sent, failed = [], []
    gate = OutputGate()
    gate.waitFor(1)
    gate.sendOrFail(sent.append, "x", failed.append)
    gate.send(sent.append, ("y",))
    error = RuntimeError("lost")
    gate.fail(error)
    assert sent == [] and failed == [error] and not gate.held


# -- the gates in objects ----------------------------------------------------------------------


class Counter(DurableObject):
    async def fetch(self, request):
        value = await self.ctx.storage.get("n") or 0
        await self.ctx.storage.put("n", value + 1)
        return Response(str(value + 1))


def test_concurrent_increments_through_storage_awaits_both_count(clock):
    """Two increments sent together both count: a storage await never lets another event in."""
    stub = runtimeWith(Counter, clock).env.NS.getByName("c")
    first, second = stub.fetch("http://x/"), stub.fetch("http://x/")
    clock.advance(0)
    assert (result(first).body, result(second).body) == (b"1", b"2")


class SlowTransfer(DurableObject):
    """A transaction that awaits something outside storage (a timer the test fires)."""

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.outside = Deferred()

    async def fetch(self, request):
        if request.url.endswith("/read"):
            return Response(str(await self.ctx.storage.get("n")))

        async def closure(txn):
            await txn.put("n", 1)
            await self.outside
            await txn.put("n", 2)

        await self.ctx.storage.transaction(closure)
        return Response("done")


def test_transaction_locks_the_input_gate_across_awaits_outside_storage(clock):
    """While a transaction's closure awaits something else, no other event runs (it would see,
    or be rolled back with, the transaction's half-done writes)."""
    runtime = runtimeWith(SlowTransfer, clock)
    stub = runtime.env.NS.getByName("t")
    txn = stub.fetch("http://x/txn")
    read = stub.fetch("http://x/read")
    clock.advance(0)
    assert not read.called
    liveActor(runtime, stub).instance.outside.callback(None)
    clock.advance(0)
    assert result(txn).body == b"done" and result(read).body == b"2"


class Writer(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("k", request.url)
        return Response("written")


def test_response_waits_for_the_write_to_be_durable(clock):
    """The response to a request that wrote is held until the commit at the end of the turn."""
    backend = FailingCommits()
    runtime = runtimeWith(Writer, clock, backend)
    stub = runtime.env.NS.getByName("w")
    response = stub.fetch("http://x/1")
    assert not response.called
    clock.advance(0)
    assert result(response).body == b"written"


def test_failed_write_suppresses_the_response_and_resets_the_object(clock):
    """If the commit fails, the response is never sent, the caller gets a reset error, and a new
    instance sees the data as it was before the failed write."""
    backend = FailingCommits()
    runtime = runtimeWith(Writer, clock, backend)
    stub = runtime.env.NS.getByName("w")
    d = stub.fetch("http://x/good")
    clock.advance(0)
    result(d)
    first = liveActor(runtime, stub)
    backend.failing = True
    bad = stub.fetch("http://x/bad")
    clock.advance(0)
    with pytest.raises(DurableObjectError) as info:
        result(bad)
    assert info.value.durableObjectReset
    backend.failing = False
    second = liveActor(runtime, stub)
    assert second is not first
    assert second.ctx.storage.kv.get("k") == "http://x/good"


class Broadcaster(DurableObject):
    async def fetch(self, request):
        client, server = WebSocketPair()
        server.accept()

        async def onMessage(event):
            await self.ctx.storage.put("last", event.data)
            server.send("saved " + event.data)

        server.addEventListener("message", onMessage)
        return Response(None, status=101, webSocket=client)


def test_websocket_message_waits_for_the_write_before_it(clock):
    """A WebSocket message sent after a put leaves only once the put is durable."""
    runtime = runtimeWith(Broadcaster, clock)
    connection = connectWebSocket(result(runtime.env.NS.getByName("b").fetch("http://x/")))
    connection.send("hello")
    assert connection.sent == []
    clock.advance(0)
    assert connection.messages == ["saved hello"]


class Coalescing(DurableObject):
    async def fetch(self, request):
        storage = self.ctx.storage
        if request.url.endswith("/write"):
            storage.put("a", 1)
            storage.put("b", 2)
            storage.kv.put("c", 3)
            self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (x)")
            self.ctx.storage.sql.exec("INSERT INTO t VALUES (4)")
            return Response("ok")
        return Response("?")


def test_writes_without_await_commit_in_one_batch(clock):
    """put, kv.put and SQL writes made in one turn are committed by exactly one commit."""
    commits = []
    backend = MemoryBackend()
    runtime = runtimeWith(Coalescing, clock, backend)
    stub = runtime.env.NS.getByName("co")
    store = sessionOf(runtime, stub).store
    original = store.commit
    store.commit = lambda: (commits.append(1), original())[1]
    d = stub.fetch("http://x/write")
    clock.advance(0)
    assert result(d).body == b"ok" and commits == [1]
    assert store.sql.exec("SELECT x FROM t").one() == {"x": 4}


class Transfers(DurableObject):
    async def fetch(self, request):
        storage = self.ctx.storage
        await storage.put({"alice": 10, "bob": 0})

        async def transfer(txn):
            await txn.put("alice", await txn.get("alice") - 5)
            await txn.put("bob", await txn.get("bob") + 5)
            if request.url.endswith("/rollback"):
                txn.rollback()
            if request.url.endswith("/raise"):
                raise ValueError("nope")

        try:
            await storage.transaction(transfer)
        except ValueError:
            pass
        return Response.json(await storage.get(["alice", "bob"]))


@pytest.mark.parametrize("path,expected", [("/ok", {"alice": 5, "bob": 5}), ("/rollback", {"alice": 10, "bob": 0}), ("/raise", {"alice": 10, "bob": 0})])
def test_transaction_commits_or_rolls_back_as_a_whole(clock, path, expected):
    """A transaction keeps all its writes, or none after rollback() or an exception."""
    stub = runtimeWith(Transfers, clock).env.NS.getByName("t")
    d = stub.fetch("http://x" + path)
    clock.advance(0)
    assert json.loads(result(d).body) == expected


class Caller(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("before", 1)
        reply = await self.env.NS.getByName("callee").fetch("http://x/callee")
        return Response("callee said " + await reply.text())


class Callee(DurableObject):
    async def fetch(self, request):
        return Response("hi")


def test_outgoing_request_waits_for_earlier_writes(clock):
    """A request an object sends to another object leaves only after its earlier writes commit."""
    seen = []

    class Recording(Callee):
        async def fetch(self, request):
            seen.append(request.url)
            return Response("hi")

    class Both(DurableObject):
        async def fetch(self, request):
            if request.url.endswith("/callee"):
                return await Recording.fetch(self, request)
            return await Caller.fetch(self, request)

    stub = runtimeWith(Both, clock).env.NS.getByName("caller")
    d = stub.fetch("http://x/start")
    assert seen == []
    clock.advance(0)
    assert seen == ["http://x/callee"]
    clock.advance(0)
    assert result(d).body == b"callee said hi"


def test_sync_fires_when_writes_are_durable(clock):
    """storage.sync() resolves only after the pending batch has committed."""
    runtime = runtimeWith(Writer, clock)
    stub = runtime.env.NS.getByName("s")
    storage = liveActor(runtime, stub).ctx.storage
    assert storage.sync().called
    storage.kv.put("x", 1)
    waiter = storage.sync()
    assert not waiter.called
    clock.advance(0)
    assert waiter.called and not sessionOf(runtime, stub).store.hasPendingWrites


# -- commits that become durable later (a replicated store) ------------------------------------


class TwoBatches(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("k", request.url)
        return Response(request.url)


def test_each_response_waits_for_its_own_batch_when_commits_complete_later(clock):
    """With one commit in flight, a second request's write goes into the next batch; the first
    response leaves when the first commit is durable, the second only when the second is."""
    backend = LaterCommits()
    stub = runtimeWith(TwoBatches, clock, backend).env.NS.getByName("b")
    first = stub.fetch("http://x/1")
    clock.advance(0)
    second = stub.fetch("http://x/2")
    clock.advance(0)
    assert backend.pending == 1 and not first.called and not second.called
    backend.complete()
    assert result(first).body == b"http://x/1" and not second.called
    clock.advance(0)
    assert backend.pending == 1
    backend.complete()
    assert result(second).body == b"http://x/2"


def test_a_commit_that_fails_later_resets_the_object_and_sends_nothing(clock):
    """A replicated commit that fails after the fact: the response that waited for it is never
    sent, and its caller gets a reset error."""
    backend = LaterCommits()
    runtime = runtimeWith(TwoBatches, clock, backend)
    stub = runtime.env.NS.getByName("f")
    d = stub.fetch("http://x/lost")
    clock.advance(0)
    backend.fail()
    with pytest.raises(DurableObjectError) as info:
        result(d)
    assert info.value.durableObjectReset


class RollsBack(DurableObject):
    async def fetch(self, request):
        sql = self.ctx.storage.sql
        sql.exec("CREATE TABLE IF NOT EXISTS t (x PRIMARY KEY)")
        if request.url.endswith("/setup"):
            sql.exec("INSERT INTO t VALUES (1)")
            return Response("ok")
        await self.ctx.storage.put("before", 1)  # a write that output now waits for
        try:
            sql.exec("INSERT OR ROLLBACK INTO t VALUES (1)")
        except Exception as e:
            return Response(type(e).__name__)
        return Response("inserted")


def test_a_batch_sqlite_discards_resets_the_object(clock):
    """When SQLite rolls the whole uncommitted batch back (INSERT OR ROLLBACK, or a writing query
    past its time limit), the writes that output waited for are gone: the caller gets a reset
    error instead of a response, and the object's durable state is as before the batch."""
    runtime = runtimeWith(RollsBack, clock)
    stub = runtime.env.NS.getByName("r")
    d = stub.fetch("http://x/setup")
    clock.advance(0)
    assert result(d).body == b"ok"
    d = stub.fetch("http://x/boom")
    clock.advance(0)
    with pytest.raises(DurableObjectError) as info:
        result(d)
    assert info.value.durableObjectReset
    assert liveActor(runtime, runtime.env.NS.getByName("r")).ctx.storage.kv.get("before") is None
