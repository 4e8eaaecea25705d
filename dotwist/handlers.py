"""Running user code: a handler may return a value, a ``Deferred``, a coroutine or any awaitable.

Every place the runtime calls into a Worker or a Durable Object (``fetch``, RPC methods,
``alarm``, WebSocket handlers and listeners, ``blockConcurrencyWhile`` callbacks, ``waitUntil``
tasks, transactions) goes through a ``Runner``, so that how user code runs is decided in one place.

``AsyncioRunner`` (the default under Twisted's asyncio reactor) runs each coroutine as an asyncio
task, so handlers can use asyncio (``asyncio.sleep``, ``gather``, ``wait_for``, ``timeout``,
queues, events, asyncio libraries) and await Twisted ``Deferred``s (treq, ``deferLater``) and
dotwist's own calls in the same code: the task is driven through a bridge that hands every
``Deferred`` the coroutine awaits to asyncio as a future. Tasks the handler creates itself
(``asyncio.create_task``, ``gather``) get the same bridge, through the loop's task factory. Two
guarantees are kept:

- **An event starts like a synchronous call.** The object's input gate stays locked from the
  moment an event's handler is invoked until its first ``await`` (or its end), so no later event
  slips in before the handler's synchronous part ran, as on Cloudflare, where a handler runs to its
  first ``await`` at once. A ``blockConcurrencyWhile`` or ``transaction`` started there holds
  every later event.
- **Limits.** A handler whose steps use more CPU time than ``Limits.cpuTimeLimit`` in all is
  stopped at its next ``await`` with Cloudflare's error (the object is reset); a single step that
  holds the event loop for longer than ``Limits.blockedLoopWarning`` (a CPU loop, ``time.sleep``) is
  logged with the handler's name.

``DeferredRunner`` (other reactors, and deterministic tests on a ``task.Clock``) runs coroutines
with Twisted's ``Deferred.fromCoroutine``: synchronously up to their first ``await``; asyncio
primitives are not available there.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import time
import types
from typing import Any, Awaitable, Callable, Coroutine, Generator, Optional, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .context import CURRENT
from .errors import DurableObjectError

T = TypeVar("T")

_log = Logger(namespace="dotwist.handlers")

#: The runner of the runtime whose code is running now (set around the Worker's invocations;
#: objects find theirs through their registry).
RUNNER: contextvars.ContextVar[Optional["Runner"]] = contextvars.ContextVar(
    "dotwist_runner", default=None
)


class Gate(Protocol):
    def lock(self) -> None: ...

    def unlock(self) -> None: ...


class Runner(Protocol):
    """Runs what user code returned to completion; fires with its result."""

    def start(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> Deferred[Any]:
        """Run ``coro``; with ``gate``, keep it locked until the coroutine's first step ends."""
        ...


class CpuTimeLimitExceeded(DurableObjectError):
    """A handler used more CPU time than the limit (Cloudflare: "exceeded CPU time limit")."""


class DeferredRunner:
    """Coroutines driven by Twisted (``Deferred.fromCoroutine``), synchronously up to their first
    ``await``. Needs no event loop; asyncio primitives are not available to the code it runs."""

    def start(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> Deferred[Any]:
        return Deferred.fromCoroutine(coro)


class AsyncioRunner:
    """Coroutines run as asyncio tasks on the running event loop (see the module docstring).

    ``cpuTimeLimit`` (seconds of CPU, summed over a handler's steps) and ``blockedLoopWarning``
    (seconds of wall time in one step) come from ``Limits``; None turns each off.
    """

    def __init__(
        self,
        cpuTimeLimit: Optional[float] = None,
        blockedLoopWarning: Optional[float] = None,
        loop: Optional[asyncio.AbstractEventLoop] = None,
    ) -> None:
        self.cpuTimeLimit = cpuTimeLimit
        self.blockedLoopWarning = blockedLoopWarning
        self._loop = loop
        self._factories: set[int] = set()

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop or asyncio.get_running_loop()
        if id(loop) not in self._factories:
            self._factories.add(id(loop))
            installTaskFactory(loop)
        return loop

    def start(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> Deferred[Any]:
        loop = self.loop()
        result: Deferred[Any] = Deferred()
        started = None
        if gate is not None:
            gate.lock()
            started = gate.unlock
        task = loop.create_task(_drive(coro, result, started, self))
        _adopt(task)
        return result

    def check(self, name: str, step: float, cpu: float) -> Optional[BaseException]:
        """After a step of ``name`` that took ``step`` seconds of wall time, with ``cpu`` seconds
        of CPU in all so far: the error to stop it with, if any."""
        if self.blockedLoopWarning is not None and step > self.blockedLoopWarning:
            _log.warn(
                "{handler} held the event loop for {ms:.0f} ms in one step (a CPU loop, or a "
                "blocking call such as time.sleep): every other object and client waited",
                handler=name, ms=step * 1000,
            )
        if self.cpuTimeLimit is not None and cpu > self.cpuTimeLimit:
            return CpuTimeLimitExceeded(
                f"{name} exceeded CPU time limit ({self.cpuTimeLimit:g} s).",
                durableObjectReset=True,
            )
        return None


def _name(coro: Coroutine[Any, Any, Any]) -> str:
    return getattr(coro, "__qualname__", None) or repr(coro)


@types.coroutine
def _drive(
    coro: Coroutine[Any, Any, Any],
    result: Deferred[Any],
    started: Optional[Callable[[], None]],
    runner: AsyncioRunner,
) -> Generator[Any, Any, None]:
    """Drive a handler's coroutine inside an asyncio task: Deferreds it awaits become futures;
    ``started()`` once its first step ends; ``result`` fires with its outcome."""
    send, throw = coro.send, coro.throw
    value: Any = None
    error: Optional[BaseException] = None
    cpu = 0.0
    loop = asyncio.get_running_loop()
    while True:
        wall, cpuStart = time.perf_counter(), time.thread_time()
        try:
            yielded = send(value) if error is None else throw(error)
        except StopIteration as stop:
            runner.check(_name(coro), time.perf_counter() - wall, 0.0)
            result.callback(stop.value)
            if started is not None:
                started()
            return
        except BaseException as e:
            runner.check(_name(coro), time.perf_counter() - wall, 0.0)
            result.errback(Failure(e))
            if started is not None:
                started()
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return
        step = time.perf_counter() - wall
        cpu += time.thread_time() - cpuStart
        if started is not None:
            started()
            started = None
        value = error = None
        exceeded = runner.check(_name(coro), step, cpu)
        if exceeded is not None:
            coro.close()
            _log.error("{error}", error=str(exceeded))
            result.errback(Failure(exceeded))
            return
        try:
            value, error = yield from _wait(yielded, loop)
        except BaseException as e:  # cancelled while waiting: tell the coroutine
            error = e


def _wait(yielded: Any, loop: asyncio.AbstractEventLoop) -> Generator[Any, Any, tuple[Any, Optional[BaseException]]]:
    """Wait for what a coroutine yielded, as an asyncio task can: a Deferred through a future
    that says when it fired (the coroutine then reads the Deferred's result itself, as it does
    under Twisted), an asyncio future (or a bare yield) as it is. Returns what to send back in:
    always nothing, since both kinds read their own result."""
    if isinstance(yielded, Deferred):
        future: asyncio.Future[None] = loop.create_future()

        def fired(result: object) -> object:
            if not future.done():
                future.set_result(None)
            return result

        def cancelled(f: "asyncio.Future[None]") -> None:
            if f.cancelled():
                yielded.cancel()

        yielded.addBoth(fired)
        future.add_done_callback(cancelled)
        future._asyncio_future_blocking = True
        yield future
        return None, None
    yield yielded
    return None, None


@types.coroutine
def _bridge(coro: Coroutine[Any, Any, T]) -> Generator[Any, Any, T]:
    """A coroutine for a task the handler created itself: the same, with the Deferreds it awaits
    handed to asyncio as futures."""
    send, throw = coro.send, coro.throw
    value: Any = None
    error: Optional[BaseException] = None
    loop = asyncio.get_running_loop()
    while True:
        try:
            yielded = send(value) if error is None else throw(error)
        except StopIteration as stop:
            done: T = stop.value
            return done
        value = error = None
        try:
            value, error = yield from _wait(yielded, loop)
        except BaseException as e:
            error = e


def installTaskFactory(loop: asyncio.AbstractEventLoop) -> None:
    """Make tasks created in dotwist's handlers able to await Deferreds (other tasks are made as
    before, by the previous factory if there was one). Logged, since it changes the loop."""
    previous = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> "asyncio.Future[Any]":
        ours = CURRENT.get() is not None or RUNNER.get() is not None
        if ours and asyncio.iscoroutine(coro):
            coro = _bridge(coro)
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if ours:
            _adopt(task)
        return task

    loop.set_task_factory(factory)
    _log.info(
        "asyncio tasks created by Workers and Durable Objects can await Deferreds "
        "(dotwist installed a task factory on {loop})",
        loop=type(loop).__name__,
    )


def _adopt(task: "asyncio.Future[Any]") -> None:
    """A task started by an object belongs to it: a reset or eviction cancels it."""
    actor = CURRENT.get()
    if actor is not None:
        actor.adoptTask(task)


def currentRunner() -> Runner:
    """The runner for code running now: the object's runtime's, the Worker's, else Twisted's."""
    actor = CURRENT.get()
    if actor is not None:
        return actor.registry.runner
    runner = RUNNER.get()
    return runner if runner is not None else _DEFERRED


_DEFERRED = DeferredRunner()


def asDeferred(result: object, runner: Optional[Runner] = None, gate: Optional[Gate] = None) -> Deferred[Any]:
    """A ``Deferred`` for what user code returned: itself if it is one, a coroutine or other
    awaitable run to completion (by ``runner``, or the current one), or a plain value."""
    if isinstance(result, Deferred):
        return result
    if inspect.iscoroutine(result):
        return (runner or currentRunner()).start(result, gate)
    if isinstance(result, asyncio.Future):
        return Deferred.fromFuture(result)
    if inspect.isawaitable(result):
        return (runner or currentRunner()).start(_await(result), gate)
    return succeed(result)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def invoke(
    fn: Callable[..., object], *args: Any, runner: Optional[Runner] = None, gate: Optional[Gate] = None
) -> Deferred[Any]:
    """Call ``fn(*args)`` and run what it returns; a synchronous exception becomes a failed
    ``Deferred``."""
    try:
        result = fn(*args)
    except BaseException:
        return fail()
    return asDeferred(result, runner, gate)


__all__ = [
    "AsyncioRunner",
    "CpuTimeLimitExceeded",
    "DeferredRunner",
    "RUNNER",
    "Runner",
    "asDeferred",
    "currentRunner",
    "installTaskFactory",
    "invoke",
]
