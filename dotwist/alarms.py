"""Alarms: when each object's alarm fires, the retry schedule, and the index that finds alarms
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
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Optional, Protocol, TYPE_CHECKING

from twisted.logger import Logger

if TYPE_CHECKING:  # pragma: no cover
    from .objects import ObjectRegistry

_log = Logger(namespace="dotwist.alarms")

MAX_RETRIES = 6
FIRST_RETRY_DELAY = 2.0


def retryDelay(retryCount: int, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retryCount`` (1-based): 2, 4, 8, ... plus jitter."""
    base = FIRST_RETRY_DELAY * (2 ** (retryCount - 1))
    return base * (1 + 0.25 * rng.random())


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


class AlarmScheduler:
    """Keeps one timer per object with an alarm, on the registry's clock."""

    def __init__(self, registry: "ObjectRegistry", index: Optional[AlarmIndex] = None, rng: Optional[random.Random] = None) -> None:
        self.registry = registry
        self.index: AlarmIndex = index if index is not None else MemoryAlarmIndex()
        self.rng = rng or random.Random()
        self._timers: dict[tuple[str, str], Any] = {}

    def nowMillis(self) -> int:
        return int(self.registry.clock.seconds() * 1000)

    def start(self) -> None:
        """Schedule every alarm the index knows (after a restart: the ones that came due while
        the server was down fire at once)."""
        for namespace, objectId, millis in self.index.entries():
            if namespace in self.registry.namespaces:
                self._schedule(namespace, objectId, millis, 0)
            else:
                _log.warn(
                    "An alarm is stored for object {objectId} of namespace {namespace}, which this "
                    "app does not bind; it is kept and will fire when the namespace is served again.",
                    namespace=namespace,
                    objectId=objectId,
                )

    def stop(self) -> None:
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()

    def alarmSet(self, namespace: str, objectId: str, millis: int) -> None:
        """An object set its alarm (not yet committed): index it durably, then time it."""
        self.index.add(namespace, objectId, millis)
        self._schedule(namespace, objectId, millis, 0)

    def _schedule(self, namespace: str, objectId: str, millis: int, retryCount: int, delay: Optional[float] = None) -> None:
        key = (namespace, objectId)
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        if delay is None:
            delay = max(0.0, millis / 1000.0 - self.registry.clock.seconds())
        self._timers[key] = self.registry.clock.callLater(delay, self._due, namespace, objectId, retryCount)

    def _due(self, namespace: str, objectId: str, retryCount: int) -> None:
        self._timers.pop((namespace, objectId), None)
        ns = self.registry.namespaces.get(namespace)
        if ns is None:
            return
        try:
            objectIdObj = ns.minter.fromString(objectId)
        except TypeError:
            _log.error("Dropping an alarm for {objectId}: not an ID of {namespace}", objectId=objectId, namespace=namespace)
            self.index.remove(namespace, objectId)
            return
        actor = self.registry.actorFor(ns, objectIdObj)
        actor._submit(actor._runAlarm, retryCount)

    def finished(self, namespace: str, objectId: str, storedMillis: Optional[int]) -> None:
        """The object's alarm event ended; ``storedMillis`` is its alarm now (None: none left)."""
        if storedMillis is None:
            self.index.remove(namespace, objectId)
        else:
            self._schedule(namespace, objectId, storedMillis, 0)

    def failed(self, namespace: str, objectId: str, retryCount: int, storedMillis: Optional[int]) -> bool:
        """The handler raised. Schedule retry ``retryCount + 1``; False if retries are used up."""
        if retryCount >= MAX_RETRIES:
            return False
        nextTry = retryCount + 1
        self._schedule(namespace, objectId, storedMillis or 0, nextTry, delay=retryDelay(nextTry, self.rng))
        return True


__all__ = ["AlarmIndex", "AlarmInfo", "AlarmScheduler", "MemoryAlarmIndex", "MAX_RETRIES", "retryDelay"]
