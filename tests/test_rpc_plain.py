"""The plain-value copy of RPC's fast path (``rpc._plain``): lists and dicts of ``str``, ``int``,
``float``, ``bool`` and None (with ``str`` keys) are copied in one pass, anything else goes the
general way (``rpc._clone``, then the codec). These tests pin down that the plain path is taken
for plain values, that its copies are real copies both ways, that its size is the one the general
way counts, and that what it refuses (subclasses, tuples, sets, bytes, keys that are not ``str``,
cycles, deep or huge values, unsupported values) crosses exactly as before.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import pytest

from dotwist import App, DurableObject, WorkerEntrypoint, rpc
from dotwist.objects import Actor
from dotwist.storage import codec
from dotwist.testing import liveActor, makeRuntime, result


class Worker(WorkerEntrypoint):
    pass


class Store(DurableObject):
    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.kept: list[Any] = []

    def keep(self, value: Any, *, named: Any = None) -> Any:
        self.kept.append(value)
        if named is not None:
            self.kept.append(named)
        return self.kept

    async def keepAsync(self, value: Any) -> Any:
        self.kept.append(value)
        return {"kept": self.kept, "last": value}

    def echo(self, value: Any) -> Any:
        return value

    def returnKept(self) -> Any:
        return self.kept


class StrKey(str):
    pass


class Sub(list):  # type: ignore[type-arg]
    pass


def exact(a: Any, b: Any) -> bool:
    """Equal, of the same types all the way down, dict keys included (floats bit for bit)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exact(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(exact(x, y) and exact(a[x], b[y]) for x, y in zip(a, b))
    if isinstance(a, (set, frozenset)):
        return a == b and sorted(map(repr, map(type, a))) == sorted(map(repr, map(type, b)))
    return bool(a == b)


@pytest.fixture
def fast(clock: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A stub and its live actor; the general call path (``Actor.call``) fails the test."""
    runtime = makeRuntime(App(Worker, durableObjects={"NS": Store}), clock=clock)
    stub = runtime.env.NS.getByName("plain")
    actor = liveActor(runtime, stub)
    monkeypatch.setattr(Actor, "call", lambda *a, **k: pytest.fail("the general call path was taken"))
    return stub, actor


@pytest.fixture
def noGeneralCopy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The general copies (``_clone``, ``_copy``) and the codec fail the test if used."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a plain value took the general copy")

    for name in ("_clone", "_copy", "_cloneCall"):
        monkeypatch.setattr(rpc, name, refuse)
    monkeypatch.setattr(rpc.codec, "encode", refuse)


PLAIN = [
    [],
    {},
    ["a", 1, 2.5, True, None, -0.0, float("nan"), 2**100],
    {"n": 1, "tags": ["a", "b", "c"], "meta": {"by": "bench", "round": 1}},
    [[[{"deep": [[], {}]}]]],
    {"": {"é ✓": ["\udcff lone surrogate"]}},
]


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_values_take_the_plain_copy_both_ways(fast: Any, noGeneralCopy: None, value: Any) -> None:
    """A plain argument and a plain result are copied by ``_plain`` only (no general copy, no
    codec), and arrive as the codec's round trip would give them, as new lists and dicts."""
    stub, actor = fast
    back = result(stub.echo(value))
    assert exact(back, value)
    if isinstance(value, (list, dict)):
        assert back is not value


@pytest.mark.parametrize("value", PLAIN, ids=repr)
def test_plain_copies_are_what_the_codec_gives(value: Any) -> None:
    """``_plain``'s copy is the codec's round trip, type for type, and its size is the one the
    general copy counts (so pending bytes are counted as before)."""
    copy, size = rpc._plain(value, rpc._CLONE_DEPTH)
    assert exact(copy, codec.decode(codec.encode(value)))
    total = [0]
    rpc._clone(value, rpc._CLONE_DEPTH, total)
    assert size == total[0]
    args: tuple[Any, ...] = ("s", 1, value, b"xy")
    assert rpc.cloneCall(args, {"k": value, "s": "v"})[2] == rpc._cloneCall(args, {"k": value, "s": "v"})[2]


def test_plain_arguments_and_results_are_copies_both_ways(fast: Any, noGeneralCopy: None) -> None:
    """After a call with plain values, mutating what was sent, what came back or the object's own
    state changes nothing on the other side, at any depth, positional and named, sync and async."""
    stub, actor = fast
    sent = {"list": [1, [2]], "dict": {"x": {"y": []}}}
    named = [{"z": [0]}]
    got = result(stub.keep(sent, named=named))
    sent["list"][1].append("caller")  # type: ignore[attr-defined]
    sent["dict"]["x"]["y"].append("caller")  # type: ignore[index]
    named[0]["z"].append("caller")
    got[0]["list"].append("result")
    got.append("result")
    assert actor.instance.kept == [{"list": [1, [2]], "dict": {"x": {"y": []}}}, [{"z": [0]}]]
    actor.instance.kept[0]["dict"]["x"]["y"].append("object")
    actor.instance.kept[1][0]["z"].append("object")
    assert got[0]["dict"]["x"]["y"] == [] and got[1] == [{"z": [0]}]

    back = result(stub.keepAsync([2]))
    assert back["last"] == [2] and back["last"] is not actor.instance.kept[2]
    actor.instance.kept[2].append("object")
    assert back["last"] == [2] and back["kept"][2] == [2]


def test_shared_references_are_copied_separately(fast: Any, noGeneralCopy: None) -> None:
    stub, actor = fast
    inner = {"n": [1]}
    back = result(stub.echo([inner, inner]))
    assert back == [{"n": [1]}, {"n": [1]}] and back[0] is not back[1] and back[0]["n"] is not back[1]["n"]


NOT_PLAIN = [
    ["tuple inside", (1, [2])],
    {"set": {1, 2}},
    [b"bytes", bytearray(b"ba")],
    {1: "int key", "s": [1]},
    {StrKey("k"): "str subclass key"},
    [StrKey("str subclass value")],
    [Sub([1, 2])],
    collections.OrderedDict(a=[1]),
    [collections.OrderedDict(a=[1]), collections.defaultdict(list, b=[2])],
    Sub([{"a": 1}]),
    [1, 2.0, True, complex(1, 2)],
]


@pytest.mark.parametrize("value", NOT_PLAIN, ids=repr)
def test_values_that_are_not_plain_cross_as_the_codec_gives_them(fast: Any, value: Any) -> None:
    """A list or dict holding anything but plain values (or a subclass of one) goes the general
    way and arrives as the codec's round trip gives it (types normalised), or is refused with the
    same error."""
    stub, actor = fast
    if type(value) in (list, dict):
        with pytest.raises(rpc._NotClonable):
            rpc._plain(value, rpc._CLONE_DEPTH)
    try:
        expected: Any = codec.decode(codec.encode(value))
    except Exception:
        with pytest.raises(Exception) as sent:
            codec.encode(((value,), {}))
        with pytest.raises(TypeError, match="RPC arguments cannot be sent") as info:
            result(stub.echo(value))
        assert str(info.value) == f"RPC arguments cannot be sent: {sent.value}"
        return
    assert exact(result(stub.echo(value)), expected)
    actor.instance.kept = value  # as a result too
    assert exact(result(stub.returnKept()), expected)


def test_refusals_are_those_of_the_codec(fast: Any) -> None:
    """Plain-looking values that the plain copy refuses (a cycle, nesting past the limit, an
    unsupported value deep inside) give the codec's errors, as arguments and as results; the
    object stays usable and its counts are back to zero."""
    stub, actor = fast
    cycle: list[Any] = ["a"]
    cycle.append({"back": cycle})
    with pytest.raises(TypeError, match="cannot be sent.*cycle"):
        result(stub.echo(cycle))
    deep: Any = {"x": 1}
    for _ in range(150):
        deep = [deep]
    with pytest.raises(TypeError, match="cannot be sent.*nested"):
        result(stub.echo(deep))
    with pytest.raises(TypeError, match="cannot be sent.*object"):
        result(stub.echo({"a": [1, {"b": object()}]}))
    actor.instance.kept = cycle
    with pytest.raises(TypeError, match='result of "keep" cannot be returned.*cycle'):
        result(stub.keep(1))
    actor.instance.kept = []
    assert result(stub.echo({"ok": [1]})) == {"ok": [1]}
    assert actor.pendingCalls == 0 and actor.pendingBytes == 0 and actor.running == 0


def test_the_plain_copy_stops_at_the_depth_and_size_limits() -> None:
    """``_plain`` refuses what is deeper than its depth or larger than ``_clone``'s size limit, so
    that the general way (and the codec's limits) decide."""
    deep: Any = []
    for _ in range(rpc._CLONE_DEPTH):
        deep = [deep]
    with pytest.raises(rpc._NotClonable):
        rpc._plain(deep, rpc._CLONE_DEPTH)
    assert rpc._plain(deep[0], rpc._CLONE_DEPTH)[0] == deep[0]
    big = ["x" * 1000] * 10
    monkeypatch = pytest.MonkeyPatch()
    try:
        monkeypatch.setattr(rpc, "_CLONE_SIZE", 5000)
        with pytest.raises(rpc._NotClonable):
            rpc._plain(big, rpc._CLONE_DEPTH)
        with pytest.raises(rpc._NotClonable):
            rpc._plain({"k": big}, rpc._CLONE_DEPTH)
    finally:
        monkeypatch.undo()
