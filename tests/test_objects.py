"""The object registry: one live instance per ID, ordered delivery, the input gate, resets."""

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, DurableObjectError, Response, WorkerEntrypoint
from dotwist.testing import makeRuntime, result


class Worker(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("worker")




class Counter(DurableObject):
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1
        self.seen = []

    async def fetch(self, request):
        self.seen.append(request.url)
        return Response(f"{len(self.seen)} {self.ctx.id.name}")


def runtimeWith(cls, clock, **limits):
    return makeRuntime(App(Worker, durableObjects={"NS": cls}), clock=clock, limits=limits or None)


def test_one_instance_per_id(clock):
    """Two stubs for one name reach one instance; another name gets its own."""
    Counter.constructed = 0
    ns = runtimeWith(Counter, clock).env.NS
    assert result(ns.getByName("a").fetch("http://x/1")).body == b"1 a"
    assert result(ns.get(ns.idFromName("a")).fetch("http://x/2")).body == b"2 a"
    assert result(ns.getByName("b").fetch("http://x/3")).body == b"1 b"
    assert Counter.constructed == 2


def test_get_is_lazy_and_refuses_foreign_ids(clock):
    """get() constructs nothing; an ID from another namespace is refused."""
    Counter.constructed = 0

    class Other(Counter):
        pass

    runtime = makeRuntime(App(Worker, durableObjects={"NS": Counter, "OTHER": Other}), clock=clock)
    stub = runtime.env.NS.get(runtime.env.NS.newUniqueId())
    assert Counter.constructed == 0 and stub.id.name is None
    with pytest.raises(TypeError, match="namespace"):
        runtime.env.NS.get(runtime.env.OTHER.idFromName("a"))
    with pytest.raises(TypeError, match="DurableObjectId"):
        runtime.env.NS.get("a")


class Gated(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.log = []
        self.release = Deferred()
        ctx.blockConcurrencyWhile(self._init).addErrback(self.log.append)

    async def _init(self):
        self.log.append("init start")
        await self.release
        self.log.append("init end")

    async def fetch(self, request):
        self.log.append(request.url)
        return Response("ok")


def test_blockConcurrencyWhile_in_constructor_holds_events_in_order(clock):
    """No event reaches the object until the constructor's blockConcurrencyWhile finishes;
    then they arrive in the order they were sent through the stub."""
    runtime = runtimeWith(Gated, clock)
    stub = runtime.env.NS.getByName("g")
    pending = [stub.fetch(f"http://x/{i}") for i in range(5)]
    actor = runtime.registry.namespaces["Gated"].actors[stub.id.toString()]
    assert actor.instance.log == ["init start"]
    assert not any(d.called for d in pending)
    actor.instance.release.callback(None)
    assert actor.instance.log == ["init start", "init end"] + [f"http://x/{i}" for i in range(5)]
    assert all(result(d).status == 200 for d in pending)


def test_blockConcurrencyWhile_timeout_resets_the_object(clock):
    """A callback that runs past the limit resets the object; waiting calls fail with the
    reset flag; that stub stays broken, and a new stub's call constructs a fresh instance."""
    runtime = runtimeWith(Gated, clock, blockConcurrencyTimeout=30)
    stub = runtime.env.NS.getByName("g")
    waiting = stub.fetch("http://x/1")
    first = runtime.registry.namespaces["Gated"].actors[stub.id.toString()]
    clock.advance(29.9)
    assert not waiting.called
    clock.advance(0.2)
    with pytest.raises(DurableObjectError) as info:
        result(waiting)
    assert info.value.durableObjectReset and info.value.retryable
    with pytest.raises(DurableObjectError):
        result(stub.fetch("http://x/broken"))
    stub = runtime.env.NS.getByName("g")
    again = stub.fetch("http://x/2")
    second = runtime.registry.namespaces["Gated"].actors[stub.id.toString()]
    assert second is not first and not again.called
    second.instance.release.callback(None)
    assert result(again).status == 200


class Exploding(DurableObject):
    attempts = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).attempts += 1
        if type(self).attempts == 1:
            raise RuntimeError("boom in constructor")

    async def fetch(self, request):
        return Response(f"attempt {type(self).attempts}")


def test_constructor_error_resets_and_next_call_constructs_again(clock):
    """An object whose constructor raises fails that call and breaks that stub; a call through a
    new stub constructs it again."""
    Exploding.attempts = 0
    ns = runtimeWith(Exploding, clock).env.NS
    stub = ns.getByName("e")
    with pytest.raises(DurableObjectError) as info:
        result(stub.fetch("http://x/"))
    assert info.value.durableObjectReset and "boom in constructor" in str(info.value)
    with pytest.raises(DurableObjectError):
        result(stub.fetch("http://x/"))
    assert Exploding.attempts == 1
    assert result(ns.getByName("e").fetch("http://x/")).body == b"attempt 2"


class Raising(DurableObject):
    async def fetch(self, request):
        raise ValueError("bad input")


def test_error_from_object_code_reaches_caller_marked_remote(clock):
    """An exception raised by the object's fetch reaches the caller, flagged remote."""
    stub = runtimeWith(Raising, clock).env.NS.getByName("r")
    with pytest.raises(ValueError, match="bad input") as info:
        result(stub.fetch("http://x/"))
    assert info.value.remote is True


class Aborting(DurableObject):
    after = []

    async def fetch(self, request):
        self.ctx.abort("enough")
        type(self).after.append("ran on")  # never: abort() raises
        return Response("never mind")


def test_abort_resets_the_object(clock):
    """ctx.abort() drops the instance (the registry forgets it), stops the object's code, and the
    caller gets a durableObjectReset error with the reason instead of the response."""
    Aborting.after = []
    runtime = runtimeWith(Aborting, clock)
    stub = runtime.env.NS.getByName("a")
    with pytest.raises(DurableObjectError, match="enough") as info:
        result(stub.fetch("http://x/"))
    assert info.value.durableObjectReset
    assert runtime.registry.liveObjects() == 0
    assert Aborting.after == []


def test_worker_reaches_objects_through_env(clock):
    """The Worker's env has one attribute per binding; a missing one says what exists."""
    runtime = runtimeWith(Counter, clock)
    assert "NS" in repr(runtime.env)
    with pytest.raises(AttributeError, match="bindings: NS"):
        runtime.env.MISSING


class FailsToInitialise(DurableObject):
    constructed = 0

    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        type(self).constructed += 1
        self.attempt = type(self).constructed

        async def load():
            if self.attempt == 1:
                raise ValueError("could not load")

        ctx.blockConcurrencyWhile(load).addErrback(lambda f: None)

    async def fetch(self, request):
        return Response(f"attempt {self.attempt}")


def test_blockConcurrencyWhile_callback_that_raises_resets_the_object(clock):
    """A constructor's blockConcurrencyWhile callback that raises resets the object: the call
    waiting behind it fails with durableObjectReset, and the next call constructs a fresh
    instance that works."""
    FailsToInitialise.constructed = 0
    runtime = runtimeWith(FailsToInitialise, clock)
    with pytest.raises(DurableObjectError) as info:
        result(runtime.env.NS.getByName("f").fetch("http://x/"))
    assert info.value.durableObjectReset
    assert "could not load" in str(info.value)
    assert result(runtime.env.NS.getByName("f").fetch("http://x/")).body == b"attempt 2"
    assert runtime.registry.liveObjects() == 1
