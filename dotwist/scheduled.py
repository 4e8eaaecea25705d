"""Cron Triggers: a Worker's ``scheduled(controller, env, ctx)`` run on its ``triggers.crons``.

``CronTriggers`` is a Twisted service over a runtime and the parsed schedules
(``dotwist.cron``). It keeps one timer, on the injected clock, for the next minute any schedule
fires at; then it runs the Worker's ``scheduled`` handler once per schedule due that minute, each
with a ``ScheduledController`` (``scheduledTime`` in ms, ``cron``, ``noRetry()``), a fresh
``ctx`` and the runtime's ``env``, and sets the timer for the next one. The call is strict, as
Cloudflare's Python Workers make it: ``scheduled`` takes ``(controller, env, ctx)``. A handler
that raises is logged; the schedule goes on. Times are UTC; minutes that passed while the server
was not running are not made up (Cloudflare does not run them either).
"""

from __future__ import annotations

import datetime
import inspect
from typing import Any, Optional, Sequence

from twisted.application import service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from .context import WORKER, WorkerCall
from .cron import CronSchedule
from .worker import ExecutionContext, Runtime

__all__ = ["CronTriggers", "ScheduledController", "runScheduled"]

_log = Logger(namespace="dotwist.scheduled")


class ScheduledController:
    """What ``scheduled`` is given first: when (``scheduledTime``, ms since the epoch) and which
    ``cron`` expression fired."""

    def __init__(self, scheduledTime: float, cron: str) -> None:
        self.scheduledTime = scheduledTime
        self.cron = cron
        self.retry = True

    def noRetry(self) -> None:
        """Accepted: dotwist does not retry a failed scheduled event in any case."""
        self.retry = False

    def __repr__(self) -> str:
        return f"ScheduledController(cron={self.cron!r}, scheduledTime={self.scheduledTime!r})"


async def _scheduled(runtime: Runtime, controller: ScheduledController) -> None:
    ctx = ExecutionContext()
    token = WORKER.set(WorkerCall(runtime, ctx))
    try:
        entry = runtime.app.worker(ctx, runtime.env)
        result: Any = getattr(entry, "scheduled")(controller, runtime.env, ctx)
        while inspect.isawaitable(result):
            result = await result
    finally:
        WORKER.reset(token)


def runScheduled(runtime: Runtime, cron: str, scheduledTime: float) -> Deferred[None]:
    """Run the Worker's ``scheduled`` handler once; fires when it is done (or fails with its
    error)."""
    return runtime.run(_scheduled(runtime, ScheduledController(scheduledTime, cron)))


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)


class CronTriggers(service.Service):
    """Runs ``runtime``'s ``scheduled`` handler on ``schedules``, timed by ``clock``."""

    def __init__(self, runtime: Runtime, schedules: Sequence[CronSchedule], clock: IReactorTime) -> None:
        self.runtime = runtime
        self.schedules = tuple(schedules)
        self.clock = clock
        self._timer: Optional[IDelayedCall] = None
        #: Runs started and not finished.
        self.inFlight: set[Deferred[None]] = set()
        #: How many scheduled events ran, and how many of them raised.
        self.runs = 0
        self.failures = 0

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._arm(_utc(self.clock.seconds()))

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def nextFiring(self, after: datetime.datetime) -> Optional[datetime.datetime]:
        """The first minute after ``after`` at which any schedule fires."""
        times = [t for t in (s.nextAfter(after) for s in self.schedules) if t is not None]
        return min(times) if times else None

    def _arm(self, after: datetime.datetime) -> None:
        due = self.nextFiring(after)
        if due is None:
            return
        delay = max(0.0, due.timestamp() - self.clock.seconds())
        self._timer = self.clock.callLater(delay, self._fire, due)

    def _fire(self, due: datetime.datetime) -> None:
        self._timer = None
        millis = due.timestamp() * 1000
        for schedule in self.schedules:
            if schedule.matches(due):
                self.runs += 1
                d = runScheduled(self.runtime, schedule.expression, millis)
                self.inFlight.add(d)
                d.addErrback(self._failed, schedule.expression).addBoth(self._done, d)
        if self.running:
            # Timed from the minute that fired, not from the clock, so no minute is skipped when a
            # timer fires late.
            self._arm(due)

    def _done(self, result: object, d: "Deferred[None]") -> None:
        self.inFlight.discard(d)

    def _failed(self, failure: Any, cron: str) -> None:
        self.failures += 1
        _log.failure("The Worker's scheduled() raised (cron {cron!r})", failure, cron=cron)
