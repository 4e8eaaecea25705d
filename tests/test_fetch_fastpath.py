"""The ``stub.fetch`` fast path (``Actor.fetchNow``): a Worker's request to an object in memory that
can take it at once runs the object's ``fetch`` straight away, and, if it answers in its first step,
without a chain of Deferreds. These tests pin down that nothing else changes: the input gate
(``blockConcurrencyWhile``, transactions, queued requests and their order), the bound on pending
calls, the output gate (a response waits until the writes before it are durable; a failed commit
gives the reset), errors, resets and broken stubs, counts, ``currentActor``, under both runners.

Each guard of the fast path has a test here that fails without it: most tests compare what the
caller sees with the general path's (``Actor.call``) and count which path was taken.

Also here: ``Request(url)`` and ``Response(body)`` take a shortcut for their common forms; they
are checked against the general construction on many inputs.
"""

from __future__ import annotations

import contextvars
import random
import sys
from typing import Any, Callable, Optional

import pytest
from twisted.internet.defer import Deferred, succeed

from dotwist import App, DurableObject, DurableObjectError, Request, Response, WorkerEntrypoint
from dotwist.context import currentActor
from dotwist.fetch import Headers
from dotwist.objects import Actor
from dotwist.testing import FailingCommits, LaterCommits, liveActor, makeRuntime, result


class Worker(WorkerEntrypoint):
    pass


class Boom(Exception):
    pass


class Store(DurableObject):
    """``fetch`` does what the URL's last segment says."""

    def __init__(self, ctx: Any, env: Any) -> None:
        super().__init__(ctx, env)
        self.order: list[Any] = []
        self.waiters: list[Deferred[Any]] = []

    async def fetch(self, request: Request) -> Response:
        op = request.url.rsplit("/", 1)[1]
        if op.startswith("n"):
            self.order.append(int(op[1:]))
            return Response(op)
        if op == "wait":
            waiter: Deferred[Any] = Deferred()
            self.waiters.append(waiter)
            got = await waiter
            self.order.append(("waited", got))
            return Response(f"waited {got}")
        if op == "write":
            self.ctx.storage.put("k", "v")  # not awaited: the response still waits for it
            return Response("written")
        if op == "raise":
            raise Boom("sync part")
        if op == "raiselater":
            waiter = Deferred()
            self.waiters.append(waiter)
            await waiter
            raise Boom("after a wait")
        if op == "abort":
            self.ctx.abort("asked to")
        if op == "swallowabort":
            try:
                self.ctx.abort("swallowed")
            except BaseException:
                pass
            return Response("returned after the reset")
        if op == "who":
            return Response("me" if currentActor() is not None and currentActor().ctx is self.ctx else "not me")
        if op == "body":
            return Response(await request.text())
        if op == "transaction":
            release: Deferred[Any] = Deferred()
            self.waiters.append(release)

            async def inside(txn: Any) -> None:
                await txn.put("t", 1)
                await release

            self.ctx.storage.transaction(inside)
            return Response("transaction started")
        if op == "block":
            release = Deferred()
            self.waiters.append(release)
            self.ctx.blockConcurrencyWhile(lambda: release)
            return Response("blocked")
        if op == "spin":
            sum(range(20000))  # CPU in the first step, then a wait: the runner counts it
            waiter = Deferred()
            self.waiters.append(waiter)
            await waiter
            return Response("spun")
        if op == "poke":
            self.order.append("poking")
            poke, self.env.poke = self.env.poke, None
            poke.callback(None)
            self.order.append("poked")
            return Response("poked")
        if op == "callother":
            self.ctx.storage.put("k", "v")
            other = self.env.NS.getByName("other")
            return await other.fetch("http://o/n99")
        return Response("?", status=400)

    def release(self, value: Any = None) -> None:
        waiters, self.waiters = self.waiters, []
        for waiter in waiters:
            waiter.callback(value)


class SyncStore(DurableObject):
    def fetch(self, request: Request) -> Any:
        op = request.url.rsplit("/", 1)[1]
        if op == "raise":
            raise Boom("sync fetch")
        if op == "deferred":
            return succeed(Response("from a Deferred"))
        return Response("sync " + op)


APP = App(Worker, durableObjects={"NS": Store, "SYNC": SyncStore})


class Paths:
    """Counts which path each ``stub.fetch`` took: ``fast`` (fetchNow answered) or ``general``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, general: bool = False) -> None:
        self.fast = 0
        self.general = 0
        fetchNow = Actor.fetchNow
        call = Actor.call
        paths = self

        def spyFetchNow(self: Actor, request: Request, size: int) -> Optional[Deferred[Any]]:
            if general:
                return None
            d = fetchNow(self, request, size)
            if d is not None:
                paths.fast += 1
            return d

        def spyCall(self: Actor, method: Callable[..., Any], *args: Any, size: int = 0) -> Deferred[Any]:
            paths.general += 1
            return call(self, method, *args, size=size)

        monkeypatch.setattr(Actor, "fetchNow", spyFetchNow)
        monkeypatch.setattr(Actor, "call", spyCall)


def runtimeFor(clock: Any, **kwargs: Any) -> Any:
    return makeRuntime(APP, clock=clock, **kwargs)


def setUp(clock: Any, monkeypatch: pytest.MonkeyPatch, name: str = "o", general: bool = False, **kwargs: Any) -> Any:
    runtime = runtimeFor(clock, **kwargs)
    stub = runtime.env.NS.getByName(name)
    actor = liveActor(runtime, stub)
    return runtime, stub, actor, Paths(monkeypatch, general)


def describe(d: Deferred[Any]) -> Any:
    """What the caller sees: the response's status, headers and body, or the error's type, message
    and flags."""
    try:
        response = result(d)
    except BaseException as e:
        return ("error", type(e), str(e), getattr(e, "durableObjectReset", None), getattr(e, "remote", None))
    return ("response", response.status, response.headers.rawItems(), response.body)


def test_a_request_that_needs_no_waiting_answers_at_once(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path is taken; the response comes as a fired Deferred with no callbacks; the
    counts are those of the general path."""
    runtime, stub, actor, paths = setUp(clock, monkeypatch)
    before = actor.stats.events["fetch"]
    d = stub.fetch("http://o/n1")
    assert d.called
    assert result(d).status == 200 and result(d).body == b"n1"
    assert paths.fast == 1 and paths.general == 0
    assert actor.stats.events["fetch"] == before + 1
    assert actor.pendingCalls == 0 and actor.pendingBytes == 0 and actor.running == 0
    req = Request("http://o/body", method="POST", body="payload")
    assert result(stub.fetch(req)).body == b"payload"
    assert paths.fast == 2 and actor.stats.events["fetch"] == before + 2


def test_the_object_runs_as_itself(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside the fast path ``currentActor()`` is the object; after it, the caller's is back."""
    _, stub, _, paths = setUp(clock, monkeypatch)
    assert result(stub.fetch("http://o/who")).body == b"me"
    assert paths.fast == 1 and currentActor() is None


def test_a_request_that_waits_finishes_later(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stub, actor, paths = setUp(clock, monkeypatch)
    d = stub.fetch("http://o/wait")
    assert paths.fast == 1 and not d.called
    assert actor.pendingCalls == 1 and actor.running == 1
    actor.instance.release("x")
    assert result(d).body == b"waited x"
    assert actor.pendingCalls == 0 and actor.running == 0


@pytest.mark.parametrize("asyncio", [False, True], ids=["deferred", "asyncio"])
@pytest.mark.parametrize(
    "ns,op",
    [("NS", "n5"), ("NS", "raise"), ("NS", "raiselater"), ("NS", "wait"), ("NS", "nope"),
     ("SYNC", "x"), ("SYNC", "raise"), ("SYNC", "deferred"), ("NS", "abort"), ("NS", "swallowabort")],
)
def test_the_caller_sees_what_the_general_path_gives(
    clock: Any, monkeypatch: pytest.MonkeyPatch, ns: str, op: str, asyncio: bool
) -> None:
    """Responses, errors (type, message, flags), error counts and the stub's breaking are the
    same on both paths, under both runners."""
    seen = []
    for general in (False, True):
        with monkeypatch.context() as m:
            runtime = runtimeFor(clock, asyncio=asyncio)
            stub = getattr(runtime.env, ns).getByName(op)
            actor = liveActor(runtime, stub)
            paths = Paths(m, general)
            errors = dict(actor.stats.errors)
            d = stub.fetch(f"http://o/{op}")
            taken = (paths.fast, paths.general)
            clock.advance(0)
            if actor.instance is not None and hasattr(actor.instance, "release"):
                actor.instance.release("r")
                clock.advance(0)
            outcome = describe(d)
            again = describe(stub.fetch("http://o/n1"))
            clock.advance(0)
            counts = {k: v - errors.get(k, 0) for k, v in actor.stats.errors.items()}
            seen.append((outcome, again, counts, actor.brokenBy is None, actor.running))
            assert taken == ((0, 1) if general else (1, 0))
    assert seen[0] == seen[1]


def test_abort_breaks_the_stub_as_on_the_general_path(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that aborts its object breaks the stub it came through: later requests through it
    fail at once with the same error, even once a new incarnation is live."""
    runtime, stub, actor, paths = setUp(clock, monkeypatch)
    with pytest.raises(DurableObjectError) as first:
        result(stub.fetch("http://o/abort"))
    assert paths.fast == 1 and first.value.durableObjectReset
    fresh = runtime.env.NS.getByName("o")
    assert result(fresh.fetch("http://o/n1")).body == b"n1"  # a new incarnation, live
    d = stub.fetch("http://o/n2")
    with pytest.raises(DurableObjectError) as second:
        result(d)
    assert second.value is first.value
    assert liveActor(runtime, fresh).instance.order == [1]


def test_a_reply_after_a_reset_is_the_reset(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fetch that returns normally after its object was reset gives the reset error, not its
    response (its output gate is broken)."""
    _, stub, actor, paths = setUp(clock, monkeypatch)
    with pytest.raises(DurableObjectError, match="swallowed"):
        result(stub.fetch("http://o/swallowabort"))
    assert paths.fast == 1 and actor.running == 0


def test_the_response_waits_until_the_write_before_it_is_durable(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = LaterCommits()
    _, stub, actor, paths = setUp(clock, monkeypatch, storage=backend)
    d = stub.fetch("http://o/write")
    assert paths.fast == 1 and not d.called
    clock.advance(0)
    assert backend.pending == 1 and not d.called
    later = stub.fetch("http://o/n1")  # answers at once, but leaves after the held response
    assert paths.fast == 2 and not later.called
    backend.complete()
    assert result(d).body == b"written" and result(later).body == b"n1"
    assert actor.pendingCalls == 0 and actor.running == 0
    assert result(stub.fetch("http://o/n2")).body == b"n2"


def test_a_failed_commit_gives_the_reset_instead_of_the_response(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = FailingCommits()
    backend.failing = True
    _, stub, actor, paths = setUp(clock, monkeypatch, storage=backend)
    d = stub.fetch("http://o/write")
    assert paths.fast == 1 and not d.called
    clock.advance(0)
    with pytest.raises(DurableObjectError) as info:
        result(d)
    assert info.value.durableObjectReset and actor.brokenBy is not None


def test_a_locked_gate_holds_the_request(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """While ``blockConcurrencyWhile`` runs, a request waits at the gate (general path) and runs
    when the gate opens."""
    _, stub, actor, paths = setUp(clock, monkeypatch)
    release: Deferred[Any] = Deferred()
    actor.ctx.blockConcurrencyWhile(lambda: release)
    d = stub.fetch("http://o/n1")
    assert paths.fast == 0 and paths.general == 1
    assert not d.called and actor.instance.order == []
    release.callback(None)
    assert result(d).body == b"n1" and actor.instance.order == [1]


def test_an_open_transaction_holds_the_request(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stub, actor, paths = setUp(clock, monkeypatch)
    started = stub.fetch("http://o/transaction")  # held: the transaction wrote
    d = stub.fetch("http://o/n1")
    assert paths.fast == 1 and paths.general == 1
    assert not d.called and actor.instance.order == []
    actor.instance.release()
    clock.advance(0)
    assert result(started).body == b"transaction started"
    assert result(d).body == b"n1" and actor.instance.order == [1]


def test_a_request_never_overtakes_queued_ones(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests queued at a locked gate run first, in order, even when a Worker woken by the
    first of them sends another request while the others still wait (the gate is open then,
    with requests waiting)."""
    _, stub, actor, paths = setUp(clock, monkeypatch)
    release: Deferred[Any] = Deferred()
    actor.ctx.blockConcurrencyWhile(lambda: release)
    sent: list[Deferred[Any]] = []

    async def worker() -> None:
        await stub.fetch("http://o/n0")
        sent.append(stub.fetch("http://o/n9"))

    # A Worker's coroutine, started outside the object: it resumes in its own context.
    first = Deferred.fromCoroutine(contextvars.Context().run(worker))
    queued = [stub.fetch(f"http://o/n{i}") for i in (1, 2, 3)]
    assert paths.fast == 0 and not first.called
    release.callback(None)
    assert first.called and len(sent) == 1
    assert actor.instance.order == [0, 1, 2, 3, 9]
    assert [result(d).body for d in queued + sent] == [b"n1", b"n2", b"n3", b"n9"]
    assert result(stub.fetch("http://o/n10")).body == b"n10" and paths.fast == 1


def test_a_request_that_waits_lets_later_ones_run(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stub, actor, paths = setUp(clock, monkeypatch)
    waiting = stub.fetch("http://o/wait")
    later = [stub.fetch(f"http://o/n{i}") for i in range(3)]
    assert paths.fast == 4 and [result(d).body for d in later] == [b"n0", b"n1", b"n2"]
    actor.instance.release(7)
    assert result(waiting).body == b"waited 7"
    assert actor.instance.order == [0, 1, 2, ("waited", 7)]


def test_a_request_over_the_pending_count_is_refused_as_before(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stub, actor, paths = setUp(clock, monkeypatch, limits={"maxPendingCalls": 1})
    waiting = stub.fetch("http://o/wait")
    assert paths.fast == 1 and actor.pendingCalls == 1
    with pytest.raises(DurableObjectError, match="overloaded"):
        result(stub.fetch("http://o/n1"))
    assert paths.fast == 1 and paths.general == 1 and actor.stats.overloaded == 1
    assert actor.instance.order == []
    actor.instance.release()
    assert result(waiting).body == b"waited None"
    assert result(stub.fetch("http://o/n2")).body == b"n2" and paths.fast == 2


def test_a_request_over_the_pending_bytes_is_refused_as_before(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, stub, actor, paths = setUp(clock, monkeypatch, limits={"maxPendingBytes": 10})
    big = Request("http://o/body", method="POST", body="x" * 11)
    with pytest.raises(DurableObjectError, match="overloaded"):
        result(stub.fetch(big))
    assert paths.fast == 0 and paths.general == 1 and actor.stats.overloaded == 1
    small = Request("http://o/body", method="POST", body="x" * 10)
    assert result(stub.fetch(small)).body == b"x" * 10 and paths.fast == 1
    assert actor.pendingBytes == 0


def test_an_object_not_live_is_not_run_here(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An incarnation that was reset (or left memory) never runs a request on the fast path; a
    stub's request constructs the object the general way."""
    runtime, stub, actor, paths = setUp(clock, monkeypatch)
    actor.reset(DurableObjectError("gone", durableObjectReset=True))
    assert actor.fetchNow(Request("http://o/n1"), 0) is None
    other = runtime.env.NS.getByName("not constructed yet")
    assert result(other.fetch("http://o/n1")).body == b"n1"
    assert paths.general == 1 and paths.fast == 0


def test_a_request_from_an_object_waits_for_its_output_gate(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request an object sends leaves only once its earlier writes are durable: never the fast
    path, which is for Workers' requests."""
    backend = LaterCommits()
    runtime, stub, actor, paths = setUp(clock, monkeypatch, storage=backend)
    other = liveActor(runtime, runtime.env.NS.getByName("other"))
    d = stub.fetch("http://o/callother")
    clock.advance(0)
    assert other.instance.order == []  # the request waits for the caller's write
    backend.complete()
    clock.advance(0)
    assert other.instance.order == [99]
    assert result(d).body == b"n99"


def test_a_router_takes_every_request(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a multi-process deployment (a router is set) requests go to the router, never straight
    to the local object."""
    runtime, stub, actor, paths = setUp(clock, monkeypatch)
    routed: list[Any] = []

    class Router:
        def send(self, namespace: Any, objectId: Any, method: Any, args: Any, size: int) -> Deferred[Any]:
            routed.append(args)
            return succeed(Response("routed"))

    runtime.registry.router = Router()
    assert result(stub.fetch("http://o/n1")).body == b"routed"
    assert len(routed) == 1 and actor.instance.order == [] and paths.fast == 0


def test_the_fast_path_under_the_asyncio_runner(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the asyncio runner a request that needs no waiting answers at once, and one that
    waits runs on in its task."""
    _, stub, actor, paths = setUp(clock, monkeypatch, asyncio=True)
    d = stub.fetch("http://o/n1")
    assert d.called and result(d).body == b"n1"
    waiting = stub.fetch("http://o/wait")
    assert paths.fast == 2 and not waiting.called
    actor.instance.release(3)
    clock.advance(0)
    assert result(waiting).body == b"waited 3"
    assert actor.pendingCalls == 0 and actor.running == 0


def test_cpu_time_is_counted_as_on_the_general_path(clock: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the asyncio runner the CPU time of a fetch's first step counts against
    ``cpuTimeLimit`` on the fast path too: past it, the caller gets the limit's error and the
    object is reset, as on the general path."""
    seen = []
    for general in (False, True):
        with monkeypatch.context() as m:
            _, stub, actor, paths = setUp(
                clock, m, name=f"spin{general}", asyncio=True, general=general, limits={"cpuTimeLimit": 1e-9}
            )
            d = stub.fetch("http://o/spin")
            clock.advance(0)
            outcome = describe(d)
            seen.append((outcome[:2], outcome[3], actor.brokenBy is not None, actor.stats.resets))
            assert paths.fast == (0 if general else 1)
    assert seen[0] == seen[1] and seen[0][0][1].__name__ == "CpuTimeLimitExceeded" and seen[0][2]


@pytest.mark.parametrize("general", [False, True], ids=["fast", "general"])
def test_the_gate_stays_locked_through_the_first_step(
    clock: Any, monkeypatch: pytest.MonkeyPatch, general: bool
) -> None:
    """Under the asyncio runner the input gate is locked while a fetch's first step runs: a
    request sent meanwhile (by a Worker that the step woke) waits until the step ends, on both
    paths."""
    runtime, stub, actor, paths = setUp(clock, monkeypatch, asyncio=True, general=general)
    poke: Deferred[Any] = Deferred()
    runtime.registry.env.poke = poke
    sent: list[Deferred[Any]] = []

    async def worker() -> None:
        await poke
        sent.append(stub.fetch("http://o/n5"))

    Deferred.fromCoroutine(contextvars.Context().run(worker))
    d = stub.fetch("http://o/poke")
    clock.advance(0)
    assert result(d).body == b"poked" and result(sent[0]).body == b"n5"
    assert actor.instance.order == ["poking", "poked", 5]
    assert paths.fast == (0 if general else 1)


# -- Request(url) and Response(body) shortcuts ------------------------------------------------------

URLS = [
    "http://o/", "http://o", "https://example.com/a/b?c=d#e", "HTTP://X/", "hTtPs://a.b:8080/x",
    "http://@/", "http://user:pw@host:1/p", "http://x:99999999/", "http://[::1]/", "http://[::1/",
    "http://x]/", "http:///path", "http:/x", "http:x", "ftp://x/", "//x/", "x", "", " http://x/",
    "http://x/ a", "http://x/\t", "http://x\n/", "http://é/", "http://x/é", "http://x?y", "http://x#y",
    "http://a b/", "http://x/%zz", "http://x/[a]", "https://", "https://?", "http://\x00/",
    "httpx://x/", "https:/", "http://x/\x7f", "http://ｘ/", "http://x\u2100/",
]


def randomUrls(n: int) -> list[str]:
    rng = random.Random(18)
    alphabet = "hHtTpPsS:/?#[]@.%:-_~!$&'()*+,;= \t\n\x00\x7féx01"
    urls = []
    for _ in range(n):
        prefix = rng.choice(["http://", "https://", "HTTP://", "http:/", "", "ftp://"])
        urls.append(prefix + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12))))
    return urls


def constructed(make: Callable[[], Any]) -> Any:
    try:
        r = make()
    except Exception as e:
        return ("error", type(e), str(e))
    return (type(r), r.url, r.method, r.headers.rawItems(), r.body, r.bodyUsed, getattr(r, "cf", None))


@pytest.mark.parametrize("url", URLS)
def test_request_from_a_url_is_as_the_general_construction(url: str) -> None:
    """``Request(url)`` (shortcut) equals ``Request(url, {})`` (general path): same attributes, or
    the same error."""
    assert constructed(lambda: Request(url)) == constructed(lambda: Request(url, {}))


def test_request_from_random_urls_is_as_the_general_construction() -> None:
    """The same on 20,000 strings made of URL pieces and awkward characters."""
    for url in randomUrls(20000):
        assert constructed(lambda: Request(url)) == constructed(lambda: Request(url, {})), url


def test_the_request_shortcut_is_taken_for_plain_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain absolute URL is not parsed; any other is."""
    parsed: list[str] = []

    def urlsplit(url: str) -> Any:
        parsed.append(url)
        return real(url)

    module = sys.modules["dotwist.fetch"]
    real = module.urlsplit
    monkeypatch.setattr(module, "urlsplit", urlsplit)
    for url in ["http://o/", "https://example.com/a/b?c=d#e", "HTTP://X/"]:
        Request(url)
    assert parsed == []
    for url in ["http://[::1]/", " http://x/", "http://x/ a", "http://é/"]:
        Request(url)
    assert parsed == ["http://[::1]/", " http://x/", "http://x/ a", "http://é/"]


def responded(make: Callable[[], Any]) -> Any:
    try:
        r = make()
    except Exception as e:
        return ("error", type(e), str(e))
    return (type(r), r.status, r.statusText, r.headers.rawItems(), r.body, r.bodyUsed, r.webSocket, r.ok)


class StrSub(str):
    pass


class BytesSub(bytes):
    pass


BODIES = [
    "", "ok", "héllo ✓", "\x00", b"", b"ok", b"\xff\x00", None, bytearray(b"ba"), memoryview(b"mv"),
    StrSub("sub"), BytesSub(b"sub"), 12, ["x"], {"a": 1}, ("t",), "\ud800",
]


@pytest.mark.parametrize("body", BODIES, ids=lambda b: f"{type(b).__name__}{len(repr(b))}")
def test_response_from_a_body_is_as_the_general_construction(body: Any) -> None:
    """``Response(body)`` (shortcut) equals ``Response(body, {})`` (general path)."""
    assert responded(lambda: Response(body)) == responded(lambda: Response(body, {}))


def test_a_shortcut_response_is_independent() -> None:
    a, b = Response("x"), Response("x")
    a.headers.set("x-a", "1")
    assert not b.headers.has("x-a") and Response("y").headers.get("content-type") == "text/plain;charset=UTF-8"
    assert isinstance(Response(b"z").headers, Headers)


@pytest.mark.parametrize(
    "options",
    [{"method": "POST"}, {"method": "get"}, {"headers": {"a": "b"}}, {"body": "x", "method": "PUT"},
     {"body": "x"}, {"redirect": "manual"}, {"redirect": "follow"}, {"cf": {"k": 1}}],
    ids=repr,
)
def test_a_request_with_options_is_as_before(options: dict[str, Any]) -> None:
    """With any option given, ``Request`` builds what the same options in ``init`` give."""
    url = "http://o/x"
    assert constructed(lambda: Request(url, **options)) == constructed(lambda: Request(url, dict(options)))


@pytest.mark.parametrize(
    "options",
    [{"status": 404}, {"status": 201}, {"statusText": "Fine"}, {"headers": {"a": "b"}},
     {"headers": {"content-type": "x/y"}}, {"status": 101}, {"webSocket": object()}],
    ids=repr,
)
@pytest.mark.parametrize("body", ["x", b"x", None])
def test_a_response_with_options_is_as_before(body: Any, options: dict[str, Any]) -> None:
    """With any option given, ``Response`` builds what the same options in ``init`` give."""
    assert responded(lambda: Response(body, **options)) == responded(lambda: Response(body, dict(options)))
    assert responded(lambda: Response(body, dict(options))) != responded(lambda: Response(body))


def test_the_sdk_spellings_of_a_response_are_as_before() -> None:
    assert responded(lambda: Response("x", 404)) == responded(lambda: Response("x", {"status": 404}))
    assert responded(lambda: Response("x", status_text="Hi")) == responded(lambda: Response("x", statusText="Hi"))
    assert responded(lambda: Response("x", 200, "Hi")) == responded(lambda: Response("x", statusText="Hi"))
    assert responded(lambda: Response("x", web_socket=object())) == responded(lambda: Response("x", webSocket=object()))[:1] + responded(lambda: Response("x", webSocket=object()))[1:]
