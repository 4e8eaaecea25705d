"""RPC through stubs, error flags, overload, and outbound fetch."""

import datetime
import decimal
import uuid

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource
from twisted.web.server import Site

from dotwist import (
    App,
    DurableObject,
    DurableObjectError,
    RemoteError,
    Response,
    WorkerEntrypoint,
    fetch,
)
from dotwist.config import Limits

from dotwist.testing import makeRuntime, result

from support import freePort, serve, turns


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return await self.env.NS.getByName("x").fetch(request)


class CustomError(Exception):
    def __init__(self, code, detail):
        super().__init__(f"{code}: {detail}")


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.items = []
        self.waiters = []

    def _releaseAll(self):
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def echo(self, value):
        return value

    async def add(self, amount=1, *, label=""):
        self.items.append((amount, label))
        return len(self.items)

    def keep(self, value):
        self.items.append(value)
        return self.items

    def snapshot(self):
        return self.items

    def failValue(self, message):
        raise ValueError(message)

    def failCustom(self):
        raise CustomError(7, "custom")

    async def block(self, value="released"):
        waiter = Deferred()
        self.waiters.append(waiter)
        await waiter
        return value

    def unsendable(self):
        return object()

    def _private(self):
        return "secret"

    async def fetch(self, request):
        return Response("via fetch")


def runtimeWith(clock, **limits):
    return makeRuntime(App(Worker, durableObjects={"NS": Counter}), clock=clock, limits=limits or None)


VALUES = [
    None, True, False, 0, -1, 2**200, 1.5, float("inf"), -0.0, "", "héllo ✓", b"\x00\xff",
    [1, [2, [3]]], (1, "two"), {"a": {"b": [1, 2]}}, datetime.datetime(2026, 1, 2, 3, 4, 5, 6),
    datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))),
    datetime.date(2026, 11, 27), datetime.timedelta(days=1, microseconds=3),
    decimal.Decimal("1.10"), uuid.UUID(int=42), {1, 2, 3},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_values_round_trip_by_value(clock, value):
    """Every value type storage accepts crosses an RPC call and back, equal and of the same type."""
    stub = runtimeWith(clock).env.NS.getByName("v")
    back = result(stub.echo(value))
    assert back == value or (value != value and back != back)
    assert type(back) is type(value)
    if isinstance(value, float) and value == 0:
        assert str(back) == str(value)


def test_arguments_and_results_are_copies(clock):
    """Mutating an argument after the call, or a result after it returns, changes nothing in the
    object: values cross by copy, as they would between processes."""
    stub = runtimeWith(clock).env.NS.getByName("c")
    sent = {"n": 1}
    got = result(stub.keep(sent))
    sent["n"] = 2
    got.append("mutated")
    assert result(stub.snapshot()) == [{"n": 1}]


def test_calls_through_one_stub_arrive_in_order(clock):
    """Many calls made at once through one stub run in the order they were made, even while the
    object is busy with a blocking call."""
    runtime = runtimeWith(clock)
    stub = runtime.env.NS.getByName("o")
    blocker = stub.block()
    calls = [stub.add(i, label=str(i)) for i in range(200)]
    assert [result(c) for c in calls] == list(range(1, 201))
    items = result(stub.snapshot())
    assert items == [(i, str(i)) for i in range(200)]
    actor = next(iter(runtime.registry.namespaces["Counter"].actors.values()))
    actor.instance._releaseAll()
    assert result(blocker) == "released"


def test_remote_errors_keep_type_and_message_and_are_flagged_remote(clock):
    """An exception raised by the object's method reaches the caller as a copy of the same type
    and message, with remote=True, retryable=False."""
    stub = runtimeWith(clock).env.NS.getByName("e")
    with pytest.raises(ValueError, match="bad thing") as info:
        result(stub.failValue("bad thing"))
    assert info.value.remote and not info.value.retryable and not info.value.overloaded
    assert "failValue" in info.value.remoteStack
    with pytest.raises(RemoteError, match="7: custom") as info:
        result(stub.failCustom())
    assert info.value.name == "CustomError" and info.value.remote
    # A remote error does not break the stub.
    assert result(stub.echo(1)) == 1


@pytest.mark.parametrize("name", ["alarm", "webSocketMessage", "webSocketClose", "webSocketError"])
def test_reserved_names_are_not_callable(clock, name):
    """Handlers the runtime calls cannot be called through a stub."""
    stub = runtimeWith(clock).env.NS.getByName("r")
    with pytest.raises(TypeError, match="called by the runtime"):
        result(getattr(stub, name)())


def test_missing_private_and_unsendable(clock):
    """A missing method, a private one, or a result that cannot be copied are clear errors."""
    stub = runtimeWith(clock).env.NS.getByName("m")
    with pytest.raises(TypeError, match='does not implement the method "nope"'):
        result(stub.nope())
    with pytest.raises(AttributeError):
        stub._private
    with pytest.raises(TypeError, match="cannot be returned"):
        result(stub.unsendable())
    with pytest.raises(TypeError, match="cannot be sent"):
        result(stub.echo(object()))
    assert result(stub.fetch("http://x/")).body == b"via fetch"


def test_overload_rejects_at_once_and_recovers(clock):
    """Past the bound on pending calls, new calls fail at once with overloaded=True (no queue
    growth); once the flood drains, the object serves again."""
    runtime = runtimeWith(clock, maxPendingCalls=50)
    stub = runtime.env.NS.getByName("busy")
    pending = [stub.block(i) for i in range(50)]
    rejected = [stub.add(i) for i in range(1000)]
    actor = next(iter(runtime.registry.namespaces["Counter"].actors.values()))
    assert actor.pendingCalls == 50 and len(actor.instance.waiters) == 50
    errors = []
    for d in rejected:
        d.addErrback(lambda f: errors.append(f.value))
    assert len(errors) == 1000
    assert all(e.overloaded and not e.retryable and not e.remote for e in errors)
    assert actor.instance.items == []
    actor.instance._releaseAll()
    assert [result(d) for d in pending] == list(range(50))
    assert actor.pendingCalls == 0
    assert result(runtime.env.NS.getByName("busy").add(99)) == 1


def test_overload_by_bytes(clock):
    """Pending argument bytes are bounded too."""
    runtime = runtimeWith(clock, maxPendingBytes=10_000)
    stub = runtime.env.NS.getByName("bytes")
    first = stub.block("x" * 6000)
    second = stub.block("y" * 6000)
    with pytest.raises(DurableObjectError) as info:
        result(second)
    assert info.value.overloaded
    next(iter(runtime.registry.namespaces["Counter"].actors.values())).instance._releaseAll()
    assert result(first) == "x" * 6000


class Resetting(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.gate = Deferred()
        ctx.blockConcurrencyWhile(lambda: self.gate).addErrback(lambda f: None)

    def ping(self):
        return "pong"

    def abortNow(self):
        self.ctx.abort("asked to")


def test_reset_flags_and_broken_stubs(clock):
    """Calls queued when an object is reset fail with durableObjectReset and retryable (they never
    ran); that stub stays broken; a new stub works."""
    runtime = makeRuntime(App(Worker, durableObjects={"NS": Resetting}), clock=clock, limits={"blockConcurrencyTimeout": 5})
    stub = runtime.env.NS.getByName("r")
    queued = stub.ping()
    clock.advance(6)
    with pytest.raises(DurableObjectError) as info:
        result(queued)
    assert info.value.durableObjectReset and info.value.retryable
    with pytest.raises(DurableObjectError):
        result(stub.ping())
    fresh = runtime.env.NS.getByName("r")
    pending = fresh.ping()
    next(iter(runtime.registry.namespaces["Resetting"].actors.values())).instance.gate.callback(None)
    assert result(pending) == "pong"


class Overloaded(WorkerEntrypoint):
    async def fetch(self, request):
        stub = self.env.NS.getByName("x")
        if request.url.endswith("/block"):
            return Response(await stub.block())
        return Response(str(await stub.add(1)))


@pytest_twisted.ensureDeferred
async def test_overloaded_object_gives_503_from_outside():
    """An HTTP request that meets an overloaded object gets 503 with Retry-After."""
    service, port = await serve(App(Overloaded, durableObjects={"NS": Counter}), Limits().replace(maxPendingCalls=1))
    try:
        blocked = treq.get(f"http://127.0.0.1:{port}/block", persistent=False)
        # The second request must find the first one pending: wait until it is (bounded).
        for _ in range(2000):
            actors = list(service.runtime.registry.namespaces["Counter"].actors.values())
            if actors and actors[0].instance is not None and actors[0].instance.waiters:
                break
            await turns(1)
        else:
            raise AssertionError("the blocking call never reached the object")
        response = await treq.get(f"http://127.0.0.1:{port}/add", persistent=False)
        assert response.code == 503 and response.headers.getRawHeaders("retry-after") == ["1"]
        assert "overloaded" in await response.text()
        actor = next(iter(service.runtime.registry.namespaces["Counter"].actors.values()))
        actor.instance._releaseAll()
        assert (await (await blocked).text()) == "released"
    finally:
        await service.stopService()


class Hello(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"x-upstream", b"yes")
        return b"upstream says " + request.getHeader(b"x-from")

    def render_POST(self, request):
        request.setResponseCode(201)
        return b"got " + request.content.read()


class Caller(DurableObject):
    async def fetch(self, request):
        await self.ctx.storage.put("called", True)
        upstream = await fetch(request.headers.get("x-target"), {"headers": {"X-From": "object"}})
        return Response(await upstream.text(), status=upstream.status, headers={"x-upstream": upstream.headers.get("x-upstream")})


@pytest_twisted.ensureDeferred
async def test_outbound_fetch_from_worker_and_object():
    """fetch() reaches another HTTP service from a Worker and from an object (through its output
    gate); a refused connection is an exception the code can catch."""
    upstream = reactor.listenTCP(0, Site(Hello()), interface="127.0.0.1")
    target = f"http://127.0.0.1:{upstream.getHost().port}/"
    try:
        posted = await fetch(target, {"method": "POST", "body": "data"})
        assert posted.status == 201 and await posted.text() == "got data"

        class Forward(WorkerEntrypoint):
            async def fetch(self, request):
                return await self.env.NS.getByName("c").fetch(request)

        runtime = makeRuntime(App(Forward, durableObjects={"NS": Caller}), clock=reactor)
        from dotwist import Request

        response = await runtime.fetch(Request("http://h/", headers={"x-target": target}))
        assert await response.text() == "upstream says object"
        assert response.headers.get("x-upstream") == "yes"

        with pytest.raises(Exception) as info:
            await fetch(f"http://127.0.0.1:{freePort()}/")
        assert "refused" in repr(info.value).lower() or "ConnectError" in repr(info.value)
    finally:
        await upstream.stopListening()


class Greeter(WorkerEntrypoint):
    async def greet(self, name, punctuation="!"):
        return f"hello {name}{punctuation} ({self.env.GREETING})"

    async def fetch(self, request):
        return Response("greeter fetch")


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(await self.env.GREETER.greet("ada", punctuation="?"))


def test_worker_entrypoint_rpc_through_a_service_binding(clock):
    """A WorkerEntrypoint's public methods are callable through a service binding, by value;
    its fetch too; reserved names are refused."""
    from dotwist import Request

    runtime = makeRuntime(App(Front, vars={"GREETING": "hi"}, services={"GREETER": Greeter}), clock=clock)
    assert result(runtime.fetch(Request("http://h/"))).body == b"hello ada? (hi)"
    assert result(runtime.env.GREETER.fetch("http://h/")).body == b"greeter fetch"
    with pytest.raises(TypeError, match="does not implement"):
        result(runtime.env.GREETER.missing())


class Lingering(WorkerEntrypoint):
    async def fetch(self, request):
        self.ctx.passThroughOnException()
        self.ctx.waitUntil(self.env.DONE)
        if request.url.endswith("/boom"):
            raise RuntimeError("worker bug")
        return Response("answered first")


@pytest_twisted.ensureDeferred
async def test_worker_waitUntil_and_passThroughOnException():
    """waitUntil work may finish after the response; an exception (even after
    passThroughOnException) answers 500 and the server keeps serving."""
    done = Deferred()
    service, port = await serve(App(Lingering, vars={"DONE": done}))
    try:
        response = await treq.get(f"http://127.0.0.1:{port}/", persistent=False)
        assert response.code == 200 and await response.text() == "answered first"
        assert not done.called
        done.callback(None)
        response = await treq.get(f"http://127.0.0.1:{port}/boom", persistent=False)
        assert response.code == 500 and await response.text() == "Worker threw exception"
        response = await treq.get(f"http://127.0.0.1:{port}/", persistent=False)
        assert response.code == 200
    finally:
        await service.stopService()
