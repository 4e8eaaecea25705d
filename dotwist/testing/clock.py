"""Time under a test's control: ``TestClock`` (a ``twisted.internet.task.Clock`` that can step from
timer to timer) and ``ClockLoop`` (an asyncio event loop whose time is that clock).

A runtime built on a ``TestClock`` does nothing by itself: alarms, hibernation, eviction, commits
at the end of a turn and asyncio steps all wait until the test runs the clock. ``runReady()`` runs
what is due now (repeatedly, until nothing is); ``settle(seconds)`` moves time forward timer by
timer, so each fires at its own time, in order, and sees the time it was set for.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from typing import Any, Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ClockLoop", "TestClock"]

_log = Logger(namespace="dotwist.testing")

#: How many timers ``settle`` fires at most before it decides that something reschedules itself
#: for ever at the same time.
MAX_STEPS = 100_000


class TestClock(Clock):
    """A ``Clock`` for tests: ``advance(seconds)`` as Twisted's (one jump; every timer due fires,
    seeing the time at the end of the jump), plus ``settle(seconds)`` (timer by timer) and
    ``runReady()``.

    It starts at ``start`` (seconds since the epoch; the real time now if not given, so that code
    which sets alarms from ``time.time()`` finds them a few milliseconds away, as in production).

    ``runOn(reactor)`` makes a running reactor run what becomes due now without the test asking
    (for a runtime served on a real port); timers still wait for the test to move time.
    """

    __test__ = False  # a class named Test*, but not a pytest test class

    def __init__(self, start: Optional[float] = None) -> None:
        super().__init__()
        self.rightNow = time.time() if start is None else float(start)
        self._reactor: Optional[IReactorTime] = None
        self._wakeCall: Optional[IDelayedCall] = None

    def callLater(
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        call = super().callLater(delay, callable, *args, **kw)
        if delay <= 0 and self._reactor is not None:
            self._wake()
        return call

    # -- running the clock -------------------------------------------------------------------

    def runReady(self) -> None:
        """Run every timer that is due now, and those they make due now, until none is."""
        self.advance(0)

    def settle(self, seconds: float = 0.0) -> None:
        """Move time forward by ``seconds`` one timer at a time: each timer fires at the time it
        was set for (so what it schedules in turn fires in order too), then the clock stops at
        the end, having run everything due."""
        if seconds < 0:
            raise ValueError(f"settle() moves time forward, not by {seconds!r} seconds")
        target = self.rightNow + seconds
        self.advance(0)
        for _ in range(MAX_STEPS):
            upcoming = self.nextTimer()
            if upcoming is None or upcoming > target:
                break
            self.rightNow = max(self.rightNow, upcoming)
            self.advance(0)
        else:
            raise RuntimeError(
                f"settle({seconds!r}) fired {MAX_STEPS} timers and timers are still due; "
                f"something reschedules itself without end:\n{self.describe()}"
            )
        self.rightNow = max(self.rightNow, target)
        self.advance(0)

    def nextTimer(self) -> Optional[float]:
        """When the next timer is due (clock time), or None if there is none."""
        pending = [call.getTime() for call in self.calls if call.active()]
        return min(pending) if pending else None

    def describe(self, limit: int = 10) -> str:
        """The pending timers, soonest first, one a line (for error messages)."""
        now = self.rightNow
        calls = sorted((c for c in self.calls if c.active()), key=lambda c: c.getTime())
        lines = [f"  in {c.getTime() - now:.3f} s: {_describeCall(c)}" for c in calls[:limit]]
        if len(calls) > limit:
            lines.append(f"  ... and {len(calls) - limit} more")
        return "\n".join(lines) if lines else "  (no timers)"

    # -- driven by a reactor -----------------------------------------------------------------

    def runOn(self, reactor: Optional[IReactorTime]) -> None:
        """While ``reactor`` runs, let it run what is due now on this clock, soon after it becomes
        due (``None`` stops that). Time itself still moves only when the test says so."""
        if self._wakeCall is not None and self._wakeCall.active():
            self._wakeCall.cancel()
        self._wakeCall = None
        self._reactor = reactor
        if reactor is not None and any(c.getTime() <= self.rightNow for c in self.calls):
            self._wake()

    def _wake(self) -> None:
        if self._wakeCall is not None or self._reactor is None:
            return
        # Scheduled from an empty context: the reactor's own timer handle must not carry the
        # context of whichever object's code asked for a timer (see dotwist/_reactors.py).
        self._wakeCall = contextvars.Context().run(self._reactor.callLater, 0, self._woken)

    def _woken(self) -> None:
        self._wakeCall = None
        self.runReady()


def _describeCall(call: IDelayedCall) -> str:
    func = getattr(call, "func", None)
    name = getattr(func, "__qualname__", None) or repr(func)
    args: Any = getattr(call, "args", ())
    if name.endswith("ClockLoop._fire") and len(args) > 1:  # an asyncio handle: its callback
        return f"asyncio: {getattr(args[1], '__qualname__', None) or repr(args[1])}"
    return name


class ClockLoop(asyncio.AbstractEventLoop):
    """An asyncio event loop whose time is a ``twisted.internet.task.Clock``: ``asyncio.sleep``,
    ``wait_for``, ``timeout`` and task steps run when the test advances the clock, in time order,
    interleaved with the clock's Twisted timers (commits, alarms, eviction). ``clock.advance(0)``
    runs everything that is ready, repeatedly, until nothing is.

    It does no I/O: sockets, subprocesses and executors are not available (use the real reactor
    for tests of asyncio libraries that do I/O).
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._timers: dict[asyncio.TimerHandle, IDelayedCall] = {}
        self._taskFactory: Any = None
        self._exceptionHandler: Any = None

    def time(self) -> float:
        return self._clock.seconds()

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any, context: Optional[contextvars.Context] = None) -> asyncio.TimerHandle:  # type: ignore[override]
        handle = asyncio.TimerHandle(self.time() + max(delay, 0.0), callback, args, self, context)
        self._timers[handle] = self._clock.callLater(max(delay, 0.0), self._fire, handle, callback, args, context)
        return handle

    def call_at(self, when: float, callback: Callable[..., object], *args: Any, context: Optional[contextvars.Context] = None) -> asyncio.TimerHandle:  # type: ignore[override]
        return self.call_later(when - self.time(), callback, *args, context=context)

    def call_soon(self, callback: Callable[..., object], *args: Any, context: Optional[contextvars.Context] = None) -> asyncio.Handle:  # type: ignore[override]
        return self.call_later(0, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        call = self._timers.pop(handle, None)
        if call is not None and call.active():
            call.cancel()

    def _fire(self, handle: asyncio.TimerHandle, callback: Callable[..., object], args: tuple[Any, ...], context: Optional[contextvars.Context]) -> None:
        self._timers.pop(handle, None)
        if handle.cancelled():
            return
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        try:
            if context is not None:
                context.run(callback, *args)
            else:
                callback(*args)
        except BaseException as e:
            self.call_exception_handler({"message": "Exception in callback", "exception": e, "handle": handle})
        finally:
            asyncio.events._set_running_loop(previous)

    def create_future(self) -> "asyncio.Future[Any]":
        return asyncio.Future(loop=self)

    def create_task(self, coro: Any, *, name: Optional[str] = None, context: Optional[contextvars.Context] = None) -> "asyncio.Task[Any]":
        kwargs: dict[str, Any] = {} if context is None else {"context": context}
        if self._taskFactory is not None:
            task: asyncio.Task[Any] = self._taskFactory(self, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=self, **kwargs)
        if name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: Any) -> None:
        self._taskFactory = factory

    def get_task_factory(self) -> Any:
        return self._taskFactory

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        if self._exceptionHandler is not None:
            self._exceptionHandler(self, context)
            return
        self.default_exception_handler(context)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if error is not None:
            _log.failure("asyncio: {message}", Failure(error), message=context.get("message", ""))
        else:
            _log.error("asyncio: {message}", message=context.get("message", ""))

    def set_exception_handler(self, handler: Any) -> None:
        self._exceptionHandler = handler

    def get_exception_handler(self) -> Any:
        return self._exceptionHandler

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return True

    def is_closed(self) -> bool:
        return False

    def close(self) -> None:
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()
