"""First steps: a Worker that answers without waiting gives its Response with no Deferred in
between, and which asyncio task a handler's first step runs in under the asyncio runner.

A handler runs inside an asyncio task from its first line (``asyncio.current_task()``,
``asyncio.timeout`` and ``TaskGroup`` work there). Handlers that finish in their first step share
a task made ahead, one per depth of first steps running inside each other (a Worker calling an
object, an object calling another), so a request that needs no waiting makes no task at all; a
handler that waits keeps its task to itself, and the next handler at its depth gets another."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from twisted.internet.defer import Deferred

from dotwist import App, DurableObject, Request, Response, WorkerEntrypoint
from dotwist.testing import TestClock, makeRuntime, result

SEEN: list[tuple[str, Any]] = []


class Inner(DurableObject):
    async def fetch(self, request):
        SEEN.append(("inner", asyncio.current_task()))
        return Response("inner")


class Middle(DurableObject):
    async def fetch(self, request):
        SEEN.append(("middle", asyncio.current_task()))
        if request.url.endswith("/deep"):
            await self.env.INNER.getByName("i").fetch(request)
        if request.url.endswith("/wait"):
            before = asyncio.current_task()
            await asyncio.sleep(1)
            SEEN.append(("middle after wait", asyncio.current_task() is before))
        return Response("middle")


class Front(WorkerEntrypoint):
    async def fetch(self, request):
        SEEN.append(("worker", asyncio.current_task()))
        response = await self.env.MIDDLE.getByName("m").fetch(request)
        return Response(await response.text())


def runtime(clock: TestClock):
    SEEN.clear()
    app = App(Front, durableObjects={"MIDDLE": Middle, "INNER": Inner})
    return makeRuntime(app, clock=clock, asyncio=True)


def tasks(kind: str) -> list[Any]:
    return [task for name, task in SEEN if name == kind]


def test_nested_first_steps_each_reuse_the_task_of_their_depth(clock: TestClock) -> None:
    """Three requests that need no waiting, through a Worker and the object it calls: each
    depth's first steps run in one task, a different one per depth."""
    rt = runtime(clock)
    answers = [rt.fetch("http://x/quick") for _ in range(3)]
    assert [result(d).body for d in answers] == [b"middle"] * 3  # answered without the loop
    worker, middle = tasks("worker"), tasks("middle")
    assert len(worker) == len(middle) == 3
    assert all(task is not None for task in worker + middle)
    assert len({id(t) for t in worker}) == 1
    assert len({id(t) for t in middle}) == 1
    assert worker[0] is not middle[0]


def test_a_deeper_call_runs_in_a_task_of_its_own(clock: TestClock) -> None:
    """An object calling another object: the callee never shares its caller's task."""
    rt = runtime(clock)
    answer = rt.fetch("http://x/deep")
    clock.settle(0)
    assert result(answer).body == b"middle"
    (worker,), (middle,), (inner,) = tasks("worker"), tasks("middle"), tasks("inner")
    assert len({id(worker), id(middle), id(inner)}) == 3


def test_a_nested_handler_that_waits_keeps_its_task_and_the_next_one_gets_another(clock: TestClock) -> None:
    rt = runtime(clock)
    waiting = rt.fetch("http://x/wait")  # the object sleeps: its task is its own from now on
    quick = rt.fetch("http://x/quick")
    assert result(quick).body == b"middle"
    assert not waiting.called
    first, second = tasks("middle")
    assert first is not second
    assert tasks("worker")[0] is not tasks("worker")[1]  # the first Worker waits on the object
    clock.settle(1)
    assert result(waiting).body == b"middle"
    assert ("middle after wait", True) in SEEN
    # Once the waiting request is done, the spare tasks serve again: no new task per request.
    SEEN.clear()
    for _ in range(2):
        assert result(rt.fetch("http://x/quick")).body == b"middle"
    again = tasks("middle")
    assert again[0] is again[1]


class Quick(WorkerEntrypoint):
    def fetch(self, request):
        return Response("now")


class Slow(WorkerEntrypoint):
    async def fetch(self, request):
        await asyncio.sleep(1)
        return Response("later")


@pytest.mark.parametrize("onAsyncio", [False, True], ids=["twisted-driver", "asyncio"])
def test_a_worker_that_answers_in_its_first_step_needs_no_deferred(clock: TestClock, onAsyncio: bool) -> None:
    """``Runtime.fetchFirst`` (what the HTTP front uses): the Response itself when the Worker
    answered without waiting, else a Deferred for it; ``fetch`` gives a fired Deferred."""
    quick = makeRuntime(App(Quick), clock=clock, asyncio=onAsyncio)
    done, response = quick.fetchFirst(Request("http://x/"))
    assert done and isinstance(response, Response) and response.body == b"now"
    d = quick.fetch(Request("http://x/"))
    assert d.called and result(d).body == b"now"
    if onAsyncio:
        slow = makeRuntime(App(Slow), clock=clock, asyncio=True)
        done, answer = slow.fetchFirst(Request("http://x/"))
        assert not done and isinstance(answer, Deferred) and not answer.called
        clock.settle(1)
        assert result(answer).body == b"later"
