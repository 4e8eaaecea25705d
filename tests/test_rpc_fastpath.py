"""The RPC fast path (``Actor.callNow``): a Worker's call to an object in memory that can take it at
once runs without encoding its arguments, and, if the method returns in its first step, without a
chain of Deferreds. These tests pin down that it keeps RPC's semantics: copies both ways (as the
codec's round trip makes them), errors, order, the output gate, resets, the pending-call counts,
under both runners.

Most tests here forbid the general path (``Actor.call``) once the object is constructed, so they
fail if the fast path stops being taken, not only if it goes wrong.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import datetime
import decimal
import enum
import math
import uuid
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, DurableObjectError, RemoteError, WorkerEntrypoint
from dotwist.objects import Actor
from dotwist.storage import codec
from dotwist.testing import FailingCommits, LaterCommits, liveActor, makeRuntime, result

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("fastpath_test_var", default="caller's")


class Worker(WorkerEntrypoint):
    pass


class Custom(Exception):
    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


class Store(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.kept: list[Any] = []
        self.order: list[Any] = []
        self.waiters: list[Deferred[Any]] = []

    def keep(self, value: Any) -> Any:
        self.kept.append(value)
        return self.kept

    async def keepAsync(self, value: Any, *, extra: Any = None) -> Any:
        self.kept.append(value)
        return {"kept": self.kept, "extra": extra}

    def echo(self, value: Any) -> Any:
        return value

    def record(self, n: int) -> int:
        self.order.append(n)
        return n

    async def recordAfterWait(self, n: int) -> int:
        self.order.append(("start", n))
        waiter: Deferred[Any] = Deferred()
        self.waiters.append(waiter)
        got = await waiter
        self.order.append(("end", n))
        return [n, got]  # type: ignore[return-value]

    async def twoWaits(self) -> Any:
        first: Deferred[Any] = Deferred()
        self.waiters.append(first)
        a = await first
        second: Deferred[Any] = Deferred()
        self.waiters.append(second)
        try:
            await second
        except KeyError as e:
            return [a, f"caught {e.args[0]}"]
        return [a, "not thrown"]

    def release(self, value: Any = None) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(value)

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def failCustom(self) -> None:
        raise Custom(7, "custom")

    async def failLater(self) -> None:
        waiter: Deferred[Any] = Deferred()
        self.waiters.append(waiter)
        await waiter
        raise KeyError("later")

    def abortNow(self) -> None:
        self.ctx.abort("asked to")

    def unsendable(self) -> Any:
        return [1, object()]

    def write(self, key: str, value: Any) -> Any:
        self.ctx.storage.put(key, value)  # not awaited: the reply still waits for it
        self.kept = value
        return value

    async def setVar(self) -> str:
        VAR.set("the object's")
        return VAR.get()


def runtimeFor(clock: Any, **kwargs: Any) -> Any:
    return makeRuntime(App(Worker, durableObjects={"NS": Store}), clock=clock, **kwargs)


@pytest.fixture
def onlyFast(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Construct the object, then make the general call path fail the test if it is used."""

    def construct(runtime: Any, name: str = "o") -> Any:
        stub = runtime.env.NS.getByName(name)
        actor = liveActor(runtime, stub)

        def general(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the call took the general path, not the fast one")

        monkeypatch.setattr(Actor, "call", general)
        return stub, actor

    return construct


def sameStructure(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down (floats compared bit for bit)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(sameStructure(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(sameStructure(a[k], b[k]) for k in a)
    return bool(a == b)


class Color(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


class Fixed(datetime.tzinfo):
    def utcoffset(self, dt: Any) -> datetime.timedelta:
        return datetime.timedelta(hours=1)


VALUES = [
    [1, [2, [3, {"a": [4]}]]],
    {"a": {"b": [1, 2]}, 3: "int key", (1, 2): "tuple key", frozenset({1}): "frozenset key"},
    ([1], "tuple holding a list"),
    (1, "only immutables", (2, 3)),
    {1, 2, "three"},
    frozenset({(1, 2), "x"}),
    [None, True, False, 0, -1, 2**200, 1.5, -0.0, float("nan"), float("inf"), "héllo ✓", b"\x00"],
    [datetime.datetime(2026, 1, 2, 3, 4, 5, 6), datetime.date(2026, 1, 2), datetime.timedelta(days=1)],
    [datetime.datetime(2026, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30)))],
    [datetime.time(1, 2, 3, tzinfo=datetime.timezone.utc), decimal.Decimal("1.10"), uuid.UUID(int=42)],
    # Subclasses and look-alikes cross as their base type, as through the codec:
    [Color.RED, Point(1, [2]), collections.OrderedDict(a=1), collections.defaultdict(list, b=[1])],
    [bytearray(b"ab"), memoryview(b"cd"), True],
    [datetime.datetime(2026, 6, 1, 12, tzinfo=ZoneInfo("Europe/Paris")), datetime.datetime(2026, 1, 1, fold=1)],
    {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__ + str(len(repr(v))))
def test_values_cross_as_the_codec_round_trip_gives_them(clock: Any, onlyFast: Any, value: Any) -> None:
    """An argument and a result cross the fast path exactly as they would through the codec
    (types normalised, structure and values kept), and the copies are new objects."""
    stub, _ = onlyFast(runtimeFor(clock))
    expected = codec.decode(codec.encode(value))
    back = result(stub.echo(value))
    assert sameStructure(back, expected)
    if isinstance(value, (list, dict, set)):
        assert back is not value


def test_arguments_and_results_are_copies_both_ways(clock: Any, onlyFast: Any) -> None:
    """After the call, mutating what was sent, what came back, or the object's own state changes
    nothing on the other side, at any depth, for sync and async methods and keyword arguments."""
    stub, actor = onlyFast(runtimeFor(clock))
    sent = {"list": [1, [2]], "set": {1}, "tuple": ([3],), "dict": {"x": {"y": []}}}
    got = result(stub.keep(sent))
    sent["list"][1].append("caller")
    sent["tuple"][0].append("caller")
    sent["dict"]["x"]["y"].append("caller")
    sent["set"].add("caller")
    got[0]["list"].append("result")
    got.append("result")
    assert actor.instance.kept == [{"list": [1, [2]], "set": {1}, "tuple": ([3],), "dict": {"x": {"y": []}}}]
    actor.instance.kept[0]["dict"]["x"]["y"].append("object")
    assert got[0]["dict"]["x"]["y"] == []

    extra = [1]
    back = result(stub.keepAsync([2], extra=extra))
    extra.append("caller")
    assert back == {"kept": [actor.instance.kept[0], [2]], "extra": [1]}
    assert back["kept"][1] is not actor.instance.kept[1] and back["extra"] is not extra
    actor.instance.kept[1].append("object")
    assert back["kept"][1] == [2]


def test_shared_references_arrive_as_separate_copies(clock: Any, onlyFast: Any) -> None:
    """A list holding the same dict twice arrives holding two equal dicts, as through the codec."""
    stub, actor = onlyFast(runtimeFor(clock))
    inner = {"n": 1}
    result(stub.keep([inner, inner]))
    kept = actor.instance.kept[0]
    assert kept == [{"n": 1}, {"n": 1}] and kept[0] is not kept[1]


def test_values_that_cannot_cross_are_refused_as_before(clock: Any, onlyFast: Any) -> None:
    """Unsupported arguments, cycles, nesting past the codec's limit, and results that cannot be
    copied give the same TypeErrors as the codec path; the object stays usable."""
    stub, actor = onlyFast(runtimeFor(clock))
    with pytest.raises(TypeError, match="RPC arguments cannot be sent.*object"):
        result(stub.echo({"k": object()}))
    cycle: list[Any] = [1]
    cycle.append(cycle)
    with pytest.raises(TypeError, match="cannot be sent.*cycle"):
        result(stub.echo(cycle))
    deep: Any = "x"
    for _ in range(150):
        deep = [deep]
    with pytest.raises(TypeError, match="cannot be sent.*nested"):
        result(stub.echo(deep))
    with pytest.raises(TypeError, match="cannot be sent.*tzinfo|cannot be sent.*Fixed"):
        result(stub.echo([datetime.datetime(2026, 1, 2, tzinfo=Fixed())]))
    with pytest.raises(TypeError, match='result of "unsendable" cannot be returned'):
        result(stub.unsendable())
    assert actor.instance.kept == [] and result(stub.echo([1])) == [1]
    assert actor.pendingCalls == 0 and actor.pendingBytes == 0 and actor.running == 0


def test_errors_keep_type_message_and_flags(clock: Any, onlyFast: Any) -> None:
    """An exception raised by the method, at once or after an await, reaches the caller as a copy
    of its type (or RemoteError naming it) with remote=True; the stub stays usable."""
    stub, actor = onlyFast(runtimeFor(clock))
    with pytest.raises(ValueError, match="bad") as info:
        result(stub.fail("bad"))
    assert info.value.remote and not info.value.retryable and "fail" in info.value.remoteStack
    with pytest.raises(RemoteError, match="7: custom") as custom:
        result(stub.failCustom())
    assert custom.value.name == "Custom" and custom.value.remote
    later = stub.failLater()
    assert not later.called
    actor.instance.release()
    with pytest.raises(KeyError, match="later") as keyError:
        result(later)
    assert keyError.value.remote
    with pytest.raises(TypeError, match='does not implement the method "nope"'):
        result(stub.nope())
    assert result(stub.echo("still fine")) == "still fine"
    assert actor.stats.errors["rpc"] == 4


def test_abort_resets_and_breaks_the_stub(clock: Any, onlyFast: Any) -> None:
    """ctx.abort() in a fast call: the caller gets durableObjectReset, and that stub is broken."""
    runtime = runtimeFor(clock)
    stub, actor = onlyFast(runtime)
    with pytest.raises(DurableObjectError, match="asked to") as info:
        result(stub.abortNow())
    assert info.value.durableObjectReset
    with pytest.raises(DurableObjectError) as again:
        result(stub.echo(1))
    assert again.value is info.value
    assert actor.brokenBy is not None


def test_a_suspended_call_resumes_with_values_and_errors(clock: Any, onlyFast: Any) -> None:
    """A method that awaits is handed to Twisted from where its first step stopped: values and
    exceptions still reach it, across more than one await."""
    stub, actor = onlyFast(runtimeFor(clock))
    d = stub.twoWaits()
    assert not d.called and actor.pendingCalls == 1 and actor.running == 1
    actor.instance.release("first")
    assert not d.called
    waiter = actor.instance.waiters.pop()
    waiter.errback(KeyError("thrown in"))
    assert result(d) == ["first", "caught thrown in"]
    assert actor.pendingCalls == 0 and actor.running == 0


def test_calls_run_in_the_order_they_were_made(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls queued at a locked gate (the general path) and calls made after it opens (the fast
    path) run in the order they were made; a call that waits lets later calls run (the gate opens
    at an await), and each caller gets its own result."""
    runtime = runtimeFor(clock)
    stub = runtime.env.NS.getByName("order")
    actor = liveActor(runtime, stub)
    gateOpen: Deferred[Any] = Deferred()
    actor.ctx.blockConcurrencyWhile(lambda: gateOpen)
    fast: list[str] = []
    callNow = Actor.callNow

    def spy(self: Actor, name: str, args: Any, kwargs: Any) -> Any:
        d = callNow(self, name, args, kwargs)
        if d is not None:
            fast.append(name)
        return d

    monkeypatch.setattr(Actor, "callNow", spy)
    queued = [stub.record(i) for i in range(5)]
    assert actor.instance.order == [] and not any(d.called for d in queued) and fast == []
    gateOpen.callback(None)
    assert [result(d) for d in queued] == list(range(5))
    waiting = stub.recordAfterWait(5)
    later = [stub.record(i) for i in range(6, 9)]
    assert fast == ["recordAfterWait"] + ["record"] * 3
    assert [result(d) for d in later] == [6, 7, 8] and not waiting.called
    actor.instance.release("released")
    assert result(waiting) == [5, "released"]
    assert actor.instance.order == [0, 1, 2, 3, 4, ("start", 5), 6, 7, 8, ("end", 5)]


def test_the_result_waits_until_the_write_before_it_is_durable(clock: Any, onlyFast: Any) -> None:
    """A result that depends on a write is held by the output gate until the write is durable, and
    it is the value as it was when the method returned, not as it is when released."""
    backend = LaterCommits()
    runtime = runtimeFor(clock, storage=backend)
    stub, actor = onlyFast(runtime)
    d = stub.write("k", {"v": [1]})
    assert not d.called
    actor.instance.kept["v"].append("changed after returning")
    clock.advance(0)
    assert backend.pending == 1 and not d.called
    backend.complete()
    assert result(d) == {"v": [1]}
    assert actor.pendingCalls == 0 and actor.running == 0
    assert result(stub.echo("no write: no wait")) == "no write: no wait"


def test_a_failed_write_gives_a_reset_instead_of_the_result(clock: Any, onlyFast: Any) -> None:
    """If the write the result waited for fails, the caller gets a reset error, never the result."""
    backend = FailingCommits()
    backend.failing = True
    runtime = runtimeFor(clock, storage=backend)
    stub, actor = onlyFast(runtime)
    d = stub.write("k", "lost")
    assert not d.called
    clock.advance(0)
    with pytest.raises(DurableObjectError) as info:
        result(d)
    assert info.value.durableObjectReset and actor.brokenBy is not None


def test_the_methods_context_does_not_leak_to_the_caller(clock: Any, onlyFast: Any) -> None:
    """A context variable an async method sets stays in the method's context."""
    stub, _ = onlyFast(runtimeFor(clock))
    assert result(stub.setVar()) == "the object's"
    assert VAR.get() == "caller's"


class AsyncioStore(Store):
    async def sleepy(self, value: Any) -> Any:
        assert asyncio.current_task() is not None
        await asyncio.sleep(1)
        return [value, VAR.get()]

    async def inTask(self) -> bool:
        return asyncio.current_task() is not None


def test_the_fast_path_under_the_asyncio_runner(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the asyncio runner a fast call runs in a task (asyncio works in it), returns at once
    when it can, and waits on the loop when it sleeps; copies and context as on the other runner."""
    runtime = makeRuntime(App(Worker, durableObjects={"NS": AsyncioStore}), clock=clock, asyncio=True)
    stub = runtime.env.NS.getByName("a")
    actor = liveActor(runtime, stub)
    monkeypatch.setattr(Actor, "call", lambda *a, **k: pytest.fail("general path"))
    assert result(stub.inTask()) is True
    sent = [1]
    d = stub.sleepy(sent)
    sent.append(2)
    assert not d.called and actor.pendingCalls == 1
    clock.advance(1)
    clock.advance(0)
    assert result(d) == [[1], "caller's"]
    assert result(stub.setVar()) == "the object's" and VAR.get() == "caller's"
    assert actor.pendingCalls == 0 and actor.running == 0


def test_a_value_whose_copy_would_explode_is_refused_as_by_the_codec(
    clock: Any, onlyFast: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shared references can make a small value's copy enormous (each level holds the one below
    twice): it is refused with the codec's size error, as an argument and as a result, instead of
    being copied until memory runs out. (The limits are lowered here, so that this takes
    milliseconds; the codec's own limit is 256 MiB.)"""
    from dotwist import rpc

    monkeypatch.setattr(rpc, "_CLONE_SIZE", 100_000)
    monkeypatch.setattr(rpc, "_COPY_ITEMS", 10_000)
    monkeypatch.setattr(rpc, "_CODEC_MAX_SIZE", 100_000)
    stub, actor = onlyFast(runtimeFor(clock))
    value: Any = []
    for _ in range(18):  # 2**18 lists once copied: past every limit above, yet copyable
        value = [value, value]
    with pytest.raises(TypeError, match="cannot be sent.*larger than"):
        result(stub.echo(value))
    actor.instance.kept = value
    with pytest.raises(TypeError, match="cannot be returned.*larger than"):
        result(stub.keep(1))


def test_a_dropped_stub_is_freed_at_once(clock: Any) -> None:
    """A stub whose methods were used is freed when dropped, by reference counting (no cycle for
    the garbage collector to find)."""
    import gc
    import weakref

    runtime = runtimeFor(clock)
    stub = runtime.env.NS.getByName("w")
    assert result(stub.echo(1)) == 1 and stub.echo is stub.echo
    ref = weakref.ref(stub)
    gc.disable()
    try:
        del stub
        assert ref() is None
    finally:
        gc.enable()
