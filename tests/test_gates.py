"""Storage through ctx.storage, and the gates that make it safe: input gate, output gate, write
coalescing, transactions, and reset on a failed write. Deterministic: an injected clock."""

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater

from dotwist import App, DurableObject, DurableObjectError, Response, WebSocketPair, WorkerEntrypoint
from dotwist.storage import MemoryBackend
from dotwist.worker import Runtime

from support import RecordingTransport, result


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("worker")


def runtimeWith(cls, clock, storage=None):
    return Runtime(App(Worker, durableObjects={"NS": cls}), clock, storage=storage or MemoryBackend())


def actorOf(runtime, stub):
    return runtime.registry.actorFor(runtime.registry.namespaces[stub._namespace.name], stub.id)


class Counter(DurableObject):
    async def fetch(self, request):
        options = {"allowConcurrency": True} if request.url.endswith("/racy") else {}
        value = await self.ctx.storage.get("n", options) or 0
        await self.ctx.storage.put("n", value + 1)
        return Response(str(value + 1))


def slowReads(runtime, stub, clock):
    """Make this object's reads answer one clock tick after they read, as a networked backend's
    would: the value is read when asked for, and arrives later."""
    storage = actorOf(runtime, stub).state.storage

    def later(op):
        value = op()
        return deferLater(clock, 0.001, lambda: value)

    storage._readLater = later


def test_input_gate_prevents_interleaving_across_await_get(clock):
    """Two increments sent together both count: the second waits at the input gate while the
    first's read is pending. With allowConcurrency the same code loses an update, which shows the
    gate is what prevents it."""
    runtime = runtimeWith(Counter, clock)
    stub = runtime.env.NS.getByName("c")
    slowReads(runtime, stub, clock)
    first, second = stub.fetch("http://x/"), stub.fetch("http://x/")
    clock.pump([0.001] * 10)
    assert (result(first).body, result(second).body) == (b"1", b"2")

    racy1, racy2 = stub.fetch("http://x/racy"), stub.fetch("http://x/racy")
    clock.pump([0.001] * 10)
    assert (result(racy1).body, result(racy2).body) == (b"3", b"3")


class Writer(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("k", request.url)
        return Response("written")


class FailingCommits(MemoryBackend):
    """A backend whose commits fail while ``failing`` is set."""

    failing = False

    def open(self, namespace, objectId):
        store = super().open(namespace, objectId)
        backend = self
        original = store.commit

        def commit():
            if backend.failing:
                from dotwist.storage.errors import CommitError

                store.rollback()
                raise CommitError("disk full (simulated)")
            original()

        store.commit = commit
        return store


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
    first = actorOf(runtime, stub)
    backend.failing = True
    bad = stub.fetch("http://x/bad")
    clock.advance(0)
    with pytest.raises(DurableObjectError) as info:
        result(bad)
    assert info.value.durableObjectReset
    backend.failing = False
    second = actorOf(runtime, stub)
    assert second is not first
    assert second.state.storage.kv.get("k") == "http://x/good"


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
    from dotwist import Headers, Request

    response = result(runtime.registry.actorFor(runtime.registry.namespaces["Broadcaster"], runtime.env.NS.idFromName("b")).call(
        lambda instance, r: instance.fetch(r), Request("http://x/")))
    transport = RecordingTransport()
    response.webSocket._attach(transport)
    response.webSocket._received(b"hello", False)
    assert transport.sent == []
    clock.advance(0)
    assert transport.sent == [(b"saved hello", False)]


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
    storage = actorOf(runtime, stub).state.storage
    original = storage._store.commit
    storage._store.commit = lambda: (commits.append(1), original())
    d = stub.fetch("http://x/write")
    clock.advance(0)
    assert result(d).body == b"ok" and commits == [1]
    assert storage.sql.exec("SELECT x FROM t").one() == {"x": 4}


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
    import json

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
    storage = actorOf(runtime, stub).state.storage
    assert storage.sync().called
    storage.kv.put("x", 1)
    waiter = storage.sync()
    assert not waiter.called
    clock.advance(0)
    assert waiter.called and not storage._store.hasPendingWrites
