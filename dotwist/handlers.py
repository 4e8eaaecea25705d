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
from asyncio.events import _get_running_loop, _set_running_loop
from asyncio.tasks import _enter_task, _leave_task  # what 3.12's eager tasks do; see _firstStep
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

    def runFirst(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> tuple[bool, Any]:
        """As ``start``, without a ``Deferred`` for a coroutine that returns in its first step:
        ``(True, value)`` if it did, else ``(False, deferred)`` (which fires with its outcome,
        an exception raised in the first step included)."""
        ...


class CpuTimeLimitExceeded(DurableObjectError):
    """A handler used more CPU time than the limit (Cloudflare: "exceeded CPU time limit")."""


class _FirstStep:
    """``start`` for a runner that has ``runFirst``: a handler that returns in its first step
    answers with a fired ``Deferred``, without a driver of its own."""

    def runFirst(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> tuple[bool, Any]:
        raise NotImplementedError

    def start(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> Deferred[Any]:
        done, outcome = self.runFirst(coro, gate)
        if done:
            return succeed(outcome)
        result: Deferred[Any] = outcome
        return result


class DeferredRunner(_FirstStep):
    """Coroutines driven by Twisted (``Deferred.fromCoroutine``), synchronously up to their first
    ``await``. Needs no event loop; asyncio primitives are not available to the code it runs."""

    def runFirst(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> tuple[bool, Any]:
        # The first step as Deferred.fromCoroutine takes it (in a copy of the current context);
        # a coroutine that waits is handed to Twisted from where it stands.
        context = contextvars.copy_context()
        try:
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            return True, stop.value
        except BaseException:
            return False, fail()
        return False, Deferred.fromCoroutine(_resumed(coro, yielded, context))


#: How many depths of nested first steps keep a spare task (deeper ones make a task each).
_SPARE_DEPTHS = 8


class AsyncioRunner(_FirstStep):
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
        # Tasks made ahead, whose turn on the loop has not come yet, one per depth of first steps
        # running inside each other (a Worker's first step calls an object, whose first step
        # runs inside it): handlers that finish in their first step run in them one after
        # another, so they cost no task of their own. A task in use by a first step that is
        # still running is always at a smaller depth than the next first step's.
        self._spares: list[Optional[tuple[asyncio.Task[None], _Slot, asyncio.AbstractEventLoop]]] = []
        self._eager = 0  # first steps running now (nested when one object calls another)

    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop or asyncio.get_running_loop()
        if id(loop) not in self._factories:
            self._factories.add(id(loop))
            installTaskFactory(loop)
        return loop


    def runFirst(self, coro: Coroutine[Any, Any, Any], gate: Optional[Gate] = None) -> tuple[bool, Any]:
        loop = self._loop
        if loop is None or id(loop) not in self._factories:
            loop = self.loop()
        depth = self._eager
        spares = self._spares
        spare = spares[depth] if depth < len(spares) else None
        if spare is not None and spare[2] is loop and not spare[0].done():
            task, slot = spare[0], spare[1]
        else:
            task, slot = self._task(loop, depth)
        context = contextvars.copy_context()
        if gate is not None:
            gate.lock()
        # The first step runs now, inside ``task`` (so ``asyncio.current_task()``,
        # ``asyncio.timeout`` and ``TaskGroup`` work there), as Python 3.12's eager tasks do: the
        # handler runs to its first ``await`` the moment its event is delivered, as on Cloudflare,
        # and a handler that needs no waiting finishes without a trip through the loop.
        running = _get_running_loop()
        if running is not loop:  # started from outside the loop (a test driving a ClockLoop)
            _set_running_loop(loop)
        outer = asyncio.current_task(loop)
        if outer is not None:
            _leave_task(loop, outer)
        _enter_task(loop, task)
        self._eager = depth + 1
        try:
            outcome: tuple[bool, Any] = context.run(_firstStep, coro, gate, self, context)
        finally:
            self._eager = depth
            _leave_task(loop, task)
            if outer is not None:
                _enter_task(loop, outer)
            if running is not loop:
                _set_running_loop(running)
        driven = outcome[1]
        if outcome[0] or type(driven) is not _Driven:
            return outcome  # finished in its first step: (True, value), or (False, failed Deferred)
        # It waits for something: this task is its own from now on.
        slot.driven = driven
        if depth < len(spares):
            spares[depth] = None
        _adopt(task)
        return False, driven.result

    def _task(self, loop: asyncio.AbstractEventLoop, depth: int) -> tuple["asyncio.Task[None]", "_Slot"]:
        """A new task for the next handler's first step (at ``depth``), kept as that depth's spare:
        ``runFirst`` calls this when the spare it found is missing, used or on another loop."""
        spares = self._spares
        slot = _Slot()
        # Made directly, not through the loop's task factory: _resume is the bridge already.
        task: asyncio.Task[None] = asyncio.Task(
            _resume(slot, loop), loop=loop, context=contextvars.Context()
        )
        if depth < _SPARE_DEPTHS:
            while len(spares) <= depth:
                spares.append(None)
            spares[depth] = (task, slot, loop)
        return task, slot

    def check(self, coro: Coroutine[Any, Any, Any], step: float, busy: float) -> Optional[BaseException]:
        """After a step of ``coro`` that took ``step`` seconds, with ``busy`` seconds spent in its
        steps in all: the error to stop it with, if any.

        The time is the wall-clock time of the steps: the thread runs nothing else during a step,
        so it is the CPU time the handler used, unless the machine took the CPU away meanwhile (a
        loaded host counts against the handler, never for it)."""
        warn = self.blockedLoopWarning
        if warn is not None and step > warn:
            _log.warn(
                "{handler} held the event loop for {ms:.0f} ms in one step (a CPU loop, or a "
                "blocking call such as time.sleep): every other object and client waited",
                handler=_name(coro), ms=step * 1000,
            )
        limit = self.cpuTimeLimit
        if limit is not None and busy > limit:
            return CpuTimeLimitExceeded(
                f"{_name(coro)} exceeded CPU time limit ({limit:g} s).",
                durableObjectReset=True,
            )
        return None


def _name(coro: Coroutine[Any, Any, Any]) -> str:
    return getattr(coro, "__qualname__", None) or repr(coro)


class _Driven:
    """A handler's coroutine that waits after its first step (``_firstStep``), as its asyncio task
    drives it on: one ``step`` at a time, with the Deferreds it awaits handed to asyncio as futures
    (``_wait``), and ``result`` fired with its outcome."""

    __slots__ = ("coro", "result", "runner", "context", "busy", "pending", "finished")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        runner: AsyncioRunner,
        context: contextvars.Context,
        busy: float,
        pending: Any,
    ) -> None:
        #: The handler's own context (a copy of the delivering code's): every step runs in it.
        self.context = context
        self.coro = coro
        #: Fires with its outcome (what ``runFirst`` hands out).
        self.result: Deferred[Any] = Deferred()
        self.runner = runner
        #: Seconds spent in its steps so far.
        self.busy = busy
        #: What it awaits now.
        self.pending = pending
        self.finished = False

    def step(self, value: Any, error: Optional[BaseException]) -> None:
        """Run the coroutine to its next ``await`` (or its end)."""
        coro, clock = self.coro, time.perf_counter
        began = clock()
        try:
            yielded = coro.send(value) if error is None else coro.throw(error)
        except StopIteration as stop:
            # Finished: only the blocked-loop warning can apply (inline: the common case).
            spent = clock() - began
            runner = self.runner
            warn = runner.blockedLoopWarning
            if warn is not None and spent > warn:
                runner.check(coro, spent, 0.0)
            self.finished = True
            self.result.callback(stop.value)
            return
        except BaseException as e:
            self.runner.check(coro, clock() - began, 0.0)
            self.finished = True
            self.result.errback(Failure(e))
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return
        spent = clock() - began
        self.busy += spent
        exceeded = self.runner.check(coro, spent, self.busy)
        if exceeded is not None:
            coro.close()
            self.finished = True
            _log.error("{error}", error=str(exceeded))
            self.result.errback(Failure(exceeded))
            return
        self.pending = yielded


class _Slot:
    """Where a task made ahead finds the handler it drives, once one needs it."""

    __slots__ = ("driven",)

    def __init__(self) -> None:
        self.driven: Optional[_Driven] = None


def _firstStep(
    coro: Coroutine[Any, Any, Any], gate: Optional[Gate], runner: AsyncioRunner, context: contextvars.Context
) -> tuple[bool, Any]:
    """A handler's first step, in its own ``context`` inside its task (``AsyncioRunner.runFirst``),
    as ``_Driven.step`` runs a later one: ``(True, value)`` if it returned, ``(False, failed
    Deferred)`` if it raised or went over the CPU time limit, else ``(False, _Driven)`` to drive on
    from where it stopped. ``gate`` is unlocked once the step ends."""
    clock = time.perf_counter
    began = clock()
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        # Finished: only the blocked-loop warning can apply (inline: the common case).
        spent = clock() - began
        warn = runner.blockedLoopWarning
        if warn is not None and spent > warn:
            runner.check(coro, spent, 0.0)
        if gate is not None:
            gate.unlock()
        return True, stop.value
    except BaseException as e:
        runner.check(coro, clock() - began, 0.0)
        failed = fail(Failure(e))
        if gate is not None:
            gate.unlock()
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        return False, failed
    spent = clock() - began
    if gate is not None:
        gate.unlock()
    exceeded = runner.check(coro, spent, spent)
    if exceeded is not None:
        coro.close()
        _log.error("{error}", error=str(exceeded))
        return False, fail(exceeded)
    return False, _Driven(coro, runner, context, spent, yielded)


@types.coroutine
def _resumed(
    coro: Coroutine[Any, Any, T], yielded: Any, context: contextvars.Context
) -> Generator[Any, Any, T]:
    """``coro``, whose first step ran already and yielded ``yielded``, for Twisted to drive on:
    what Twisted sends or throws in goes on to the coroutine (in its own ``context``)."""
    run = context.run
    while True:
        try:
            value = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as e:
            try:
                yielded = run(coro.throw, e)
            except StopIteration as stop:
                done: T = stop.value
                return done
            continue
        try:
            yielded = run(coro.send, value)
        except StopIteration as stop:
            result: T = stop.value
            return result


@types.coroutine
def _resume(slot: _Slot, loop: asyncio.AbstractEventLoop) -> Generator[Any, Any, None]:
    """The task's own coroutine: from where the handler's first step left off, wait for what it
    awaits and step it again (in its own context), until it is finished. A task whose handlers
    all finished in their first steps has nothing to do."""
    driven = slot.driven
    if driven is None:
        return
    run = driven.context.run
    while not driven.finished:
        yielded, driven.pending = driven.pending, None
        try:
            value, error = yield from _wait(yielded, loop)
        except BaseException as e:  # cancelled while waiting: tell the coroutine
            value, error = None, e
        run(driven.step, value, error)


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
