"""Alarms: when each object's alarm fires, what follows a run, and the index that finds alarms
again after a restart.

Each object's alarm time is stored with its data (``storage.setAlarm``), so it commits and rolls
back with the object's writes; that stored value is the truth. The runtime also keeps an
``AlarmIndex``, a list of (namespace, object) that may have an alarm, so that after a restart it can
schedule them without opening every object (``dotwist.storage.alarmindex.SqliteAlarmIndex`` keeps
it on disk; this module does no I/O). An entry is added (durably) *before* the object's
write that sets the alarm commits, and is only removed once the object's own storage says it has no
alarm, so the index can hold stale entries (harmless: checked when they fire) but never miss one.

At-least-once: a handler that raises is retried after 2 s, 4 s, 8 s, ... with up to 25% jitter, at
most 6 retries; the stored alarm stays in place until the handler succeeds, so a restart during the
retries fires it again.

The scheduler gets a clock, an index and a ``deliver(namespace, objectId, retryCount)`` function
(the registry's, which finds or constructs the object and runs ``AlarmScheduler.run`` in it as an
event); ``nextRetry`` is the pure decision of what follows a failed run.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .errors import DurableObjectError

if TYPE_CHECKING:  # pragma: no cover
    from .objects import Actor

_log = Logger(namespace="dotwist.alarms")

MAX_RETRIES = 6
FIRST_RETRY_DELAY = 2.0


def retryDelay(retryCount: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retryCount`` (1-based): 2, 4, 8, ... plus jitter."""
    base: float = FIRST_RETRY_DELAY * (2 ** (retryCount - 1))
    return base * (1 + 0.25 * rng.random())


def nextRetry(retryCount: int, rng: random.Random) -> Optional[tuple[int, float]]:
    """After run ``retryCount`` (0 for the first) raised: the next retry's number and delay, or
    None when the retries are used up."""
    if retryCount >= MAX_RETRIES:
        return None
    nextTry = retryCount + 1
    return nextTry, retryDelay(nextTry, rng)


class AlarmInfo:
    """What ``alarm(alarmInfo)`` is given: ``retryCount`` and ``isRetry``."""

    __slots__ = ("retryCount", "isRetry")

    def __init__(self, retryCount: int) -> None:
        self.retryCount = retryCount
        self.isRetry = retryCount > 0

    def __repr__(self) -> str:
        return f"AlarmInfo(retryCount={self.retryCount}, isRetry={self.isRetry})"


class AlarmIndex(Protocol):
    def add(self, namespace: str, objectId: str, millis: int) -> None: ...

    def remove(self, namespace: str, objectId: str) -> None: ...

    def entries(self) -> Iterable[tuple[str, str, int]]: ...

    def close(self) -> None: ...


class MemoryAlarmIndex:
    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], int] = {}

    def add(self, namespace: str, objectId: str, millis: int) -> None:
        self._entries[(namespace, objectId)] = millis

    def remove(self, namespace: str, objectId: str) -> None:
        self._entries.pop((namespace, objectId), None)

    def entries(self) -> Iterable[tuple[str, str, int]]:
        return [(ns, oid, ms) for (ns, oid), ms in self._entries.items()]

    def close(self) -> None:
        pass


Deliver = Callable[[str, str, int], bool]


class AlarmScheduler:
    """Keeps one timer per object with an alarm, on the given clock."""

    def __init__(
        self,
        clock: IReactorTime,
        index: Optional[AlarmIndex],
        deliver: Deliver,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.clock = clock
        self.index: AlarmIndex = index if index is not None else MemoryAlarmIndex()
        self.deliver = deliver
        self.rng = rng or random.Random()
        self._timers: dict[tuple[str, str], IDelayedCall] = {}
        self._stopped = False

    def nowMillis(self) -> int:
        return int(self.clock.seconds() * 1000)

    def start(self, served: Collection[str]) -> None:
        """Schedule every alarm the index knows for the ``served`` namespaces (after a restart:
        the ones that came due while the server was down fire at once)."""
        for namespace, objectId, millis in self.index.entries():
            if namespace in served:
                self.schedule(namespace, objectId, millis, 0)
            else:
                _log.warn(
                    "An alarm is stored for object {objectId} of namespace {namespace}, which this "
                    "app does not bind; it is kept and will fire when the namespace is served again.",
                    namespace=namespace,
                    objectId=objectId,
                )

    def stop(self) -> None:
        """Cancel every timer; from now on nothing is scheduled (the server is stopping)."""
        self._stopped = True
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def alarmSet(self, namespace: str, objectId: str, millis: int) -> None:
        """An object set its alarm (not yet committed): index it durably, then time it."""
        self.index.add(namespace, objectId, millis)
        self.schedule(namespace, objectId, millis, 0)

    def schedule(
        self, namespace: str, objectId: str, millis: int, retryCount: int, delay: Optional[float] = None
    ) -> None:
        """Run the object's alarm at ``millis`` (or after ``delay`` seconds)."""
        key = (namespace, objectId)
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        if self._stopped:
            return  # the stored alarm stays; the next start schedules it
        if delay is None:
            delay = max(0.0, millis / 1000.0 - self.clock.seconds())
        self._timers[key] = self.clock.callLater(delay, self._due, namespace, objectId, retryCount)

    def pendingCount(self) -> int:
        """How many alarm timers are set."""
        return len(self._timers)

    def cancel(self, namespace: str, objectId: str) -> None:
        """Forget an object's alarm: its timer and its index entry (the object was deleted)."""
        timer = self._timers.pop((namespace, objectId), None)
        if timer is not None and timer.active():
            timer.cancel()
        self.index.remove(namespace, objectId)

    def scheduled(self, namespace: str, objectId: str) -> Optional[float]:
        """When the object's alarm timer fires (seconds on the clock), or None."""
        timer = self._timers.get((namespace, objectId))
        return timer.getTime() if timer is not None and timer.active() else None

    def _due(self, namespace: str, objectId: str, retryCount: int) -> None:
        self._timers.pop((namespace, objectId), None)
        if not self.deliver(namespace, objectId, retryCount):
            _log.error(
                "Dropping an alarm for {objectId}: not an object this app serves as {namespace}",
                objectId=objectId, namespace=namespace,
            )
            self.index.remove(namespace, objectId)

    def finished(self, namespace: str, objectId: str, storedMillis: Optional[int]) -> None:
        """The object's alarm event ended; ``storedMillis`` is its alarm now (None: none left)."""
        if storedMillis is None:
            self.index.remove(namespace, objectId)
            # A timer left for an alarm that ran early (dotwist.testing) has nothing to run.
            timer = self._timers.pop((namespace, objectId), None)
            if timer is not None and timer.active():
                timer.cancel()
        else:
            self.schedule(namespace, objectId, storedMillis, 0)

    def run(
        self,
        actor: "Actor",
        retryCount: int,
        now: bool = False,
        ran: "Optional[Deferred[bool]]" = None,
    ) -> None:
        """The alarm event, run in the object (through its input gate). ``now``: run the stored
        alarm even if its time has not come (an operator fired it, or a test:
        ``dotwist.testing.runDurableObjectAlarm``).

        ``ran``, if given, is told the outcome: True once the handler ran and what follows is
        settled (the alarm deleted and committed; or a retry scheduled, which fails ``ran`` with
        the handler's error), False if there was no alarm or no handler."""
        ns, key = actor.namespace.name, actor.key
        if not actor.inMemory:
            if ran is not None:
                ran.errback(DurableObjectError(
                    "The Durable Object was reset before its alarm ran.", durableObjectReset=True
                ))
                return
            # Reset between the timer and the delivery: try again on the next incarnation.
            self.schedule(ns, key, 0, retryCount, delay=0)
            return
        session = actor.storage()
        stored = session.storedAlarm()
        if stored is None:
            self.finished(ns, key, None)
            if ran is not None:
                ran.callback(False)
            return
        if retryCount == 0 and stored > self.nowMillis() and not now:
            self.finished(ns, key, stored)  # moved later since this timer was set
            return
        stats = actor.stats
        stats.alarmRuns += 1
        session.alarmRunning = True  # getAlarm() answers None in the handler, as on Cloudflare
        outcome = actor.runHandler("alarm", (AlarmInfo(retryCount),))
        if outcome is None:
            session.alarmRunning = False
            _log.error(
                "{who}: an alarm is set but there is no alarm() handler; the alarm is deleted",
                **actor.logFields(),
            )
            session.clearAlarm(stored)

            def deleted(_: object) -> None:
                self.finished(ns, key, None)
                if ran is not None:
                    ran.callback(False)

            session.sync().addBoth(deleted)
            return

        def retry() -> bool:
            nextTry = nextRetry(retryCount, self.rng)
            if nextTry is None:
                return False
            stats.alarmRetries += 1
            self.schedule(ns, key, stored, nextTry[0], delay=nextTry[1])
            return True

        def handlerEnded(result: object) -> object:
            session.alarmRunning = False
            return result

        outcome.addBoth(handlerEnded)

        def settle(error: Optional[Failure] = None) -> None:
            # The alarm that ran is done (or given up): delete it unless the handler set another.
            if session.closed:
                # The object was reset before the run's writes committed: they are lost, so the
                # alarm runs again (the stored alarm is still in place).
                retry()
                report(error)
                return
            session.clearAlarm(stored)

            def deleted(_: object) -> None:
                self.finished(ns, key, session.storedAlarm())
                report(error)

            def lost(f: Failure) -> None:
                retry()  # the commit failed and reset the object (that is logged)
                report(error or f)

            session.sync().addCallbacks(deleted, lost)

        def failed(f: Failure) -> None:
            _log.failure(
                "{who}: alarm() raised (retry {retry} of {most})", f,
                retry=retryCount, most=MAX_RETRIES, **actor.logFields(),
            )
            if retry():
                report(f)
                return
            stats.alarmFailures += 1
            _log.error(
                "{who}: giving up on the alarm after {most} retries",
                most=MAX_RETRIES, **actor.logFields(),
            )
            settle(f)

        def report(error: Optional[Failure]) -> None:
            if ran is None:
                return
            if error is None:
                ran.callback(True)
            else:
                ran.errback(error)

        outcome.addCallbacks(lambda _: settle(), failed)


__all__ = [
    "AlarmIndex",
    "AlarmInfo",
    "AlarmScheduler",
    "MAX_RETRIES",
    "MemoryAlarmIndex",
    "nextRetry",
    "retryDelay",
]
