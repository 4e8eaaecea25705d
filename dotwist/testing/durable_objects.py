"""Reaching into Durable Objects from a test, with Cloudflare's names (``cloudflare:test``):
``runInDurableObject``, ``runDurableObjectAlarm``, ``listDurableObjectIds``,
``evictDurableObject``, and ``abortDurableObject`` (reset).

Each goes through the runtime's own paths, so what a test sees is what production does: a
function run in an object is an event through its input gate, and its result leaves through the
output gate; an alarm run now is the scheduler's alarm event; an eviction is the registry's.
Each returns a ``Deferred`` (await it; in a synchronous test, ``Harness.run`` it).
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Literal, Optional, TypeVar

from twisted.internet.defer import Deferred, fail, succeed

from ..errors import DurableObjectAbort, DurableObjectError
from ..ids import DurableObjectId
from ..lifecycle import ObjectLifecycle
from ..objects import Actor, DurableObjectState
from ..registry import Namespace, ObjectRegistry
from ..storage import SqliteBackend
from ..storage.interface import StorageBackend
from ..stubs import DurableObjectNamespace, DurableObjectStub, namespaceOf
from .clock import TestClock

__all__ = [
    "abortDurableObject",
    "evictDurableObject",
    "isDurableObjectInMemory",
    "listDurableObjectIds",
    "runDurableObjectAlarm",
    "runInDurableObject",
]

T = TypeVar("T")

#: How many turns of the clock an eviction waits for the object's work in progress to finish.
EVICTION_TURNS = 1000


def runInDurableObject(
    stub: DurableObjectStub, fn: Callable[[Any, DurableObjectState], T]
) -> "Deferred[Any]":
    """Run ``fn(instance, ctx)`` inside the object ``stub`` points to (constructed if it is not in
    memory), as an event: through its input gate, so no other event runs until ``fn`` returns or
    awaits (``fn`` may be a plain function or ``async``); fires with what ``fn`` returns once the
    writes it made are durable (the output gate), or fails with what it raised. The value is
    passed as it is, not copied."""
    actor = _actorFor(stub)
    ctx = actor.ctx

    def inside(instance: Any) -> Any:
        return fn(instance, ctx)

    return actor.call(inside)


def runDurableObjectAlarm(stub: DurableObjectStub) -> "Deferred[bool]":
    """Run the object's alarm now, if one is set, whenever it is due: the scheduler's own alarm
    event (``alarm(alarmInfo)`` with ``retryCount`` 0, through the input gate; the alarm is
    deleted afterwards unless the handler set another). Fires with True once the handler ran and
    the alarm's deletion is durable; False if no alarm was set (or the class has no ``alarm``
    handler: the alarm is deleted, as when it fires). If the handler raises, it fails with that
    error, and a retry is scheduled as for any failed alarm (2 s later, then 4 s, ...)."""
    actor = _actorFor(stub)
    registry = actor.registry
    ran: Deferred[bool] = Deferred()
    actor.deliver(registry.alarms.run, actor, 0, True, ran)
    return ran


def listDurableObjectIds(namespace: DurableObjectNamespace) -> "Deferred[list[DurableObjectId]]":
    """The IDs of the objects of ``namespace`` (an ``env`` binding) that exist: those with stored
    data (in memory, or a file in the data directory), those in memory now, and those hibernated
    with open WebSockets; sorted by ``toString()``. IDs of objects in memory keep their
    ``name``."""
    ns = namespaceOf(namespace)
    registry = ns.registry
    found: dict[str, DurableObjectId] = {}
    for key in _storedIds(registry.storage, ns.name):
        found[key] = ns.minter.fromString(key)
    for (name, key), record in registry.records.items():
        if name == ns.name and record.sockets:
            found[key] = record.objectId
    for key, actor in ns.actors.items():
        found[key] = actor.id
    return succeed([found[key] for key in sorted(found)])


def evictDurableObject(
    stub: DurableObjectStub, webSockets: Literal["hibernate", "close"] = "hibernate"
) -> "Deferred[ObjectLifecycle]":
    """Take the object out of memory now, as the registry does when it has been idle long
    enough: it hibernates if it has hibernatable WebSockets (they stay open and wake it again),
    else it is evicted; its storage, all committed, stays. With ``webSockets="close"`` its
    hibernatable sockets are closed first (1001, "Durable Object evicted").

    Work in progress (an event running or waiting, output waiting for writes, a commit, a
    ``waitUntil`` task) is waited for, a turn of the clock at a time; fires with the state the
    object left in (``HIBERNATED`` or ``EVICTED``). Fails if the object is not in memory, or has
    WebSockets it accepted with ``accept()`` (they keep an object in memory; close them, or
    ``abortDurableObject`` to reset it), or is still busy after many turns (it waits for time
    to pass: advance the clock)."""
    if webSockets not in ("hibernate", "close"):
        return fail(TypeError(f'webSockets must be "hibernate" or "close", not {webSockets!r}'))
    try:
        actor = _liveActor(stub)
    except Exception:
        return fail()
    if webSockets == "close":
        for ws in actor.ctx.getWebSockets():
            ws.close(1001, "Durable Object evicted")
    return evictActor(actor)


def abortDurableObject(stub: DurableObjectStub, reason: Optional[str] = None) -> "Deferred[None]":
    """Reset the object now, as its own ``ctx.abort(reason)`` does: its in-memory state is
    dropped, events waiting for it fail, writes not yet durable are lost, and WebSockets it
    accepted with ``accept()`` close with 1011; the next event constructs it again. Fails if the
    object is not in memory."""
    try:
        actor = _liveActor(stub)
    except Exception:
        return fail()
    try:
        actor.ctx.abort(reason)
    except DurableObjectAbort:
        pass  # it stops the object's own code when called there; here the test goes on
    return succeed(None)


def isDurableObjectInMemory(stub: DurableObjectStub) -> bool:
    """Whether the object has an instance in memory now (not hibernated, evicted or reset, and
    not only addressed: a stub alone constructs nothing)."""
    ns = namespaceOf(stub)
    actor = ns.registry.liveActor(ns.name, stub.id.toString())
    return actor is not None and actor.inMemory


# -- eviction ---------------------------------------------------------------------------------


def evictActor(actor: Actor) -> "Deferred[ObjectLifecycle]":
    """Evict (or hibernate) ``actor`` through its registry once it is idle; see
    ``evictDurableObject``."""
    registry = actor.registry
    done: Deferred[ObjectLifecycle] = Deferred()
    fake = isinstance(registry.clock, TestClock)
    # On a test clock a turn takes no time; on a real reactor, wait a little between looks.
    delay = 0.0 if fake else 0.01

    def attempt(turnsLeft: int) -> None:
        if not actor.inMemory:
            done.callback(actor.lifecycle)
            return
        if actor.liveSockets:
            done.errback(TypeError(
                f"{_describe(actor)} has {actor.liveSockets} WebSocket(s) accepted with "
                "ws.accept(), which keep an object in memory (on Cloudflare too): close them "
                "first, or abortDurableObject() to reset the object (they close with 1011)."
            ))
            return
        busy = busyWith(actor, registry)
        if busy is None:
            registry.evict(actor)
            done.callback(actor.lifecycle)
            return
        if turnsLeft <= 0:
            hint = " (on a test clock: advance it until that is done)" if fake else ""
            done.errback(RuntimeError(f"{_describe(actor)} is still busy: {busy}{hint}"))
            return
        registry.clock.callLater(delay, attempt, turnsLeft - 1)

    # Not at once: the test may be running inside a callback of the object's last event, before
    # its gates have finished releasing.
    registry.clock.callLater(0, attempt, EVICTION_TURNS)
    return done


def busyWith(actor: Actor, registry: ObjectRegistry) -> Optional[str]:
    """What keeps ``actor`` from leaving memory right now (besides plain WebSockets), or None."""
    if actor.running:
        return f"{actor.running} event(s) running"
    if actor.inputGate.waiting:
        return f"{actor.inputGate.waiting} event(s) waiting at its input gate"
    if actor.inputGate.locked:
        return "its input gate is locked (blockConcurrencyWhile or a transaction)"
    if actor.outputGate.held:
        return "output waiting for writes to become durable"
    if actor.storageBusy:
        return "a commit or transaction in progress"
    if actor.waitUntilStarts():
        return "a ctx.waitUntil() task still running"
    return None


# -- finding objects ----------------------------------------------------------------------------


def _actorFor(stub: DurableObjectStub) -> Actor:
    ns = namespaceOf(stub)
    return ns.registry.actorFor(ns, stub.id)


def _liveActor(stub: DurableObjectStub) -> Actor:
    ns = namespaceOf(stub)
    actor = ns.registry.liveActor(ns.name, stub.id.toString())
    if actor is None or not actor.inMemory:
        raise DurableObjectError(f"{_named(ns, stub.id)} is not in memory.")
    return actor


def _describe(actor: Actor) -> str:
    return _named(actor.namespace, actor.id)


def _named(ns: Namespace, objectId: DurableObjectId) -> str:
    label = f"{objectId.name!r}" if objectId.name is not None else objectId.toString()[:12] + "..."
    return f"Durable Object {label} of {ns.name}"


_OBJECT_FILE = re.compile(r"^[0-9a-f]{64}\.sqlite$")


def _storedIds(backend: StorageBackend, namespace: str) -> list[str]:
    """IDs of objects with stored data, from a backend that can list them (the memory backend and
    the test backends: ``objectIds``), or from a data directory's files."""
    lister: Optional[Callable[[str], list[str]]] = getattr(backend, "objectIds", None)
    if lister is not None:
        return list(lister(namespace))
    if isinstance(backend, SqliteBackend) and backend.dataDir is not None:
        top = os.path.join(backend.dataDir, namespace)
        found = []
        for directory, _, files in os.walk(top):
            for name in files:
                if _OBJECT_FILE.match(name):
                    path = os.path.join(directory, name)
                    objectId = name[: -len(".sqlite")]
                    if backend.pathFor(namespace, objectId) == path:
                        found.append(objectId)
        return sorted(found)
    return []
