"""The object registry: every namespace and live object of one runtime, and when objects stay in
memory.

The one instance per ID lives here: ``actorFor`` returns the live ``Actor`` of an ID or constructs
a new incarnation. The HTTP resource and the WebSocket factory reach objects through one registry
(the ``Runtime``'s), never a global.

Residency: each live object has one idle timer. When it fires, the object leaves memory if nothing
pins it (``dotwist.lifecycle.pinned``) and it has been idle for its delay (hibernation's if it
has hibernatable WebSockets, eviction's otherwise); else the timer is set again. The
hibernatable sockets' ``HibernationRecord`` stays here across incarnations, so a message on a
hibernated object's socket constructs it again and is delivered.

Core: no I/O. Time comes from the injected clock.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .alarms import AlarmIndex, AlarmScheduler
from .config import Limits
from .errors import DurableObjectError
from .handlers import DeferredRunner, Runner
from .hibernation import HibernationRecord
from .ids import DEFAULT_SECRET, DurableObjectId, IdMinter
from .lifecycle import ObjectLifecycle, idleDelay, leaveAs, pinned
from .names import MemoryNameIndex, NameIndex
from .objects import Actor
from .placement import LocalPlacement, Placement, Router
from .stats import NamespaceStats
from .storage.interface import StorageBackend

if TYPE_CHECKING:  # pragma: no cover
    from .websocket import WebSocket

_log = Logger(namespace="dotwist.registry")


class Namespace:
    """The runtime's side of one Durable Object class: its IDs and its live objects."""

    def __init__(self, registry: "ObjectRegistry", name: str, cls: type, idKey: Optional[str] = None) -> None:
        self.registry = registry
        self.name = name
        self.cls = cls
        self.minter = IdMinter(name, registry.idSecret, idKey)
        self.actors: dict[str, Actor] = {}
        self.stats = NamespaceStats()

    def __repr__(self) -> str:
        return f"<Namespace {self.name} {self.cls.__qualname__}>"


class ObjectRegistry:
    """Every namespace and live object of one runtime."""

    def __init__(
        self,
        clock: IReactorTime,
        limits: Limits,
        placement: Optional[Placement] = None,
        idSecret: bytes = DEFAULT_SECRET,
        storage: Optional[StorageBackend] = None,
        alarmIndex: Optional[AlarmIndex] = None,
        runner: Optional[Runner] = None,
    ) -> None:
        #: How the objects' code runs (``dotwist.handlers``).
        self.runner: Runner = runner if runner is not None else DeferredRunner()
        if storage is None:
            from .storage import MemoryBackend

            storage = MemoryBackend()
        self.storage: StorageBackend = storage
        self.clock = clock
        self.limits = limits
        self.placement: Placement = placement or LocalPlacement()
        #: Where stubs send their calls when objects may live in other processes (a cluster);
        #: None: straight to this registry.
        self.router: Optional[Router] = None
        self.idSecret = idSecret
        self.namespaces: dict[str, Namespace] = {}
        self.env: Any = None
        #: The ``Runtime`` that owns this registry (set by it).
        self.runtime: Any = None
        self.records: dict[tuple[str, str], HibernationRecord] = {}
        self.alarms = AlarmScheduler(clock, alarmIndex, self._deliverAlarm)
        #: How many objects left memory, by the state they left in.
        self.departures: dict[ObjectLifecycle, int] = {state: 0 for state in ObjectLifecycle if state.final}
        #: The names of objects minted with ``idFromName`` that wrote data (``dotwist.names``).
        self.names: NameIndex = MemoryNameIndex()

    # -- namespaces and objects ----------------------------------------------------------------

    def namespace(self, cls: type, name: Optional[str] = None, idKey: Optional[str] = None) -> Namespace:
        """The namespace of ``cls`` (named ``name``, by default the class's name), created on
        first use with its IDs minted under ``idKey`` (by default its name)."""
        name = name or cls.__name__
        existing = self.namespaces.get(name)
        if existing is not None:
            if existing.cls is not cls:
                raise TypeError(
                    f"Namespace {name!r} is already bound to class {existing.cls.__qualname__}"
                )
            return existing
        ns = self.namespaces[name] = Namespace(self, name, cls, idKey)
        return ns

    def liveActor(self, namespace: str, key: str) -> Optional[Actor]:
        """The object's incarnation in memory, if there is one."""
        ns = self.namespaces.get(namespace)
        return ns.actors.get(key) if ns is not None else None

    def actorFor(self, namespace: Namespace, objectId: DurableObjectId) -> Actor:
        """The live incarnation of an object, constructed now if it is not in memory."""
        key = objectId.toString()
        actor = namespace.actors.get(key)
        if actor is None:
            if not self.placement.isLocal(namespace.name, key):
                raise DurableObjectError(
                    f"Durable Object {key} of {namespace.name} is owned by another process, "
                    "and remote objects are not supported by this deployment.",
                    retryable=True,
                )
            actor = namespace.actors[key] = Actor(namespace, objectId)
            actor.construct()
            if actor.inMemory:
                self.armIdle(actor)
        return actor

    def forget(self, actor: Actor) -> None:
        """``actor`` left memory: the next event for its ID constructs a new incarnation."""
        actors = actor.namespace.actors
        if actors.get(actor.key) is actor:
            del actors[actor.key]
        timer = actor.idleTimer
        if timer is not None and timer.active():
            timer.cancel()
        actor.idleTimer = None
        stats = actor.stats
        stats.inputGateWaits += actor.inputGate.waits
        stats.outputGateWaits += actor.outputGate.waits
        actor.inputGate.waits = actor.outputGate.waits = 0

    def liveObjects(self) -> int:
        return sum(len(ns.actors) for ns in self.namespaces.values())

    def flush(self) -> Deferred[Any]:
        """Commit every live object's pending writes now (at shutdown); fires when durable."""
        return DeferredList(
            [actor.flush() for ns in self.namespaces.values() for actor in list(ns.actors.values())],
            consumeErrors=True,
        )

    # -- hibernatable sockets ----------------------------------------------------------------

    def hibernationRecord(
        self, namespace: Namespace, objectId: DurableObjectId, create: bool = True
    ) -> Optional[HibernationRecord]:
        key = (namespace.name, objectId.toString())
        record = self.records.get(key)
        if record is None and create:
            record = self.records[key] = HibernationRecord(
                namespace.name, objectId, self.deliverHibernated, self.liveActor
            )
        return record

    def deliverHibernated(self, record: HibernationRecord, ws: "WebSocket", kind: str, event: Any) -> None:
        """An event on a hibernatable socket: auto-respond, or wake the object and deliver."""
        if kind == "message" and record.autoRespond(ws, event.data, self.clock.seconds()):
            return
        if kind == "close":
            record.remove(ws)
        ns = self.namespaces[record.namespace]
        actor = self.actorFor(ns, record.objectId)
        actor.deliver(_hibernatedEvent, actor, record, ws, kind, event)

    # -- alarms ------------------------------------------------------------------------------

    def _deliverAlarm(self, namespace: str, objectId: str, retryCount: int) -> bool:
        """The scheduler's delivery: run the object's alarm; False if the namespace or the ID
        is not (or no longer) valid here."""
        ns = self.namespaces.get(namespace)
        if ns is None:
            return False
        try:
            oid = ns.minter.fromString(objectId)
        except TypeError:
            return False
        actor = self.actorFor(ns, oid)
        actor.deliver(self.alarms.run, actor, retryCount)
        return True

    # -- residency ---------------------------------------------------------------------------

    def armIdle(self, actor: Actor, delay: Optional[float] = None) -> None:
        """(Re)start the object's idle timer: after ``delay`` (default: its idle delay) it is
        checked, and leaves memory if it is idle and nothing pins it."""
        timer = actor.idleTimer
        if timer is not None and timer.active():
            timer.cancel()
        if delay is None:
            delay = self._idleDelay(actor)
        actor.idleTimer = self.clock.callLater(delay, self._idleCheck, actor)

    def _hasHibernatableSockets(self, actor: Actor) -> bool:
        record = self.records.get((actor.namespace.name, actor.key))
        return record is not None and bool(record.sockets)

    def _idleDelay(self, actor: Actor) -> float:
        return idleDelay(
            self._hasHibernatableSockets(actor), self.limits.hibernateAfter, self.limits.evictAfter
        )

    def _idleCheck(self, actor: Actor) -> None:
        actor.idleTimer = None
        if not actor.inMemory or actor.namespace.actors.get(actor.key) is not actor:
            return
        now = self.clock.seconds()
        delay = self._idleDelay(actor)
        if pinned(
            running=actor.running,
            waitingAtGate=actor.inputGate.waiting,
            gateLocked=actor.inputGate.locked,
            outputHeld=actor.outputGate.held,
            liveSockets=actor.liveSockets,
            storageBusy=actor.storageBusy,
            waitUntilSince=actor.waitUntilStarts(),
            now=now,
            waitUntilTimeout=self.limits.waitUntilTimeout,
        ):
            self.armIdle(actor, delay)
            return
        remaining = actor.lastActive + delay - now
        if remaining > 0:
            self.armIdle(actor, remaining)
            return
        self.evict(actor)

    def evict(self, actor: Actor) -> None:
        """Take an idle object out of memory now (its storage is all committed)."""
        hibernatable = self._hasHibernatableSockets(actor)
        state = leaveAs(hibernatable)
        self.forget(actor)
        actor.leaveMemory(state)
        if not hibernatable:
            self.records.pop((actor.namespace.name, actor.key), None)
        self.departures[state] += 1
        actor.stats.departures[state.value] += 1


def _hibernatedEvent(actor: Actor, record: HibernationRecord, ws: "WebSocket", kind: str, event: Any) -> None:
    """Run a hibernatable socket's event in the object: ``webSocketMessage``, ``webSocketClose``
    or ``webSocketError``, within the record's event timeout."""
    if not actor.inMemory:
        return
    name, args = record.handlerCall(ws, kind, event)
    outcome = actor.runHandler(name, args, record.eventTimeout)
    if outcome is None:
        if kind == "message":
            _log.warn(
                "{cls} accepted a hibernatable WebSocket but has no webSocketMessage(); "
                "the message is dropped",
                cls=actor.namespace.cls.__name__,
            )
        return
    outcome.addErrback(
        lambda f: _log.failure("{who}: {name}() raised", f, name=name, **actor.logFields())
    )


__all__ = ["Namespace", "ObjectRegistry"]
